"""GLUE test sets and leaderboard submissions: the GLUE readers' test splits (unlabelled, with
GLUE's ``index`` as ids), QQP / WNLI / MNLI's optional splits, ``--predict`` on a GLUE file in
its own layout, and ``--glue_submission`` from a finished run — its files agree with the run's
own test predictions, row for row. The test files are written in GLUE's layout from the real
dev files (MRPC's from ``msr_paraphrase_test.txt``, as GLUE's download script does)."""

import json
import subprocess
import sys
import zipfile

import pytest

from jaxtl import submission
from jaxtl.data import get_task
from jaxtl.data.tasks import DataError

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _rows(path):
    return [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8-sig")]


def glue_layout(root, data_dir, n_train=200, n=30):
    """SST-2, CoLA, MRPC and STS-B under ``root`` in GLUE's layout: the first ``n_train`` train
    rows, ``n`` dev rows, and a test file of ``n`` rows in GLUE's unlabelled test format."""
    for task in ("SST-2", "CoLA", "MRPC", "STS-B"):
        (root / task).mkdir(parents=True, exist_ok=True)
    for task, header in (("SST-2", True), ("CoLA", False), ("MRPC", True), ("STS-B", True)):
        for split, count in (("train", n_train), ("dev", n)):
            lines = open(data_dir / task / f"{split}.tsv", encoding="utf-8-sig").readlines()
            (root / task / f"{split}.tsv").write_text("".join(lines[: count + header]))
    dev = _rows(data_dir / "SST-2" / "dev.tsv")[1 + n : 1 + 2 * n]
    (root / "SST-2" / "test.tsv").write_text(
        "index\tsentence\n" + "".join(f"{i}\t{r[0]}\n" for i, r in enumerate(dev)))  # fmt: skip
    dev = _rows(data_dir / "CoLA" / "dev.tsv")[n : 2 * n]
    (root / "CoLA" / "test.tsv").write_text(
        "index\tsentence\n" + "".join(f"{i}\t{r[3]}\n" for i, r in enumerate(dev)))  # fmt: skip
    test = _rows(data_dir / "MRPC" / "msr_paraphrase_test.txt")[1 : 1 + n]
    (root / "MRPC" / "test.tsv").write_text(
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        + "".join(f"{i}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\n" for i, r in enumerate(test)))  # fmt: skip
    sts = _rows(data_dir / "STS-B" / "dev.tsv")
    (root / "STS-B" / "test.tsv").write_text(
        "\t".join(sts[0][:-1]) + "\n"
        + "".join("\t".join([str(i), *r[1:-1]]) + "\n"
                  for i, r in enumerate(sts[1 + n : 1 + 2 * n])))  # fmt: skip
    return root


def test_test_splits_read_unlabelled_with_glue_index(data_dir, tmp_path):
    # Without GLUE's test files a task has no test split (a run then predicts none).
    assert get_task("sst2", data_dir).splits == ("train", "dev")
    root = glue_layout(tmp_path, data_dir)
    for name, first in (("glue/sst2", "thanks to scott 's charismatic roger"),
                        ("cola", "Water bubbled up out of the kettle."),
                        ("mrpc", "PCCW's chief operating officer"),
                        ("sts-b", "The lady cracked an egg into a bowl.")):  # fmt: skip
        task = get_task(name, root)
        assert task.splits == ("train", "dev", "test")
        test = task.load("test")
        assert len(test) == 30 and all(ex.label is None for ex in test)
        assert [ex.id for ex in test] == [str(i) for i in range(30)]
        assert test[0].text.startswith(first), (name, test[0].text)  # the header is no row
        assert (test[0].text_pair is not None) == (name in ("mrpc", "sts-b"))
        assert all(ex.label is not None for ex in task.load("dev"))
    # CoLA's train and dev files have no header (their first line is a sentence), its test one has
    assert get_task("cola", root).load("dev")[0].text.startswith("The sailors rode the breeze")
    # GLUE's MRPC test file is built from msr_paraphrase_test.txt: all of it is GLUE's 1,725
    full = tmp_path / "full"
    glue_layout(full, data_dir, n=2000)
    assert len(get_task("mrpc", full).load("test")) == submission.SIZES["MRPC.tsv"]
    # dev files that carry GLUE's index keep it as ids
    assert get_task("stsb", data_dir).load("dev")[5].id == "5"


def test_more_glue_tasks_and_their_errors(tmp_path):
    qqp, wnli, mnli = tmp_path / "QQP", tmp_path / "WNLI", tmp_path / "MNLI"
    for d in (qqp, wnli, mnli, tmp_path / "diagnostic"):
        d.mkdir()
    (qqp / "train.tsv").write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                   "7\t1\t2\tHow do I cook?\tHow to cook?\t1\n"
                                   "8\t3\t4\tWhat is AI?\tWho won?\t0\n")  # fmt: skip
    (qqp / "dev.tsv").write_text((qqp / "train.tsv").read_text())
    (qqp / "test.tsv").write_text("id\tquestion1\tquestion2\n0\tIs it?\tIs it so?\n")
    task = get_task("glue/qqp", tmp_path)
    assert task.label_names == ("not_duplicate", "duplicate") and task.main_metric == "f1"
    assert [(e.id, e.label) for e in task.load("train")] == [("7", 1), ("8", 0)]
    assert task.load("test")[0].id == "0" and task.load("test")[0].text_pair == "Is it so?"
    (wnli / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\t1\n")
    (wnli / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\t0\n")
    assert get_task("wnli", tmp_path).splits == ("train", "dev")
    assert get_task("wnli", tmp_path).load("train")[0].label == 1
    cols = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2"
    (mnli / "train.tsv").write_text(f"{cols}\tgold_label\n0\t1\t1n\tfic\tA man.\tA person.\t"
                                    "entailment\n")  # fmt: skip
    (mnli / "dev_matched.tsv").write_text((mnli / "train.tsv").read_text())
    (mnli / "test_matched.tsv").write_text(f"{cols}\n0\t1\t1n\tfic\tA dog.\tAn animal.\n")
    assert get_task("mnli", tmp_path).splits == ("train", "dev", "dev_mismatched", "test")
    (mnli / "test_mismatched.tsv").write_text(f"{cols}\n0\t1\t1n\tfic\tA cat.\tA pet.\n")
    (tmp_path / "diagnostic" / "diagnostic.tsv").write_text(
        "index\tsentence1\tsentence2\n0\tThe cat sat.\tA cat sat.\n1\tNo.\tYes.\n"
    )
    task = get_task("mnli", tmp_path)
    assert task.splits == ("train", "dev", "dev_mismatched", "test", "test_mismatched", "ax")
    assert [e.text for e in task.load("ax")] == ["The cat sat.", "No."]
    assert task.load("test_mismatched")[0].label is None
    # a training file without its label column, and a bad id, are named
    (wnli / "train.tsv").write_text("index\tsentence1\tsentence2\n0\tA b.\tC d.\n")
    with pytest.raises(DataError, match=r"WNLI/train.tsv: no label column 'label'"):
        get_task("wnli", tmp_path).load("train")
    (qqp / "test.tsv").write_text("id\tquestion1\tquestion2\n\tIs it?\tIs it so?\n")
    with pytest.raises(DataError, match=r"QQP/test.tsv:2: id column 'id'"):
        get_task("qqp", tmp_path).load("test")
    # another file in the task's layout (what --predict reads): labelled or not
    other = get_task("qqp", None, paths={"test": str(qqp / "train.tsv")}).load("test")
    assert [e.label for e in other] == [1, 0]


def _manifest(workdir, tasks, data_dir):
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps({"data": {"dir": str(data_dir)}}))
    (workdir / "tasks.json").write_text(json.dumps({"tasks": [
        {"name": "mine" if ":" in t else t.split("/")[-1], "spec": t} for t in tasks]}))  # fmt: skip
    return str(workdir)


def test_plan_refuses_before_any_model(data_dir, tmp_path):
    root = glue_layout(tmp_path / "glue", data_dir)
    a = _manifest(tmp_path / "a", ["glue/sst2", "glue/cola"], root)
    b = _manifest(tmp_path / "b", ["stsb", "file:name=mine,path=x.tsv"], root)
    entries, missing = submission.plan([a, b])
    assert [(e.file, e.workdir, e.split) for e in entries] == [
        ("CoLA.tsv", a, "test"), ("SST-2.tsv", a, "test"), ("STS-B.tsv", b, "test")]  # fmt: skip
    assert missing == ["MRPC.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv",
                       "WNLI.tsv", "AX.tsv"]  # fmt: skip
    with pytest.raises(ValueError, match=r"SST-2.tsv: both .*a and .*c trained task 'sst2'"):
        submission.plan([a, _manifest(tmp_path / "c", ["sst-2"], root)])
    with pytest.raises(ValueError, match=r"no GLUE task among the run's tasks \['mine'\]"):
        submission.plan([_manifest(tmp_path / "d", ["file:name=mine,path=x.tsv"], root)])
    # MNLI gives three files: its matched and mismatched test sets and the diagnostic (AX),
    # which sits apart and may be absent (then listed as missing, not an error)
    mnli, cols = root / "MNLI", "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2"
    mnli.mkdir()
    for name in ("train.tsv", "dev_matched.tsv"):
        (mnli / name).write_text(f"{cols}\tgold_label\n0\t1\t1n\tfic\tA.\tB.\tneutral\n")
    for name in ("test_matched.tsv", "test_mismatched.tsv"):
        (mnli / name).write_text(f"{cols}\n0\t1\t1n\tfic\tA.\tB.\n")
    m = _manifest(tmp_path / "m", ["glue/mnli"], root)
    entries, missing = submission.plan([m])
    assert [(e.file, e.split) for e in entries] == [("MNLI-m.tsv", "test"),
                                                    ("MNLI-mm.tsv", "test_mismatched")]  # fmt: skip
    assert "AX.tsv" in missing
    (root / "diagnostic").mkdir()
    (root / "diagnostic" / "diagnostic.tsv").write_text("index\tsentence1\tsentence2\n0\tA.\tB.\n")
    entries, missing = submission.plan([m])
    assert entries[-1].file == "AX.tsv" and entries[-1].split == "ax" and "AX.tsv" not in missing
    (root / "CoLA" / "test.tsv").unlink()
    with pytest.raises(DataError, match=r"CoLA/test.tsv: not found: the GLUE test file CoLA.tsv"):
        submission.plan([a])
    with pytest.raises(FileNotFoundError, match=r"is .*nowhere a finished jaxtl workdir"):
        submission.plan([str(tmp_path / "nowhere")])


def test_prediction_spellings():
    assert submission.prediction({"label": "acceptable"}, "cola", ("unacceptable",
                                                                    "acceptable")) == "1"  # fmt: skip
    assert (
        submission.prediction(
            {"label": "neutral"}, "mnli", ("entailment", "neutral", "contradiction")
        )
        == "neutral"
    )
    assert submission.prediction({"score": 3.14159}, "stsb", ()) == "3.142"


def _launch(*args):
    p = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    return p


def test_run_predict_and_submission_end_to_end(data_dir, tiny_bert_dir, tmp_path):
    root = glue_layout(tmp_path / "glue", data_dir)
    wd = tmp_path / "run"
    p = _launch(
        "--regime=multitask",
        "--config=configs/multitask_glue.py:tiny",
        f"--config.data.dir={root}",
        f"--config.model.name={tiny_bert_dir}",
        "--config.tasks.names=glue/sst2,glue/cola,glue/mrpc,glue/stsb",
        f"--workdir={wd}",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    # the run predicts each GLUE test file, its records keyed by GLUE's index
    run = {t: [json.loads(x) for x in (wd / "predictions" / t / "test.jsonl").open()]
           for t in ("sst2", "cola", "mrpc", "stsb")}  # fmt: skip
    assert all([r["id"] for r in recs] == [str(i) for i in range(30)] for recs in run.values())
    assert not (wd / "results_test.json").exists() or "sst2" not in json.loads(
        (wd / "results_test.json").read_text()
    )  # unlabelled: predicted, not scored

    out = tmp_path / "sub.zip"
    p = _launch("--glue_submission", f"--workdir={wd}", f"--output={out}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "SST-2.tsv" in p.stdout and "not in this submission: QQP.tsv" in p.stdout
    z = zipfile.ZipFile(out)
    assert sorted(z.namelist()) == ["CoLA.tsv", "MRPC.tsv", "SST-2.tsv", "STS-B.tsv"]
    spell = {"sst2": ("negative", "positive"), "cola": ("unacceptable", "acceptable"),
             "mrpc": ("not_equivalent", "equivalent")}  # fmt: skip
    for task, file in (("sst2", "SST-2.tsv"), ("cola", "CoLA.tsv"), ("mrpc", "MRPC.tsv"),
                       ("stsb", "STS-B.tsv")):  # fmt: skip
        lines = z.read(file).decode().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == 31
        rows = [line.split("\t") for line in lines[1:]]
        assert [i for i, _ in rows] == [r["id"] for r in run[task]]
        if task == "stsb":  # the run's scores, rounded to three decimals (±0.0015: float32 noise)
            assert all(abs(float(v) - r["score"]) <= 1.5e-3 for (_, v), r in zip(rows, run[task]))
        else:  # the run's labels, spelt as GLUE's files spell them
            assert [v for _, v in rows] == [str(spell[task].index(r["label"])) for r in run[task]]

    # --predict reads a GLUE file in its own layout: GLUE's ids, the header not a text; on a
    # labelled dev file its metrics are the run's results.json
    p = _launch(
        "--predict",
        f"--workdir={wd}",
        "--task=cola",
        f"--input={root}/CoLA/dev.tsv",
        f"--output={tmp_path}/cola.jsonl",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    matthews = json.loads((wd / "results.json").read_text())["cola"]["matthews"]
    assert f"matthews={matthews:.4f}" in p.stdout, (p.stdout, matthews)
    p = _launch(
        "--predict",
        f"--workdir={wd}",
        "--task=sst2",
        f"--input={root}/SST-2/test.tsv",
        f"--output={tmp_path}/sst2.tsv",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    table = (tmp_path / "sst2.tsv").read_text().splitlines()
    assert len(table) == 31 and table[1].startswith("0\tthanks to scott")

    # an output over the run's own files, or an unknown workdir: one line, nothing written
    p = _launch("--glue_submission", f"--workdir={wd}", f"--output={wd}/predictions/x.zip")
    assert p.returncode == 1 and "replace the run's record" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
