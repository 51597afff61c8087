"""Task spec strings (``file:name=N,path=P,...``): every generic reader and option from one name."""

import dataclasses
import json
import re

import pytest

from jaxtl.data import DataError, get_task
from jaxtl.data.spec import parse


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_values():
    source, opts = parse(
        r"file:name=x,path=d/{split}.tsv,text=0,label=1,header=0,label_names=neg|pos,"
        r"delimiter=tab,metrics=accuracy|macro_f1,text_pair=a\,b"
    )
    assert source == "file"
    assert opts == {
        "name": "x", "path": "d/{split}.tsv", "text": 0, "label": 1, "header": False,
        "label_names": ["neg", "pos"], "delimiter": "\t", "metrics": ["accuracy", "macro_f1"],
        "text_pair": "a,b",
    }  # fmt: skip
    # With a header, a column called "0" is a name, not an index.
    assert parse("file:name=x,path=p,text=0,header=true")[1]["text"] == "0"
    assert parse("file:name=x,path=p,iob=false")[1]["iob"] is False
    assert parse("file:name=x,paths=train:a.tsv|dev:b.tsv")[1]["paths"] == {
        "train": "a.tsv", "dev": "b.tsv"}  # fmt: skip
    assert parse("hf:name=s,path=/x,splits=dev:validation_matched")[1]["splits"] == {
        "dev": "validation_matched"}  # fmt: skip
    with pytest.raises(ValueError, match="header='maybe' is not a boolean"):
        parse("file:name=x,path=p,header=maybe")
    with pytest.raises(ValueError, match="'word_column' is given twice"):
        parse("file:name=x,path=p,word_column=1,word_column=2")


def test_classification_labels_from_train_and_name(tmp_path):
    write(tmp_path / "mine" / "train.tsv", "sentence\tlabel\ngood film\tpos\nbad film\tneg\n")
    write(tmp_path / "mine" / "dev.tsv", "sentence\tlabel\nfine\tpos\n")
    task = get_task("file:name=mine,path=mine/{split}.tsv,text=sentence,label=label", tmp_path)
    assert task.name == "mine" and task.kind == "classification"
    assert task.label_names == ("neg", "pos") and task.splits == ("train", "dev")
    assert [(e.text, e.label) for e in task.load("train")] == [("good film", 1), ("bad film", 0)]
    assert [(e.text, e.label) for e in task.load("dev")] == [("fine", 1)]
    # label_names from the spec fixes the order (and the ids).
    fixed = get_task(
        "file:name=m,path=mine/{split}.tsv,text=sentence,label_names=pos|neg", tmp_path
    )
    assert fixed.label_names == ("pos", "neg") and fixed.load("train")[0].label == 0
    # A path without {split} is one file: the train split.
    one = get_task("file:name=one,path=mine/train.tsv,text=sentence", tmp_path)
    assert one.splits == ("train",) and len(one.load("train")) == 2


def test_sentence_pair_csv_and_escape(tmp_path):
    write(tmp_path / "pairs" / "train.csv", 'a,b,y\n"x, y",z,same\nq,r,diff\n')
    task = get_task("file:name=pairs,path=pairs/{split}.csv,text=a,text_pair=b,label=y", tmp_path)
    data = task.load("train")
    assert [(e.text, e.text_pair, e.label) for e in data] == [("x, y", "z", 1), ("q", "r", 0)]
    assert task.text_fields == ("a", "b")
    # \, puts a comma in a value: here a column whose name has one.
    write(tmp_path / "odd" / "train.csv", '"s,1",label\nhello,a\n')
    odd = get_task(r"file:name=odd,path=odd/{split}.csv,text=s\,1", tmp_path)
    assert odd.load("train")[0].text == "hello" and odd.text_fields == ("s,1",)


def test_each_file_of_paths_is_read_in_the_format_its_extension_names(tmp_path):
    write(tmp_path / "train.csv", 'text,label\n"good, really",pos\nbad,neg\n')
    write(tmp_path / "dev.tsv", "text\tlabel\ngood, truly\tpos\n")
    write(tmp_path / "test.jsonl", '{"text": "bad, sadly", "label": "neg"}\n')
    spec = "file:name=m,paths=train:train.csv|dev:dev.tsv|test:test.jsonl"
    task = get_task(spec, tmp_path)
    assert [e.text for s in ("train", "dev", "test") for e in task.load(s)] == [
        "good, really", "bad", "good, truly", "bad, sadly"]  # fmt: skip
    assert [e.label for e in task.load("test")] == [0]
    # format= given is every file's format: the TSV's header is then one CSV column
    with pytest.raises(DataError, match=r"dev\.tsv:2: expected 1 fields, found 2"):
        get_task(spec + ",format=csv", tmp_path).load("dev")


