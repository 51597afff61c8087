"""The user path: the selected (best) params give results.json, results_test.json and the
predictions; a task without dev selects on held-out train; launch.py --predict and jaxtl.load
reproduce the run's own predictions."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import small_config

import jaxtl
from jaxtl import config as config_lib
from jaxtl.regimes import multitask, supervised_sequential

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _small(c, model_dir, **extra):
    sizes = {"train.log_every": 5, "data.max_train_examples": 96, "data.max_eval_examples": 40}
    return small_config(c, model_dir, **(sizes | extra))


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run_dir(tiny_bert_dir, tmp_path_factory):
    """Sentiment + NER, 24 steps at a high LR evaluated every 4: the best dev evaluation is
    not the last one, so using the last params instead of the selected ones shows."""
    c = multitask.add_config(config_lib.base_config())
    _small(c, tiny_bert_dir, **{"tasks.names": ("builtin/sentiment", "builtin/ner"),
                                "train.steps": 24, "train.eval_every": 4, "optim.lr": 3e-3})  # fmt: skip
    wd = tmp_path_factory.mktemp("user_path") / "run"
    multitask.run(c, str(wd))
    return wd


def _accuracy(rows):
    return float(np.mean([r["label"] == r["gold"] for r in rows]))


def test_results_and_test_scores_come_from_the_selected_params(run_dir):
    records = _jsonl(run_dir / "metrics.jsonl")
    dev = [r for r in records if r["split"] == "dev" and r["task"] == "average"]
    best = max(dev, key=lambda r: r["score"])  # first of equals, as the tracker keeps it
    assert best["step"] == min(r["step"] for r in dev if r["score"] == best["score"])
    (sel,) = json.loads((run_dir / "selection.json").read_text())["stages"]
    assert sel["step"] == best["step"] and sel["params"] == "best/multitask"
    assert best["step"] != 24, "fixture should make the last evaluation not the best"
    results = json.loads((run_dir / "results.json").read_text())
    at_best = {r["task"]: r for r in records if r["split"] == "dev" and r["step"] == best["step"]}
    assert results["builtin/sentiment"]["accuracy"] == at_best["builtin/sentiment"]["accuracy"]
    # The run's own predictions are those of the selected params: they reproduce its scores.
    dev_rows = _jsonl(run_dir / "predictions/builtin/sentiment/dev.jsonl")
    assert _accuracy(dev_rows) == pytest.approx(results["builtin/sentiment"]["accuracy"], abs=1e-9)
    test = json.loads((run_dir / "results_test.json").read_text())
    test_rows = _jsonl(run_dir / "predictions/builtin/sentiment/test.jsonl")
    assert _accuracy(test_rows) == pytest.approx(test["builtin/sentiment"]["accuracy"], abs=1e-9)
    assert "span_f1" in test["builtin/ner"]


def test_prediction_records_shape_and_order(run_dir):
    rows = _jsonl(run_dir / "predictions/builtin/sentiment/dev.jsonl")
    assert [r["id"] for r in rows] == list(range(len(rows))) and len(rows) == 40
    for r in rows[:5]:
        assert r["label"] in ("negative", "positive") and len(r["probs"]) == 2
        assert abs(sum(r["probs"]) - 1) < 1e-5
        assert r["label"] == ("negative", "positive")[int(np.argmax(r["probs"]))]
    tags = _jsonl(run_dir / "predictions/builtin/ner/test.jsonl")
    assert all(len(r["tags"]) == len(r["words"]) == len(r["gold"]) for r in tags)


def test_predict_command_and_python_api_match_the_run(run_dir, tmp_path):
    rows = _jsonl(run_dir / "predictions/builtin/sentiment/dev.jsonl")[:6]
    inp = tmp_path / "new.txt"
    inp.write_text("".join(r["text"] + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    # The workdir as a user in its parent folder types it: relative.
    cmd = [sys.executable, str(REPO / "launch.py"), "--predict", f"--workdir={run_dir.name}",
           f"--input={inp}", f"--output={out}", "--task=builtin/sentiment"]  # fmt: skip
    p = subprocess.run(cmd, cwd=run_dir.parent, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    got = _jsonl(out)
    assert [g["label"] for g in got] == [r["label"] for r in rows]
    np.testing.assert_allclose([g["probs"] for g in got], [r["probs"] for r in rows], atol=1e-5)
    api = jaxtl.load(run_dir).predict([r["text"] for r in rows], task="builtin/sentiment")
    np.testing.assert_allclose([a["probs"] for a in api], [r["probs"] for r in rows], atol=1e-5)
    # Several tasks and none named: one line naming them, no traceback.
    p = subprocess.run(cmd[:-1], cwd=run_dir.parent, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "builtin/ner" in p.stderr and "Traceback" not in p.stderr


def test_predict_streams_the_input_a_chunk_at_a_time(run_dir, tmp_path, monkeypatch):
    """--predict reads lines/JSONL lazily and runs the model a chunk at a time: the records
    (ids counted over the whole input) equal one pass over everything; a bad line anywhere in
    a file stops the command before the model runs, and no output file is left."""
    from jaxtl import predictor as predictor_lib
    from jaxtl.data import DataError

    rows = _jsonl(run_dir / "predictions/builtin/sentiment/dev.jsonl")[:23]
    model = jaxtl.load(run_dir)
    td = model.task("builtin/sentiment")
    inp = tmp_path / "new.txt"
    inp.write_text("".join(r["text"] + "\n" for r in rows))
    whole = model.predict_examples(model.read_input(str(inp), td), td)
    chunked = list(model.predict_stream(model.iter_input(str(inp), td), td, chunk=5))
    assert [r["id"] for r in chunked] == list(range(23))
    # JSONL objects' own ids are kept; the rows without one still count over the whole input
    mixed = tmp_path / "ids.jsonl"
    mixed.write_text("".join(json.dumps({"text": r["text"]} | ({"id": f"r{i}"} if i % 3 else {}))
                             + "\n" for i, r in enumerate(rows)))  # fmt: skip
    got = list(model.predict_stream(model.iter_input(str(mixed), td), td, chunk=5))
    assert [r["id"] for r in got] == [f"r{i}" if i % 3 else i for i in range(23)]
    assert [r["label"] for r in got] == [r["label"] for r in whole]
    # the same objects as one JSON array (json.dump of a list): the same ids and labels
    array = tmp_path / "ids.json"
    array.write_text(json.dumps([json.loads(x) for x in mixed.read_text().splitlines()], indent=1))
    again = list(model.predict_stream(model.iter_input(str(array), td), td, chunk=5))
    assert [(r["id"], r["label"]) for r in again] == [(r["id"], r["label"]) for r in got]
    array.unlink()
    for bad_id in ("", 1.5, [1], None, True):
        (tmp_path / "bad_id.jsonl").write_text(json.dumps({"id": bad_id, "text": "x"}) + "\n")
        with pytest.raises(DataError, match=r"bad_id\.jsonl:1: id column 'id': .* is not a "
                                            "non-empty string or an integer"):  # fmt: skip
            model.read_input(str(tmp_path / "bad_id.jsonl"), td)
    (tmp_path / "bad_id.jsonl").unlink()
    mixed.unlink()
    assert [(r["text"], r["label"]) for r in chunked] == [(r["text"], r["label"]) for r in whole]
    np.testing.assert_allclose([r["probs"] for r in chunked], [r["probs"] for r in whole],
                               atol=1e-5)  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows) + '{"text": 3}\n')
    lazy = model.iter_input(str(bad), td)
    assert next(lazy).text == rows[0]["text"]  # read as far as asked, not the whole file
    ran = []
    real = predictor_lib.Predictor.predict_examples
    monkeypatch.setattr(predictor_lib.Predictor, "predict_examples",
                        lambda *a, **k: ran.append(1) or real(*a, **k))  # fmt: skip
    with pytest.raises(DataError, match=r"bad\.jsonl:24: 'text' must be a string"):
        predictor_lib.predict_command(str(run_dir), str(bad), str(tmp_path / "out.jsonl"),
                                      "builtin/sentiment")  # fmt: skip
    assert ran == []  # the model never ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "new.txt"]  # no output
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    with pytest.raises(DataError, match=r"blank\.txt: no text to predict"):
        predictor_lib.predict_command(str(run_dir), str(blank), str(tmp_path / "out.jsonl"),
                                      "builtin/sentiment")  # fmt: skip
    assert not (tmp_path / "out.jsonl").exists()


def test_outputs_that_would_overwrite_the_run_are_refused(run_dir, tmp_path):
    """--export/--predict --output onto the workdir, into its own files, or onto another run's
    workdir stop with one line before anything is written; the run's files stay as they were."""
    from jaxtl import predictor
    from jaxtl.workdir import check_output

    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    model = jaxtl.load(run_dir)
    with pytest.raises(ValueError, match="is the run's workdir"):
        model.export(run_dir)
    with pytest.raises(ValueError, match="is the run's own best in"):
        model.export(run_dir / "best" / "x")
    other = tmp_path / "other_run"
    other.mkdir()
    (other / "config.json").write_text("{}")
    (other / "tasks.json").write_text("{}")
    with pytest.raises(ValueError, match="is another run's workdir"):
        model.export(other)
    inp = tmp_path / "new.txt"
    inp.write_text("a fine film\n")
    for out, says in [(run_dir / "config.json", "own config.json"),
                      (run_dir / "predictions/builtin/sentiment/dev.jsonl", "own predictions"),
                      (run_dir, "is a folder")]:  # fmt: skip
        with pytest.raises(ValueError, match=says):
            predictor.predict_command(str(run_dir), str(inp), str(out), "builtin/sentiment")
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # A folder above the workdir is refused only where a task's export folder would be it.
    nested = tmp_path / "builtin" / "run"
    with pytest.raises(ValueError, match="would get a folder builtin/ for the task"):
        check_output(nested, tmp_path, "--output", folder=True, subfolders=["builtin/sentiment"])
    check_output(nested, tmp_path, "--output", folder=True, subfolders=["mine"])
    check_output(run_dir, run_dir / "export", "--output", folder=True)  # a new name inside: fine
    check_output(run_dir, run_dir / "new.jsonl", "--output", folder=False)


