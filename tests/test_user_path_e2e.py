"""The whole user path from the command line, on files the test writes itself: own TSV /
CoNLL / CSV tasks (spec strings only) -> test predictions -> launch.py --predict on a new file ->
export -> transformers loads each task model and agrees with jaxtl (labels equal, probabilities /
scores within 1e-4); HF `datasets` folder and parquet tasks train through the CLI too."""

import json
import subprocess
import sys

import numpy as np
import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
POS = ["a great , moving film", "funny , warm and clever", "the best film this year",
       "a moving , clever story", "warm and wonderful", "clever and great fun"]  # fmt: skip
NEG = ["boring and far too long", "not worth the ticket", "clumsy , dull and tired",
       "dull , slow and tired", "a long , boring mess", "tired and clumsy"]  # fmt: skip

# "Kyotoville" and "Globex" are two sub-tokens each for MiniLM's tokenizer (kyoto ##ville).
SHORT = ("Anna flew to Paris .", "the film opened in Rome .", "Lima is far .",
         "Kyotoville is near Globex .")  # fmt: skip
# Past the :tiny config's data.max_length (32 tokens): the run tags it in windows.
LONG = "Anna flew to Paris and then the film opened in Rome while Lima is far " * 3 + "."


def _launch(*args, timeout=600):
    p = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=timeout)  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _write_own_data(d):
    rows = [(s, "pos") for s in POS] + [(s, "neg") for s in NEG]
    table = "sentence\tlabel\n" + "".join(f"{s}\t{lab}\n" for s, lab in rows)
    for split in ("train", "dev"):
        (d / f"{split}.tsv").write_text(table)
    (d / "test.tsv").write_text("id\tsentence\n" + "".join(f"q{i}\t{s}\n" for i, s in
                                                         enumerate(POS[:2] + NEG[:2])))  # fmt: skip
    for split in ("train", "dev", "test"):
        sentences = SHORT + ((LONG,) if split != "train" else ())
        (d / f"{split}.conll").write_text("".join(
            f"{w} {'B-LOC' if w[0].isupper() else 'O'}\n" + ("\n" if w == "." else "")
            for sent in sentences for w in sent.split()
        ))  # fmt: skip
    csv = "sentence1,sentence2,score\n" + "".join(
        f'"{a}","{b}",{(i % 5) / 4:.2f}\n' for i, (a, b) in enumerate(zip(POS + NEG, NEG + POS))
    )
    for split in ("train", "dev"):
        (d / f"{split}.csv").write_text(csv)
    # Universal Dependencies' layout: comments (the text as written: "Paris." where the words
    # are "Paris", "."), a multiword token's range line, UPOS in column 3
    conllu = "".join(
        f"# sent_id = s{i}\n# text = {sent.replace(' .', '.')}\n"
        + ("1-2\tAnnas\t_\t_\t_\t_\t_\t_\t_\t_\n" if i == 0 else "")
        + "".join(f"{k}\t{w}\t_\t{'PUNCT' if w == '.' else 'PROPN' if w[0].isupper() else 'X'}"
                  "\t_\t_\t0\troot\t_\t_\n" for k, w in enumerate(sent.split(), start=1))
        + "\n"
        for i, sent in enumerate(SHORT)
    )  # fmt: skip
    for split in ("train", "dev", "test"):
        (d / f"{split}.conllu").write_text(conllu)


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    _write_own_data(d)
    specs = (
        f"file:name=mine,path={d}/{{split}}.tsv,text=sentence,label=label",
        f"file:name=ner,path={d}/{{split}}.conll",
        f"file:name=sts,path={d}/{{split}}.csv,text=sentence1,text_pair=sentence2,label=score,"
        "kind=regression",
        f"file:name=upos,path={d}/{{split}}.conllu",
    )
    wd, out = d / "run", d / "export"
    _launch("--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names={specs!r}",
            "--config.optim.lr=1e-3", f"--config.export_dir={out}", f"--workdir={wd}")  # fmt: skip
    return d, wd, out


def test_own_files_give_test_predictions_and_predict_matches(trained, tmp_path):
    d, wd, _ = trained
    test = _jsonl(wd / "predictions/mine/test.jsonl")
    assert [r["text"] for r in test] == POS[:2] + NEG[:2]  # unlabelled test: predicted
    assert all(r["label"] in ("neg", "pos") and "gold" not in r for r in test)
    assert [r["id"] for r in test] == ["q0", "q1", "q2", "q3"]  # the file's own ids
    assert "mine" not in json.loads((wd / "results_test.json").read_text())  # not scored
    assert "span_f1" in json.loads((wd / "results_test.json").read_text())["ner"]
    new = tmp_path / "new.txt"
    new.write_text("".join(r["text"] + "\n" for r in test))
    out = tmp_path / "new.jsonl"
    _launch("--predict", f"--workdir={wd}", f"--input={new}", f"--output={out}", "--task=mine")
    got = _jsonl(out)
    assert [g["label"] for g in got] == [r["label"] for r in test]
    np.testing.assert_allclose([g["probs"] for g in got], [r["probs"] for r in test], atol=1e-5)


def test_an_unfinished_run_predicts_from_its_latest_checkpoint_and_says_so(trained, tmp_path,
                                                                           caplog):  # fmt: skip
    """A workdir without selection.json (its run stopped before the end) still predicts, from
    its latest checkpoint, with a warning that no model was selected; a finished one has none."""
    import shutil

    import jaxtl

    _, wd, _ = trained
    with caplog.at_level("WARNING", logger="jaxtl.predictor"):
        jaxtl.load(wd)
    assert "has no selection.json" not in caplog.text
    stopped = tmp_path / "stopped"
    shutil.copytree(wd, stopped)
    (stopped / "selection.json").unlink()
    with caplog.at_level("WARNING", logger="jaxtl.predictor"):
        model = jaxtl.load(stopped)
    assert f"{stopped} has no selection.json: its run has not finished" in caplog.text
    assert [r["label"] in ("neg", "pos") for r in model.predict(POS[:1], "mine")] == [True]


