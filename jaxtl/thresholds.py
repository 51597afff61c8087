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


def tune(gold: np.ndarray, probs: np.ndarray, default: float) -> tuple[float, ...]:
    """Per class, the threshold of :data:`GRID` with the best F1 of ``probs > t`` against
    ``gold`` (0/1, [N, C]); ties go to the one nearest ``default``; a class without a positive
    in ``gold`` keeps ``default``."""
    gold = np.asarray(gold, bool)
    probs = np.asarray(probs, np.float64)
    out = []
    for c in range(gold.shape[1]):
        if not gold[:, c].any():
            out.append(float(default))
            continue
        pred = probs[:, c, None] > GRID[None, :]  # [N, G]
        tp = (pred & gold[:, c, None]).sum(0)
        f1 = 2 * tp / (pred.sum(0) + gold[:, c].sum())  # 2TP / (2TP + FP + FN)
        best = np.flatnonzero(f1 == f1.max())
        out.append(float(GRID[best[np.argmin(np.abs(GRID[best] - default))]]))
    return tuple(out)


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


def apply(task: Any, by_class: Mapping[str, float] | None) -> Any:
    """``task`` deciding its classes at the thresholds a run saved for it (if any)."""
    if not by_class:
        return task
    return with_thresholds(task, [by_class[n] for n in task.label_names])
