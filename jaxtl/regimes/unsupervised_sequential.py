"""Unsupervised pretraining, then adaptation (ELMo, ULMFiT, GPT, BERT): LM on text, then the target.

A run has two stages (three with ``lm_finetune``) on one model (encoder + tied LM head + one
head per target task):

1. ``pretrain``: language modelling on the unlabelled corpus ``pretrain.corpus`` (default
   ``builtin/corpus``; ``wikitext`` or ``text`` with ``data.dir``), packed into blocks of
   ``pretrain.block_size`` tokens — masked LM for the BERT family (15% of tokens, 80/10/10,
   ``pretrain.whole_word`` for whole-word masking, fresh masks every batch) or causal LM for
   GPT-2 (``pretrain.objective``: auto | mlm | clm), or UNILM (``unilm``: one encoder under
   bidirectional, seq2seq and left-to-right / right-to-left attention masks, mixed per batch by
   ``pretrain.unilm``; :mod:`jaxtl.objectives.unilm`), or MASS (``mass``: a span of
   ``pretrain.mass_span`` of each line's words masked for the encoder and predicted by a
   Transformer decoder, ``model.decoder``; :mod:`jaxtl.objectives.mass`). It starts from the
   checkpoint's own LM head when it has one and from a fresh head otherwise; with a pretrained checkpoint this is
   ULMFiT's "LM fine-tuning on target-domain text". ``pretrain.from_scratch=True`` starts from
   a random encoder built from the checkpoint's config instead, to show what pretraining buys.
   Optimisation: ``pretrain.optim`` (a full ``optim`` block); the target heads are frozen.
   Dev (pseudo-)perplexity on the corpus' dev split is logged and reported.
   ``pretrain.steps=0`` skips the stage: load the HF weights, then adapt. ELMo's biLM
   (``jaxtl_bilstm`` with ``independent_directions``) trains as ``bilm`` (forward and backward
   LM losses, one tied softmax) and ULMFiT's AWD-LSTM as ``clm``, both chosen by ``auto``
   (``configs/unsupervised_sequential_{elmo,ulmfit}.py``; ``model.name="new:…"`` builds them,
   :mod:`jaxtl.models.scratch`).
1b. ``lm_finetune`` (only when ``lm_finetune.steps > 0``): the same LM objective and LM head on
   target-domain text — ``lm_finetune.corpus``, by default (``""``) the target tasks' own input
   text (train lines; dev lines for dev perplexity) — with its own ``lm_finetune.optim``
   (ULMFiT: discriminative LRs + STLR). ULMFiT's stage 2, or domain-adaptive MLM for a BERT
   checkpoint (with ``pretrain.steps=0``).
2. ``adapt``: the target task(s) ``target.tasks`` for ``train.steps`` with the contract's
   adaptation keys at the top level (``optim.strategy``, ``optim.lr``, ``optim.schedule``,
   ``optim.discriminative``, ``model.representation`` …). The LM head is dropped from the loss
   and frozen (no optimizer state, see ``plan.json``) and the task heads start fresh on the
   pretrained encoder: "remove the pretraining output layer and add task-specific layers".

``results.json`` holds ``{corpus: {"perplexity": …}}`` after stage 1 and the target tasks'
dev metrics after stage 2. With ``export_dir`` (every regime) the adapted encoder is saved in
Hugging Face layout (loadable by ``transformers.AutoModel``) with one task model per target. The LM stage is the
:class:`~jaxtl.objectives.LanguageModelling` objective, the same one the self-supervised
regime's ``aux_lm`` uses.

Research code::

    from jaxtl.regimes import unsupervised_sequential
    results = unsupervised_sequential.run(config, workdir)
"""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxtl import partition, stages
from jaxtl.models import lm as lm_lib
from jaxtl.objectives import LanguageModelling, Objective
from jaxtl.objectives.language_model import KINDS as LM_KINDS
from jaxtl.objectives.mass import Mass
from jaxtl.objectives.unilm import PAPER_MIX, Unilm
from jaxtl.run import finish, prepare


