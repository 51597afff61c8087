"""Multi-label classification (task kind ``multilabel``): every class that applies to a text.

Read from the user's files (a ``label_sep``-separated cell, a JSON list) and HF datasets
(``Sequence(ClassLabel)``), trained with one sigmoid per class (transformers' loss for
``problem_type="multi_label_classification"``), scored with scikit-learn, mixed with other tasks
under one train program, predicted and exported so transformers' pipeline gives the same
probabilities."""

import csv
import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl import losses, metrics, predictions
from jaxtl.data import DataError, get_task
from jaxtl.data import batch as layout
from jaxtl.models import hf_heads
from jaxtl.objectives.base import bernoulli_kl, divergence

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TOPICS = {"sport": ["match", "goal", "team", "coach"], "money": ["bank", "price", "market"],
          "tech": ["chip", "robot", "laptop", "code"]}  # fmt: skip


def _rows(n, seed):
    """(text, comma-joined topics): a text names words of the topics it is about."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        labs = [k for k in TOPICS if rng.random() < 0.45]
        words = [str(rng.choice(TOPICS[k])) for k in labs for _ in range(2)] + ["news", "today"]
        rng.shuffle(words)
        out.append((" ".join(words), ",".join(labs)))
    return out


def _write(d, n_train=96, n_dev=24):
    for split, n, seed in (("train", n_train, 0), ("dev", n_dev, 1), ("test", n_dev, 2)):
        rows = _rows(n, seed)
        (d / f"{split}.tsv").write_text(
            "text\ttopics\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows)
        )


def test_file_task_reads_label_sets_from_cells_and_json_lists(tmp_path):
    (tmp_path / "train.tsv").write_text("text\ttopics\na goal\tsport\nbank code\tmoney, tech\n"
                                        "nothing here\t\n")  # fmt: skip
    (tmp_path / "dev.tsv").write_text("text\ttopics\nthe chip\ttech\nsnow\tweather\n")
    task = get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,label=topics,kind=multilabel")
    assert task.kind == "multilabel" and task.label_names == ("money", "sport", "tech")
    assert task.main_metric == "micro_f1"
    assert [ex.label for ex in task.load("train")] == [(1,), (0, 2), ()]  # empty cell: no class
    with pytest.raises(DataError, match=r"dev.tsv:3: label 'weather' is not one of"):
        task.load("dev")
    # another separator through the spec, and JSON lists (a non-list is named with its line)
    (tmp_path / "p.tsv").write_text("text\ttopics\na goal\tsport|tech\n")
    piped = get_task(f"file:name=t,paths=train:{tmp_path}/p.tsv,label=topics,kind=multilabel,"
                     r"label_sep=\|")  # fmt: skip
    assert piped.label_names == ("sport", "tech") and piped.load("train")[0].label == (0, 1)
    (tmp_path / "train.jsonl").write_text('{"t": "a goal", "y": ["sport"]}\n'
                                          '{"t": "a chip", "y": []}\n{"t": "x", "y": 3}\n')  # fmt: skip
    with pytest.raises(DataError, match=r"train.jsonl:3: labels 3 are not a list"):
        get_task(f"file:name=j,path={tmp_path}/{{split}}.jsonl,text=t,label=y,kind=multilabel")


def test_hf_datasets_list_of_class_labels_is_multilabel(tmp_path):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"text": datasets.Value("string"),
                               "labels": datasets.Sequence(datasets.ClassLabel(names=["a", "b", "c"]))})  # fmt: skip
    ds = datasets.Dataset.from_dict({"text": ["x y", "z"], "labels": [[0, 2], []]}, features=feats)
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(tmp_path / "d"))
    task = get_task(f"hf:name=m,path={tmp_path}/d,label=labels")
    assert (task.kind, task.label_names) == ("multilabel", ("a", "b", "c"))
    assert [ex.label for ex in task.load("dev")] == [(0, 2), ()]
    # lists of strings (a Parquet file) give the kind too; words beside tags stay tagging
    datasets.Dataset.from_dict({"text": ["x", "y"], "labels": [["b"], ["a", "b"]]}).to_parquet(
        str(tmp_path / "train.parquet"))  # fmt: skip
    task = get_task(f"hf:name=m,path={tmp_path}/{{split}}.parquet,label=labels")
    assert (task.kind, task.label_names) == ("multilabel", ("a", "b"))
    assert [ex.label for ex in task.load("train")] == [(1,), (0, 1)]


def test_loss_is_transformers_bce_over_real_examples_packed_or_not():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    targets = (rng.random((5, 4)) < 0.5).astype(np.float32)
    weight = np.array([1, 1, 1, 0, 1], np.float32)  # row 3 only pads the batch
    batch = {"label": np.zeros(5, np.int32), "label_set": targets, "example_weight": weight}
    total, den = losses.multilabel(jnp.asarray(logits), batch)
    real = weight > 0
    want = torch.nn.BCEWithLogitsLoss()(torch.tensor(logits[real]), torch.tensor(targets[real]))
    assert float(den) == 4.0
    assert abs(float(total) / float(den) - float(want)) <= 1e-6  # fp32
    # packed [B,S,C]: the same examples in slots give the same sum
    pk = {"label": np.zeros((2, 3), np.int32), "label_set": np.zeros((2, 3, 4), np.float32),
          "example_weight": np.zeros((2, 3), np.float32)}  # fmt: skip
    plog = np.zeros((2, 3, 4), np.float32)
    for i, (r, s) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]):
        pk["label_set"][r, s], pk["example_weight"][r, s], plog[r, s] = (
            targets[i],
            weight[i],
            logits[i],
        )
    ptotal, pden = losses.multilabel(jnp.asarray(plog), pk)
    assert abs(float(ptotal) - float(total)) <= 1e-5 and float(pden) == 4.0
    # a batch of another task (no label_set) traces to zeros; a narrower one is padded
    assert losses.label_set({"label": np.zeros(2, np.int32)}, 3).shape == (2, 3)
    wide = layout.with_label_set({"label": np.zeros(2, np.int32), "label_set": np.ones((2, 2))}, 3)
    np.testing.assert_array_equal(wide["label_set"], [[1, 1, 0], [1, 1, 0]])
    with pytest.raises(ValueError, match="more than 1"):
        layout.with_label_set(wide, 1)


def test_metrics_are_scikit_learns_on_the_thresholded_probabilities():
    from sklearn.metrics import accuracy_score, f1_score

    task = get_task("builtin/mentions", n_dev=3)
    gold = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 0]], np.float32)
    probs = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.51], [0.8, 0.3, 0.9], [0.1, 0.6, 0.2]])
    weight = np.array([1, 1, 1, 0], np.float32)  # the last row pads
    batch = {"label_set": gold, "example_weight": weight}
    got = metrics.score_task(task, [{"pred_probs": probs}], [batch])
    pred = (probs[:3] > 0.5).astype(int)
    assert got == pytest.approx({
        "micro_f1": f1_score(gold[:3], pred, average="micro"),
        "macro_f1": f1_score(gold[:3], pred, average="macro", zero_division=0),
        "subset_accuracy": accuracy_score(gold[:3], pred)}, abs=1e-12)  # fmt: skip
    assert got["subset_accuracy"] == pytest.approx(2 / 3)
    names = task.label_names
    recs = [{"gold": [n for n, g in zip(names, row) if g],
             "labels": [n for n, p in zip(names, prow) if p > 0.5]}
            for row, prow in zip(gold[:3], probs[:3])]  # fmt: skip
    assert metrics.score_records(task, recs) == pytest.approx(got, abs=1e-12)


def test_consistency_divergence_is_the_per_class_bernoulli_kl():
    p = jnp.asarray([[2.0, -1.0, 0.0]])
    q = jnp.asarray([[0.5, 0.5, -3.0]])
    sp, sq = 1 / (1 + np.exp(-np.asarray(p))), 1 / (1 + np.exp(-np.asarray(q)))
    want = np.sum(sp * np.log(sp / sq) + (1 - sp) * np.log((1 - sp) / (1 - sq)), -1)
    np.testing.assert_allclose(np.asarray(bernoulli_kl(p, q)), want, rtol=1e-5)
    assert float(divergence("multilabel", p, p)[0]) == pytest.approx(0.0, abs=1e-7)


def test_a_checkpoint_head_trained_for_the_other_problem_type_is_not_reused():
    ml = get_task("builtin/mentions")
    order, why = hf_heads._label_order(ml, 3, list(ml.label_names), "single_label_classification")
    assert order is None and "single-label-classification head" in why
    order, _ = hf_heads._label_order(ml, 3, list(ml.label_names), "multi_label_classification")
    assert order == [0, 1, 2]
    sent = get_task("builtin/sentiment")
    order, why = hf_heads._label_order(sent, 2, None, "multi_label_classification")
    assert order is None and "multi-label" in why


def test_records_name_the_classes_over_the_threshold_and_tables_join_them():
    rec = {
        "id": 0,
        "text": "x",
        "gold": ["LOC", "PER"],
        "labels": ["LOC"],
        "probs": [0.7, 0.1, 0.4],
    }
    cells = predictions.table_cells(rec, ("LOC", "ORG", "PER"))
    assert cells == {"id": 0, "text": "x", "gold": "LOC,PER", "labels": "LOC",
                     "prob_LOC": 0.7, "prob_ORG": 0.1, "prob_PER": 0.4}  # fmt: skip


def _launch(*args):
    p = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def test_own_multilabel_file_trains_beside_other_tasks_predicts_and_exports(
    tiny_bert_dir, tmp_path
):
    """From the command line: a multilabel TSV and builtin/sentiment in one multitask run (one
    train program for both layouts); --predict on the dev file gives results.json; the exported
    model in transformers' pipeline gives jaxtl's probabilities (within 1e-4)."""
    _write(tmp_path)
    spec = f"file:name=topics,path={tmp_path}/{{split}}.tsv,text=text,label=topics,kind=multilabel"
    wd, out = tmp_path / "run", tmp_path / "export"
    _launch("--regime=multitask", "--config=configs/multitask.py:tiny",
            f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names={(spec, 'builtin/sentiment')!r}",
            "--config.train.steps=80", "--config.optim.lr=1e-2", "--config.data.max_eval_examples=24",
            "--config.train.multilabel_threshold=0.3", f"--config.export_dir={out}",
            f"--workdir={wd}")  # fmt: skip
    events = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    programs = [e for e in events if e.get("task") == "compilations"][-1]
    assert programs["train"] == 1  # both tasks' batches share the train program
    dev = json.loads((wd / "results.json").read_text())["topics"]
    assert set(dev) == {"micro_f1", "macro_f1", "subset_accuracy"}
    assert dev["micro_f1"] > 0.6, dev  # the topic words are learnable in 80 steps
    test = [json.loads(x) for x in (wd / "predictions/topics/test.jsonl").read_text().splitlines()]
    assert all(set(r["labels"]) <= set(TOPICS) and len(r["probs"]) == 3 for r in test)
    # train.multilabel_threshold decides the classes, in the run's records as in --predict's
    names = ("money", "sport", "tech")
    assert all(r["labels"] == [n for n, p in zip(names, r["probs"]) if p > 0.3] for r in test)
    assert any(0.3 < p <= 0.5 for r in test for p in r["probs"]), "no probability in between"
    from jaxtl.predictor import predict_command

    n, scores = predict_command(
        str(wd), str(tmp_path / "dev.tsv"), str(tmp_path / "p.csv"), "topics"
    )
    assert n == 24 and scores == pytest.approx(dev, abs=1e-9)
    with (tmp_path / "p.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:4] == ["id", "text", "gold", "labels"]
    gold = [r.split("\t")[1] for r in (tmp_path / "dev.tsv").read_text().splitlines()[1:]]
    assert [r["gold"] for r in rows] == [",".join(sorted(g.split(","))) if g else "" for g in gold]
    transformers = pytest.importorskip("transformers")
    cfg = json.loads((out / "topics/config.json").read_text())
    assert cfg["problem_type"] == "multi_label_classification"
    pipe = transformers.pipeline("text-classification", model=str(out / "topics"), top_k=None)
    texts = [r["text"] for r in rows[:6]]
    import jaxtl

    ours = jaxtl.load(wd).predict(texts, task="topics")
    for got, rec in zip(pipe(texts), ours):
        theirs = {d["label"]: d["score"] for d in got}
        np.testing.assert_allclose([theirs[n] for n in ("money", "sport", "tech")], rec["probs"],
                                   rtol=0, atol=1e-4)  # fmt: skip


def test_the_threshold_decides_records_and_metrics_and_is_checked():
    """Task.threshold (train.multilabel_threshold, set on every multilabel task by
    prepare.load_task) decides a record's labels and the metrics; outside (0, 1) is refused."""
    import dataclasses

    from jaxtl import config as config_lib
    from jaxtl import metrics
    from jaxtl.data.prepare import configured
    from jaxtl.data.tasks import Task

    task = Task("t", "multilabel", lambda s: [], label_names=("a", "b"),
                metrics=("micro_f1", "macro_f1", "subset_accuracy"), main_metric="micro_f1")  # fmt: skip
    c = config_lib.base_config()
    assert configured(task, c).threshold == 0.5
    c.train.multilabel_threshold = 0.3
    low = configured(task, c)
    assert low.threshold == 0.3
    sentiment = Task("s", "classification", lambda s: [], label_names=("n", "p"))
    assert configured(sentiment, c) is sentiment
    batches = [{"label_set": np.array([[1, 0]]), "example_weight": np.ones(1, np.float32),
                "label": np.zeros(1, np.int32)}]  # fmt: skip
    outputs = [{"pred_probs": np.array([[0.4, 0.1]], np.float32)}]
    assert metrics.score_task(low, outputs, batches)["micro_f1"] == 1.0
    assert metrics.score_task(dataclasses.replace(low, threshold=0.5), outputs,
                              batches)["micro_f1"] == 0.0  # fmt: skip
    for bad in (0.0, 1.0):
        c.train.multilabel_threshold = bad
        with pytest.raises(ValueError, match=f"train.multilabel_threshold={bad}: must be in"):
            config_lib.validate(c)