def test_parquet_through_file_reads_as_hf_and_a_spreadsheet_is_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"review": ["good film", "dull film"], "stars": ["pos", "neg"]})
    pq.write_table(table, tmp_path / "train.parquet")
    task = get_task(f"file:name=r,path={tmp_path}/{{split}}.parquet,text=review,label=stars")
    assert [(e.text, e.label) for e in task.load("train")] == [("good film", 1), ("dull film", 0)]
    with pytest.raises(ValueError, match=r"\.parquet files are read by the hf reader, which "
                                         r"takes path= with \{split\}"):  # fmt: skip
        get_task(f"file:name=r,paths=train:{tmp_path}/train.parquet,text=review,label=stars")
    with pytest.raises(ValueError, match=r"\.xlsx is a spreadsheet, which jaxtl does not read; "
                                         r"save it as CSV"):  # fmt: skip
        get_task(f"file:name=r,path={tmp_path}/train.xlsx")


def test_regression_jsonl(tmp_path):
    rows = [{"s1": "a", "s2": "b", "score": 4.5}, {"s1": "c", "s2": "d", "score": 1}]
    write(tmp_path / "sts" / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    task = get_task(
        "file:name=sts,path=sts/{split}.jsonl,text=s1,text_pair=s2,label=score,kind=regression",
        tmp_path,
    )
    assert task.kind == "regression" and task.metrics == ("pearson", "spearman")
    assert [e.label for e in task.load("train")] == [4.5, 1.0]


@pytest.mark.parametrize(
    ("labels", "kind"),
    [(["4.5", "1.25", "0"], "regression"), (["1.0", "0.0"], "regression"),
     (["-2e-3", "3"], "regression"), (["0", "1"], "classification"),
     (["1", "5", "3"], "classification"), (["pos", "1.5"], "classification"),
     (["nan", "0.5"], "classification")],
)  # fmt: skip
def test_scores_make_a_regression_task_unless_a_kind_is_given(tmp_path, labels, kind):
    """Without kind=, a label column of numbers, not all whole, is a regression target (as
    transformers' run_classification takes a float column); kind= always wins."""
    rows = "".join(f"text {i},{x}\n" for i, x in enumerate(labels))
    write(tmp_path / "s" / "train.csv", "text,score\n" + rows)
    write(tmp_path / "s" / "dev.csv", "text,score\n" + rows)
    task = get_task("file:name=s,path=s/{split}.csv,label=score", tmp_path)
    assert task.kind == kind
    if kind == "regression":
        assert task.label_names == () and task.metrics == ("pearson", "spearman")
        assert [e.label for e in task.load("dev")] == [float(x) for x in labels]
        forced = get_task("file:name=s,path=s/{split}.csv,label=score,kind=classification",
                          tmp_path)  # fmt: skip
        assert forced.kind == "classification" and len(forced.label_names) == len(labels)
    else:
        assert task.label_names == tuple(sorted(labels))


def test_headerless_int_columns(tmp_path):
    write(tmp_path / "h" / "train.tsv", "1\tthe film\tpos\n2\tno\tneg\n")
    task = get_task("file:name=h,path=h/{split}.tsv,header=0,text=1,label=2", tmp_path)
    assert [(e.text, e.label) for e in task.load("train")] == [("the film", 1), ("no", 0)]


def test_conll_tagging(tmp_path):
    write(tmp_path / "ner" / "train.conll", "Ann NNP B-PER\nruns VBZ O\n\nBob NNP I-PER\n")
    task = get_task("file:name=ner,path=ner/{split}.conll", tmp_path)
    assert task.name == "ner" and task.kind == "tagging" and task.iob
    assert task.label_names == ("O", "B-PER", "I-PER")
    assert [e.label for e in task.load("train")] == [("B-PER", "O"), ("B-PER",)]  # IOB1 -> 2
    # kind=tagging routes a .txt path (CoNLL-2003's own naming) to the same reader; text= and
    # label= name the word and tag columns.
    write(tmp_path / "ner2" / "train.txt", "Ann NNP B-PER\nruns VBZ O\n")
    chunk = get_task("file:name=pos,path=ner2/{split}.txt,kind=tagging,label=1,iob=0", tmp_path)
    assert chunk.load("train")[0].label == ("NNP", "VBZ") and not chunk.iob


def test_conll_one_file_paths_and_words_only_splits(tmp_path):
    write(tmp_path / "ner" / "all.conll", "Ann B-PER\nruns O\n\nBob B-PER\n")
    write(tmp_path / "ner" / "new.conll", "Cy\nsat\n\nDee\n")
    # One file without {split} is the train split, as for table files.
    one = get_task("file:name=ner,path=ner/all.conll", tmp_path)
    assert one.splits == ("train",) and one.load("train")[1].label == ("B-PER",)
    # paths= names a file per split; a split of words alone (no tag column) that neither trains
    # nor gave the tag set is read unlabelled.
    task = get_task("file:name=ner,paths=train:ner/all.conll|test:ner/new.conll", tmp_path)
    assert task.splits == ("train", "test") and task.label_names == ("O", "B-PER", "I-PER")
    new = task.load("test")
    assert [(e.words, e.label) for e in new] == [(("Cy", "sat"), None), (("Dee",), None)]
    # A train split of words alone is an error naming its file and line, not words read as tags.
    with pytest.raises(DataError, match=r"new\.conll:1: one column, a word without a tag"):
        get_task("file:name=ner,path=ner/new.conll", tmp_path)
    # A column the file does not have is named too.
    with pytest.raises(
        DataError, match=r"all\.conll:1: 2 columns: no word column 0 or tag column 3"
    ):
        get_task("file:name=ner,path=ner/all.conll,tag_column=3", tmp_path)


CONLLU = """# sent_id = weblog-1
# text = Don't go.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

"""


def test_conllu_upos(tmp_path):
    write(tmp_path / "ud" / "train.conllu", CONLLU)
    task = get_task("file:name=upos,path=ud/{split}.conllu,word_column=1", tmp_path)
    ex = task.load("train")[0]
    assert ex.words == ("Do", "n't", "go", ".") and ex.label == ("AUX", "PART", "VERB", "PUNCT")
    assert not task.iob and task.metrics == ("token_accuracy",)
    assert ex.id == "weblog-1"  # the sentence's sent_id: its prediction record's id
    write(tmp_path / "ud2" / "train.conllu", CONLLU.replace("# sent_id = weblog-1\n", "") * 2)
    assert [e.id for e in get_task("file:name=u2,path=ud2/{split}.conllu", tmp_path)
            .load("train")] == [None, None]  # fmt: skip
    # The defaults are UPOS already; tag_column=4 gives XPOS.
    assert get_task("file:name=u,path=ud/{split}.conllu", tmp_path).load("train")[0] == ex
    xpos = get_task("file:name=x,path=ud/{split}.conllu,tag_column=4", tmp_path)
    assert xpos.load("train")[0].label == ("VBP", "RB", "VB", ".")


def test_txt_corpus_file_glob_folder(tmp_path):
    write(tmp_path / "c" / "a.txt", "first line\n\nsecond\n")
    write(tmp_path / "c" / "b.txt", "third\n")
    one = get_task("file:name=c1,path=c/a.txt,kind=lm", tmp_path)
    assert one.kind == "lm" and one.splits == ("train",)
    assert [e.text for e in one.load("train")] == ["first line", "second"]
    every = get_task("file:name=c2,path=c/*.txt,kind=lm", tmp_path)
    assert [e.text for e in every.load("train")] == ["first line", "second", "third"]
    folder = get_task("file:name=c3,path=c,kind=lm", tmp_path)
    assert [e.text for e in folder.load("train")] == ["first line", "second", "third"]
    write(tmp_path / "s" / "train.txt", "t\n")
    write(tmp_path / "s" / "dev.txt", "d\n")
    write(tmp_path / "s" / "notes.txt", "ignored when train.txt is there\n")
    split = get_task("file:name=c4,path=s,kind=lm", tmp_path)
    assert split.splits == ("train", "dev") and split.load("dev")[0].text == "d"
    pattern = get_task("file:name=c5,path=s/{split}.txt,format=txt", tmp_path)
    assert pattern.name == "c5" and pattern.splits == ("train", "dev")


def test_unknown_option_lists_valid_ones(tmp_path):
    spec = "file:name=x,path=x/{split}.tsv,text=s,colour=red"
    with pytest.raises(ValueError) as e:
        get_task(spec, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "'colour'" in msg and spec in msg
    for option in ("text_pair", "label_names", "on_bad_row", "word_column", "drop_headings"):
        assert option in msg
    # An option of another reader: named with the reader that does not take it.
    write(tmp_path / "ner" / "train.conll", "Ann B-PER\n")
    with pytest.raises(ValueError, match=r"unknown option 'text_pair'.*'conll' reader.*tag_column"):
        get_task("file:name=n,path=ner/{split}.conll,text_pair=b", tmp_path)


def test_missing_name_or_path():
    with pytest.raises(ValueError, match=r"is missing name=;"):
        get_task("file:path=a/{split}.tsv,text=s")
    with pytest.raises(ValueError, match=r"is missing path=;"):
        get_task("file:name=a,text=s")
    with pytest.raises(ValueError, match=r"is missing name= and path="):
        get_task("hf:text=s")


def test_relative_path_against_data_dir_cwd_and_absolute(tmp_path, monkeypatch):
    f = write(tmp_path / "d" / "train.tsv", "text\tlabel\nhi\ta\n")
    rel = get_task("file:name=r,path=d/{split}.tsv", tmp_path / "")
    assert rel.load("train")[0].source == f"{f}:2"
    absolute = get_task(f"file:name=a,path={tmp_path}/d/{{split}}.tsv", "/elsewhere")
    assert absolute.load("train")[0].source == f"{f}:2"
    # Without data.dir a relative path is relative to the current directory, as on any command
    # line; a missing file names the absolute path that was tried.
    monkeypatch.chdir(tmp_path)
    here = get_task("file:name=r,path=d/{split}.tsv")
    assert here.load("train")[0].source == f"{f}:2"
    monkeypatch.chdir(tmp_path / "d")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}/d/d/train.tsv")):
        get_task("file:name=r,path=d/{split}.tsv").load("train")


def test_bad_label_names_file_and_line(tmp_path):
    write(tmp_path / "b" / "train.tsv", "text\tlabel\nok\tpos\nalso\tneg\n")
    dev = write(tmp_path / "b" / "dev.tsv", "text\tlabel\nfine\tpos\nhuh\tmaybe\n")
    task = get_task("file:name=b,path=b/{split}.tsv", tmp_path)
    with pytest.raises(DataError, match=re.escape(
            f"{dev}:3: label 'maybe' is not one of ['neg', 'pos'] (the train split's; "
            "label_names=maybe|neg|pos names them all)")):  # fmt: skip
        task.load("dev")
    named = get_task("file:name=b,path=b/{split}.tsv,label_names=maybe|neg|pos", tmp_path)
    assert [e.label for e in named.load("dev")] == [2, 0]  # the hint's spec reads it
    # Options passed by the loader merge in; the spec's own win.
    skipping = get_task("file:name=b,path=b/{split}.tsv", tmp_path, on_bad_row="skip")
    assert skipping.load("dev").skipped == 1
    strict = get_task(
        "file:name=b,path=b/{split}.tsv,on_bad_row=error", tmp_path, on_bad_row="skip"
    )
    with pytest.raises(DataError):
        strict.load("dev")


def test_unlabelled_test_split(tmp_path):
    write(tmp_path / "u" / "train.tsv", "sentence\tlabel\na\t0\nb\t1\n")
    write(tmp_path / "u" / "test.tsv", "index\tsentence\n0\tc\n")
    task = get_task("file:name=u,path=u/{split}.tsv,text=sentence", tmp_path)
    assert [(e.text, e.label) for e in task.load("test")] == [("c", None)]
    write(tmp_path / "v" / "train.tsv", "index\tsentence\n0\tc\n")
    with pytest.raises(DataError, match="no label column 'label' in header"):
        get_task("file:name=v,path=v/{split}.tsv,text=sentence", tmp_path)


def test_prepare_tasks_end_to_end(tmp_path):
    from conftest import minilm_dir
    from transformers import AutoTokenizer

    from jaxtl import config as config_lib
    from jaxtl.data.prepare import prepare_tasks
    from jaxtl.regimes import multitask

    rows = "".join(f"{w} film\t{lab}\n" for w, lab in [("good", "pos"), ("bad", "neg")] * 4)
    write(tmp_path / "mine" / "train.tsv", "sentence\tlabel\n" + rows)
    write(tmp_path / "mine" / "dev.tsv", "sentence\tlabel\n" + rows)
    config = config_lib.base_config()
    multitask.add_config(config)
    config.data.dir = str(tmp_path)
    config.train.batch_size = 4
    config.train.eval_batch_size = 4
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    spec = "file:name=mine,path=mine/{split}.tsv,text=sentence,label=label"
    (td,) = prepare_tasks([spec], config, tokenizer)
    assert td.key == "mine" and td.task.name == "mine" and td.train_size == 8
    assert td.task.label_names == ("neg", "pos") and td.eval_batches
    assert (
        sorted(int(x) for b in td.eval_batches for x in b["label"][b["example_weight"] > 0])
        == [0] * 4 + [1] * 4
    )


def test_texts_cut_at_max_length_are_counted_and_a_large_share_warned(tmp_path, caplog):
    """A run says how many train texts fill data.max_length (their rest is cut): a warning
    when that is 5% or more of them, a note below; none for texts that fit."""
    from conftest import minilm_dir
    from transformers import AutoTokenizer

    from jaxtl import config as config_lib
    from jaxtl.data.prepare import prepare_tasks
    from jaxtl.regimes import multitask

    long = "good film " * 40  # about 80 tokens
    rows = [(long, "pos"), ("bad film", "neg"), ("good", "pos"), ("bad", "neg")] * 5
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows))
    write(tmp_path / "dev.tsv", "sentence\tlabel\nfine\tpos\nbad\tneg\n")
    config = multitask.add_config(config_lib.base_config())
    config.data.dir = str(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    spec = "file:name=mine,path={split}.tsv,text=sentence,label=label"
    for max_length, level, said in ((32, "WARNING", "5 of 20 train examples (25%)"),
                                    (128, None, None)):  # fmt: skip
        config.data.max_length, config.data.buckets = max_length, (max_length,)
        caplog.clear()
        with caplog.at_level("INFO", logger="jaxtl.data.prepare"):
            prepare_tasks([spec], config, tokenizer)
        cut = [r for r in caplog.records if "fill data.max_length" in r.getMessage()]
        assert [(r.levelname, said in r.getMessage()) for r in cut] == (
            [(level, True)] if level else [])  # fmt: skip
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(
        f"{t}\t{lab}\n" for t, lab in [(long, "pos")] + [("bad", "neg"), ("good", "pos")] * 20))  # fmt: skip
    config.data.max_length, config.data.buckets = 32, (32,)
    caplog.clear()
    with caplog.at_level("INFO", logger="jaxtl.data.prepare"):
        prepare_tasks([spec], config, tokenizer)
    (note,) = [r for r in caplog.records if "fill data.max_length=32" in r.getMessage()]
    assert note.levelname == "INFO" and "1 of 41 train examples (2%)" in note.getMessage()


