"""train.class_weights: per-class loss weights as PyTorch's CrossEntropyLoss(weight) and
BCEWithLogitsLoss(pos_weight) apply them; ``balanced`` as scikit-learn computes it."""

import json
import subprocess
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl import class_weights, losses
from jaxtl.data.batch import IGNORE

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TOL = 1e-5  # fp32, against torch's own implementation


def test_weighted_cross_entropy_is_torchs_with_and_without_smoothing():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    cw = np.array([0.5, 2.0, 1.0, 4.0, 0.25], np.float32)
    logits = rng.normal(size=(7, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 7).astype(np.int32)
    weight = np.array([1, 1, 1, 0, 1, 1, 1], np.float32)  # row 3 only pads the batch
    real = weight > 0
    for s in (0.0, 0.1, 0.4):
        total, den = losses.classification(jnp.asarray(logits), {"label": labels,
                                           "example_weight": weight}, s, cw)  # fmt: skip
        want = torch.nn.CrossEntropyLoss(weight=torch.tensor(cw), label_smoothing=s)(
            torch.tensor(logits[real]), torch.tensor(labels[real], dtype=torch.long))  # fmt: skip
        assert abs(float(total) / float(den) - float(want)) <= TOL, s
        # a packed batch ([B,S] slots) gives the same sums
        packed = {"label": labels[:6].reshape(2, 3), "example_weight": weight[:6].reshape(2, 3)}
        t2, d2 = losses.classification(jnp.asarray(logits[:6].reshape(2, 3, 5)), packed, s, cw)
        t1, d1 = losses.classification(jnp.asarray(logits[:6]), {"label": labels[:6],
                                       "example_weight": weight[:6]}, s, cw)  # fmt: skip
        assert abs(float(t2) - float(t1)) <= TOL and abs(float(d2) - float(d1)) <= TOL
    # weights of 1 are the unweighted loss
    ones = losses.classification(jnp.asarray(logits), {"label": labels, "example_weight": weight},
                                 0.1, np.ones(5, np.float32))  # fmt: skip
    plain = losses.classification(jnp.asarray(logits), {"label": labels, "example_weight": weight},
                                  0.1)  # fmt: skip
    np.testing.assert_allclose(np.array(ones), np.array(plain), rtol=TOL)
    # tagging: IGNORE tokens left out, as torch's ignore_index
    tok = rng.normal(size=(2, 4, 3)).astype(np.float32)
    tags = np.array([[IGNORE, 0, 2, IGNORE], [1, 1, IGNORE, 2]], np.int32)
    tw = np.array([0.2, 1.0, 3.0], np.float32)
    tb = {"token_labels": tags, "example_weight": np.ones(2, np.float32)}
    for s in (0.0, 0.2):
        total, den = losses.token_classification(jnp.asarray(tok), tb, s, tw)
        want = torch.nn.CrossEntropyLoss(weight=torch.tensor(tw), ignore_index=IGNORE,
                                         label_smoothing=s)(
            torch.tensor(tok.reshape(-1, 3)), torch.tensor(tags.reshape(-1), dtype=torch.long))  # fmt: skip
        assert abs(float(den) - (0.2 + 3.0 + 1.0 + 1.0 + 3.0)) <= TOL
        assert abs(float(total) / float(den) - float(want)) <= TOL, s


def test_multilabel_pos_weight_is_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    sets = rng.integers(0, 2, (5, 3)).astype(np.uint8)
    pos = np.array([3.0, 0.5, 10.0], np.float32)
    batch = {"label": np.zeros(5, np.int32), "label_set": sets,
             "example_weight": np.ones(5, np.float32)}  # fmt: skip
    total, den = losses.multilabel(jnp.asarray(logits), batch, pos)
    want = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos))(
        torch.tensor(logits), torch.tensor(sets, dtype=torch.float32)
    )
    assert abs(float(total) / float(den) - float(want)) <= TOL
    plain = losses.multilabel(jnp.asarray(logits), batch)
    ones = losses.multilabel(jnp.asarray(logits), batch, np.ones(3, np.float32))
    np.testing.assert_allclose(np.array(ones), np.array(plain), rtol=TOL)


def test_balanced_weights_are_scikit_learns_and_pytorchs_pos_weight():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 3])  # class 2 never occurs
    enc = types.SimpleNamespace(label=labels)
    counts, n = class_weights.label_counts("classification", enc, 4)
    got = class_weights.balanced("classification", counts, n)
    want = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=labels)
    np.testing.assert_allclose(got[[0, 1, 3]], want, rtol=1e-6)
    assert got[2] == 1.0  # unseen: weight 1
    sets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], np.uint8)
    counts, n = class_weights.label_counts("multilabel", types.SimpleNamespace(label_set=sets), 3)
    np.testing.assert_allclose(class_weights.balanced("multilabel", counts, n), [1 / 3, 3, 1])
    rows = [np.array([IGNORE, 0, 0, 1]), np.array([0, IGNORE, 2])]
    counts, n = class_weights.label_counts("tagging", types.SimpleNamespace(token_labels=rows), 3)
    assert counts.tolist() == [3, 1, 1] and n == 5