def test_restore_best_is_stated_in_the_plan(tiny_bert_dir, tmp_path, monkeypatch):
    c = supervised_sequential.add_config(config_lib.base_config())
    _small(c, tiny_bert_dir, **{"source.steps": 8, "source.eval_every": 4, "train.steps": 4,
                                "train.restore_best": True})  # fmt: skip
    # A relative workdir, as a user types it (--workdir=runs/x): orbax refuses relative
    # checkpoint paths, so the run must resolve it before saving best params.
    monkeypatch.chdir(tmp_path)
    supervised_sequential.run(c, "runs/run")
    wd = tmp_path / "runs" / "run"
    phases = json.loads((wd / "plan.json").read_text())["phases"]
    (target,) = [p for p in phases if p["stage"] == "target"]
    sel = json.loads((wd / "selection.json").read_text())["stages"]
    step = [s for s in sel if s["stage"] == "source"][0]["step"]
    assert target["starts_from"] == f"best params of stage 'source' (step {step})"


def test_task_weights_from_the_command_line():
    assert multitask.parse_weights("glue/rte=2, mine=0.5", ["glue/rte", "mine"]) == {
        "glue/rte": 2.0, "mine": 0.5}  # fmt: skip
    with pytest.raises(ValueError, match="not in the run's tasks"):
        multitask.parse_weights("other=2", ["mine"])
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        multitask.parse_weights("mine", ["mine"])


