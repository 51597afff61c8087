"""Unsupervised pretraining, then adaptation (ELMo, ULMFiT, GPT, BERT): LM on text, then the target.

A run has two stages on one model (encoder + tied LM head + one head per target task):

1. ``pretrain``: language modelling on the unlabelled corpus ``pretrain.corpus`` (default
   ``builtin/corpus``; ``wikitext`` or ``text`` with ``data.dir``), packed into blocks of
   ``pretrain.block_size`` tokens — masked LM for the BERT family (15% of tokens, 80/10/10,
   ``pretrain.whole_word`` for whole-word masking, fresh masks every batch) or causal LM for
   GPT-2 (``pretrain.objective``: auto | mlm | clm). It starts from the checkpoint's own LM head
   when it has one and from a fresh head otherwise; with a pretrained checkpoint this is
   ULMFiT's "LM fine-tuning on target-domain text". ``pretrain.from_scratch=True`` starts from
   a random encoder built from the checkpoint's config instead, to show what pretraining buys.
   Optimisation: ``pretrain.optim`` (a full ``optim`` block); the target heads are frozen.
   Dev (pseudo-)perplexity on the corpus' dev split is logged and reported.
   ``pretrain.steps=0`` skips the stage: load the HF weights, then adapt.
2. ``adapt``: the target task(s) ``target.tasks`` for ``train.steps`` with the contract's
   adaptation keys at the top level (``optim.strategy``, ``optim.lr``, ``optim.schedule``,
   ``optim.discriminative``, ``model.representation`` …). The LM head is dropped from the loss
   and frozen (no optimizer state, see ``plan.json``) and the task heads start fresh on the
   pretrained encoder: "remove the pretraining output layer and add task-specific layers".

``results.json`` holds ``{corpus: {"perplexity": …}}`` after stage 1 and the target tasks'
dev metrics after stage 2. With ``export_dir`` the adapted encoder is saved in Hugging Face
layout (``models.save_pretrained``; loadable by ``transformers.AutoModel``).

Research code::

    from jaxtl.regimes import unsupervised_sequential
    results = unsupervised_sequential.run(config, workdir)
"""

from __future__ import annotations

import logging
from typing import Any

import ml_collections
from etils import epath
from flax import nnx

from jaxtl import checkpoint as ckpt_lib
from jaxtl import models, partition, report, train
from jaxtl.data import feed
from jaxtl.regimes import common, lm

log = logging.getLogger(__name__)


def add_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The unsupervised-sequential keys, added to ``jaxtl.config.base_config()``."""
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.corpus = "builtin/corpus"  # an lm-kind task: builtin/corpus | wikitext | text
    c.pretrain.steps = 200  # 0 = no LM stage (adapt the checkpoint as it is)
    c.pretrain.objective = "auto"  # auto (clm for GPT-2, else mlm) | mlm | clm
    c.pretrain.block_size = 128  # tokens per packed LM block (MLM: including [CLS]/[SEP])
    c.pretrain.mlm_prob = 0.15
    c.pretrain.whole_word = False  # whole-word masking (WordPiece "##" continuations)
    c.pretrain.from_scratch = False  # random encoder from the checkpoint's config.json
    c.pretrain.eval_every = 0  # 0 = dev perplexity at the end of the stage only
    c.pretrain.optim = partition.default_optim_config()
    c.pretrain.optim.lr = 1e-4
    c.target = ml_collections.ConfigDict()
    c.target.tasks = ("builtin/sentiment",)
    c.mixture = ml_collections.ConfigDict()  # how several target tasks share the adapt stage
    c.mixture.scheme = "proportional"
    c.mixture.temperature = 2.0
    c.export_dir = ""  # save the adapted encoder here in HF layout (config.json + safetensors)
    return c


def pretrain_stage(config, lm_td: common.TaskData, targets, params) -> train.Stage:
    others = [td.key for td in targets]
    optim = common.freeze_rules(
        config.pretrain.optim,
        common.heads_pattern(others) + [r"^representation/"],
        "unused_while_pretraining",
    )
    all_tasks = list(targets) + [lm_td]
    return train.Stage(
        name="pretrain",
        steps=config.pretrain.steps,
        feed=feed.MixtureFeed([lm_td.task.name], [lm_td.train_iter], task_ids=[lm_td.index]),
        loss_fn=common.multitask_loss(all_tasks),
        predict_fn=common.multitask_predict(all_tasks),
        optim=optim,
        eval_sets=common.eval_sets([lm_td]),
        eval_every=config.pretrain.eval_every,
        active_fn=common.heads_active_fn(params, all_tasks),
    )


def adapt_stage(config, lm_td: common.TaskData | None, targets, params) -> train.Stage:
    """The target task(s) with the contract's adaptation keys; the LM head is dropped (frozen,
    no optimizer state) — "remove the pretraining output layer and add task layers"."""
    all_tasks = list(targets) + ([lm_td] if lm_td is not None else [])
    return common.mixture_stage(
        "adapt", config.train.steps, targets, all_tasks, params, config, config.optim,
        eval_every=config.train.eval_every, frozen_name="lm_head_dropped",
    )  # fmt: skip


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    workdir = epath.Path(workdir)
    if not config.target.tasks:
        raise ValueError("target.tasks is empty: name at least one target task")
    if config.pretrain.steps < 0:
        raise ValueError(f"pretrain.steps must be >= 0, got {config.pretrain.steps}")
    mesh = common.setup_mesh(config)
    lmm = lm.load_lm_model(config, from_scratch=config.pretrain.from_scratch)
    targets = common.prepare_tasks(config.target.tasks, config, lmm.tokenizer)
    lm_td = None
    heads = {}
    if config.pretrain.steps > 0:
        objective = lm.objective_for(lmm.encoder, config.pretrain.objective)
        masking = None
        if objective == "mlm":
            masking = lm.Masking.for_tokenizer(
                lmm.tokenizer,
                lmm.encoder.tied_embedding().shape[0],
                prob=config.pretrain.mlm_prob,
                whole_word=config.pretrain.whole_word,
            )
        lm_td = lm.lm_task_data(
            config,
            lmm.tokenizer,
            config.pretrain.corpus,
            index=len(targets),
            objective=objective,
            block_size=config.pretrain.block_size,
            masking=masking,
            seed=config.seed * 1000 + 999,
        )
        heads[lm.LM_KEY] = lmm.head
    model = common.build_model(lmm.encoder, targets, config, extra_heads=heads)
    if config.model.init_from:
        rep = common.init_from_checkpoint(model, config.model.init_from, workdir)
        log.info("init_from %s: %s", config.model.init_from, rep.summary())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))

    stages = []
    if lm_td is not None:
        stages.append(pretrain_stage(config, lm_td, targets, params))
    stages.append(adapt_stage(config, lm_td, targets, params))
    results = common.run_stages(model, stages, config, workdir, mesh)
    if config.export_dir and report.is_chief():
        export(model, params, workdir, config.export_dir, lmm)
    if report.is_chief():
        print(common.results_table(results, "unsupervised sequential: dev results"))
    return results


def export(model: nnx.Module, params: Any, workdir: epath.Path, out_dir: str, lmm) -> None:
    """Save the adapted encoder (the run's last checkpoint) in Hugging Face layout."""
    final, _ = ckpt_lib.load_params(workdir / "checkpoints", params)
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, final)
    nnx.update(model, state)
    out = models.save_pretrained(
        model.encoder, out_dir, tokenizer=lmm.tokenizer, hf_config=lmm.hf_config
    )
    log.info("adapted encoder exported to %s", out)