def test_a_cached_multilabel_split_keeps_its_label_sets(tmp_path, monkeypatch):
    """A split large enough for the on-disk token cache reads back with the same label sets
    (without them its batches would train on all-zero targets)."""
    from conftest import minilm_dir
    from transformers import AutoTokenizer

    from jaxtl.data import batching, packing, token_cache, tokenize

    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 64)  # several chunks
    _write(tmp_path, n_train=300)
    task = get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,label=topics,kind=multilabel")
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    enc = token_cache.encode_split(task, "train", tok, max_length=32, root=str(tmp_path / "c"),
                                   min_rows=0, progress=False)  # fmt: skip
    ref = tokenize.encode(task, task.load("train"), tok, max_length=32)
    assert isinstance(enc.input_ids, token_cache.Ragged)  # read from the cache's files
    assert enc.label_set.shape == (300, 3) and np.array_equal(enc.label_set, ref.label_set)
    assert 0 < ref.label_set.sum() < ref.label_set.size
    again = token_cache.encode_split(task, "train", tok, max_length=32, root=str(tmp_path / "c"),
                                     min_rows=0, progress=False)  # fmt: skip
    assert np.array_equal(again.label_set, ref.label_set)  # a hit
    for make in (batching.TrainBatches, packing.PackedTrainBatches):
        a, b = (make(e, batch_size=8, buckets=(16, 32), seed=1, pad_id=0) for e in (enc, ref))
        for _ in range(5):
            x, y = next(a), next(b)
            assert np.array_equal(x["label_set"], y["label_set"])