def add_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The unsupervised-sequential keys, added to ``jaxtl.config.base_config()``."""
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.corpus = "builtin/corpus"  # an lm-kind task: builtin/corpus | wikitext | text
    c.pretrain.steps = 200  # 0 = no LM stage (adapt the checkpoint as it is)
    c.pretrain.epochs = 0.0  # >0 (with steps > 0): passes over the corpus instead of steps
    c.pretrain.objective = "auto"  # auto (clm for GPT-2, else mlm) | mlm | clm | unilm
    # objective=unilm: weights of its attention-mask kinds per batch (the paper's by default)
    c.pretrain.unilm = ml_collections.ConfigDict(dict(PAPER_MIX))
    c.pretrain.block_size = 128  # tokens per packed LM block (MLM: including [CLS]/[SEP])
    c.pretrain.mlm_prob = 0.15
    c.pretrain.mass_span = 0.5  # objective=mass: share of each sentence's words masked as a span
    c.pretrain.whole_word = False  # whole-word masking (WordPiece ##, SentencePiece ▁, BPE Ġ)
    c.pretrain.from_scratch = False  # random encoder from the checkpoint's config.json
    c.pretrain.eval_every = 0  # 0 = dev perplexity at the end of the stage only
    c.pretrain.optim = partition.default_optim_config()
    c.pretrain.optim.lr = 1e-4
    # Optional middle stage: LM fine-tuning on target-domain text (ULMFiT's stage 2; domain-
    # adaptive MLM), same LM objective and head as pretrain; off with steps=0.
    c.lm_finetune = ml_collections.ConfigDict()
    c.lm_finetune.steps = 0
    c.lm_finetune.epochs = 0.0  # >0 (with steps > 0): passes over its text instead of steps
    c.lm_finetune.corpus = ""  # "" = the target tasks' own input text; else any lm corpus
    c.lm_finetune.block_size = 128
    c.lm_finetune.eval_every = 0
    c.lm_finetune.optim = partition.default_optim_config()
    c.lm_finetune.optim.lr = 1e-4
    c.target = ml_collections.ConfigDict()
    c.target.tasks = ("builtin/sentiment",)
    c.mixture = ml_collections.ConfigDict()  # how several target tasks share the adapt stage
    c.mixture.scheme = "proportional"
    c.mixture.temperature = 2.0
    return c


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    if not config.target.tasks:
        raise ValueError("target.tasks is empty: name at least one target task")
    if config.pretrain.steps < 0:
        raise ValueError(f"pretrain.steps must be >= 0, got {config.pretrain.steps}")
    if config.lm_finetune.steps < 0:
        raise ValueError(f"lm_finetune.steps must be >= 0, got {config.lm_finetune.steps}")
    p, f = config.pretrain, config.lm_finetune
    lm: Objective | None = None
    if p.steps > 0 and p.objective == "unilm":  # jaxtl.objectives.unilm
        lm = Unilm(p.corpus, block_size=p.block_size, mlm_prob=p.mlm_prob,
                   whole_word=p.whole_word, mix=p.unilm.to_dict())  # fmt: skip
    elif p.steps > 0 and p.objective == "mass":  # masked-span seq2seq: jaxtl.objectives.mass
        lm = Mass(p.corpus, span=p.mass_span)
    elif p.steps > 0:
        lm = LanguageModelling(p.corpus, kind=p.objective, block_size=p.block_size,
                               mlm_prob=p.mlm_prob, whole_word=p.whole_word)  # fmt: skip
    ft = None
    if f.steps > 0 and p.steps > 0 and p.objective == "mass":
        raise ValueError(
            "lm_finetune.steps > 0 needs an LM head; pretrain.objective=mass trains a decoder "
            "instead: set lm_finetune.steps=0"
        )
    if f.steps > 0:  # the same LM (UNILM fine-tunes as its masked LM) on target-domain text
        kind = p.objective if p.objective in LM_KINDS else "auto"
        ft = LanguageModelling(f.corpus, kind=kind, block_size=f.block_size,
                               mlm_prob=p.mlm_prob, whole_word=p.whole_word)  # fmt: skip
    optims = tuple(o.optim for o, on in ((p, lm), (f, ft)) if on is not None) + (config.optim,)
    # The LM loader (so that pretrain.from_scratch applies) unless MASS runs on a family
    # without an LM head (T5): MASS trains a new decoder, not the LM head.
    lm_head = not (isinstance(lm, Mass) and not p.from_scratch
                   and not lm_lib.has_lm_head(config.model.name))  # fmt: skip
    r = prepare(config, workdir, config.target.tasks, objective=lm or ft, optims=optims,
                lm_head=lm_head, from_scratch=p.from_scratch)  # fmt: skip
    if ft is not None and lm is not None:  # a second stream through the same LM head
        ft.setup(r.model.encoder, r.tokenizer, r.tasks, config)
        r.streams.append(ft.stream(config, r.tokenizer, index=len(r.all_tasks),
                                   seed=config.seed * 1000 + 998))  # fmt: skip
    plan = []
    if lm is not None:
        # Target heads and the representation are unused while pretraining: frozen, no state.
        optim = stages.freeze_rules(p.optim, [r"^representation/"], "unused_while_pretraining")
        plan.append(stages.mixture_stage(
            "pretrain", p.steps, [lm.data], r.all_tasks, r.params, config, optim,
            eval_every=p.eval_every, frozen_name="unused_while_pretraining",
            epochs=p.epochs, epochs_key="pretrain.epochs",
        ))  # fmt: skip
    if ft is not None:
        optim = stages.freeze_rules(f.optim, [r"^representation/"], "unused_while_pretraining")
        plan.append(stages.mixture_stage(
            "lm_finetune", f.steps, [ft.data], r.all_tasks, r.params, config, optim,
            eval_every=f.eval_every, frozen_name="unused_while_pretraining",
            epochs=f.epochs, epochs_key="lm_finetune.epochs",
        ))  # fmt: skip
    # "Remove the pretraining output layer and add task layers": the LM head is frozen.
    plan.append(stages.mixture_stage(
        "adapt", config.train.steps, r.tasks, r.all_tasks, r.params, config, config.optim,
        eval_every=config.train.eval_every, frozen_name="lm_head_dropped",
        epochs=config.train.epochs,
        eval_per_epoch=config.train.eval_per_epoch,
    ))  # fmt: skip
    return finish(r, plan, "unsupervised sequential: dev results")