def test_predict_reads_conll_files_with_and_without_tags(trained, tmp_path):
    """``--predict`` on a CoNLL task reads the task's own format: a tagged file (gold kept) and
    a file of words alone (read unlabelled), both tagged as the run tagged its test split."""
    d, wd, _ = trained
    test = _jsonl(wd / "predictions/ner/test.jsonl")
    # The run tags its long text in windows too: every word, as --predict does.
    assert [r["text"] for r in test] == [*SHORT, LONG]
    assert all(None not in r["tags"] and len(r["tags"]) == len(r["words"]) for r in test)
    tagged = tmp_path / "tagged.jsonl"
    _launch("--predict", f"--workdir={wd}", f"--input={d / 'test.conll'}", f"--output={tagged}",
            "--task=ner")  # fmt: skip
    got = _jsonl(tagged)
    assert [(g["words"], g["tags"], g["gold"]) for g in got] == [
        (r["words"], r["tags"], r["gold"]) for r in test
    ]
    words_only = tmp_path / "words.conll"
    words_only.write_text("\n".join(w.split()[0] if w.strip() else "" for w in
                                    (d / "test.conll").read_text().splitlines()) + "\n")  # fmt: skip
    plain = tmp_path / "plain.jsonl"
    _launch("--predict", f"--workdir={wd}", f"--input={words_only}", f"--output={plain}",
            "--task=ner")  # fmt: skip
    got = _jsonl(plain)
    assert all("gold" not in g for g in got)
    assert [(g["words"], g["tags"]) for g in got] == [(r["words"], r["tags"]) for r in test]


def test_predict_reads_a_table_with_other_columns_by_text_column(trained, tmp_path):
    """A CSV whose text is in another column than the task's (``comment`` for ``sentence``)
    predicts with --text_column (its label column, where the task's, as gold; a pair task
    with --text_pair_column too), the same as lines of those texts; without it, or with only
    one column of a pair, the error names the flags."""
    d, wd, _ = trained
    texts = POS[:2] + NEG[:2]
    (tmp_path / "c.csv").write_text("comment,label\n" + "".join(
        f'"{t}",{"pos" if i < 2 else "neg"}\n' for i, t in enumerate(texts)))  # fmt: skip
    (tmp_path / "lines.txt").write_text("".join(t + "\n" for t in texts))
    out, ref = tmp_path / "c.jsonl", tmp_path / "ref.jsonl"
    p = _launch("--predict", f"--workdir={wd}", f"--input={tmp_path / 'c.csv'}",
                f"--output={out}", "--task=mine", "--text_column=comment")  # fmt: skip
    assert "against the input's gold labels (4 examples)" in p.stdout
    _launch("--predict", f"--workdir={wd}", f"--input={tmp_path / 'lines.txt'}",
            f"--output={ref}", "--task=mine")  # fmt: skip
    got, want = _jsonl(out), _jsonl(ref)
    assert [g["gold"] for g in got] == ["pos", "pos", "neg", "neg"]
    assert [(g["text"], g["label"]) for g in got] == [(w["text"], w["label"]) for w in want]
    np.testing.assert_allclose([g["probs"] for g in got], [w["probs"] for w in want], atol=1e-5)
    (tmp_path / "pairs.tsv").write_text("a\tb\n" + f"{POS[0]}\t{NEG[0]}\n")
    pairs = tmp_path / "pairs.jsonl"
    _launch("--predict", f"--workdir={wd}", f"--input={tmp_path / 'pairs.tsv'}",
            f"--output={pairs}", "--task=sts", "--text_column=a", "--text_pair_column=b")  # fmt: skip
    assert [(r["text"], r["text_pair"]) for r in _jsonl(pairs)] == [(POS[0], NEG[0])]
    # a table under another extension (a .txt CSV), by --input_format=csv: the same records
    (tmp_path / "c.txt").write_text((tmp_path / "c.csv").read_text())
    from jaxtl.predictor import predict_command

    predict_command(str(wd), str(tmp_path / "c.txt"), str(tmp_path / "t.jsonl"), "mine",
                    input_format="csv", columns=("comment", None))  # fmt: skip
    assert _jsonl(tmp_path / "t.jsonl") == got
    for args, said in ((["--task=mine"], "--text_column names the text column of a table "
                                         "laid out otherwise"),
                       (["--task=sts", "--text_column=a"], "task 'sts' reads text='a', "
                        "text_pair='sentence2'; --text_column and --text_pair_column name")):  # fmt: skip
        name = "c.csv" if args == ["--task=mine"] else "pairs.tsv"
        p = subprocess.run([sys.executable, "launch.py", "--predict", f"--workdir={wd}",
                            f"--input={tmp_path / name}", *args], cwd=REPO,
                           capture_output=True, text=True)  # fmt: skip
        assert p.returncode != 0 and said in p.stderr, p.stderr[-800:]