@pytest.mark.parametrize("token_cache", ["off", "folder"])
def test_dev_examples_that_are_training_examples_are_counted_and_a_large_share_warned(
    tmp_path, caplog, token_cache
):
    """A run says how many dev (and test) examples are, token for token, training examples: a
    warning from 20% of them (a dev file that is the training file), a note below, nothing
    for disjoint splits — with the training split tokenised in memory or read back from the
    token cache."""
    from conftest import minilm_dir
    from transformers import AutoTokenizer

    from jaxtl import config as config_lib
    from jaxtl.data.prepare import prepare_tasks
    from jaxtl.regimes import multitask

    train = [(f"review number {i} of the film", "pos" if i % 2 else "neg") for i in range(20)]
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in train))
    config = multitask.add_config(config_lib.base_config())
    config.data.dir = str(tmp_path)
    config.data.token_cache = "off" if token_cache == "off" else str(tmp_path / "tokens")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    spec = "file:name=mine,path={split}.tsv,text=sentence,label=label"
    new = [(f"another text {i}", "pos") for i in range(9)]
    for dev, test, said in [
        (train[:4], None, [("WARNING", "4 of 4 dev examples (100%)")]),
        # spacing differs, the tokens do not; the test split is checked too
        ([("review  number 3 of the film ", "pos")] + new, train[5:6] + new[:1],
         [("INFO", "1 of 10 dev examples (10%)"), ("WARNING", "1 of 2 test examples (50%)")]),
        (new, None, []),
    ]:  # fmt: skip
        for split, rows in (("dev", dev), ("test", test)):
            (tmp_path / f"{split}.tsv").unlink(missing_ok=True)
            if rows is not None:
                write(tmp_path / f"{split}.tsv",
                      "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))  # fmt: skip
        caplog.clear()
        with caplog.at_level("INFO", logger="jaxtl.data.prepare"):
            prepare_tasks([spec], config, tokenizer)
        got = [r for r in caplog.records if "token for token" in r.getMessage()]
        assert [(r.levelname, s in r.getMessage()) for r, (_, s) in zip(got, said)] == [
            (level, True) for level, _ in said
        ], [r.getMessage() for r in got]
        assert len(got) == len(said)


def test_sst2_real_files(data_dir):
    task = get_task(
        "file:name=sst2_file,path=SST-2/{split}.tsv,text=sentence,label=label", data_dir
    )
    glue = get_task("sst2", data_dir)
    train, dev = task.load("train"), task.load("dev")
    assert (len(train), len(dev)) == (67349, 872)
    # The raw labels 0/1 are the GLUE reader's ids (its names spell them negative/positive).
    assert task.label_names == ("0", "1") and glue.num_labels == task.num_labels
    assert [e.label for e in dev] == [e.label for e in glue.load("dev")]
    assert [e.text for e in dev] == [e.text for e in glue.load("dev")]


def test_two_tasks_of_one_name_are_refused_before_tokenising(tmp_path):
    """Two tasks named alike would share one head and one row of results without a word (two
    file specs with name=a ran and reported one 'a'); so would two readers of one dataset."""
    from jaxtl import config as config_lib
    from jaxtl.data.prepare import prepare_tasks

    write(tmp_path / "a" / "train.tsv", "sentence\tlabel\ngood film\tpos\nbad film\tneg\n")
    write(tmp_path / "b" / "train.tsv", "sentence\tlabel\nfine\tpos\ndull\tneg\n")
    one = "file:name=a,path=a/{split}.tsv,text=sentence,label=label"
    other = "file:name=a,path=b/{split}.tsv,text=sentence,label=label"
    config = config_lib.base_config()
    config.data.dir = str(tmp_path)
    # No tokenizer: the check comes before anything would use one.
    with pytest.raises(ValueError, match=re.escape(f"tasks {one!r} and {other!r} are both named "
                                                   "'a': one run keeps one head")):  # fmt: skip
        prepare_tasks([one, other], config, tokenizer=object())
    # Distinct names whose head keys (made path-safe) collide are refused too.
    from jaxtl.data.prepare import check_distinct

    task = get_task(one, tmp_path)
    with pytest.raises(ValueError, match=r"are named 'glue/x' and 'glue_x', one head key 'glue_x'"):
        check_distinct(["n1", "n2"], [dataclasses.replace(task, name="glue/x"),
                                      dataclasses.replace(task, name="glue_x")])  # fmt: skip


def test_a_misspelt_column_is_named_with_the_closest_one(tmp_path):
    """A text or label column the file lacks: its header, and the column probably meant."""
    write(tmp_path / "r" / "train.tsv", "review\tstars\ngood\t5\n")
    write(tmp_path / "j" / "train.jsonl", '{"text": "good", "label": "pos"}\n')
    cases = [("file:name=r,path=r/{split}.tsv,text=reveiw,label=stars",
              "no column 'reveiw' (did you mean 'review'?) in header ['review', 'stars']"),
             ("file:name=r,path=r/{split}.tsv,text=review,label=star",
              "no label column 'star' (did you mean 'stars'?) in header ['review', 'stars']"),
             ("file:name=j,path=j/{split}.jsonl,label=lable",
              "no label column 'lable' (did you mean 'label'?) in any row"),
             ("file:name=r,path=r/{split}.tsv,text=review,label=zzz",
              "no label column 'zzz' in header")]  # fmt: skip
    for spec, says in cases:
        with pytest.raises(DataError, match=re.escape(says)):
            get_task(spec, tmp_path).load("train")
    # a misspelt kind: named with the kinds, not a KeyError from deep in a reader
    for source in ("file", "hf"):
        with pytest.raises(ValueError, match=re.escape(
                "kind=regresion (did you mean 'regression'?) is not one of classification, "
                "multilabel, regression")):  # fmt: skip
            get_task(f"{source}:name=r,path=r/{{split}}.tsv,text=review,label=stars,"
                     "kind=regresion", tmp_path)  # fmt: skip


def test_a_header_of_none_of_the_named_columns_says_how_to_name_them(tmp_path, monkeypatch):
    """A table whose first line has none of the spec's columns — other names (review,sentiment
    under the default text/label), or no header line at all, its first row read as one — says
    how to name them and how a file without a header is read, in the file and hf readers."""
    write(tmp_path / "named" / "train.csv", "review,sentiment\ngood,pos\n")
    write(tmp_path / "bare" / "train.csv", "great film,pos\nawful,neg\n")
    with pytest.raises(DataError, match=re.escape(
            "no label column 'label' (the header has none of the columns named, text, label: "
            "name its columns, e.g. text=review,label=sentiment; a file without a header line: "
            "header=0 and the columns by number, text=0,label=1) in header")):  # fmt: skip
        get_task("file:name=n,path=named/train.csv", tmp_path)
    with pytest.raises(DataError, match=re.escape(
            "named, text, label: name its columns; a file without a header line")):  # fmt: skip
        get_task("file:name=b,path=bare/train.csv", tmp_path)
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    with pytest.raises(DataError, match=re.escape(
            "name its columns; a CSV without a header line: a file: task with header=0 reads "
            "it)")):  # fmt: skip
        get_task("hf:name=b,path=bare/train.csv", tmp_path)
    bare = get_task("file:name=b,path=bare/train.csv,header=0,text=0,label=1", tmp_path)
    assert [(e.text, e.label) for e in bare.load("train")] == [("great film", 1), ("awful", 0)]


def test_parallel_text_files_by_a_lang_placeholder(tmp_path, data_dir):
    """``{lang}`` in a path names parallel text, a file per language, as fairseq, OpenNMT and
    Multi30k lay it out: ``text=`` fills it with the source language, ``target=`` with the
    target's; ``{split}``, ``paths=`` (gzipped files too) and one file pair (train) all read."""
    import gzip

    write(tmp_path / "mt/train.en", "a dog runs\na cat sleeps\n")
    write(tmp_path / "mt/train.de", "ein Hund rennt\neine Katze schläft\n")
    write(tmp_path / "mt/dev.en", "a bird sings\n")
    write(tmp_path / "mt/dev.de", "ein Vogel singt\n")
    task = get_task(f"file:name=mt,path={tmp_path}/mt/{{split}}.{{lang}},text=en,target=de")
    assert (task.kind, task.splits, task.text_fields) == ("translation", ("train", "dev"),
                                                          ("en", "de"))  # fmt: skip
    assert [(e.text, e.target) for e in task.load("train")] == [
        ("a dog runs", "ein Hund rennt"), ("a cat sleeps", "eine Katze schläft")]  # fmt: skip
    # the other way round, by the same files
    back = get_task(f"file:name=mt,path={tmp_path}/mt/{{split}}.{{lang}},text=de,target=en,"
                    "kind=translation").load("dev")  # fmt: skip
    assert [(e.text, e.target) for e in back] == [("ein Vogel singt", "a bird sings")]
    one = get_task(f"file:name=mt,path={tmp_path}/mt/train.{{lang}},text=en,target=de")
    assert one.splits == ("train",) and len(one.load("train")) == 2
    for lang, text in (("en", "a fish swims\n"), ("de", "ein Fisch schwimmt\n")):
        with gzip.open(tmp_path / f"mt/val.{lang}.gz", "wt") as f:
            f.write(text)
    named = get_task(f"file:name=mt,paths=train:{tmp_path}/mt/train.{{lang}}|"
                     f"dev:{tmp_path}/mt/val.{{lang}}.gz,text=en,target=de")  # fmt: skip
    assert [(e.text, e.target) for e in named.load("dev")] == [("a fish swims",
                                                                "ein Fisch schwimmt")]  # fmt: skip
    # Hugging Face's split names, in a {split} pattern or a paths= key, on both sides
    for lang, text in (("en", "a cow moos\n"), ("de", "eine Kuh muht\n")):
        write(tmp_path / f"hf/train.{lang}", text)
        write(tmp_path / f"hf/validation.{lang}", text)
    for spec in (f"path={tmp_path}/hf/{{split}}.{{lang}}",
                 f"paths=train:{tmp_path}/hf/train.{{lang}}|validation:{tmp_path}/hf/"
                 "validation.{lang}"):  # fmt: skip
        hf = get_task(f"file:name=mt,{spec},text=en,target=de")
        assert hf.splits == ("train", "dev")
        assert [(e.text, e.target) for e in hf.load("dev")] == [("a cow moos", "eine Kuh muht")]
    # the folder layout (the parallel reader by name) finds a compressed pair, bz2 as gz
    import bz2

    (tmp_path / "bz").mkdir()
    for lang, text in (("en", "a dog barks\n"), ("de", "ein Hund bellt\n")):
        with bz2.open(tmp_path / f"bz/train.{lang}.bz2", "wt") as f:
            f.write(text)
    folder = get_task("parallel", str(tmp_path), path="bz", src="en", tgt="de")
    assert [(e.text, e.target) for e in folder.load("train")] == [("a dog barks", "ein Hund bellt")]
    # Multi30k's own files, named by a spec, read as the built-in reader reads them
    m = f"{data_dir}/multi30k"
    spec = get_task(f"file:name=m,paths=train:{m}/train.{{lang}}.gz|dev:{m}/val.{{lang}}.gz,"
                    "text=en,target=de").load("dev")  # fmt: skip
    builtin = get_task("multi30k", data_dir).load("dev")
    assert [(e.text, e.target) for e in spec] == [(e.text, e.target) for e in builtin]
    with pytest.raises(ValueError, match=r"needs text=<source language> and target=<target"):
        get_task(f"file:name=mt,path={tmp_path}/mt/{{split}}.{{lang}},text=en")
    with pytest.raises(ValueError, match=r"\(kind=translation\), not kind=tagging"):
        get_task(f"file:name=mt,path={tmp_path}/mt/{{split}}.{{lang}},text=en,target=de,"
                 "kind=tagging")  # fmt: skip
    with pytest.raises(
        DataError,
        match=r"task .mt. \(fr side\): no file found for any of the splits train, dev, test",
    ):
        get_task(f"file:name=mt,path={tmp_path}/mt/{{split}}.{{lang}},text=fr,target=de")
    write(tmp_path / "mt/dev.de", "ein Vogel singt\nnoch eine Zeile\n")
    with pytest.raises(DataError, match=r"dev.en has 1 lines but .*dev.de has 2: not parallel"):
        task.load("dev")
    (tmp_path / "mt/dev.de").unlink()
    with pytest.raises(DataError, match=r"dev.de: target file not found for split 'dev'"):
        task.load("dev")


def test_validation_and_other_names_of_dev_are_dev_and_unknown_splits_refused(tmp_path):
    """Files named as Hugging Face names its splits (validation.csv), or paths=validation:…,
    are the dev split that selects the model, not a split the run ignores while it holds out
    part of train; a paths= key that is no split is refused, as is one split named twice."""
    rows = "text,label\ngood,pos\nbad,neg\n"
    for name in ("train", "validation", "test"):
        write(tmp_path / "hf" / f"{name}.csv", rows)
    write(tmp_path / "v" / "train.csv", rows)
    write(tmp_path / "v" / "val.csv", rows)
    assert get_task(f"file:name=a,path={tmp_path}/hf/{{split}}.csv").splits == ("train", "dev",
                                                                                "test")  # fmt: skip
    assert get_task(f"file:name=b,path={tmp_path}/v/{{split}}.csv").splits == ("train", "dev")
    named = get_task(f"file:name=c,paths=train:{tmp_path}/v/train.csv|Validation:"
                     f"{tmp_path}/v/val.csv")  # fmt: skip
    assert named.splits == ("train", "dev") and len(named.load("dev")) == 2
    with pytest.raises(ValueError, match=r"paths= names a split 'tset'; the splits are train, "
                                         r"dev \(or validation, valid, val, eval\) and test"):  # fmt: skip
        get_task(f"file:name=d,paths=train:{tmp_path}/v/train.csv|tset:{tmp_path}/v/val.csv")
    with pytest.raises(ValueError, match=r"paths= names the dev split twice"):
        get_task(f"file:name=e,paths=dev:{tmp_path}/v/train.csv|val:{tmp_path}/v/val.csv")
    # the hf reader reads the same names
    hf = get_task(f"hf:name=f,path={tmp_path}/hf/{{split}}.csv")
    assert hf.splits == ("train", "dev", "test")