def _td(name, kind, label_names, labels=None):
    task = types.SimpleNamespace(name=name, kind=kind, label_names=tuple(label_names))
    it = None if labels is None else types.SimpleNamespace(
        encoded=types.SimpleNamespace(label=np.array(labels)))  # fmt: skip
    return types.SimpleNamespace(task=task, train_iter=it)


def test_settings_are_parsed_checked_and_given_to_the_tasks_they_name():
    mine = _td("mine", "classification", ["neg", "pos"], [1, 1, 1, 0])
    sts = _td("sts", "regression", [])
    got = class_weights.for_tasks("balanced", [mine, sts])
    assert list(got) == ["mine"]  # every task of a weighted kind
    np.testing.assert_allclose(got["mine"], [2.0, 2 / 3])
    got = class_weights.for_tasks("mine=pos:2.5", [mine, sts])
    np.testing.assert_allclose(got["mine"], [1.0, 2.5])  # a class not named weighs 1
    # a task of the run that is not in this stage is skipped; one not in the run is an error
    other = _td("other", "classification", ["a", "b"], [0, 1])
    assert class_weights.for_tasks("other=a:2", [mine], [mine, other]) == {}
    for text, message in (
        ("nope=balanced", "train.class_weights names task 'nope', not one of the run's tasks "
                          "['mine', 'sts']"),
        ("sts=balanced", "train.class_weights: task 'sts' is a regression task; class weights "
                         "are for classification, multilabel, tagging"),
        ("mine=neutral:2", "train.class_weights: task 'mine' has no class 'neutral'; its classes: "
                           "['neg', 'pos']"),
    ):  # fmt: skip
        with pytest.raises(ValueError) as e:
            class_weights.for_tasks(text, [mine, sts])
        assert str(e.value) == message
    for text, message in (
        ("mine", "'mine' is not NAME=balanced or NAME=CLASS:W|CLASS:W"),
        ("mine=pos", "'pos' (task 'mine') is not CLASS:WEIGHT"),
        ("mine=pos:0", "class 'pos' of task 'mine': weight '0' must be a finite number > 0"),
        ("mine=pos:nan", "weight 'nan' must be a finite number > 0"),
        ("mine=balanced,mine=pos:2", "task 'mine' is given twice"),
    ):
        with pytest.raises(ValueError) as e:
            class_weights.parse(text)
        assert message in str(e.value)
    assert class_weights.parse("") == {} and class_weights.parse("balanced") == {None: "balanced"}
    assert class_weights.parse("glue/sst2=balanced, ner=O:0.5|B-PER:2") == {
        "glue/sst2": "balanced", "ner": {"O": 0.5, "B-PER": 2.0}}  # fmt: skip
    # MT-DNN refinement runs one task alone: its own item only
    assert class_weights.restrict("a=balanced,b=x:2", "b") == "b=x:2"
    assert class_weights.restrict("a=balanced", "b") == ""
    assert class_weights.restrict("balanced", "b") == "balanced"


# Two launches (~30 s on 2 cores): slow. The default run keeps the weights and the loss (this
# module's other tests) and the check of a bad setting below.
@pytest.mark.slow
def test_class_weights_reach_the_run(tiny_bert_dir, tmp_path):
    rows = [("a great film", "pos")] * 10 + [("a dull film", "neg")] * 2
    for split in ("train", "dev"):
        (tmp_path / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))  # fmt: skip
    spec = f"file:name=mine,path={tmp_path}/{{split}}.tsv,text=sentence,label=label"

    def first_loss(setting):
        wd = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        p = subprocess.run(
            [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
             f"--config.model.name={tiny_bert_dir}", f"--config.tasks.names=({spec!r},)",
             "--config.train.steps=1", "--config.train.log_every=1", "--config.train.eval_every=0",
             f"--config.train.class_weights={setting}", f"--workdir={wd}"],
            cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
        return next(r["loss"] for r in rows if r["split"] == "train" and r["step"] == 1), p.stderr

    plain, _ = first_loss("")
    balanced, log = first_loss("balanced")
    assert "task mine: class weight neg 3, pos 0.6" in log  # 12 / (2 x 2), 12 / (2 x 10)
    assert abs(plain - balanced) > 1e-4  # the same batch and params otherwise


def test_a_bad_class_weight_stops_the_run_first(tmp_path):
    p = subprocess.run([sys.executable, "launch.py", "--regime=multitask",
                        "--config.train.class_weights=mine=pos", f"--workdir={tmp_path / 'x'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode != 0 and not (tmp_path / "x").exists()
    assert (
        "train.class_weights: 'pos' (task 'mine') is not CLASS:WEIGHT" in p.stderr.splitlines()[-1]
    )
