"""Self-supervised joint training: the labelled target task and unlabelled text in one stage.

One stage whose feed alternates labelled target batches and unlabelled batches by a fixed
pattern (``unlabelled.ratio`` unlabelled batches per labelled one, e.g. 0.5 = one unlabelled
batch every two labelled; :func:`jaxtl.data.mixture.ratio_pattern`). The unlabelled stream is
one more task index of the loss's ``lax.switch``, so one compiled step serves both streams.
``objective`` picks what is learnt from the unlabelled text:

- ``aux_lm``: an auxiliary language-modelling loss (masked LM for the BERT family, causal LM for
  GPT-2) on packed blocks of the corpus, weighted by ``unlabelled.weight``, through an LM head
  tied to the encoder's embeddings (the checkpoint's own head when it has one).
- ``consistency`` (UDA, Xie et al. 2019, with token noise instead of back-translation):
  ``weight * KL(p(y|x) || p(y|noised x))`` where the clean prediction is a stop-gradient target
  and the noise replaces each real non-special token with probability ``unlabelled.noise`` by
  [MASK] or a random token (even odds). It is applied by every target task's own head:
  per sentence for classification, per real token for tagging, a squared difference for
  regression. The clean prediction reuses the step's forward pass (dropout on in training, as
  in UDA); the noised one is a second encoder pass, run on unlabelled steps only.

Unlabelled lines for ``consistency`` and ``cvt`` are tokenised one per example (like the
target's sentences); for ``aux_lm`` they are packed into ``unlabelled.block_size``-token blocks.
Each objective is an :class:`~jaxtl.objectives.Objective` (:mod:`jaxtl.objectives`); this module
picks one by name from ``OBJECTIVES`` and never branches on it.
``results.json`` holds the target tasks' dev metrics (and the corpus' dev perplexity with
``aux_lm``); ``task_counts.json`` the batches drawn per stream.

- ``cvt`` (Cross-View Training, Clark et al. 2018; :mod:`jaxtl.objectives.cvt`): auxiliary heads,
  one per target task and view in ``cvt.views``, each seeing a restricted view of the input
  (left / right context, no own word, a dropped span or subset of tokens) learn to match the
  primary head's stop-gradient prediction on the full view, weighted by ``unlabelled.weight``.
  The primary heads get no gradient from it; the encoder does, through the views. The auxiliary
  heads (``heads/<task>__cvt_<view>/``) update on unlabelled steps only.

Research code::

    from jaxtl.regimes import self_supervised
    results = self_supervised.run(config, workdir)
"""

from __future__ import annotations

import fractions
from collections.abc import Callable
from typing import Any

import ml_collections

from jaxtl import stages
from jaxtl.data import mixture
from jaxtl.objectives import Consistency, CrossView, LanguageModelling, Objective, cvt
from jaxtl.run import finish, prepare

# objective name -> its object, from the config's unlabelled.* keys
OBJECTIVES: dict[str, Callable[[ml_collections.ConfigDict], Objective]] = {
    "aux_lm": lambda u: LanguageModelling(
        u.corpus,
        kind=u.lm_objective,
        block_size=u.block_size,
        mlm_prob=u.mlm_prob,
        whole_word=u.whole_word,
        weight=u.weight,
    ),
    "consistency": lambda u: Consistency(u.corpus, noise=u.noise, weight=u.weight),
    "cvt": lambda u: CrossView(u.corpus, weight=u.weight),
}


def add_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The self-supervised keys, added to ``jaxtl.config.base_config()``."""
    c.objective = "aux_lm"  # aux_lm | consistency | cvt
    c.target = ml_collections.ConfigDict()
    c.target.tasks = ("builtin/sentiment",)
    c.unlabelled = ml_collections.ConfigDict()
    c.unlabelled.corpus = "builtin/corpus"
    c.unlabelled.ratio = 1.0  # unlabelled batches per labelled batch (a fraction: 0.5, 2, 1.5)
    c.unlabelled.weight = 1.0  # weight of the unlabelled loss
    c.unlabelled.noise = 0.15  # consistency: probability that a token is noised
    c.unlabelled.lm_objective = "auto"  # aux_lm: auto (clm for GPT-2, else mlm) | mlm | clm
    c.unlabelled.block_size = 64  # aux_lm: tokens per packed block
    c.unlabelled.mlm_prob = 0.15
    c.unlabelled.whole_word = False
    # cvt: the views; each target task trains the ones of its kind (tagging: forward, backward,
    # future, past, no_self; classification / regression: span, subset); see objectives.cvt.
    c.cvt = ml_collections.ConfigDict()
    c.cvt.views = cvt.TAGGING_VIEWS[:4] + cvt.SENTENCE_VIEWS
    c.cvt.span_fraction = 0.3  # span: fraction of a row's real tokens dropped as one span
    c.cvt.subset_drop = 0.3  # subset: probability that a real token is dropped
    c.cvt.no_self_rate = 0.15  # no_self: fraction of real tokens whose own word is masked
    c.mixture = ml_collections.ConfigDict()  # how several target tasks share the labelled steps
    c.mixture.scheme = "proportional"
    c.mixture.temperature = 2.0
    return c


def stream_pattern(ratio: float) -> tuple[str, ...]:
    """``ratio`` unlabelled batches per labelled one as a repeating pattern of stream names."""
    if ratio <= 0:
        raise ValueError(f"unlabelled.ratio must be > 0, got {ratio}")
    frac = fractions.Fraction(ratio).limit_denominator(16)
    if frac == 0:
        raise ValueError(f"unlabelled.ratio={ratio} is too small (under 1/16)")
    return mixture.ratio_pattern(labelled=frac.denominator, unlabelled=frac.numerator)


def objective_from_config(config: ml_collections.ConfigDict) -> Objective:
    """The objective ``config.objective`` names, checked before any model or data work."""
    if not config.target.tasks:
        raise ValueError("target.tasks is empty: name at least one target task")
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective={config.objective!r}: choose one of {tuple(OBJECTIVES)}")
    if config.unlabelled.corpus in config.target.tasks:
        raise ValueError(f"unlabelled.corpus {config.unlabelled.corpus!r} is also a target task")
    stream_pattern(config.unlabelled.ratio)
    return OBJECTIVES[config.objective](config.unlabelled)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    objective = objective_from_config(config)
    r = prepare(config, workdir, config.target.tasks, objective=objective, joint_stream=True)
    stage = stages.mixture_stage(
        "joint", config.train.steps, r.tasks, r.all_tasks, r.params, config, config.optim,
        eval_every=config.train.eval_every, objective=objective,
        stream_pattern=stream_pattern(config.unlabelled.ratio), epochs=config.train.epochs,
        eval_per_epoch=config.train.eval_per_epoch,
    )  # fmt: skip
    return finish(r, [stage], f"self-supervised ({config.objective}): dev results")
