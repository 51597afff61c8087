"""Cross-View Training (Clark, Luong, Manning, Le 2018): auxiliary heads on restricted views.

On unlabelled batches each target task gets one auxiliary head per *view*; a view restricts what
of the input the representation at a position (or of a sentence) may have seen. Each auxiliary
head is trained to match the primary head's prediction on the full view, a stop-gradient target:

    loss = weight * sum_views sum_targets mean KL(p_primary(y | x) || p_aux(y | view(x)))

so the primary head gets no gradient from it, the auxiliary heads learn, and the shared encoder
learns representations that are useful from partial views. The auxiliary heads are new
parameters under ``heads/<task>__cvt_<view>/`` (:func:`aux_key`), updated on unlabelled steps only.

Tagging views (per token; the KL is averaged over real, non-special tokens):

- ``forward``: left context, token t sees tokens <= t.
- ``backward``: right context, token t sees tokens >= t.
- ``future``: token t predicted from the ``forward`` view at t-1 (sees tokens < t only).
- ``past``: token t predicted from the ``backward`` view at t+1 (sees tokens > t only).
- ``no_self``: token t predicted without its own word: a random ``cvt.no_self_rate`` of the real
  tokens are replaced by [MASK]; the KL is averaged over those positions only.

For the BiLSTM encoder (``jaxtl_bilstm``) these are the paper's views exactly: the forward and
backward halves of the *first* BiLSTM layer's output (higher layers' forward states have seen
the first layer's backward states, i.e. the whole sentence), shifted by one for future/past;
``no_self`` concatenates the future and past features. They come out of the step's own forward
pass: no extra encoder work. For the BERT family they are honest analogues, not the same thing:
``forward``/``backward`` rerun the encoder with an attention mask that lets query t see keys <= t
(>= t) in every layer, so the whole stack never mixes in the other side; ``future``/``past``
reuse those two passes shifted by one; ``no_self`` is one more pass on the masked input. So a
BERT step on an unlabelled batch costs one encoder pass per needed mask (at most three), and
labelled steps none: the views live in the unlabelled branch of the step's ``lax.switch``. The
attention mask is an input array, so no view adds a compilation.

Sentence views (classification and regression targets; KL per row, a squared difference for
regression):

- ``span``: one contiguous span of ``cvt.span_fraction`` of the real non-special tokens is dropped.
- ``subset``: each real non-special token is dropped with probability ``cvt.subset_drop``.

Dropped tokens are *removed* (the kept ones are moved left, the row is right-padded), rather than
hidden from attention, so the view is well defined for every encoder: the BiLSTM reads sequence
lengths from the mask and GPT-2's last-token pooling assumes right padding.

Auxiliary tagging heads are per-token linear classifiers (no BiLSTM under them even when the
primary head has one: a BiLSTM over a left-context view would read the right context back in).
Auxiliary sentence heads are built like the primary head (:func:`jaxtl.regimes.assembly.make_head`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxtl import assembly, models
from jaxtl.data import tokenize
from jaxtl.data.prepare import TaskData, corpus_lines
from jaxtl.data.tasks import SENTENCE_KINDS
from jaxtl.models import base
from jaxtl.models import bert as bert_lib
from jaxtl.models.bilstm import BiLSTMEncoder
from jaxtl.objectives.base import Objective, divergence, kl, real_token_mask
from jaxtl.objectives.consistency import UNLABELLED_KEY

TAGGING_VIEWS = ("forward", "backward", "future", "past", "no_self")
SENTENCE_VIEWS = ("span", "subset")
VIEWS = TAGGING_VIEWS + SENTENCE_VIEWS

log = logging.getLogger(__name__)


def aux_key(task_key: str, view: str) -> str:
    """The head key of a task's auxiliary head for one view (``glue_sst2__cvt_span``)."""
    return f"{task_key}__cvt_{view}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The views each target task trains (``views[task key]``) and their parameters."""

    views: dict[str, tuple[str, ...]]
    span_fraction: float = 0.3
    subset_drop: float = 0.3
    no_self_rate: float = 0.15


def _encoder_kind(encoder: nnx.Module) -> str:
    if isinstance(encoder, BiLSTMEncoder):
        return "bilstm"
    if isinstance(encoder, bert_lib.BertEncoder):
        return "bert"
    return str(getattr(encoder, "family", type(encoder).__name__))


