"""Multi-task learning (MT-DNN): one shared encoder, one head per task, trained together.

Labelled source tasks are trained jointly so the encoder learns what they share (Liu et al. 2019:
MT-DNN lifted GLUE from 80.5 to 82.7, most on small tasks such as RTE and MRPC).

- Tasks of any kind in one run: classification, sentence pairs, regression (STS-B), tagging.
- One task per batch, picked per step by a mixture (proportional, temperature, uniform,
  round-robin, annealed); realised counts go to metrics.jsonl. One task per batch keeps each
  batch in its task's length bucket and the loss a single ``lax.switch`` branch, so one compiled
  step serves all tasks (shapes are bucketed; the task index is data, not a trace constant).
- Per-task loss weights (``tasks.weights``), per-task dev metrics, the average of main metrics
  (GLUE-style), best checkpoints per task and overall.
- MT-DNN's refinement: with ``refine.steps > 0``, each task is then fine-tuned alone starting
  from the jointly trained encoder, in ``<workdir>/refine/<task>``, and its results are reported
  beside the joint ones.

Research code::

    from jaxtl.regimes import multitask
    results = multitask.run(config, workdir)
"""

from __future__ import annotations

import logging
from typing import Any

import ml_collections

from jaxtl import class_weights, report, stages, train
from jaxtl.data import mixture
from jaxtl.data.prepare import TaskData
from jaxtl.run import Run, finish, prepare, results_table

log = logging.getLogger(__name__)


def add_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The multitask keys, added to ``jaxtl.config.base_config()``."""
    c.tasks = ml_collections.ConfigDict()
    c.tasks.names = ("builtin/sentiment", "builtin/similarity", "builtin/ner")
    c.tasks.weights = ""  # per-task loss weights "NAME=W,NAME=W" (task or spec name), default 1
    c.mixture = ml_collections.ConfigDict()
    # proportional | temperature | uniform | round_robin | annealed
    c.mixture.scheme = "temperature"
    c.mixture.temperature = 2.0
    c.refine = ml_collections.ConfigDict()
    c.refine.steps = 0  # >0: MT-DNN refinement, each task fine-tuned alone for this many steps
    c.refine.lr = 2e-5
    return c


def parse_weights(text: str, names: list[str]) -> dict[str, float]:
    """``tasks.weights`` ("glue/rte=2,mine=0.5") as {task name: weight}, checked."""
    weights = {}
    for item in filter(None, (x.strip() for x in str(text).split(","))):
        name, sep, value = item.rpartition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"tasks.weights: {item!r} is not NAME=WEIGHT (e.g. glue/rte=2)")
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"tasks.weights names {sorted(unknown)}, not in the run's tasks {names}")
    return weights


def joint_stage(config: ml_collections.ConfigDict, task_list: list[TaskData], params: Any,
                name: str = "multitask") -> train.Stage:  # fmt: skip
    """All tasks together, drawn by ``config.mixture``, weighted by ``tasks.weights``."""
    names = [td.task.name for td in task_list]
    weights = parse_weights(config.tasks.weights, names)
    mix = mixture.Mixture([td.train_size for td in task_list], scheme=config.mixture.scheme,
                          temperature=config.mixture.temperature,
                          total_steps=max(config.train.steps, 1))  # fmt: skip
    log.info("mixture %s: %s", config.mixture.scheme,
             {n: round(float(p), 4) for n, p in zip(names, mix.probabilities(0))})  # fmt: skip
    return stages.mixture_stage(
        name, config.train.steps, task_list, task_list, params, config, config.optim,
        eval_every=config.train.eval_every, weights=weights, epochs=config.train.epochs,
        eval_per_epoch=config.train.eval_per_epoch,
    )  # fmt: skip


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    r = prepare(config, workdir, config.tasks.names)
    results = finish(r, [joint_stage(config, r.tasks, r.params)], "multitask: dev results")
    out: dict[str, Any] = {"joint": results}
    if config.refine.steps > 0:
        out["refined"] = refine(r)
    return out


def refine(joint: Run) -> dict[str, Any]:
    """MT-DNN's second stage: fine-tune each task alone from the jointly trained model."""
    config, workdir = joint.config, joint.workdir
    refined: dict[str, dict[str, float]] = {}
    weights = parse_weights(config.tasks.weights, [t.task.name for t in joint.tasks])
    for td, name in zip(joint.tasks, config.tasks.names):
        c = ml_collections.ConfigDict(config.to_dict())
        c.tasks.names = (name,)  # the task as named in the config (a spec string stays one)
        # The joint run's per-task settings, restricted to this task (the others are not in
        # this run: naming them is an error).
        own = td.task.name
        c.tasks.weights = f"{own}={weights[own]}" if own in weights else ""
        c.train.class_weights = class_weights.restrict(config.train.class_weights, own)
        c.train.steps = config.refine.steps
        c.train.epochs = 0.0  # refine.steps is the refinement's length
        c.optim.lr = config.refine.lr
        c.refine.steps = 0
        # The joint model to refine: its selected (best) params with train.restore_best.
        best = workdir / "best" / "multitask"
        c.model.init_from = str(best if config.train.restore_best and best.exists()
                                else workdir / "checkpoints")  # fmt: skip
        c.model.init_from_skip = ()  # the joint model whole: the user's skip was for stage 1
        r = prepare(c, workdir / "refine" / td.key, c.tasks.names)
        stage = joint_stage(c, r.tasks, r.params, name=f"refine-{td.key}")
        res = finish(r, [stage], f"refine {td.task.name}: dev results")
        refined.update({k: v for k, v in res.items() if k != "average"})
    report.write_json(workdir / "results_refined.json", refined)
    if report.is_chief():
        print(results_table(refined, "multitask + refinement: dev results"))
    return refined
