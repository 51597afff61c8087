"""Building a regime's stages: which tasks a stage draws from, its loss, its evaluation and the
heads it must not touch.

Every stage of a run shares one model whose heads cover all the run's tasks, and one loss that
switches over all of them (so every stage has the same program structure); a stage draws
batches only from its own tasks, and the heads of the other tasks are frozen in its plan.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import ml_collections

from jaxtl import class_weights, features, metrics, predictions, train
from jaxtl.data import feed, mixture
from jaxtl.data.prepare import TaskData
from jaxtl.objectives import Objective, heads_active_fn, switch_loss, switch_predict

log = logging.getLogger(__name__)


def heads_pattern(keys: Sequence[str]) -> list[str]:
    """Partition-rule regexes matching the given heads (none for no keys)."""
    return ["^heads/(" + "|".join(re.escape(k) for k in keys) + ")/"] if keys else []


def freeze_rules(
    optim: ml_collections.ConfigDict, patterns: Sequence[str], name: str
) -> ml_collections.ConfigDict:
    """A copy of ``optim`` whose first rules freeze ``patterns`` (e.g. heads the stage does not
    train: the old task's head while adapting, task heads while pretraining). Optional, since a
    head may have no parameters (GPT-2's tied CLM head)."""
    out = ml_collections.ConfigDict(optim.to_dict())
    frozen = tuple((p, {"frozen": True, "name": name, "optional": True}) for p in patterns)
    out.rules = frozen + tuple(tuple(r) for r in optim.rules)
    return out


def eval_sets(task_list: Sequence[TaskData]) -> dict[str, train.EvalSet]:
    """Each task's dev batches and scorer (a translation task's detokenises for BLEU)."""
    return {
        td.task.name: train.EvalSet(td.task, td.eval_batches, _scorer(td))
        for td in task_list
        if td.eval_batches
    }


def _scorer(td: TaskData):
    """``(task, outputs, batches) -> scores`` of a task's dev split: from the outputs, or for
    a qa task from its questions' records (an answer is decoded over its windows)."""
    if td.task.kind != "qa":
        return partial(metrics.score_task, detokenize=td.detokenize)
    sd = td.splits["dev"]

    def score(task: Any, outputs: Sequence[Any], batches: Sequence[Any]) -> dict[str, float]:
        rows = predictions.records(task, sd.examples, sd.encoded, sd.buckets, outputs, batches,
                                   labelled=True)  # fmt: skip
        return metrics.score_records(task, rows)

    return score


def steps_per_epoch(own: Sequence[TaskData], stream_pattern: Sequence[str] = (),
                    key: str = "train.epochs") -> tuple[int, float]:  # fmt: skip
    """``(batches, steps)`` of one pass over the ``own`` tasks' training data: their first
    epoch's batch counts, summed (a mixture that draws by size sees each example about once in
    that many steps), and the steps they take with the objective's steps that
    ``stream_pattern`` puts between them. ``key`` names the setting that asked."""
    batches = 0
    for td in own:
        it = td.train_iter
        while it is not None and not hasattr(it, "batches_per_epoch"):
            it = getattr(it, "inner", None)  # an LM objective's masking wraps its batcher
        if it is None:
            raise ValueError(f"{key}: task {td.task.name!r} has no training batches to count "
                             "epochs in; give the stage's steps instead")  # fmt: skip
        batches += it.batches_per_epoch()
    share = stream_pattern.count("labelled") / len(stream_pattern) if stream_pattern else 1.0
    return batches, batches / share


def epoch_steps(
    name: str, steps: int, epochs: float, own: Sequence[TaskData],
    stream_pattern: Sequence[str] = (), key: str = "train.epochs",
) -> int:  # fmt: skip
    """A stage's length: ``steps``, or with ``epochs > 0`` (the setting ``key``) that many
    passes over the ``own`` tasks' training data (:func:`steps_per_epoch`)."""
    if not epochs or epochs <= 0:
        return steps
    batches, per_epoch = steps_per_epoch(own, stream_pattern, key)
    total = max(1, math.ceil(epochs * per_epoch))
    log.info("stage %s: %s=%g over %d batches per epoch: %d steps", name, key, epochs, batches,
             total)  # fmt: skip
    return total


def mixture_stage(
    name: str,
    steps: int,
    own: Sequence[TaskData],
    all_tasks: Sequence[TaskData],
    params: Any,
    config: ml_collections.ConfigDict,
    optim: ml_collections.ConfigDict,
    *,
    eval_every: int,
    weights: dict[str, float] | None = None,
    frozen_name: str = "other_tasks_heads",
    objective: Objective | None = None,
    stream_pattern: Sequence[str] = (),
    epochs: float = 0.0,
    eval_per_epoch: bool = False,
    epochs_key: str = "train.epochs",
) -> train.Stage:
    """A stage training the ``own`` tasks, drawn per step by ``config.mixture``, on a model
    whose heads cover ``all_tasks``. Heads of other tasks are frozen in the plan.

    With ``objective`` (whose stream is among ``all_tasks`` but not ``own``), the objective's
    stream takes the steps that ``stream_pattern`` (:func:`jaxtl.data.mixture.ratio_pattern`)
    marks ``unlabelled``; its batches update the heads :meth:`Objective.owners` names.
    ``epochs > 0`` sets the stage's length from its data instead of ``steps``
    (:func:`epoch_steps`; ``epochs_key`` names the setting in messages); ``eval_per_epoch``
    evaluates once per pass over it instead of every ``eval_every`` steps.
    """
    pattern = stream_pattern if objective else ()
    steps = epoch_steps(name, steps, epochs, own, pattern, epochs_key)
    if eval_per_epoch:
        eval_every = max(1, round(steps_per_epoch(own, pattern, "train.eval_per_epoch")[1]))
        log.info("stage %s: evaluated every %d steps (train.eval_per_epoch)", name, eval_every)
    mix = mixture.Mixture(
        [td.train_size for td in own],
        scheme=config.mixture.scheme,
        temperature=config.mixture.temperature,
        seed=config.seed,
        total_steps=max(steps, 1),
    )
    streams = list(own)
    task_for_step: Callable[[int], int] = mix.task_for_step
    owners = None
    if objective is not None:
        streams.append(objective.data)
        n = len(own)

        def task_for_step(step: int) -> int:
            if mixture.stream_for_step(step, stream_pattern) == "unlabelled":
                return n
            return mix.task_for_step(step)

        owners = objective.owners(params)
    trained = {td.key for td in streams} | set(owners or {})
    others = [td.key for td in all_tasks if td.key not in trained]
    evals = [td for td in streams if td.eval_batches]
    optim = freeze_rules(optim, heads_pattern(others), frozen_name)
    # A frozen encoder runs without dropout and, where it can, from a feature cache.
    frozen = features.encoder_frozen(optim, params, steps)
    cache = features.stage_cache(name, streams, config, frozen=frozen, objective=objective)
    dropout = features.encoder_dropout(config, frozen)
    return train.Stage(
        name=name,
        steps=steps,
        feed=feed.MixtureFeed(
            [td.task.name for td in streams],
            [td.train_iter for td in streams],
            task_for_step,
            task_ids=[td.index for td in streams],
            label_width=max(
                [td.task.num_labels for td in streams if td.task.kind == "multilabel"] or [0]
            ),
            multilabel=[td.task.kind == "multilabel" for td in streams],
        ),
        loss_fn=switch_loss(
            all_tasks,
            weights,
            objective,
            encoder_dropout=dropout,
            label_smoothing=float(config.train.get("label_smoothing", 0.0)),
            class_weights=class_weights.for_tasks(
                config.train.get("class_weights", ""), own, all_tasks
            ),
        ),
        predict_fn=switch_predict(all_tasks),
        optim=optim,
        eval_sets=eval_sets(evals),
        eval_every=eval_every,
        active_fn=heads_active_fn(params, all_tasks, owners),
        select="average",
        features=cache,
    )