def settings_from_config(
    config: ml_collections.ConfigDict,
    targets: Sequence[TaskData],
    encoder: nnx.Module,
    mask_id: int | None,
) -> Settings:
    """Checks ``cvt.*`` against the targets and the encoder; each target takes the views that
    apply to its kind (tagging or sentence views), and every target must get at least one."""
    c = config.cvt
    views = tuple(c.views)
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ValueError(f"cvt.views={views!r}: unknown {unknown}; choose from {VIEWS}")
    if len(set(views)) != len(views):
        raise ValueError(f"cvt.views={views!r} names a view twice")
    for name, value, hi in (("span_fraction", c.span_fraction, 1.0),
                            ("subset_drop", c.subset_drop, 1.0),
                            ("no_self_rate", c.no_self_rate, 1.0)):  # fmt: skip
        if not 0.0 < value < hi:
            raise ValueError(f"cvt.{name} must be in (0, 1), got {value}")
    kind = _encoder_kind(encoder)
    per_task: dict[str, tuple[str, ...]] = {}
    for td in targets:
        k = td.task.kind
        if k == "tagging":
            mine = tuple(v for v in views if v in TAGGING_VIEWS)
            if mine and kind not in ("bert", "bilstm"):
                raise ValueError(
                    f"cvt tagging views {mine} need a BERT-family or jaxtl_bilstm encoder, "
                    f"not {kind!r} (its attention mask cannot be restricted per query here)"
                )
            if "no_self" in mine and kind == "bert" and mask_id is None:
                raise ValueError("cvt view 'no_self' needs a tokenizer with a mask token")
        elif k in SENTENCE_KINDS:
            mine = tuple(v for v in views if v in SENTENCE_VIEWS)
        else:
            raise ValueError(f"cvt: no views for {td.task.name} (kind {k!r})")
        if not mine:
            raise ValueError(
                f"cvt.views={views!r} has no view for target {td.task.name} ({k}); tagging "
                f"views: {TAGGING_VIEWS}, sentence views: {SENTENCE_VIEWS}"
            )
        per_task[td.key] = mine
    unused = [v for v in views if not any(v in vs for vs in per_task.values())]
    if unused:  # e.g. sentence views with only a tagging target: kept so configs can switch
        log.info("cvt: views %s apply to none of the targets and are not used", unused)
    return Settings(per_task, float(c.span_fraction), float(c.subset_drop), float(c.no_self_rate))


def add_aux_heads(
    model: models.TransferModel,
    targets: Sequence[TaskData],
    settings: Settings,
    config: ml_collections.ConfigDict,
) -> list[str]:
    """Adds one auxiliary head per (target, view) to ``model.heads``; returns their keys."""
    rngs = nnx.Rngs(config.seed + 7919)
    enc: Any = model.encoder
    full = model.representation.output_size if model.representation else enc.hidden_size
    keys = []
    for td in targets:
        for view in settings.views[td.key]:
            if view in SENTENCE_VIEWS:
                head = assembly.make_head(td.task, full, config, rngs)
            else:
                size = full
                if isinstance(enc, BiLSTMEncoder):
                    size = 2 * enc.cfg.hidden_size if view == "no_self" else enc.cfg.hidden_size
                head = models.TaggingHead(size, td.task.num_labels, None, config.model.dropout,
                                          rngs=rngs)  # fmt: skip
            key = aux_key(td.key, view)
            model.heads[key] = head
            keys.append(key)
    return keys


# ------------------------------------------------------------------------------------ views
def pair_mask(attention_mask: jax.Array, direction: str) -> jax.Array:
    """bool [B,1,T,T] (query, key): real keys at or before (``forward``) / after (``backward``)
    the query position."""
    t = attention_mask.shape[1]
    q = jnp.arange(t)[:, None]
    k = jnp.arange(t)[None, :]
    if direction == "forward":
        order = k <= q
    elif direction == "backward":
        order = k >= q
    else:
        raise ValueError(f"direction must be forward or backward, got {direction!r}")
    return attention_mask.astype(bool)[:, None, None, :] & order[None, None]


def bert_hidden_states(
    encoder: bert_lib.BertEncoder,
    input_ids: jax.Array,
    mask: jax.Array,
    token_type_ids: jax.Array | None,
    *,
    deterministic: bool,
    rngs: nnx.Rngs | None,
) -> base.EncoderOutput:
    """The encoder with a per-query attention mask ``mask`` [B,1,T,T] instead of padding."""
    return encoder(
        input_ids, None, token_type_ids, deterministic=deterministic, rngs=rngs, pair_mask=mask
    )