def test_task_without_dev_selects_on_a_seeded_holdout_of_train(tmp_path):
    from conftest import minilm_dir
    from transformers import AutoTokenizer

    from jaxtl.data.prepare import prepare_tasks

    rows = [f"sentence {i} is {'good' if i % 2 else 'bad'}\t{'pos' if i % 2 else 'neg'}"
            for i in range(50)]  # fmt: skip
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    c = multitask.add_config(config_lib.base_config())
    c.data.dir = str(tmp_path)
    spec = "file:name=nodev,path={split}.tsv,text=sentence,label=label"
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    (td,) = prepare_tasks([spec], c, tok)
    assert td.eval_split == "train[holdout 0.1]" and td.task.name == "nodev"
    dev = td.splits["dev"].examples
    assert len(dev) == 5 and td.train_size == 45
    again = prepare_tasks([spec], c, tok)[0].splits["dev"].examples
    assert [ex.text for ex in again] == [ex.text for ex in dev]  # seeded: the same rows
    c.seed = 1
    (other,) = prepare_tasks([spec], c, tok)
    assert {ex.text for ex in other.splits["dev"].examples} != {ex.text for ex in dev}


def test_logged_lr_is_the_one_the_step_used(run_dir):
    from jaxtl.partition import make_schedule

    sched = make_schedule("linear", lr=3e-3, total_steps=24, warmup=0.1)
    rows = [r for r in _jsonl(run_dir / "metrics.jsonl") if r["split"] == "train"]
    for r in rows:  # the step logged as N is the N-th update, which used schedule(N - 1)
        assert r["lr"] == pytest.approx(float(sched(r["step"] - 1)), rel=1e-6), r["step"]


