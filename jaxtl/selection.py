"""Choosing checkpoints and averaging tasks: the one place that knows which way a metric goes.

Each task has a main metric (accuracy, F1, a correlation …: higher is better; perplexity and
loss: lower is better). A stage's *selection score* is the mean, over its selected tasks
(``"average"`` = all of them, or one task name), of each task's main metric oriented so that
higher is better; the best score picks the stage's best checkpoint. The GLUE-style *average*
reported with results leaves lower-is-better metrics out (a mean of accuracies and perplexities
means nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

# Metrics where smaller is better; everything else (accuracy, F1, correlations) grows.
LOWER_IS_BETTER = frozenset({"perplexity", "loss"})

Results = dict[str, dict[str, float]]


def oriented(metric: str, value: float) -> float:
    return -float(value) if metric in LOWER_IS_BETTER else float(value)


def average(results: Results, tasks: Mapping[str, Any]) -> float:
    """GLUE-style mean of each task's main metric (lower-is-better metrics stay out of it)."""
    vals = []
    for name, res in results.items():
        main = tasks[name].main_metric if name in tasks else ""
        if main in res and main not in LOWER_IS_BETTER:
            vals.append(float(res[main]))
    return float(np.mean(vals)) if vals else float("nan")


def averaged(results: Results, tasks: Mapping[str, Any]) -> dict[str, float] | None:
    """``{"score": average}`` when at least two tasks have an averageable main metric."""
    scored = [
        n for n in results
        if n in tasks and tasks[n].main_metric and tasks[n].main_metric not in LOWER_IS_BETTER
    ]  # fmt: skip
    return {"score": average(results, tasks)} if len(scored) > 1 else None


def selection_score(select: str, results: Results, tasks: Mapping[str, Any]) -> float:
    """Higher is better: the mean over the selected tasks of their oriented main metric."""
    names = list(results) if select == "average" else [select]
    vals = []
    for name in names:
        main = tasks[name].main_metric
        if main in results.get(name, {}):
            vals.append(oriented(main, results[name][main]))
    return float(np.mean(vals)) if vals else float("nan")


@dataclasses.dataclass
class BestTracker:
    """The best evaluation so far per stage and per (stage, task), as a JSON-able dict (it is
    saved in checkpoints' metadata so a resumed run keeps its bests)."""

    best: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def update(
        self,
        key: str,
        select: str,
        results: Results,
        tasks: Mapping[str, Any],
        step: int,
        on_best: Callable[[str | None], None],
    ) -> bool:
        """Record ``results`` of stage ``key`` at ``step``; ``on_best(None)`` when the stage's
        score improved, ``on_best(task)`` when one task's did (with several tasks). Returns
        whether the stage's score improved."""
        score = selection_score(select, results, tasks)
        prev = self.best.get(key)
        improved = prev is None or score > prev["score"] or bool(np.isnan(prev["score"]))
        if improved:
            self.best[key] = {"score": score, "step": step, "results": results}
            on_best(None)
        for name, res in results.items():
            main = tasks[name].main_metric
            if main not in res:
                continue
            tkey = f"{key}:{name}"
            tscore = oriented(main, res[main])
            if tkey not in self.best or tscore > self.best[tkey]["score"]:
                self.best[tkey] = {"score": tscore, "step": step, "results": res}
                if len(results) > 1:
                    on_best(name)
        return improved