def test_predict_says_how_many_inputs_the_length_limit_cut(trained, tmp_path):
    """A classifier reads no text past the run's data.max_length (32 tokens under :tiny):
    --predict says how many inputs filled it; a tagger's long text goes in windows, so not."""
    _, wd, _ = trained
    (tmp_path / "in.txt").write_text(f"{POS[0]}\n{LONG}\n")
    p = _launch("--predict", f"--workdir={wd}", f"--input={tmp_path / 'in.txt'}",
                f"--output={tmp_path / 'o.jsonl'}", "--task=mine")  # fmt: skip
    assert "1 of 2 inputs filled the run's data.max_length=32 tokens" in p.stderr
    p = _launch("--predict", f"--workdir={wd}", f"--input={tmp_path / 'in.txt'}",
                f"--output={tmp_path / 't.jsonl'}", "--task=ner")  # fmt: skip
    assert "filled the run's data.max_length" not in p.stderr


def test_embed_from_a_run_reads_its_tasks_own_column_of_a_table(trained, tmp_path):
    """--embed --workdir on a table of the task's own layout (test.tsv: id, sentence) embeds
    the column the task read (text=sentence), with the table's ids, as --text_column=sentence
    would; a table without it still says which flag to give."""
    pd = pytest.importorskip("pandas")
    d, wd, _ = trained
    out, named = tmp_path / "e.parquet", tmp_path / "n.parquet"
    _launch("--embed", f"--workdir={wd}", "--task=mine", f"--input={d / 'test.tsv'}",
            f"--output={out}")  # fmt: skip
    _launch("--embed", f"--workdir={wd}", "--task=mine", f"--input={d / 'test.tsv'}",
            f"--output={named}", "--text_column=sentence")  # fmt: skip
    got, want = pd.read_parquet(out), pd.read_parquet(named)
    assert list(got["id"]) == ["q0", "q1", "q2", "q3"] and list(got["text"]) == POS[:2] + NEG[:2]
    np.testing.assert_array_equal(np.stack(got["embedding"]), np.stack(want["embedding"]))
    (tmp_path / "other.csv").write_text("comment\nfine\n")
    p = subprocess.run([sys.executable, "launch.py", "--embed", f"--workdir={wd}", "--task=mine",
                        f"--input={tmp_path / 'other.csv'}"], cwd=REPO, capture_output=True,
                       text=True)  # fmt: skip
    assert p.returncode != 0 and "no column 'text'" in p.stderr and "--text_column" in p.stderr