def shift(x: jax.Array, attention_mask: jax.Array, by: int) -> jax.Array:
    """``out[:, t] = x[:, t - by]`` (zeros where ``t - by`` is outside the real tokens):
    ``by=1`` gives the future view from forward features, ``by=-1`` the past view."""
    t = x.shape[1]
    src = jnp.arange(t) - by
    valid = (src >= 0) & (src < t)
    src = jnp.clip(src, 0, t - 1)
    real = jnp.take(attention_mask, src, axis=1).astype(bool) & valid[None]
    return jnp.where(real[..., None], jnp.take(x, src, axis=1), 0).astype(x.dtype)


def sentence_keep(
    key: jax.Array, batch: dict, view: str, settings: Settings, maskable: jax.Array
) -> jax.Array:
    """bool [B,T]: the tokens a sentence view keeps (specials always stay)."""
    real = batch["attention_mask"] > 0
    if view == "subset":
        drop = maskable & (jax.random.uniform(key, maskable.shape) < settings.subset_drop)
    elif view == "span":
        n = maskable.sum(1)  # real non-special tokens per row
        # ceil, with slack so that 0.3 * 10 is 3 spans of float rounding notwithstanding
        span = jnp.ceil(settings.span_fraction * n - 1e-4).astype(jnp.int32)
        start = jnp.floor(jax.random.uniform(key, n.shape) * (n - span + 1)).astype(jnp.int32)
        rank = jnp.cumsum(maskable, 1) - 1  # index among the maskable tokens
        drop = maskable & (rank >= start[:, None]) & (rank < (start + span)[:, None])
    else:
        raise ValueError(f"not a sentence view: {view!r}")
    return real & ~drop


