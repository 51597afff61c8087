"""Per-class multilabel thresholds tuned on dev (``train.tune_thresholds``, jaxtl.thresholds):
each class's threshold is the grid point with its best F1 on dev (scikit-learn's F1, checked by
brute force), or, for ``train.threshold_objective=micro_f1``, thresholds no one-class move
improves the pooled F1 of; the tuned thresholds decide the run's records, its test scores,
results.json and ``--predict`` alike (the command-line run tunes for micro-F1)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score

from jaxtl import metrics, predictions, thresholds
from jaxtl.data.tasks import Task

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_each_class_gets_its_best_f1_threshold():
    rng = np.random.default_rng(0)
    gold = (rng.random((200, 4)) < [0.5, 0.2, 0.05, 0.0]).astype(int)
    # a class's positives score higher, on a scale of their own (class 1 is under-confident)
    probs = np.clip(rng.random((200, 4)) * [0.6, 0.3, 0.5, 0.9] + gold * [0.3, 0.15, 0.3, 0],
                    0, 1)  # fmt: skip
    cut = thresholds.tune(gold, probs, 0.5)
    for c in range(3):
        f1 = [f1_score(gold[:, c], probs[:, c] > t, zero_division=0) for t in thresholds.GRID]
        assert f1_score(gold[:, c], probs[:, c] > cut[c]) == pytest.approx(max(f1), abs=1e-12)
    assert cut[1] < 0.4  # the under-confident class is predicted below 0.5
    assert cut[3] == 0.5  # no positive on dev: the configured threshold stays
    # a tie goes to the threshold nearest the configured one: every t in [0.20, 0.30) separates
    gold = np.array([[1], [1], [0], [0]])
    probs = np.array([[0.35], [0.30], [0.2], [0.1]])
    assert thresholds.tune(gold, probs, 0.5) == (0.29,)
    assert thresholds.tune(gold, probs, 0.1) == (0.2,)


def _micro(gold, probs, cut):
    return f1_score(gold, probs > np.asarray(cut), average="micro", zero_division=0)


def test_micro_f1_thresholds_are_chosen_together_and_no_one_class_move_improves_them():
    """``micro_f1``: scikit-learn's micro-F1 at the tuned thresholds is at least the configured
    threshold's, and no class moved alone to any grid value raises it (checked by brute
    force); a class without a positive on dev keeps the configured threshold. On these data
    the two objectives disagree, so the choice matters."""
    rng = np.random.default_rng(1)
    gold = (rng.random((300, 4)) < [0.5, 0.3, 0.05, 0.0]).astype(int)
    probs = np.clip(rng.random((300, 4)) * [0.6, 0.3, 0.5, 0.9] + gold * [0.3, 0.15, 0.2, 0],
                    0, 1)  # fmt: skip
    cut = thresholds.tune(gold, probs, 0.5, "micro_f1")
    best = _micro(gold, probs, cut)
    assert best > _micro(gold, probs, [0.5] * 4)
    assert cut[3] == 0.5
    for c in range(3):
        for t in thresholds.GRID:
            moved = list(cut)
            moved[c] = t
            assert _micro(gold, probs, moved) <= best + 1e-12, (c, t)
    macro_cut = thresholds.tune(gold, probs, 0.5, "macro_f1")
    assert macro_cut != cut and _micro(gold, probs, macro_cut) < best
    assert f1_score(gold[:, :3], probs[:, :3] > np.asarray(macro_cut[:3]), average="macro") > (
        f1_score(gold[:, :3], probs[:, :3] > np.asarray(cut[:3]), average="macro"))  # fmt: skip
    with pytest.raises(ValueError, match="threshold objective 'f1': one of macro_f1, micro_f1"):
        thresholds.tune(gold, probs, 0.5, "f1")


def test_the_threshold_objective_reaches_thresholds_json_and_a_bad_one_stops_the_run():
    from jaxtl import config as config_lib
    from jaxtl import run as run_lib

    task = Task("t", "multilabel", lambda s: [], label_names=("a", "b"),
                metrics=("micro_f1", "macro_f1", "subset_accuracy"), main_metric="micro_f1")  # fmt: skip
    rng = np.random.default_rng(2)
    gold = (rng.random((60, 2)) < [0.5, 0.2]).astype(int)
    probs = np.clip(rng.random((60, 2)) * 0.6 + gold * [0.3, 0.1], 0, 1).astype(np.float32)
    batches = [{"label_set": gold, "example_weight": np.ones(60, np.float32),
                "label": np.zeros(60, np.int32)}]  # fmt: skip
    tuned_task, rec = run_lib._tune_thresholds(task, [{"pred_probs": probs}], batches, "dev",
                                               "micro_f1")  # fmt: skip
    assert rec["objective"] == "micro_f1"
    assert tuned_task.threshold == tuple(rec["thresholds"].values())
    assert rec["dev_after"]["micro_f1"] > rec["dev_before"]["micro_f1"]
    # a task scored on micro-F1 alone (its own metrics=) tunes for macro-F1 all the same
    only_micro = Task("t", "multilabel", lambda s: [], label_names=("a", "b"),
                      metrics=("micro_f1",), main_metric="micro_f1")  # fmt: skip
    _, rec = run_lib._tune_thresholds(only_micro, [{"pred_probs": probs}], batches, "dev",
                                      "macro_f1")  # fmt: skip
    assert set(rec["dev_after"]) == {"micro_f1"} and rec["objective"] == "macro_f1"
    c = config_lib.base_config()
    c.train.threshold_objective = "micro"
    with pytest.raises(ValueError, match=r"train.threshold_objective='micro': one of 'macro_f1', "
                                         r"'micro_f1'"):  # fmt: skip
        config_lib.validate(c)


def test_per_class_thresholds_decide_metrics_and_records():
    task = Task("t", "multilabel", lambda s: [], label_names=("a", "b", "c"),
                metrics=("micro_f1", "macro_f1", "subset_accuracy"), main_metric="micro_f1")  # fmt: skip
    tuned = thresholds.with_thresholds(task, (0.2, 0.5, 0.8))
    probs = np.array([[0.3, 0.6, 0.7], [0.1, 0.4, 0.9], [0.25, 0.55, 0.85]], np.float32)
    gold = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 1]])
    batches = [{"label_set": gold, "example_weight": np.ones(3, np.float32),
                "label": np.zeros(3, np.int32)}]  # fmt: skip
    outputs = [{"pred_probs": probs}]
    pred = (probs > [0.2, 0.5, 0.8]).astype(int)
    got = metrics.score_task(tuned, outputs, batches)
    assert got["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"), abs=1e-12)
    assert got != metrics.score_task(task, outputs, batches)  # 0.5 for all differs here
    assert metrics.multilabel_arrays(tuned, batches, outputs)[1].shape == (3, 3)
    assert thresholds.apply(task, {"c": 0.8, "a": 0.2, "b": 0.5}).threshold == (0.2, 0.5, 0.8)
    assert thresholds.apply(task, None) is task
    from jaxtl.data.tasks import Example

    examples = [Example(f"text {i}", label=None) for i in range(3)]
    # a packed batch names each slot's example (example_index): no encoding needed for order
    packed = [{"example_index": np.arange(3), "example_weight": np.ones(3, np.float32)}]
    recs = predictions.records(tuned, examples, None, (8,), outputs, packed, labelled=False)
    assert [r["labels"] for r in recs] == [["a", "b"], ["c"], ["a", "b", "c"]]


def _topics(d):
    """Topic texts where 'tech' is rare (one text in eight), so that its probabilities stay low
    after a short run and a threshold of its own helps it."""
    words = {"sport": ["match", "goal", "team"], "money": ["bank", "price", "market"],
             "tech": ["chip", "robot", "laptop"]}  # fmt: skip
    for split, n, seed in (("train", 96, 0), ("dev", 40, 1), ("test", 40, 2)):
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(n):
            labs = [k for k, p in (("sport", 0.5), ("money", 0.5), ("tech", 0.125))
                    if rng.random() < p]  # fmt: skip
            ws = [str(rng.choice(words[k])) for k in labs] + ["news", "today", "here"]
            rng.shuffle(ws)
            rows.append(f"{' '.join(ws)}\t{','.join(labs)}\n")
        (d / f"{split}.tsv").write_text("text\ttopics\n" + "".join(rows))


def test_tuned_thresholds_from_the_command_line(tiny_bert_dir, tmp_path):
    _topics(tmp_path)
    spec = f"file:name=topics,path={tmp_path}/{{split}}.tsv,text=text,label=topics,kind=multilabel"
    wd = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
         f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names={spec}",
         "--config.train.steps=40", "--config.optim.lr=3e-3", "--config.data.max_eval_examples=40",
         "--config.train.tune_thresholds=True", "--config.train.threshold_objective=micro_f1",
         f"--config.export_dir={tmp_path / 'export'}",
         f"--workdir={wd}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "thresholds tuned on dev for micro_f1" in p.stderr
    tuned = json.loads((wd / "thresholds.json").read_text())["topics"]
    cut = tuned["thresholds"]
    assert tuned["chosen_on"] == "dev" and set(cut) == {"money", "sport", "tech"}
    assert tuned["objective"] == "micro_f1"
    assert all(round(t, 2) in thresholds.GRID for t in cut.values())
    assert any(t != 0.5 for t in cut.values()), cut  # else this test shows nothing
    # ascent from the configured threshold: dev micro-F1 cannot fall
    assert tuned["dev_after"]["micro_f1"] >= tuned["dev_before"]["micro_f1"]
    # results.json's dev scores are the tuned thresholds' (what the selected model predicts)
    assert json.loads((wd / "results.json").read_text())["topics"] == tuned["dev_after"]
    names = ("money", "sport", "tech")
    for split in ("dev", "test"):
        recs = [json.loads(x) for x in (wd / f"predictions/topics/{split}.jsonl").open()]
        assert all(r["labels"] == [n for n, q in zip(names, r["probs"]) if q > cut[n]]
                   for r in recs)  # fmt: skip
    test = json.loads((wd / "results_test.json").read_text())["topics"]
    recs = [json.loads(x) for x in (wd / "predictions/topics/test.jsonl").open()]
    assert metrics.score_records(
        thresholds.apply(Task("topics", "multilabel", lambda s: [], label_names=names,
                              metrics=tuple(test)), cut), recs) == pytest.approx(test)  # fmt: skip
    # the exported model's config says where jaxtl cuts its probabilities
    exported = json.loads((tmp_path / "export/topics/config.json").read_text())
    assert exported["jaxtl_task"]["thresholds"] == cut
    assert "its threshold" in (tmp_path / "export/topics/README.md").read_text()
    # --predict reads thresholds.json: on the dev file it scores what results.json holds
    from jaxtl.predictor import predict_command

    n, scores = predict_command(str(wd), str(tmp_path / "dev.tsv"), str(tmp_path / "p.jsonl"),
                                "topics")  # fmt: skip
    assert n == 40 and scores == pytest.approx(tuned["dev_after"], abs=1e-9)
