"""Training feeds for the loop: one task, or a mixture of tasks picked per step.

A feed hands the loop this process's rows of the next global batch and can save and restore its
position. With a mixture, the task of step ``s`` is a pure function of (seed, s) — see
``jaxtl.data.mixture`` — so a resumed run draws the same tasks; each task's own batch iterator
keeps its position. One task per batch (as MT-DNN does): tasks differ in label layout and length
distribution, so a batch from one task keeps bucketing effective and the loss a single branch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxtl.data import batch as layout


class MixtureFeed:
    """Batches from ``iterators[task_for_step(step)]``; counts what it actually drew."""

    def __init__(
        self,
        names: Sequence[str],
        iterators: Sequence[Any],
        task_for_step: Callable[[int], int] | None = None,
        task_ids: Sequence[int] | None = None,
        label_width: int = 0,
        multilabel: Sequence[bool] = (),
    ):
        """``task_ids[i]`` is the ``batch["task_id"]`` written for ``names[i]``: the index of
        that task in the list the loss switches over (default: 0, 1, ...). ``label_width`` > 0
        (a run with a multilabel task): every batch gets a ``label_set`` that wide
        (:func:`jaxtl.data.batch.with_label_set`), so all tasks' batches share one layout;
        ``multilabel[i]`` marks the tasks whose own batches must carry one (else their loss
        would read zeros: an error instead)."""
        if len(names) != len(iterators):
            raise ValueError("MixtureFeed: one iterator per task name")
        self.task_ids = list(range(len(names)) if task_ids is None else task_ids)
        if len(self.task_ids) != len(names):
            raise ValueError("MixtureFeed: one task id per task name")
        self.names = list(names)
        self.iterators = list(iterators)
        self.task_for_step = task_for_step or (lambda step: 0)
        self.counts = {n: 0 for n in self.names}
        self.label_width = int(label_width)
        self.multilabel = list(multilabel) or [False] * len(self.names)

    def next_batch(self, step: int) -> dict[str, np.ndarray]:
        i = int(self.task_for_step(step))
        batch = next(self.iterators[i])
        batch["task_id"] = np.full_like(batch["task_id"], self.task_ids[i])
        self.counts[self.names[i]] += 1
        if self.multilabel[i] and "label_set" not in batch:
            raise ValueError(f"a batch of multilabel task {self.names[i]!r} has no label_set")
        if self.label_width:
            batch = layout.with_label_set(batch, self.label_width)
        return batch

    def task_of(self, batch: dict[str, np.ndarray]) -> str:
        return self.names[self.task_ids.index(int(batch["task_id"][0]))]

    def state(self) -> dict[str, Any]:
        return {
            "iterators": {n: it.state() for n, it in zip(self.names, self.iterators)},
            "counts": dict(self.counts),
        }

    def restore(self, state: dict[str, Any]) -> None:
        for n, it in zip(self.names, self.iterators):
            it.restore(state["iterators"][n])
        self.counts = {n: int(state["counts"].get(n, 0)) for n in self.names}