def test_one_column_per_class_as_jigsaws_files_have(tmp_path):
    """label_columns: a 0/1 column per class (file and hf tasks alike), the classes in the
    order given; a cell that is not 0/1 is named; a split without the columns is unlabelled."""
    (tmp_path / "train.csv").write_text("id,comment_text,toxic,obscene,threat\n"
                                        'a,"you idiot, stop",1,0,0\nb,thanks,0,0,0\n'
                                        "c,I will hurt you,true,0,1.0\n")  # fmt: skip
    (tmp_path / "dev.csv").write_text("id,comment_text,toxic,obscene,threat\nd,fine,0,,0\n")
    (tmp_path / "test.csv").write_text("id,comment_text\ne,hello there\n")
    spec = (f"file:name=tox,path={tmp_path}/{{split}}.csv,text=comment_text,"
            "label_columns=toxic|obscene|threat,kind=multilabel")  # fmt: skip
    task = get_task(spec)
    assert task.label_names == ("toxic", "obscene", "threat")  # as given, not sorted
    assert [ex.label for ex in task.load("train")] == [(0,), (), (0, 2)]
    with pytest.raises(DataError, match=r"dev.csv:2: column 'obscene': '' is not 0 or 1"):
        task.load("dev")
    assert [ex.label for ex in task.load("test")] == [None]
    with pytest.raises(ValueError, match="label_columns is for kind=multilabel"):
        get_task(spec.replace("kind=multilabel", "kind=classification"))
    implied = get_task(spec.replace(",kind=multilabel", ""))  # as hf: tasks, the columns imply it
    assert (implied.kind, implied.label_names) == ("multilabel", task.label_names)
    assert [ex.label for ex in implied.load("train")] == [(0,), (), (0, 2)]
    datasets = pytest.importorskip("datasets")
    rows = {"comment_text": ["you idiot", "thanks"], "toxic": [1, 0], "obscene": [0, 0],
            "threat": [False, True]}  # fmt: skip
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "train.parquet"))
    hf = get_task(f"hf:name=tox,path={tmp_path}/{{split}}.parquet,text=comment_text,"
                  "label_columns=toxic|obscene|threat")  # fmt: skip
    assert (hf.kind, hf.label_names) == ("multilabel", ("toxic", "obscene", "threat"))
    assert [ex.label for ex in hf.load("train")] == [(0,), (2,)]