def compact(batch: dict, keep: jax.Array, pad_id: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(input_ids, attention_mask, token_type_ids) with only the kept tokens, moved left."""
    order = jnp.argsort(~keep, axis=1, stable=True)
    take = lambda a: jnp.take_along_axis(a, order, axis=1)  # noqa: E731
    kept = take(keep)
    ids = jnp.where(kept, take(batch["input_ids"]), pad_id)
    types = jnp.where(kept, take(batch["token_type_ids"]), 0)
    return ids, kept.astype(batch["attention_mask"].dtype), types


def tagging_views(
    model: models.TransferModel,
    batch: dict,
    views: set[str],
    hidden_states: tuple[jax.Array, ...],
    *,
    settings: Settings,
    mask_id: int | None,
    positions: jax.Array,
    key: jax.Array,
    train_mode: bool,
) -> dict[str, tuple[jax.Array, jax.Array]]:
    """{view: (features [B,T,H], positions bool [B,T] where its KL counts)}."""
    am = batch["attention_mask"]
    enc: Any = model.encoder
    out: dict[str, tuple[jax.Array, jax.Array]] = {}
    if isinstance(enc, BiLSTMEncoder):
        h = enc.cfg.hidden_size
        first = hidden_states[1]
        fwd, bwd = first[..., :h], first[..., h:]
        fut, past = shift(fwd, am, 1), shift(bwd, am, -1)
        table = {"forward": fwd, "backward": bwd, "future": fut, "past": past,
                 "no_self": jnp.concatenate([fut, past], -1)}  # fmt: skip
        return {v: (table[v], positions) for v in views}

    def features(ids, mask, k):
        hs = bert_hidden_states(enc, ids, mask, batch["token_type_ids"],
                                deterministic=not train_mode, rngs=nnx.Rngs(dropout=k))  # fmt: skip
        if model.representation is None:
            return hs.last_hidden_state
        return model.representation(hs.hidden_states)

    k_fwd, k_bwd, k_self, k_choose = jax.random.split(key, 4)
    if views & {"forward", "future"}:
        f = features(batch["input_ids"], pair_mask(am, "forward"), k_fwd)
        out["forward"], out["future"] = (f, positions), (shift(f, am, 1), positions)
    if views & {"backward", "past"}:
        b = features(batch["input_ids"], pair_mask(am, "backward"), k_bwd)
        out["backward"], out["past"] = (b, positions), (shift(b, am, -1), positions)
    if "no_self" in views:
        chosen = positions & (jax.random.uniform(k_choose, positions.shape) < settings.no_self_rate)
        ids = jnp.where(chosen, jnp.int32(mask_id), batch["input_ids"])
        out["no_self"] = (features(ids, base.padding_mask(am), k_self), chosen)
    return {v: out[v] for v in views}


def cvt_branch(
    model: models.TransferModel,
    targets: Sequence[TaskData],
    batch: dict,
    hidden_states: tuple[jax.Array, ...],
    *,
    settings: Settings,
    weight: float,
    special_ids: np.ndarray,
    mask_id: int | None,
    pad_id: int,
    view_key: jax.Array,
    dropout_key: jax.Array,
    train_mode: bool,
):
    """The unlabelled branch of ``cvt``: ``f((feats, last)) -> (loss_sum, den)``.

    ``hidden_states`` are the step's own encoder states (the BiLSTM views read them). Loss =
    weight * the sum over (target, view) of the mean divergence, times the number of real rows
    (the denominator the step divides by), like ``consistency``.
    """

    def f(operands):
        feats, _ = operands
        full = jax.lax.stop_gradient(feats)
        am = batch["attention_mask"]
        w = batch["example_weight"]
        rows = w.sum()
        positions = real_token_mask(batch, special_ids)
        head_rngs = lambda i: nnx.Rngs(dropout=jax.random.fold_in(dropout_key, i))  # noqa: E731
        wanted = {v for vs in settings.views.values() for v in vs}
        k_tag, k_sent = jax.random.split(view_key)
        tag = tagging_views(
            model, batch, wanted & set(TAGGING_VIEWS), hidden_states, settings=settings,
            mask_id=mask_id, positions=positions, key=k_tag, train_mode=train_mode,
        )  # fmt: skip
        sent = {}
        for i, view in enumerate(v for v in SENTENCE_VIEWS if v in wanted):
            k_keep, k_drop = jax.random.split(jax.random.fold_in(k_sent, i))
            keep = sentence_keep(k_keep, batch, view, settings, positions)
            ids, mask, types = compact(batch, keep, pad_id)
            _, f_v = model.features(ids, mask, types, deterministic=not train_mode,
                                    rngs=nnx.Rngs(dropout=k_drop))  # fmt: skip
            sent[view] = (f_v, mask)
        total = jnp.zeros((), jnp.float32)
        n = 0
        for td in targets:
            # The target: the full view's prediction without head dropout, never differentiated.
            p = jax.lax.stop_gradient(model.heads[td.key](full, am, deterministic=True))
            for view in settings.views[td.key]:
                head = model.heads[aux_key(td.key, view)]
                n += 1
                if view in TAGGING_VIEWS:
                    f_v, where = tag[view]
                    q = head(f_v, am, deterministic=not train_mode, rngs=head_rngs(n))
                    where = where.astype(jnp.float32)
                    total += (kl(p, q) * where).sum() / jnp.maximum(where.sum(), 1.0)
                    continue
                f_v, mask = sent[view]
                q = head(f_v, mask, deterministic=not train_mode, rngs=head_rngs(n))
                per = divergence(td.task.kind, p, q)
                total += (per * w).sum() / jnp.maximum(rows, 1.0)
        return weight * total * rows, rows

    return f


# ------------------------------------------------------------------------------------ objective
class CrossView(Objective):
    """CVT as an :class:`~jaxtl.objectives.base.Objective`: unlabelled lines, one auxiliary head
    per (target, view), the loss of :func:`cvt_branch`; auxiliary heads update on unlabelled
    steps only."""

    name = "cvt"

    def __init__(self, corpus: str, *, weight: float = 1.0):
        self.corpus, self.weight = corpus, float(weight)

    def setup(self, encoder, tokenizer, targets, config: ml_collections.ConfigDict) -> None:
        super().setup(encoder, tokenizer, targets, config)
        self.settings = settings_from_config(config, targets, encoder, tokenizer.mask_token_id)
        self.special_ids = tokenize.special_ids(tokenizer)
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenize.pad_id(tokenizer)

    def stream(self, config, tokenizer, *, index: int, seed: int) -> TaskData:
        self.data = corpus_lines(
            config, tokenizer, self.corpus, index=index, key=UNLABELLED_KEY, seed=seed
        )
        return self.data

    def extend(self, model, config: ml_collections.ConfigDict) -> None:
        add_aux_heads(model, self.targets, self.settings, config)

    def owners(self, params) -> dict[str, set[int]]:
        return {key: {self.data.index} for key in params["heads"] if "__cvt_" in key}

    def branch(self, model, batch, out, rngs, *, head_dropout_key, train_mode):
        return cvt_branch(
            model, self.targets, batch, out.hidden_states, settings=self.settings,
            weight=self.weight, special_ids=self.special_ids, mask_id=self.mask_id,
            pad_id=self.pad_id, view_key=rngs.dropout(), dropout_key=rngs.dropout(),
            train_mode=train_mode,
        )  # fmt: skip
