"""Per-class decision thresholds for multilabel tasks (``train.tune_thresholds``).

One threshold for every class (``train.multilabel_threshold``, 0.5) suits a calibrated model
with balanced classes; a rare class whose probabilities stay under 0.5 is then never predicted.
With ``train.tune_thresholds=True`` the run, once each stage's params are selected, predicts the
task's selection split (dev) and gives every class the threshold on a grid of 0.01 … 0.99 that
maximises that class's F1 there (so macro-F1 on dev is as high as a per-class threshold makes
it; a tie goes to the threshold nearest the configured one, and a class with no positive on dev
keeps the configured one). Those thresholds then decide every record, the test scores and
``--predict``; they are saved in ``<workdir>/thresholds.json`` with the dev scores before and
after. The dev scores after are optimistic — the thresholds were chosen on dev — so the test
split is the honest measure.

``train.threshold_objective`` picks what the thresholds maximise on dev: ``macro_f1`` (the
default, above: each class its best F1, so the mean over classes is as high as it gets) or
``micro_f1`` (F1 over every class's decisions pooled, a multilabel task's main metric): a class's
threshold then moves the pooled counts, so they are chosen together by coordinate ascent —
starting from the configured threshold, each class in turn takes the grid value with the best
micro-F1 while the others stay, until a pass changes none (never below the micro-F1 at the
configured threshold; a local optimum, as every coordinate-wise search).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

GRID = np.round(np.arange(1, 100) / 100.0, 2)
FILE = "thresholds.json"


def per_class(task: Any) -> np.ndarray:
    """The task's threshold for each class (a single threshold repeated)."""
    return np.broadcast_to(np.asarray(task.threshold, np.float64), (task.num_labels,))


OBJECTIVES = ("macro_f1", "micro_f1")
MAX_PASSES = 50  # coordinate ascent: passes over the classes (each pass that changes a threshold
# strictly raises micro-F1, so it stops far sooner on real data)


def tune(
    gold: np.ndarray, probs: np.ndarray, default: float, objective: str = "macro_f1"
) -> tuple[float, ...]:
    """Thresholds of :data:`GRID`, one per class, for ``probs > t`` against ``gold`` (0/1,
    [N, C]): with ``macro_f1`` each class's best F1, with ``micro_f1`` the pooled F1 by
    coordinate ascent (module docstring). Ties go to the one nearest ``default`` (``micro_f1``:
    nearest the class's current one, so a tie never moves it); a class without a positive in
    ``gold`` keeps ``default``."""
    if objective not in OBJECTIVES:
        raise ValueError(f"threshold objective {objective!r}: one of {', '.join(OBJECTIVES)}")
    gold = np.asarray(gold, bool)
    probs = np.asarray(probs, np.float64)
    if objective == "micro_f1":
        return _tune_micro(gold, probs, float(default))
    out = []
    for c in range(gold.shape[1]):
        if not gold[:, c].any():
            out.append(float(default))
            continue
        pred = probs[:, c, None] > GRID[None, :]  # [N, G]
        tp = (pred & gold[:, c, None]).sum(0)
        f1 = 2 * tp / (pred.sum(0) + gold[:, c].sum())  # 2TP / (2TP + FP + FN)
        out.append(_best_on_grid(f1, default))
    return tuple(out)