def test_a_tagger_trained_on_conllu_writes_conllu(trained, tmp_path):
    """``--output=x.conllu`` of a UPOS tagger is CoNLL-U (sent_id and text comments, ten
    columns, the tags in UPOS) that reads back as the task's own files with --predict's tags;
    a tagger of plain CoNLL files has no CoNLL-U column and is refused before anything is
    written."""
    from jaxtl.data import get_task

    d, wd, _ = trained
    records, written = tmp_path / "p.jsonl", tmp_path / "p.conllu"
    for out in (records, written):
        _launch("--predict", f"--workdir={wd}", f"--input={d / 'test.conllu'}",
                f"--output={out}", "--task=upos")  # fmt: skip
    got = _jsonl(records)
    lines = written.read_text().splitlines()
    # the input's own # text, the sentence as written, in the records and the CoNLL-U
    assert got[0]["text"] == "Anna flew to Paris." and got[0]["words"][-2:] == ["Paris", "."]
    assert lines[:3] == ["# sent_id = s0", "# text = Anna flew to Paris.",
                         f"1\tAnna\t_\t{got[0]['tags'][0]}\t_\t_\t_\t_\t_\t_"]  # fmt: skip
    back = get_task(f"file:name=u,path={written}").load("train")
    assert [(e.id, e.text, list(e.words), list(e.label)) for e in back] == [
        (g["id"], g["text"], g["words"], g["tags"]) for g in got
    ]
    p = subprocess.run([sys.executable, "launch.py", "--predict", f"--workdir={wd}",
                        f"--input={d / 'test.conll'}", f"--output={tmp_path / 'n.conllu'}",
                        "--task=ner"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert p.returncode != 0 and not (tmp_path / "n.conllu").exists()
    assert "task 'ner' was not trained on CoNLL-U files" in p.stderr


def test_a_tagger_on_raw_text_lines_warns_that_punctuation_stays_on_its_word_or_splits_it(
    trained, tmp_path, caplog
):
    """A tagger's text lines are split at whitespace; lines written as raw text ("Paris.")
    keep the full stop on the word, unlike the CoNLL files it trained on: warned, naming a
    word; lines split as the training files were say nothing."""
    import jaxtl
    from jaxtl.predictor import predict_command

    _, wd, _ = trained
    (tmp_path / "raw.txt").write_text(
        "Anna flew to Paris.\nthe film opened in Rome\nIs Lima far?\n"
    )
    (tmp_path / "split.txt").write_text("Anna flew to Paris .\nthe U.S. is far .\n")
    with caplog.at_level("WARNING", logger="jaxtl.predictor"):
        predict_command(str(wd), str(tmp_path / "raw.txt"), str(tmp_path / "r.jsonl"), "ner")
    records = _jsonl(tmp_path / "r.jsonl")
    assert records[0]["words"] == ["Anna", "flew", "to", "Paris."]  # as written, warned
    assert (f"{tmp_path / 'raw.txt'}: 2 of 3 lines end in a word with its punctuation attached "
            "('Paris.')") in caplog.text  # fmt: skip
    caplog.clear()
    with caplog.at_level("WARNING", logger="jaxtl.predictor"):
        predict_command(str(wd), str(tmp_path / "split.txt"), str(tmp_path / "s.jsonl"), "ner")
    assert "punctuation attached" not in caplog.text
    # --word_split=treebank splits raw text as CoNLL's words are: the split lines' own words
    # and tags, with nothing to warn of; the API and JSON lines' "text" take it too.
    (tmp_path / "raw2.txt").write_text("Anna flew to Paris.\nthe U.S. is far.\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="jaxtl.predictor"):
        predict_command(str(wd), str(tmp_path / "raw2.txt"), str(tmp_path / "t.jsonl"), "ner",
                        word_split="treebank")  # fmt: skip
    assert "punctuation attached" not in caplog.text
    split_records = _jsonl(tmp_path / "s.jsonl")
    got = _jsonl(tmp_path / "t.jsonl")
    assert [r["words"] for r in got] == [r["words"] for r in split_records]
    assert [r["tags"] for r in got] == [r["tags"] for r in split_records]
    api = jaxtl.load(wd).predict(["Anna flew to Paris."], "ner", word_split="treebank")
    assert api[0]["words"] == ["Anna", "flew", "to", "Paris", "."]
    assert api[0]["tags"] == split_records[0]["tags"]
    (tmp_path / "raw.jsonl").write_text('{"text": "Anna flew to Paris."}\n')
    predict_command(str(wd), str(tmp_path / "raw.jsonl"), str(tmp_path / "j.jsonl"), "ner",
                    word_split="treebank")  # fmt: skip
    assert _jsonl(tmp_path / "j.jsonl")[0]["words"] == ["Anna", "flew", "to", "Paris", "."]
    with pytest.raises(ValueError, match=r"--word_split='penn': choose one of whitespace, "):
        predict_command(str(wd), str(tmp_path / "raw2.txt"), str(tmp_path / "x.jsonl"), "ner",
                        word_split="penn")  # fmt: skip


def test_a_tagger_trained_on_bioes_files_writes_its_predictions_in_bioes(tiny_bert_dir, tmp_path):
    """Span tags written BIOES (S-/E-) train and score as IOB2, the same spans; the run's
    prediction records, --predict's JSON lines and CoNLL output and jaxtl.load(...).predict
    give them back in BIOES, gold and predictions alike, scored the same as the run."""
    import jaxtl
    from jaxtl.data.io import from_iob2, to_iob2
    from jaxtl.predictor import predict_command

    sentences = [("Anna", "flew", "to", "New", "York", "."), ("the", "film", "opened", "."),
                 ("Lima", "and", "Cusco", "are", "far", ".")] * 4  # fmt: skip
    spans = {"Anna": "S-PER", "New": "B-LOC", "York": "E-LOC", "Lima": "S-LOC", "Cusco": "S-LOC"}
    for split in ("train", "dev"):
        (tmp_path / f"{split}.conll").write_text("".join(
            "".join(f"{w} {spans.get(w, 'O')}\n" for w in s) + "\n" for s in sentences))  # fmt: skip
    wd = tmp_path / "run"
    _launch("--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={tiny_bert_dir}",
            f"--config.tasks.names=file:name=ner,path={tmp_path}/{{split}}.conll",
            "--config.optim.lr=3e-3", "--config.train.steps=40", f"--workdir={wd}")  # fmt: skip
    manifest = json.loads((wd / "tasks.json").read_text())["tasks"][0]
    assert manifest["tag_scheme"] == "bioes" and "S-PER" not in manifest["label_names"]
    records = _jsonl(wd / "predictions/ner/dev.jsonl")
    assert records[0]["gold"] == ["S-PER", "O", "O", "B-LOC", "E-LOC", "O"]
    every = [t for r in records for t in r["tags"]]
    assert {t[0] for t in every} - {"O"} <= {"S", "B", "I", "E"} and "S-LOC" in every
    for r in records:  # each predicted sequence is valid BIOES: the IOB2 it came from, back
        assert r["tags"] == from_iob2(list(to_iob2(r["tags"])), "bioes")
    out = tmp_path / "p.conll"
    _, scores = predict_command(str(wd), str(tmp_path / "dev.conll"), str(out), "ner")
    assert scores == pytest.approx(json.loads((wd / "results.json").read_text())["ner"], abs=1e-9)
    first = out.read_text().split("\n\n")[0].splitlines()
    assert first == [f"{w} {g} {t}" for w, g, t in zip(records[0]["words"], records[0]["gold"],
                                                       records[0]["tags"])]  # fmt: skip
    api = jaxtl.load(wd).predict([list(s) for s in sentences[:3]], task="ner")
    assert [a["tags"] for a in api] == [r["tags"] for r in records[:3]]


def test_predict_tags_every_word_of_a_text_longer_than_the_window(trained):
    """A text past ``data.max_length`` tokens (32 here) is tagged in overlapping windows that
    fit: every word gets a tag (before, words past the cut got null), gold is kept whole, and
    the words only the first window holds get that window's own tags."""
    import jaxtl
    from jaxtl.data import Example
    from jaxtl.data.tokenize import word_windows

    _, wd, _ = trained
    predictor = jaxtl.load(wd)
    words = ("Anna flew to Paris and then the film opened in Rome while Lima is far . " * 6).split()
    (spans,) = word_windows([words], predictor.tokenizer, 32)
    assert len(spans) > 2 and spans[0][0] == 0 and spans[-1][1] == len(words)
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert a < c < b <= d  # each window starts inside the one before: they overlap
        n = len(predictor.tokenizer(words[a:b], is_split_into_words=True)["input_ids"])
        assert n <= 32, (a, b, n)
    gold = tuple("B-LOC" if w[0].isupper() else "O" for w in words)
    (rec,) = predictor.predict([Example(" ".join(words), words=tuple(words), label=gold)],
                               task="ner")  # fmt: skip
    assert rec["words"] == words and rec["gold"] == list(gold)
    assert len(rec["tags"]) == len(words) and None not in rec["tags"]
    first_only = spans[1][0]  # words before the second window: tagged by the first alone
    (alone,) = predictor.predict([words[spans[0][0] : spans[0][1]]], task="ner")
    assert rec["tags"][:first_only] == alone["tags"][:first_only]
    (short,) = word_windows([words[:5]], predictor.tokenizer, 32)
    assert short == [(0, 5)]


def test_predict_looks_for_windows_only_in_texts_that_fill_the_window(trained, monkeypatch):
    """A tagging chunk is tokenised once: only a text whose encoding filled data.max_length is
    tokenised again to find its word windows, and a chunk of short texts never is."""
    import jaxtl
    from jaxtl.data import tokenize

    _, wd, _ = trained
    seen = []
    original = tokenize.word_windows

    def counted(words, *args, **kwargs):
        seen.append(len(words))
        return original(words, *args, **kwargs)

    monkeypatch.setattr(tokenize, "word_windows", counted)
    predictor = jaxtl.load(wd)
    short = predictor.predict([s.split() for s in SHORT], task="ner")
    assert seen == [] and all(None not in r["tags"] for r in short)
    both = predictor.predict([s.split() for s in (*SHORT, LONG)], task="ner")
    assert seen[0] == 1  # the long text alone (its windows, which may fill the window, after)
    assert [r["tags"] for r in both[: len(SHORT)]] == [r["tags"] for r in short]
    assert len(both[-1]["tags"]) == len(LONG.split()) and None not in both[-1]["tags"]


def test_window_tags_come_from_the_window_where_the_word_is_most_central():
    from jaxtl.predictions import merge_windows

    windows = [[(0, 4), (2, 6)], [(0, 2)]]
    tags = [["a0", "a1", "a2", "a3"], ["b2", "b3", "b4", "b5"], ["c0", "c1"]]
    # word 2: 1 from the first window's edge, 0 from the second's; word 3 the other way round
    assert merge_windows(windows, tags) == [["a0", "a1", "a2", "b3", "b4", "b5"], ["c0", "c1"]]


def test_predict_on_a_labelled_file_reports_the_runs_own_metrics(trained, tmp_path):
    """--predict on a file with gold labels prints the task's metrics against them; on the
    run's own dev / test files they are the run's results.json / results_test.json."""
    import jaxtl
    from jaxtl.predictor import predict_command

    d, wd, _ = trained
    dev = json.loads((wd / "results.json").read_text())
    test = json.loads((wd / "results_test.json").read_text())
    n, scores = predict_command(str(wd), str(d / "dev.tsv"), str(tmp_path / "a.jsonl"), "mine")
    assert n == 12 and scores == pytest.approx(dev["mine"], abs=1e-9)
    # Each holds a text longer than data.max_length: the run scores it over every word too.
    _, scores = predict_command(str(wd), str(d / "test.conll"), str(tmp_path / "b.jsonl"), "ner")
    assert scores == pytest.approx(test["ner"], abs=1e-9)
    _, scores = predict_command(str(wd), str(d / "dev.conll"), str(tmp_path / "b.jsonl"), "ner")
    assert scores == pytest.approx(dev["ner"], abs=1e-9)
    _, scores = predict_command(str(wd), str(d / "dev.csv"), str(tmp_path / "c.jsonl"), "sts")
    assert set(scores) == set(dev["sts"])  # packed in other rows: scores equal to rounding
    assert scores == pytest.approx(dev["sts"], abs=1e-4)
    # an unlabelled file (test.tsv has no label column): predictions, no scores
    assert (
        predict_command(str(wd), str(d / "test.tsv"), str(tmp_path / "d.jsonl"), "mine")[1] is None
    )
    model = jaxtl.load(wd)
    examples = model.read_input(str(d / "dev.tsv"), model.task("mine"))
    assert model.evaluate(examples, task="mine") == pytest.approx(dev["mine"], abs=1e-9)
    p = _launch("--predict", f"--workdir={wd}", f"--input={d / 'dev.tsv'}", "--task=mine",
                f"--output={tmp_path / 'e.jsonl'}")  # fmt: skip
    assert p.stdout.splitlines()[-1] == (
        "jaxtl: against the input's gold labels (12 examples): "
        f"accuracy={dev['mine']['accuracy']:.4f}  macro_f1={dev['mine']['macro_f1']:.4f}"
    )


def test_predict_streams_a_table_in_the_tasks_own_format(trained, tmp_path, monkeypatch):
    """A TSV in the task's own columns is read a row at a time while predicting (its first
    rows come before the rest is read), the records equal a whole read's, and a bad row at
    its end stops the command before the model runs, leaving no output."""
    import jaxtl
    from jaxtl import predictor as predictor_lib
    from jaxtl.data import DataError

    d, wd, _ = trained
    model = jaxtl.load(wd)
    td = model.task("mine")
    rows = (d / "test.tsv").read_text().splitlines()[1:]
    big = tmp_path / "big.tsv"
    big.write_text("id\tsentence\n" + "".join(f"{r}\n" for r in rows * 6) + "q9\n")
    lazy = model.iter_input(str(big), td)
    assert next(lazy).id == "q0"  # read as far as asked: the bad last row is not reached
    with pytest.raises(DataError, match=r"big\.tsv:26: expected 2 fields, found 1"):
        list(lazy)
    ran = []
    real = predictor_lib.Predictor.predict_examples
    monkeypatch.setattr(predictor_lib.Predictor, "predict_examples",
                        lambda *a, **k: ran.append(1) or real(*a, **k))  # fmt: skip
    with pytest.raises(DataError, match=r"big\.tsv:26: expected 2 fields"):
        predictor_lib.predict_command(str(wd), str(big), str(tmp_path / "out.jsonl"), "mine")
    assert ran == [] and not (tmp_path / "out.jsonl").exists()
    big.write_text("id\tsentence\n" + "".join(f"{r}\n" for r in rows * 6))
    n, _ = predictor_lib.predict_command(str(wd), str(big), str(tmp_path / "out.jsonl"), "mine")
    got = _jsonl(tmp_path / "out.jsonl")
    whole = model.predict_examples(model.read_input(str(big), td), td)
    assert n == 24 and [g["id"] for g in got] == [f"q{i}" for i in range(4)] * 6
    assert [g["label"] for g in got] == [w["label"] for w in whole]


def test_predict_inputs_must_fit_the_task(trained, tmp_path):
    """A single sentence for the pair task (or a pair for the single-sentence one) stops with
    its place instead of being scored with the wrong token types; in ``lines`` input, a tab
    splits a pair only for a pair task."""
    import jaxtl
    from jaxtl.data import DataError

    _, wd, _ = trained
    predictor = jaxtl.load(wd)
    with pytest.raises(DataError, match=r"input:2: task 'sts' takes sentence pairs"):
        predictor.predict([("a moving film", "a dull film"), "a moving film"], task="sts")
    with pytest.raises(DataError, match=r"input:1: task 'mine' takes single sentences"):
        predictor.predict([("a moving film", "a dull film")], task="mine")
    lines = tmp_path / "in.txt"
    lines.write_text("a moving\tfilm\n")
    (mine,) = predictor.read_input(str(lines), predictor.task("mine"), "lines")
    assert mine.text == "a moving\tfilm" and mine.text_pair is None
    (sts,) = predictor.read_input(str(lines), predictor.task("sts"), "lines")
    assert (sts.text, sts.text_pair) == ("a moving", "film")
    other = tmp_path / "other.tsv"  # a table of another layout: the hint names the way out
    other.write_text("review\tstars\na moving film\t5\n")
    with pytest.raises(DataError, match=r"other\.tsv: no column 'sentence' in header \['review', "
                                        r"'stars'\] \(read in the own format of task 'mine', chosen "
                                        r"by the file's extension; --text_column names the "
                                        r"text column of a table laid out otherwise, "
                                        r"--input_format=lines"):  # fmt: skip
        predictor.read_input(str(other), predictor.task("mine"))
    bad = tmp_path / "in.jsonl"
    bad.write_text(json.dumps({"text": "a", "text_pair": 3}) + "\n")
    with pytest.raises(DataError, match=r"in\.jsonl:1: 'text_pair' must be a string, got int 3"):
        predictor.read_input(str(bad), predictor.task("sts"), "jsonl")


def test_predict_reads_jsonl_in_the_tasks_own_columns(trained, tmp_path):
    """A .jsonl input whose objects carry the columns a task was trained on (``text=sentence``,
    the pair's ``sentence1``/``sentence2``) is read as the task's own format, gold labels
    included; objects with neither those nor ``text`` are named with the keys they hold."""
    import jaxtl
    from jaxtl.data import DataError

    _, wd, _ = trained
    predictor = jaxtl.load(wd)
    own = tmp_path / "own.jsonl"
    own.write_text("".join(json.dumps({"sentence": s, "label": lab}) + "\n"
                           for s, lab in [(POS[0], "pos"), (NEG[0], "neg")]))  # fmt: skip
    rows = predictor.read_input(str(own), predictor.task("mine"))
    assert [(ex.text, ex.label) for ex in rows] == [(POS[0], 1), (NEG[0], 0)]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"sentence1": POS[0], "sentence2": NEG[0]}) + "\n")
    (pair,) = predictor.read_input(str(pairs), predictor.task("sts"))
    assert (pair.text, pair.text_pair, pair.label) == (POS[0], NEG[0], None)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"review": POS[0]}) + "\n")
    with pytest.raises(DataError, match=r"other\.jsonl:1: expected an object with 'text' \(or "
                                        r"'words'\), or with the columns task 'mine' was trained "
                                        r"on: 'sentence'; got keys \['review'\]"):  # fmt: skip
        predictor.read_input(str(other), predictor.task("mine"))


