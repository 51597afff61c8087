"""Supervised pretraining, then adaptation: a labelled source task first, then the target.

Intermediate-task training (STILTs, Phang et al. 2018: e.g. NLI before RTE) and, in vision,
ImageNet pretraining are of this kind; it works best when source and target are related. A run
has two stages on one model:

1. ``source``: the source task(s) (``source.tasks``; several are trained as a mixture), for
   ``source.steps`` with ``source.optim``;
2. ``target``: the target task(s) (``target.tasks``) for ``train.steps`` with the top-level
   ``optim`` — so every adaptation knob of the contract (``optim.strategy`` = feature extraction,
   chain-thaw, gradual unfreezing, discriminative LRs, STLR, ``model.representation`` …) applies
   to the adaptation stage.

The encoder carries over from stage 1 to stage 2. Each task has its own head; the source heads
are frozen in the target stage (and the target heads in the source stage), which is the
"remove the old output layer, add task-specific layers" of the taxonomy: the new head starts
fresh on the transferred encoder, and ``plan.json`` shows the old one as frozen with no
optimizer state. ``results.json`` reports the source tasks' dev metrics after stage 1 and the
target tasks' after stage 2.

A source may be a translation task (CoVe, ``configs/supervised_sequential_cove.py``): its head
is a decoder (``model.decoder``, :mod:`jaxtl.models.seq2seq`) over the encoder's last layer,
selected on dev BLEU; the target stage then reads the encoder, typically frozen
(``optim.strategy=feature_extraction``) with ``model.representation=cove``.

Sources with a different structure (a checkpoint of another jaxtl run) come in through
``model.init_from`` (params-only, structure may differ; see
``transfer_report.json``), then this regime's stages run as usual (``source.steps=0`` skips
stage 1).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxtl import partition, stages
from jaxtl.run import finish, prepare


def add_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The supervised-sequential keys, added to ``jaxtl.config.base_config()``."""
    c.source = ml_collections.ConfigDict()
    c.source.tasks = ("builtin/entailment",)
    c.source.steps = 200
    c.source.epochs = 0.0  # >0: passes over the source tasks' data instead of source.steps
    c.source.eval_every = 0
    c.source.optim = partition.default_optim_config()
    c.source.optim.lr = 1e-4
    c.target = ml_collections.ConfigDict()
    c.target.tasks = ("builtin/sentiment",)
    c.mixture = ml_collections.ConfigDict()
    c.mixture.scheme = "proportional"
    c.mixture.temperature = 2.0
    return c


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    overlap = set(config.source.tasks) & set(config.target.tasks)
    if overlap:
        raise ValueError(f"source.tasks and target.tasks overlap: {sorted(overlap)}")
    if not config.target.tasks:
        raise ValueError("target.tasks is empty: name at least one target task")
    with_source = config.source.steps > 0 and bool(config.source.tasks)
    optims = ((config.source.optim,) if with_source else ()) + (config.optim,)
    r = prepare(config, workdir, list(config.source.tasks) + list(config.target.tasks),
                optims=optims)  # fmt: skip
    n_src = len(config.source.tasks)
    source, target = r.tasks[:n_src], r.tasks[n_src:]
    plan = []
    if with_source:
        plan.append(stages.mixture_stage(
            "source", config.source.steps, source, r.tasks, r.params, config,
            config.source.optim, eval_every=config.source.eval_every,
            epochs=config.source.epochs, epochs_key="source.epochs",
        ))  # fmt: skip
    plan.append(stages.mixture_stage(
        "target", config.train.steps, target, r.tasks, r.params, config, config.optim,
        eval_every=config.train.eval_every, epochs=config.train.epochs,
        eval_per_epoch=config.train.eval_per_epoch,
    ))  # fmt: skip
    return finish(r, plan, "supervised sequential: dev results")
