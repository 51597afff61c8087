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
``results.json`` holds the target tasks' dev metrics (and the corpus' dev perplexity with
``aux_lm``); ``task_counts.json`` the batches drawn per stream.

- ``cvt`` (Cross-View Training, Clark et al. 2018; :mod:`jaxtl.regimes.cvt`): auxiliary heads,
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
import logging
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from jaxtl import report, train
from jaxtl.data import feed, mixture, tokenize
from jaxtl.regimes import common, cvt, lm

log = logging.getLogger(__name__)

OBJECTIVES = ("aux_lm", "consistency", "cvt")
# task key of the consistency / cvt stream (it has no head of its own)
UNLABELLED_KEY = "unlabelled"


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
    # future, past, no_self; classification / regression: span, subset); see jaxtl.regimes.cvt.
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


# ------------------------------------------------------------------------------------ losses
_kl = cvt.kl  # KL(p || q) over the last axis, p the stop-gradient target


def consistency_branch(
    model: nnx.Module,
    targets: Sequence[common.TaskData],
    batch: dict,
    *,
    noise: float,
    weight: float,
    special_ids: np.ndarray,
    vocab_size: int,
    mask_id: int | None,
    noise_key: jax.Array,
    dropout_key: jax.Array,
    train_mode: bool,
):
    """The unlabelled branch of ``consistency``: ``f((feats, last)) -> (loss_sum, den)``.

    Loss = weight * sum over target heads of the mean divergence (per real row for sentence
    heads, per real non-special token for taggers), times the number of real rows (the
    denominator the step divides by).
    """

    def f(operands):
        feats, _ = operands
        clean = jax.lax.stop_gradient(feats)
        noised_ids = lm.noise_tokens(
            noise_key, batch, noise, special_ids=special_ids, vocab_size=vocab_size,
            mask_id=mask_id,
        )  # fmt: skip
        _, noised = model.features(
            noised_ids,
            batch["attention_mask"],
            batch["token_type_ids"],
            deterministic=not train_mode,
            rngs=nnx.Rngs(dropout=dropout_key),
        )
        w = batch["example_weight"]
        rows = w.sum()
        tokens = lm.real_token_mask(batch, special_ids).astype(jnp.float32)
        total = jnp.zeros((), jnp.float32)
        for td in targets:
            head = model.heads[td.key]
            # The target: the clean prediction without head dropout, never differentiated.
            p = jax.lax.stop_gradient(head(clean, batch["attention_mask"], deterministic=True))
            q = head(
                noised,
                batch["attention_mask"],
                deterministic=not train_mode,
                rngs=nnx.Rngs(dropout=dropout_key),
            )
            kind = td.task.kind
            if kind == "classification":
                per = _kl(p, q)
                total += (per * w).sum() / jnp.maximum(rows, 1.0)
            elif kind == "tagging":
                per = _kl(p, q)
                total += (per * tokens).sum() / jnp.maximum(tokens.sum(), 1.0)
            elif kind == "regression":
                per = (p[..., 0] - q[..., 0]).astype(jnp.float32) ** 2
                total += (per * w).sum() / jnp.maximum(rows, 1.0)
            else:
                raise ValueError(f"consistency: no divergence for {td.task.name} ({kind})")
        return weight * total * rows, rows

    return f