def test_selected_last_params_reuse_the_final_evaluation(tiny_bert_dir, tmp_path, monkeypatch):
    """When the selected params are the last ones, the run's dev predictions are the stage-end
    evaluation's outputs, not a second pass of the model over dev; the test split is still run
    once. (With best != last, test_results_and_test_scores_come_from_the_selected_params checks
    the records come from the best params, which a reuse would get wrong.)"""
    from jaxtl import step as step_lib

    calls = {"n": 0}
    make = step_lib.make_eval_step

    def counting(*a, **k):
        fn = make(*a, **k)

        def run(params, batch):
            calls["n"] += 1
            return fn(params, batch)

        return run

    monkeypatch.setattr(step_lib, "make_eval_step", counting)
    from jaxtl import train

    asked, predict = [], train.Trainer.predict

    def recording(self, stage, batches, params=None):
        asked.append(len(batches))
        return predict(self, stage, batches, params)

    monkeypatch.setattr(train.Trainer, "predict", recording)
    c = multitask.add_config(config_lib.base_config())
    _small(c, tiny_bert_dir, **{"tasks.names": ("builtin/sentiment",), "train.steps": 4,
                                "train.eval_every": 0, "train.save_best": False})  # fmt: skip
    multitask.run(c, str(tmp_path / "run"))
    dev_rows = _jsonl(tmp_path / "run/predictions/builtin/sentiment/dev.jsonl")
    test_rows = _jsonl(tmp_path / "run/predictions/builtin/sentiment/test.jsonl")
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert _accuracy(dev_rows) == pytest.approx(results["builtin/sentiment"]["accuracy"], abs=1e-9)
    assert test_rows
    # Asked for: dev at the stage's end, dev and test for the selected params. Run: dev once.
    assert len(asked) == 3 and asked[0] == asked[1]
    assert calls["n"] == asked[0] + asked[2]


def test_an_input_named_as_the_tasks_own_files_is_read_as_they_are_when_it_reads_so(tmp_path):
    """A tagger trained on CoNLL-2003's .txt files: its test.txt is CoNLL, not one sentence per
    line; a .txt of sentences stays lines (the first line decides); a table task's .txt with
    its header is the task's format."""
    from types import SimpleNamespace

    from jaxtl.data.tasks import Task
    from jaxtl.predictor import Predictor

    def fmt(path, task, spec):
        return Predictor.input_format(SimpleNamespace(specs={task.name: spec}), str(path),
                                      SimpleNamespace(task=task))  # fmt: skip

    ner = Task("ner", "tagging", loader=None, label_names=("O", "B-LOC", "I-LOC"))
    spec = f"file:name=ner,paths=train:{tmp_path}/train.txt|dev:{tmp_path}/valid.txt,kind=tagging"
    (tmp_path / "test.txt").write_text("-DOCSTART- -X- -X- O\n\nLima NNP B-NP B-LOC\n")
    (tmp_path / "tagged.txt").write_text("Lima B-LOC\nis O\n")
    (tmp_path / "new.txt").write_text("Lima is far .\n")
    (tmp_path / "new.md").write_text("Lima B-LOC\n")
    assert [fmt(tmp_path / f, ner, spec) for f in ("test.txt", "tagged.txt", "new.txt", "new.md")
            ] == ["task", "task", "lines", "lines"]  # fmt: skip
    sst = Task("s", "classification", loader=None, label_names=("neg", "pos"))
    spec = f"file:name=s,path={tmp_path}/{{split}}.txt,text=sentence,format=tsv"
    (tmp_path / "table.txt").write_text("sentence\tlabel\ngood\tpos\n")
    assert fmt(tmp_path / "table.txt", sst, spec) == "task"
    assert fmt(tmp_path / "new.txt", sst, spec) == "lines"
    # A fastText task's labelled test file is its own format (labels read as gold, not as
    # words of the text); its sentences alone are lines, and so for a label-first task
    ft = Task("ft", "classification", loader=None, label_names=("0", "1"))
    (tmp_path / "test.ft.txt").write_text("__label__1 a gripping film\n")
    (tmp_path / "first.txt").write_text("1 a gripping film\n")
    spec = f"file:name=ft,path={tmp_path}/{{split}}.ft.txt,format=fasttext"
    assert [fmt(tmp_path / f, ft, spec) for f in ("test.ft.txt", "new.txt")] == ["task", "lines"]
    spec = f"file:name=ft,path={tmp_path}/{{split}}.txt,format=fasttext,label_prefix="
    assert [fmt(tmp_path / f, ft, spec) for f in ("first.txt", "new.txt")] == ["task", "lines"]
    got = Predictor._read_task_format(SimpleNamespace(specs={"ft": spec}),
                                      str(tmp_path / "first.txt"), SimpleNamespace(task=ft))  # fmt: skip
    assert [(e.text, e.label) for e in got] == [("a gripping film", 1)]
    # A task trained on semicolon CSVs reads a JSON input by its columns, not by ";"
    spec = f"file:name=s,path={tmp_path}/{{split}}.csv,text=review,label=stars,delimiter=;"
    (tmp_path / "new.json").write_text('[{"review": "fine; really"}, {"review": "dull"}]')
    fake = SimpleNamespace(specs={"s": spec})
    got = Predictor._read_task_format(fake, str(tmp_path / "new.json"), SimpleNamespace(task=sst))
    assert [(e.text, e.label) for e in got] == [("fine; really", None), ("dull", None)]