def test_a_multilabel_batch_without_its_label_set_is_an_error_not_zero_targets():
    from jaxtl.data.feed import MixtureFeed

    def batches(with_set):
        while True:
            b = {"label": np.zeros(2, np.int32), "task_id": np.zeros(2, np.int32)}
            if with_set:
                b["label_set"] = np.ones((2, 3), np.float32)
            yield b

    feed = MixtureFeed(["ml", "cls"], [batches(True), batches(False)], lambda s: s % 2,
                       label_width=4, multilabel=[True, False])  # fmt: skip
    assert feed.next_batch(0)["label_set"].tolist() == [[1, 1, 1, 0]] * 2  # padded to 4
    assert feed.next_batch(1)["label_set"].sum() == 0  # another kind: zeros
    bad = MixtureFeed(["ml"], [batches(False)], label_width=3, multilabel=[True])
    with pytest.raises(ValueError, match="multilabel task 'ml' has no label_set"):
        bad.next_batch(0)


def test_a_0_1_vector_needs_the_class_names_and_is_then_read(tmp_path):
    """A multi-hot vector ([0.0, 1.0, 1.0]: floats or booleans, as a one-hot encoder writes)
    names no classes: without label_names it is refused in one line (read as names it would
    have made the classes "0.0" and "1.0"); with them, its ones are the classes."""
    (tmp_path / "train.jsonl").write_text('{"t": "a", "y": [0.0, 1.0, 1.0]}\n'
                                          '{"t": "b", "y": [1.0, 0.0, 0.0]}\n')  # fmt: skip
    spec = f"file:name=v,path={tmp_path}/{{split}}.jsonl,text=t,label=y,kind=multilabel"
    with pytest.raises(
        DataError, match=r"train.jsonl:1: labels .* holds a 0/1 vector.*label_names"
    ):
        get_task(spec)
    task = get_task(spec + ",label_names=x|y|z")
    assert [ex.label for ex in task.load("train")] == [(1, 2), (0,)]
    (tmp_path / "train.jsonl").write_text('{"t": "a", "y": [0.0, 1.0]}\n')
    with pytest.raises(DataError, match=r"train.jsonl:1: labels .* are not 3 values of 0 or 1"):
        task.load("train")
    datasets = pytest.importorskip("datasets")
    d = datasets.Dataset.from_dict({"text": ["a", "b"], "labels": [[0.0, 1.0], [1.0, 1.0]]})
    d.to_parquet(str(tmp_path / "train.parquet"))
    hf = f"hf:name=v,path={tmp_path}/{{split}}.parquet,label=labels"
    with pytest.raises(DataError, match=r"column 'labels' holds a 0/1 vector"):
        get_task(hf)
    assert [ex.label for ex in get_task(hf + ",label_names=p|q").load("train")] == [(1,), (0, 1)]