def joint_loss(
    targets: Sequence[common.TaskData],
    unlabelled: common.TaskData,
    objective: str,
    *,
    weight: float,
    noise: float = 0.0,
    special_ids: np.ndarray | None = None,
    vocab_size: int = 0,
    mask_id: int | None = None,
    cvt_settings: cvt.Settings | None = None,
    pad_id: int = 0,
):
    """The stage's loss: target tasks' branches plus the unlabelled branch (index
    ``unlabelled.index``), one ``lax.switch`` on the batch's task id."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    order = sorted([*targets, unlabelled], key=lambda td: td.index)
    if [td.index for td in order] != list(range(len(order))):
        raise ValueError("task indices must be 0..n-1 (targets, then the unlabelled stream)")

    def loss_fn(model, batch, rngs, train_mode):
        out, feats = model.features(
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            deterministic=not train_mode,
            rngs=rngs,
        )
        # Keys are drawn outside the switch: nnx.Rngs cannot advance inside a branch.
        head_key = rngs.dropout()
        branches = []
        for td in order:
            if td is not unlabelled:
                branches.append(
                    common.task_branch(
                        model, td, batch, head_dropout_key=head_key, train_mode=train_mode
                    )
                )
            elif objective == "aux_lm":
                branches.append(
                    common.task_branch(
                        model,
                        td,
                        batch,
                        head_dropout_key=head_key,
                        train_mode=train_mode,
                        weight=weight,
                    )  # fmt: skip
                )
            elif objective == "cvt":
                branches.append(
                    cvt.cvt_branch(
                        model,
                        targets,
                        batch,
                        out.hidden_states,
                        settings=cvt_settings,
                        weight=weight,
                        special_ids=special_ids,
                        mask_id=mask_id,
                        pad_id=pad_id,
                        view_key=rngs.dropout(),
                        dropout_key=rngs.dropout(),
                        train_mode=train_mode,
                    )
                )
            else:
                branches.append(
                    consistency_branch(
                        model,
                        targets,
                        batch,
                        noise=noise,
                        weight=weight,
                        special_ids=special_ids,
                        vocab_size=vocab_size,
                        mask_id=mask_id,
                        noise_key=rngs.dropout(),
                        dropout_key=rngs.dropout(),
                        train_mode=train_mode,
                    )  # fmt: skip
                )
        total, den = jax.lax.switch(batch["task_id"][0], branches, (feats, out.last_hidden_state))
        return total, {"denominator": den}

    return loss_fn


def joint_predict(targets: Sequence[common.TaskData], unlabelled: common.TaskData):
    """Predictions of the target tasks and, with ``aux_lm``, the corpus' dev perplexity. The
    consistency stream has no evaluation; its branch repeats the first target's."""
    order = sorted([*targets, unlabelled], key=lambda td: td.index)

    def predict_fn(model, batch):
        out, feats = model.features(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        branches = [
            common.task_predict_branch(model, td if td.key in model.heads else targets[0], batch)
            for td in order
        ]
        return jax.lax.switch(batch["task_id"][0], branches, (feats, out.last_hidden_state))

    return predict_fn


# ------------------------------------------------------------------------------------ run
def joint_stage(config, targets, unlabelled, params, loss_fn, predict_fn) -> train.Stage:
    pattern = stream_pattern(config.unlabelled.ratio)
    mix = mixture.Mixture(
        [td.train_size for td in targets],
        scheme=config.mixture.scheme,
        temperature=config.mixture.temperature,
        seed=config.seed,
        total_steps=max(config.train.steps, 1),
    )
    n = len(targets)

    def task_for_step(step: int) -> int:
        if mixture.stream_for_step(step, pattern) == "unlabelled":
            return n
        return mix.task_for_step(step)

    owners = {td.key: {td.index} for td in targets}
    if config.objective == "consistency":
        for td in targets:  # the target heads are what the consistency loss trains
            owners[td.key].add(unlabelled.index)
    elif config.objective == "cvt":  # auxiliary heads learn on unlabelled steps only
        for key in params["heads"]:
            if "__cvt_" in key:
                owners[key] = {unlabelled.index}
    else:
        owners[unlabelled.key] = {unlabelled.index}
    evals = list(targets) + ([unlabelled] if unlabelled.eval_batches else [])
    return train.Stage(
        name="joint",
        steps=config.train.steps,
        feed=feed.MixtureFeed(
            [td.task.name for td in targets] + [unlabelled.task.name],
            [td.train_iter for td in targets] + [unlabelled.train_iter],
            task_for_step,
            task_ids=[td.index for td in targets] + [unlabelled.index],
        ),
        loss_fn=loss_fn,
        predict_fn=predict_fn,
        optim=config.optim,
        eval_sets=common.eval_sets(evals),
        eval_every=config.train.eval_every,
        active_fn=lm.active_fn_for(params, owners),
        select="average",
    )


def build(config: ml_collections.ConfigDict):
    """Model, target tasks, unlabelled stream, loss and predict functions of a run."""
    if not config.target.tasks:
        raise ValueError("target.tasks is empty: name at least one target task")
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective={config.objective!r}: choose one of {OBJECTIVES}")
    if config.unlabelled.corpus in config.target.tasks:
        raise ValueError(f"unlabelled.corpus {config.unlabelled.corpus!r} is also a target task")
    if config.objective == "aux_lm":
        lmm = lm.load_lm_model(config)
        encoder, tok = lmm.encoder, lmm.tokenizer
    else:  # no LM head needed: any encoder (BiLSTM too) will do
        pre = common.load_encoder(config)
        encoder, tok = pre.model, pre.tokenizer
    targets = common.prepare_tasks(config.target.tasks, config, tok)
    n = len(targets)
    vocab = int(encoder.tied_embedding().shape[0])
    seed = config.seed * 1000 + 999
    u = config.unlabelled
    heads = {}
    if config.objective == "aux_lm":
        objective = lm.objective_for(encoder, u.lm_objective)
        masking = None
        if objective == "mlm":
            masking = lm.Masking.for_tokenizer(tok, vocab, prob=u.mlm_prob, whole_word=u.whole_word)
        unl = lm.lm_task_data(
            config, tok, u.corpus, index=n, objective=objective, block_size=u.block_size,
            masking=masking, seed=seed,
        )  # fmt: skip
        heads[lm.LM_KEY] = lmm.head
        loss_fn = joint_loss(targets, unl, "aux_lm", weight=u.weight)
    elif config.objective == "cvt":
        settings = cvt.settings_from_config(config, targets, encoder, tok.mask_token_id)
        unl = lm.line_task_data(config, tok, u.corpus, index=n, key=UNLABELLED_KEY, seed=seed)
        loss_fn = joint_loss(
            targets, unl, "cvt", weight=u.weight, special_ids=tokenize.special_ids(tok),
            mask_id=tok.mask_token_id, cvt_settings=settings,
            pad_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
        )  # fmt: skip
    else:
        if not 0.0 <= u.noise < 1.0:
            raise ValueError(f"unlabelled.noise must be in [0, 1), got {u.noise}")
        unl = lm.line_task_data(config, tok, u.corpus, index=n, key=UNLABELLED_KEY, seed=seed)
        loss_fn = joint_loss(
            targets, unl, "consistency", weight=u.weight, noise=u.noise,
            special_ids=tokenize.special_ids(tok), vocab_size=min(vocab, len(tok)),
            mask_id=tok.mask_token_id,
        )  # fmt: skip
    model = common.build_model(encoder, targets, config, extra_heads=heads)
    if config.objective == "cvt":
        cvt.add_aux_heads(model, targets, settings, config)
    return model, targets, unl, loss_fn, joint_predict(targets, unl)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    workdir = epath.Path(workdir)
    mesh = common.setup_mesh(config)
    model, targets, unl, loss_fn, predict_fn = build(config)
    if config.model.init_from:
        rep = common.init_from_checkpoint(model, config.model.init_from, workdir)
        log.info("init_from %s: %s", config.model.init_from, rep.summary())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    stage = joint_stage(config, targets, unl, params, loss_fn, predict_fn)
    results = common.run_stages(model, [stage], config, workdir, mesh)
    counts = stage.feed.counts
    report.write_json(workdir / "task_counts.json", counts)
    if report.is_chief():
        print(common.results_table(results, f"self-supervised ({config.objective}): dev results"))
        print("batches drawn per stream:", counts)
    return results