def test_prediction_tables_and_parquet_stream_and_fail_whole(tmp_path, monkeypatch):
    """open_writer: the format follows the extension (or is named); a table's header is the
    first record's columns, a cut-off tag is "_" and a missing cell empty; Parquet is written
    a row group at a time and reads back as the records; an error while writing leaves no
    file; Parquet cannot go to stdout."""
    import pyarrow.parquet as pq

    from jaxtl import predictions

    of = predictions.output_format
    assert [of("a.tsv"), of("a.CSV"), of("a.parquet"), of("a.jsonl"), of("a.txt"), of("-")] == [
        "tsv", "csv", "parquet", "jsonl", "jsonl", "jsonl"]  # fmt: skip
    assert of("a.tsv", "jsonl") == "jsonl" and of("-", "tsv") == "tsv"
    with pytest.raises(ValueError, match="--output_format=xml: expected auto or one of"):
        of("a.tsv", "xml")
    with pytest.raises(ValueError, match="cannot go to stdout"):
        of("-", "parquet")
    tagged = [{"id": 0, "text": "Anna flew", "words": ["Anna", "flew"], "tags": ["B-PER", None]},
              {"id": 1, "text": "x", "words": ["x"], "gold": ["O"], "tags": ["O"]}]  # fmt: skip
    with predictions.open_writer(tmp_path / "t.tsv", "tsv") as w:
        for r in tagged:
            w.write(r)
    assert (tmp_path / "t.tsv").read_text() == "id\twords\ttags\n0\tAnna flew\tB-PER _\n1\tx\tO\n"
    # CoNLL: a word per line (word [gold] tag, conlleval's columns), a blank line after a text;
    # it reads back as a tagging file whose last column is the prediction
    assert of("a.conll") == "conll"
    with predictions.open_writer(tmp_path / "t.conll", "conll") as w:
        for r in tagged:
            w.write(r)
    assert (tmp_path / "t.conll").read_text() == "Anna B-PER\nflew _\n\nx O O\n\n"
    from jaxtl.data import get_task
    from jaxtl.data.tasks import Task

    gold = [{"id": 0, "text": "Anna flew", "words": ["Anna", "flew"], "gold": ["B-PER", "O"],
             "tags": ["B-PER", "B-PER"]}]  # fmt: skip
    with predictions.open_writer(tmp_path / "g.conll", "conll") as w:
        w.write(gold[0])
    pred = get_task(f"file:name=t,path={tmp_path}/g.conll").load("train")  # last column
    first = get_task(f"file:name=t,path={tmp_path}/g.conll,tag_column=1").load("train")
    assert [e.label for e in pred] == [("B-PER", "B-PER")] and first[0].label == ("B-PER", "O")
    with pytest.raises(ValueError, match="--output_format=conll writes a tagging task's tags"):
        predictions.check_format(Task("sst", "regression", loader=None), "conll")
    with pytest.raises(ValueError, match="the conll output format holds a tagging task's tags"):
        with predictions.open_writer(tmp_path / "c.conll", "conll") as w:
            w.write({"id": 0, "text": "x", "label": "pos"})
    assert not (tmp_path / "c.conll").exists()
    # CoNLL-U: comments, ten columns, the tag in UPOS (or XPOS); only for a CoNLL-U tagger
    from jaxtl.predictor import conllu_tag_column

    assert [conllu_tag_column(s) for s in (
        "file:name=u,path=ud/{split}.conllu", "file:name=u,path=ud/{split}.conllu,tag_column=4",
        "file:name=u,path=ud/{split}.conllu,label=4", "file:name=u,path=u.txt,format=conllu",
        "ud_pos", "file:name=n,path=ner/{split}.conll", "file:name=s,path=s/{split}.tsv",
        "conll2003")] == [3, 4, 4, 3, 3, None, None, None]  # fmt: skip
    assert of("a.conllu") == "conllu"
    for column, name in ((3, "u.conllu"), (4, "x.conllu")):
        with predictions.open_writer(tmp_path / name, "conllu", conllu_column=column) as w:
            for r in tagged:
                w.write(r)
    assert (tmp_path / "u.conllu").read_text() == (
        "# sent_id = 0\n# text = Anna flew\n1\tAnna\t_\tB-PER\t_\t_\t_\t_\t_\t_\n"
        "2\tflew\t_\t_\t_\t_\t_\t_\t_\t_\n\n"
        "# sent_id = 1\n# text = x\n1\tx\t_\tO\t_\t_\t_\t_\t_\t_\n\n")  # fmt: skip
    xpos = get_task(f"file:name=x,path={tmp_path}/x.conllu,tag_column=4").load("train")
    assert [(e.id, e.words, e.label) for e in xpos][1] == ("1", ("x",), ("O",))
    tagger = Task("pos", "tagging", loader=None, label_names=("O", "X"))
    with pytest.raises(ValueError, match="task 'pos' was not trained on CoNLL-U files"):
        predictions.check_format(tagger, "conllu", None)
    with pytest.raises(ValueError, match="task 'sst' is regression"):
        predictions.check_format(Task("sst", "regression", loader=None), "conllu", 3)
    predictions.check_format(tagger, "conllu", 4)
    (tmp_path / "u.conllu").unlink(), (tmp_path / "x.conllu").unlink()
    monkeypatch.setattr(predictions, "_PARQUET_ROWS", 3)
    recs = [{"id": i, "text": f"t{i}", "label": "pos", "probs": [0.25, 0.75]} for i in range(7)]
    with predictions.open_writer(tmp_path / "p.parquet", "parquet") as w:
        for r in recs:
            w.write(r)
    f = pq.ParquetFile(tmp_path / "p.parquet")
    assert f.metadata.num_row_groups == 3 and f.read().to_pylist() == recs
    with pytest.raises(RuntimeError, match="boom"):
        with predictions.open_writer(tmp_path / "q.csv", "csv", ("neg", "pos")) as w:
            w.write(recs[0])
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.conll", "p.parquet", "t.conll",
                                                         "t.tsv"]  # fmt: skip
    with pytest.raises(ValueError, match="cannot go to stdout"):
        with predictions.open_writer("-", "parquet"):
            pass


def test_bests_from_one_evaluation_share_one_copy_of_the_params(run_dir):
    """The stage's best and each task's best are saved by the evaluation that set them; those
    one evaluation set at once are one copy on disk (hard links), not one write each."""
    steps = {}
    for d in sorted((run_dir / "best").rglob("*")):
        if d.is_dir() and d.name.isdigit() and (d / "state").is_dir():
            steps.setdefault(int(d.name), []).append(d)
    assert len([d for ds in steps.values() for d in ds]) == 3  # the stage's, and each task's
    shared = [ds for ds in steps.values() if len(ds) > 1]
    assert shared, "the first evaluation sets the stage's and both tasks' bests at once"
    for first, *others in shared:
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        for other in others:
            assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
            for f in files:
                assert (first / f).stat().st_ino == (other / f).stat().st_ino, (other, f)