def test_exported_classifier_runs_in_a_transformers_pipeline(trained):
    from transformers import pipeline

    _, wd, out = trained
    rows = _jsonl(wd / "predictions/mine/dev.jsonl")
    clf = pipeline("text-classification", model=str(out / "mine"), top_k=None, device="cpu")
    for r, scores in zip(rows, clf([r["text"] for r in rows])):
        by_label = {s["label"]: s["score"] for s in scores}
        assert max(by_label, key=by_label.get) == r["label"]
        np.testing.assert_allclose([by_label["neg"], by_label["pos"]], r["probs"], atol=1e-4)


def test_exported_tagger_and_regressor_agree_with_jaxtl(trained):
    import torch
    from transformers import AutoModelForSequenceClassification, pipeline

    _, wd, out = trained
    rows = _jsonl(wd / "predictions/ner/dev.jsonl")
    tagger = pipeline("token-classification", model=str(out / "ner"), device="cpu")
    # transformers' pipeline reads a text whole; jaxtl tags one past data.max_length in windows
    assert rows[-1]["text"] == LONG
    for r in rows[:-1]:
        tokens = tagger(r["text"])  # one entry per sub-token not tagged O
        offset, want, starts = 0, {}, set()
        for w, tag in zip(r["words"], r["tags"]):
            start = r["text"].index(w, offset)
            offset = start + len(w)
            starts.add(start)
            if tag != "O":
                want[start] = tag
        firsts = {t["start"]: t["entity"] for t in tokens if t["start"] in starts}  # 1st pieces
        assert firsts == want, (r["text"], tokens, r["tags"])
    # The card's call (aggregation_strategy="first") gives jaxtl's word tags as entities.
    card = (out / "ner" / "README.md").read_text()
    assert 'aggregation_strategy="first"' in card and "not IOB" not in card
    grouped = pipeline("token-classification", model=str(out / "ner"), device="cpu",
                       aggregation_strategy="first")  # fmt: skip
    split_words = found = 0
    for r in rows[:-1]:
        split_words += sum(len(grouped.tokenizer.tokenize(w)) > 1 for w in r["words"])
        want, offset, last = [], 0, "O"
        for w, tag in zip(r["words"], r["tags"]):
            start = r["text"].index(w, offset)
            offset = start + len(w)
            kind = tag[2:]
            if tag != "O" and (tag.startswith("B-") or last[2:] != kind):
                want.append([kind, start, offset])
            elif tag != "O":
                want[-1][2] = offset
            last = tag
        got = [[e["entity_group"], e["start"], e["end"]] for e in grouped(r["text"])]
        assert got == want, (r["text"], got, r["tags"])
        found += len(want)
    assert split_words >= 2 and found >= 1  # the check covers split words and some entity
    # The card's exact per-word call: the logits at each word's first sub-token are jaxtl's.

    tok, model = grouped.tokenizer, grouped.model.eval()
    for r in rows[:-1]:  # (jaxtl tags LONG in windows of data.max_length)
        enc = tok(r["words"], is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            ids = model(**enc).logits[0].argmax(-1).tolist()
        firsts = {}
        for k, w in enumerate(enc.word_ids()):
            if w is not None:
                firsts.setdefault(w, model.config.id2label[ids[k]])
        assert [firsts[w] for w in range(len(r["words"]))] == r["tags"], r["text"]
    rows = _jsonl(wd / "predictions/sts/dev.jsonl")
    model = AutoModelForSequenceClassification.from_pretrained(str(out / "sts")).eval()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out / "sts"))
    enc = tok([r["text"] for r in rows], [r["text_pair"] for r in rows], padding=True,
              return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        scores = model(**enc).logits[:, 0].numpy()
    np.testing.assert_allclose(scores, [r["score"] for r in rows], atol=1e-4)


def test_hf_datasets_folder_and_parquet_train_from_the_cli(tiny_bert_dir, tmp_path):
    import datasets

    feats = datasets.Features({"sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})  # fmt: skip
    rows = {"sentence": POS + NEG, "label": [1] * len(POS) + [0] * len(NEG)}
    ds = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(tmp_path / "saved"))
    for split in ("train", "dev"):
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    specs = (
        f"hf:name=saved,path={tmp_path}/saved,text=sentence,label=label",
        f"hf:name=pq,path={tmp_path}/{{split}}.parquet,text=sentence,label=label",
    )
    wd = tmp_path / "run"
    _launch("--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names={specs!r}",
            f"--workdir={wd}")  # fmt: skip
    results = json.loads((wd / "results.json").read_text())
    assert "accuracy" in results["saved"] and "accuracy" in results["pq"]
    assert len(_jsonl(wd / "predictions/pq/dev.jsonl")) == len(POS + NEG)
    # --predict on a Parquet file of new text alone (no label column): predictions, no gold
    datasets.Dataset.from_dict({"sentence": POS[:2]}).to_parquet(str(tmp_path / "new.parquet"))
    import jaxtl

    model = jaxtl.load(wd)
    rows = model.predict_examples(model.read_input(str(tmp_path / "new.parquet"),
                                                   model.task("pq")), model.task("pq"))  # fmt: skip
    assert [r["text"] for r in rows] == POS[:2] and all("gold" not in r for r in rows)


def test_predict_reads_parquet_for_a_table_task(trained, tmp_path):
    """A task trained on TSV files predicts a Parquet file in the same columns (pandas'
    to_parquet, a hub export): read by the hf reader, gold labels when the column is there."""
    import datasets

    import jaxtl

    _, wd, _ = trained
    model = jaxtl.load(wd)
    td = model.task("mine")
    rows = {"sentence": POS[:2] + NEG[:1], "label": ["pos", "pos", "neg"]}
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "gold.parquet"))
    got = model.read_input(str(tmp_path / "gold.parquet"), td)
    assert [(e.text, e.label) for e in got] == [(POS[0], 1), (POS[1], 1), (NEG[0], 0)]
    datasets.Dataset.from_dict({"sentence": NEG[:2]}).to_parquet(str(tmp_path / "new.parquet"))
    got = model.read_input(str(tmp_path / "new.parquet"), td)
    assert [(e.text, e.label) for e in got] == [(NEG[0], None), (NEG[1], None)]
    # a Parquet file's id column is its records' ids
    ids = {"id": ["n1", "n2"], "sentence": NEG[:2]}
    datasets.Dataset.from_dict(ids).to_parquet(str(tmp_path / "ids.parquet"))
    got = model.predict_examples(model.read_input(str(tmp_path / "ids.parquet"), td), td)
    assert [(r["id"], r["text"]) for r in got] == [("n1", NEG[0]), ("n2", NEG[1])]


