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
from etils import epath

from jaxtl import report, train
from jaxtl.data import mixture
from jaxtl.regimes import common

log = logging.getLogger(__name__)


def add_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The multitask keys, added to ``jaxtl.config.base_config()``."""
    c.tasks = ml_collections.ConfigDict()
    c.tasks.names = ("builtin/sentiment", "builtin/similarity", "builtin/ner")
    c.tasks.weights = ml_collections.ConfigDict()  # {task name: loss weight}, default 1.0
    c.mixture = ml_collections.ConfigDict()
    # proportional | temperature | uniform | round_robin | annealed
    c.mixture.scheme = "temperature"
    c.mixture.temperature = 2.0
    c.refine = ml_collections.ConfigDict()
    c.refine.steps = 0  # >0: MT-DNN refinement, each task fine-tuned alone for this many steps
    c.refine.lr = 2e-5
    return c


def _mixture(config, task_list):
    sizes = [td.train_size for td in task_list]
    return mixture.Mixture(
        sizes,
        scheme=config.mixture.scheme,
        temperature=config.mixture.temperature,
        seed=config.seed,
        total_steps=config.train.steps,
    )


def joint_stage(config, task_list, params) -> train.Stage:
    names = [td.task.name for td in task_list]
    weights = {k: float(v) for k, v in config.tasks.weights.items()}
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"tasks.weights names {sorted(unknown)}, not in tasks.names {names}")
    stage = common.mixture_stage(
        "multitask", config.train.steps, task_list, task_list, params, config, config.optim,
        eval_every=config.train.eval_every, weights=weights,
    )  # fmt: skip
    probs = _mixture(config, task_list).probabilities(0)
    log.info("mixture %s: %s", config.mixture.scheme,
             {n: round(float(p), 4) for n, p in zip(names, probs)})  # fmt: skip
    return stage


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    from flax import nnx

    workdir = epath.Path(workdir)
    mesh = common.setup_mesh(config)
    pre = common.load_encoder(config)
    task_list = common.prepare_tasks(config.tasks.names, config, pre.tokenizer)
    model = common.build_model(pre.model, task_list, config)
    if config.model.init_from:
        rep = common.init_from_checkpoint(model, config.model.init_from, workdir)
        log.info("init_from %s: %s", config.model.init_from, rep.summary())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    stage = joint_stage(config, task_list, params)
    results = common.run_stages(model, [stage], config, workdir, mesh)
    counts = stage.feed.counts
    report.write_json(workdir / "task_counts.json", counts)
    out: dict[str, Any] = {"joint": results, "task_counts": counts}
    if report.is_chief():
        print(common.results_table({k: v for k, v in results.items()}, "multitask: dev results"))
        print("batches drawn per task:", counts)
    if config.refine.steps > 0:
        out["refined"] = refine(config, workdir)
    return out


def refine(config: ml_collections.ConfigDict, workdir: epath.Path) -> dict[str, Any]:
    """MT-DNN's second stage: fine-tune each task alone from the jointly trained model."""
    refined: dict[str, dict[str, float]] = {}
    for name in config.tasks.names:
        c = ml_collections.ConfigDict(config.to_dict())
        c.tasks.names = (name,)
        c.train.steps = config.refine.steps
        c.optim.lr = config.refine.lr
        c.refine.steps = 0
        c.model.init_from = str(workdir / "checkpoints")
        sub = workdir / "refine" / common.head_key(name)
        mesh = common.setup_mesh(c)
        pre = common.load_encoder(c)
        task_list = common.prepare_tasks(c.tasks.names, c, pre.tokenizer)
        model = common.build_model(pre.model, task_list, c)
        rep = common.init_from_checkpoint(model, c.model.init_from, sub)
        log.info("refine %s from the joint model: %s", name, rep.summary())
        from flax import nnx

        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        stage = joint_stage(c, task_list, params)
        stage.name = f"refine-{common.head_key(name)}"
        res = common.run_stages(model, [stage], c, sub, mesh)
        refined.update({k: v for k, v in res.items() if k != "average"})
    report.write_json(workdir / "results_refined.json", refined)
    if report.is_chief():
        print(common.results_table(refined, "multitask + refinement: dev results"))
    return refined