def _best_on_grid(score: np.ndarray, near: float) -> float:
    """The :data:`GRID` value with the highest ``score`` (one per grid value); of equals, the
    one nearest ``near``."""
    best = np.flatnonzero(score == score.max())
    return float(GRID[best[np.argmin(np.abs(GRID[best] - near))]])


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def _tune_micro(gold: np.ndarray, probs: np.ndarray, default: float) -> tuple[float, ...]:
    cut = np.full(gold.shape[1], default)
    free = [c for c in range(gold.shape[1]) if gold[:, c].any()]
    pred = probs > cut
    for _ in range(MAX_PASSES):
        moved = False
        for c in free:
            others = np.ones(gold.shape[1], bool)
            others[c] = False
            p, g = pred[:, others], gold[:, others]
            tp0, fp0, fn0 = (p & g).sum(), (p & ~g).sum(), (~p & g).sum()
            grid = probs[:, c, None] > GRID[None, :]  # [N, G]: class c at every grid value
            gc = gold[:, c, None]
            f1 = _f1(tp0 + (grid & gc).sum(0), fp0 + (grid & ~gc).sum(0), fn0 + (~grid & gc).sum(0))
            t = _best_on_grid(f1, cut[c])
            if t != cut[c]:
                cut[c], pred[:, c], moved = t, probs[:, c] > t, True
        if not moved:
            break
    return tuple(float(t) for t in cut)


def with_thresholds(task: Any, thresholds: Sequence[float] | float) -> Any:
    return dataclasses.replace(task, threshold=tuple(float(t) for t in thresholds)
                               if not isinstance(thresholds, float) else thresholds)  # fmt: skip


def save(workdir: epath.Path, tuned: Mapping[str, Mapping[str, Any]]) -> None:
    from jaxtl import report

    report.write_json(workdir / FILE, dict(tuned))


def load(workdir: epath.Path) -> dict[str, dict[str, float]]:
    """``{task: {class: threshold}}`` a run tuned, or ``{}``."""
    path = workdir / FILE
    if not path.exists():
        return {}
    return {t: dict(v["thresholds"]) for t, v in json.loads(path.read_text()).items()}


NULL = "null"  # a qa task's entry in thresholds.json


def apply(task: Any, by_class: Mapping[str, float] | None) -> Any:
    """``task`` deciding its classes at the thresholds a run saved for it (if any); a qa task,
    its answers at the "no answer" threshold saved as ``null``."""
    if not by_class:
        return task
    if task.kind == "qa":
        return dataclasses.replace(task, null_threshold=float(by_class[NULL]))
    return with_thresholds(task, [by_class[n] for n in task.label_names])


def tune_null(margins: np.ndarray, f1_span: np.ndarray, f1_null: np.ndarray,
              default: float = 0.0) -> float:  # fmt: skip
    """A qa task's "no answer" threshold: "" is the answer where ``margins`` (the "no answer"
    score minus the best span's, per question) exceed it, so only where it falls among the
    sorted margins matters: between two neighbours it answers the questions below with their
    spans (``f1_span``) and those above with "" (``f1_null``). The interval with the best mean
    F1 on dev is found in one sorted pass, as SQuAD 2.0's official script finds its best
    threshold; ``default`` is kept when it lies in a best interval, else the best interval
    nearest it gives its point nearest ``default`` (its midpoint when that is the open end)."""
    margins = np.asarray(margins, np.float64)
    order = np.argsort(margins, kind="stable")
    d = margins[order]
    span, null = np.asarray(f1_span, np.float64)[order], np.asarray(f1_null, np.float64)[order]
    # k = 0..n: the k smallest margins answered by their spans, the rest by ""
    totals = np.concatenate([[0.0], np.cumsum(span)]) + null.sum() - np.concatenate(
        [[0.0], np.cumsum(null)])  # fmt: skip
    lo = np.concatenate([[-np.inf], d])
    hi = np.concatenate([d, [np.inf]])
    valid = lo < hi  # equal margins leave no threshold between them
    best = np.isclose(totals, totals[valid].max(), rtol=0, atol=1e-9) & valid
    if np.any(best & (lo <= default) & (default < hi)):
        return float(default)
    gap = np.where(default < lo, lo - default, default - hi)
    k = int(np.flatnonzero(best)[np.argmin(gap[best])])
    if default < lo[k]:
        return float(lo[k])
    return float((lo[k] + hi[k]) / 2 if np.isfinite(lo[k]) else hi[k] - 1.0)