def test_export_command_on_a_finished_workdir_matches_the_run_export(trained, tmp_path):
    from safetensors.numpy import load_file

    _, wd, out = trained
    again = tmp_path / "again"
    # An earlier export there (another run's task folder, an adapter) is replaced whole: none
    # of its files is left among the new ones.
    (again / "gone" / "adapter").mkdir(parents=True)
    (again / "export_report.json").write_text("{}")
    (again / "mine").mkdir()
    (again / "mine" / "adapter_model.safetensors").write_text("old")
    printed = _launch("--export", f"--workdir={wd}", f"--output={again}").stdout
    assert not (again / "gone").exists()
    assert not (again / "mine" / "adapter_model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    # A folder of other files is refused before the model loads, its files kept.
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    p = subprocess.run([sys.executable, "launch.py", "--export", f"--workdir={wd}",
                        f"--output={mine}"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert p.returncode != 0 and (mine / "notes.txt").read_text() == "mine"
    assert (f"--output={mine} holds files that are not a jaxtl export (no export_report.json): "
            "an export replaces its folder whole") in p.stderr  # fmt: skip
    # The top folder is the encoder alone, and says so (card and command), naming each task's
    # folder: loaded as a task model it would get an untrained head.
    assert f"  mine: {again / 'mine'}: AutoModelForSequenceClassification" in printed
    card = (again / "README.md").read_text()
    assert "It has no task head" in card and "pipeline_tag: feature-extraction" in card
    for task in ("mine", "ner", "sts", "upos"):
        assert f"| `{task}` | `{again / task}` | AutoModelFor" in card
    for task in ("mine", "ner", "sts"):
        a, b = load_file(str(out / task / "model.safetensors")), load_file(
            str(again / task / "model.safetensors"))  # fmt: skip
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{task}: {k}")
        cfg = json.loads((again / task / "config.json").read_text())
        if task == "mine":
            assert cfg["id2label"] == {"0": "neg", "1": "pos"}
    # both write the report of what each task was exported as, the same but for the folder
    ran, cmd = (json.loads((d / "export_report.json").read_text()) for d in (out, again))
    assert sorted(cmd) == ["(encoder)", "mine", "ner", "sts", "upos"]
    assert cmd["mine"]["path"] == str(again / "mine") and cmd["mine"]["labels"] == ["neg", "pos"]
    assert json.loads(json.dumps(ran).replace(str(out), str(again))) == cmd


def test_predict_writes_tables_by_the_outputs_extension(trained, tmp_path):
    """--output=x.json / .tsv / .csv / .parquet: the same records as the JSONL output, as one
    JSON array, as a table (probs spread over prob_<label> columns; a tagger's words and tags
    space-joined, so the table reads back as a tagging table) or as Parquet rows with the
    records' own fields."""
    import csv

    import pyarrow.parquet as pq

    from jaxtl.predictor import predict_command

    d, wd, _ = trained
    for task, src in (("mine", "dev.tsv"), ("ner", "dev.conll"), ("sts", "dev.csv")):
        predict_command(str(wd), str(d / src), str(tmp_path / f"{task}.jsonl"), task)
        records = _jsonl(tmp_path / f"{task}.jsonl")
        # .json: one JSON array of the same records, a document json.load and pandas read
        predict_command(str(wd), str(d / src), str(tmp_path / f"{task}.json"), task)
        assert json.loads((tmp_path / f"{task}.json").read_text()) == records
        assert len(__import__("pandas").read_json(tmp_path / f"{task}.json")) == len(records)
        for ext, sep in (("tsv", "\t"), ("csv", ",")):
            out = tmp_path / f"{task}.{ext}"
            _, scores = predict_command(str(wd), str(d / src), str(out), task)
            assert scores is not None  # the gold column does not stop scoring
            with out.open(newline="") as f:
                rows = list(csv.DictReader(f, delimiter=sep))
            assert len(rows) == len(records)
            for row, rec in zip(rows, records):
                assert int(row["id"]) == rec["id"]
                if task == "mine":
                    assert (row["text"], row["label"], row["gold"]) == (
                        rec["text"], rec["label"], rec["gold"])  # fmt: skip
                    got = [float(row["prob_neg"]), float(row["prob_pos"])]
                    np.testing.assert_allclose(got, rec["probs"], rtol=0, atol=1e-7)
                    assert list(row) == ["id", "text", "gold", "label", "prob_neg", "prob_pos"]
                elif task == "ner":
                    assert "text" not in row
                    assert row["words"].split() == rec["words"]
                    assert row["tags"].split() == rec["tags"]
                    assert row["gold"].split() == rec["gold"]
                else:
                    assert (row["text"], row["text_pair"]) == (rec["text"], rec["text_pair"])
                    assert float(row["score"]) == pytest.approx(rec["score"], abs=1e-7)
        pq_out = tmp_path / f"{task}.parquet"
        predict_command(str(wd), str(d / src), str(pq_out), task)
        got = pq.read_table(pq_out).to_pylist()
        assert [r.keys() for r in got] == [r.keys() for r in records]
        for row, rec in zip(got, records):
            for k, v in rec.items():
                if isinstance(v, float) or k == "probs":
                    np.testing.assert_allclose(row[k], v, rtol=0, atol=1e-7)
                else:
                    assert row[k] == v, k
    # the extension can be overridden, and stdout takes a table too
    p = _launch("--predict", f"--workdir={wd}", f"--input={d / 'test.tsv'}", "--task=mine",
                "--output_format=csv")  # fmt: skip
    lines = p.stdout.splitlines()
    assert lines[0] == "id,text,label,prob_neg,prob_pos" and len(lines) == 5
    assert [line.split(",")[0] for line in lines[1:]] == ["q0", "q1", "q2", "q3"]  # its ids
