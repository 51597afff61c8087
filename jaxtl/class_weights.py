"""Class weights for imbalanced labels: ``train.class_weights``.

A rare class (a toxic comment in a hundred, an entity type seen twice) is learnt late or not at
all when every example weighs the same; weighting its errors up is the standard remedy, done
with PyTorch's own loss arguments, so the numbers mean what they mean there:

- classification and tagging: ``CrossEntropyLoss(weight=w)`` — each example (token) weighs
  ``w[gold class]`` and the loss is their weighted mean (with ``train.label_smoothing``, its
  smoothing term weighs every class by its own ``w`` too, as PyTorch's does);
- multilabel: ``BCEWithLogitsLoss(pos_weight=w)`` — class c's positive term is multiplied by
  ``w[c]`` (a class present in 100 examples of 400 has ``balanced`` weight 300/100 = 3, the
  example PyTorch's documentation gives).

``train.class_weights`` is ``""`` (none), ``balanced`` (every classification, multilabel and
tagging task of the run, from its training labels: scikit-learn's ``class_weight="balanced"``,
``n / (classes seen * count)``, for classification and tagging; negatives / positives per class for
multilabel), or per task ``NAME=balanced`` / ``NAME=CLASS:W|CLASS:W`` items separated by commas
(``mine=balanced,tox=toxic:3|threat:10``; a class not named weighs 1). A class that never occurs
in training weighs 1 under ``balanced``. Names and weights are checked before training, in one
line naming the task, class or value.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxtl.data.batch import IGNORE
from jaxtl.losses import WEIGHTED as KINDS

log = logging.getLogger(__name__)

BALANCED = "balanced"
KEY = "train.class_weights"


def parse(text: str) -> dict[str | None, str | dict[str, float]]:
    """``train.class_weights`` as {task name (None: every task): "balanced" or {class:
    weight}}; ValueError, one line, on a malformed item or weight."""
    text = str(text or "").strip()
    if not text:
        return {}
    if text == BALANCED:
        return {None: BALANCED}
    out: dict[str | None, str | dict[str, float]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise ValueError(f"{KEY}: {item!r} is not NAME=balanced or NAME=CLASS:W|CLASS:W "
                             "(or give 'balanced' alone for every task)")  # fmt: skip
        if name in out:
            raise ValueError(f"{KEY}: task {name!r} is given twice")
        if value == BALANCED:
            out[name] = BALANCED
            continue
        weights: dict[str, float] = {}
        for pair in value.split("|"):
            cls, colon, w = pair.strip().rpartition(":")
            try:
                weight = float(w)
            except ValueError:
                colon = ""
            if not colon or not cls.strip():
                raise ValueError(f"{KEY}: {pair.strip()!r} (task {name!r}) is not CLASS:WEIGHT")
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"{KEY}: class {cls.strip()!r} of task {name!r}: weight {w!r} "
                                 "must be a finite number > 0")  # fmt: skip
            weights[cls.strip()] = weight
        out[name] = weights
    return out


def label_counts(kind: str, encoded: Any, num_labels: int) -> tuple[np.ndarray, int]:
    """(count per class, number of terms) in a tokenised training split: examples per class
    (classification), examples holding each class (multilabel; terms = examples) or labelled
    tokens per tag (tagging)."""
    if kind == "classification":
        label = np.asarray(encoded.label)
        return np.bincount(label, minlength=num_labels)[:num_labels], len(label)
    if kind == "multilabel":
        sets = np.asarray(encoded.label_set)
        return sets[:, :num_labels].sum(0, dtype=np.int64), len(sets)
    counts = np.zeros(num_labels, np.int64)
    for row in encoded.token_labels:
        row = np.asarray(row)
        counts += np.bincount(row[row != IGNORE], minlength=num_labels)[:num_labels]
    return counts, int(counts.sum())


def balanced(kind: str, counts: np.ndarray, total: int) -> np.ndarray:
    """The ``balanced`` weights from :func:`label_counts` (see the module docstring)."""
    counts = np.asarray(counts, np.float64)
    seen = counts > 0
    safe = np.where(seen, counts, 1.0)
    if kind == "multilabel":
        w = (total - counts) / safe  # negatives / positives: PyTorch's pos_weight example
    else:
        # scikit-learn's compute_class_weight("balanced") over the classes that occur
        w = total / (max(int(seen.sum()), 1) * safe)
    return np.where(seen, w, 1.0).astype(np.float32)


def restrict(text: str, name: str) -> str:
    """``train.class_weights`` for a run of task ``name`` alone (MT-DNN's refinement): its own
    item, or ``balanced`` when that weighs every task."""
    spec = parse(text)
    if None in spec:
        return BALANCED
    items = [x.strip() for x in str(text).split(",")]
    return ",".join(x for x in items if x.partition("=")[0].strip() == name)


def for_tasks(
    text: str, tasks: Sequence[Any], run_tasks: Sequence[Any] | None = None
) -> dict[str, np.ndarray]:
    """{task name: float32[classes]} for the tasks ``text`` weighs among ``tasks`` (a stage's
    :class:`jaxtl.data.prepare.TaskData`); ValueError naming a task not among ``run_tasks``
    (default ``tasks``), a task of another kind or an unknown class. ``balanced`` counts the
    task's training split."""
    spec = parse(text)
    if not spec:
        return {}
    by_name = {td.task.name: td for td in tasks}
    if None in spec:
        chosen = {n: BALANCED for n, td in by_name.items() if td.task.kind in KINDS}
    else:
        known = sorted({td.task.name for td in (run_tasks or tasks)} | set(by_name))
        unknown = [n for n in spec if n not in known]
        if unknown:
            raise ValueError(f"{KEY} names task {unknown[0]!r}, not one of the run's tasks "
                             f"{known}")  # fmt: skip
        chosen = {n: v for n, v in spec.items() if n in by_name}  # type: ignore[misc]
    out = {}
    for name, value in chosen.items():
        td = by_name[name]
        task = td.task
        if task.kind not in KINDS:
            raise ValueError(f"{KEY}: task {name!r} is a {task.kind} task; class weights are "
                             f"for {', '.join(KINDS)}")  # fmt: skip
        names = list(task.label_names)
        if value == BALANCED:
            if td.train_iter is None:
                continue  # not trained in this stage: nothing to weigh
            counts, total = label_counts(task.kind, td.train_iter.encoded, len(names))
            w = balanced(task.kind, counts, total)
        else:
            assert isinstance(value, Mapping)
            unknown = [c for c in value if c not in names]
            if unknown:
                raise ValueError(f"{KEY}: task {name!r} has no class {unknown[0]!r}; its "
                                 f"classes: {names}")  # fmt: skip
            w = np.array([value.get(c, 1.0) for c in names], np.float32)
        out[name] = w
        what = "pos_weight" if task.kind == "multilabel" else "weight"
        log.info("task %s: class %s %s", name, what,
                 ", ".join(f"{c} {x:.4g}" for c, x in zip(names, w)))  # fmt: skip
    return out
