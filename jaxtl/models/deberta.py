"""DeBERTa (HF ``model_type`` "deberta") and DeBERTa-v2 / DeBERTa-v3 ("deberta-v2"):
disentangled attention.

The computation is transformers' ``DebertaV2Model``, term for term:

* Embeddings: word (+ absolute positions when ``position_biased_input``; v3 has none) (+ token
  types when ``type_vocab_size > 0``; v3 has none: ``token_type_ids`` are then accepted and
  dropped) -> ``embed_proj`` (no bias) when ``embedding_size != hidden_size`` -> LayerNorm ->
  multiplied by the padding mask -> dropout.
* One relative-position table for the whole encoder (``encoder.rel_embeddings``, ``2 * span``
  rows), LayerNorm'd once per forward when ``norm_rel_ebd`` has ``layer_norm``; each layer applies
  its own dropout to it. ``span`` is ``position_buckets`` when > 0, else
  ``max_relative_positions`` (itself ``max_position_embeddings`` when < 1).
* Relative positions ``delta(i - j)`` for query i and key j; with buckets, distances beyond
  ``position_buckets // 2`` are log-bucketed up to ``max_relative_positions``
  (:func:`relative_positions`, a float32 mirror of ``make_log_bucket_position``). They depend on
  index differences only, so a packed row stays correct when attention is masked per segment.
* Attention logits: ``q.k`` (content-to-content) + ``q.k_r[c2p(i,j)]`` (content-to-position,
  "c2p") + ``k_j.q_r[p2c(j,i)]`` (position-to-content, "p2c"), each term as ``pos_att_type``
  selects it, all scaled by ``1 / sqrt(head_dim * (1 + number of terms))``. ``k_r`` / ``q_r`` are
  the relative table through the layer's own key / query projections (``share_att_key``, v3) or
  through ``pos_key_proj`` / ``pos_query_proj``.
* Post-LN blocks as BERT's; blocks are named as BERT's (``layers/<i>/attention/{query,key,value,
  output}``, ``attention_norm``, ``mlp/{intermediate,output}``, ``mlp_norm``) so LoRA targets,
  freezing rules and CVT's restricted attention apply unchanged; ``pos_key`` / ``pos_query`` sit
  beside them when the keys are not shared. The relative table and its LayerNorm live under
  ``embeddings/`` (``relative``, ``relative_norm``): position information, in the lowest layer unit
  for partition rules, like BERT's absolute position table.

DeBERTa (v1, ``model_type`` "deberta": deberta-base/large and their fine-tunes) is this
computation with no log buckets, unshared position projections and no LayerNorm on the relative
table; its ``c2p`` / ``p2c`` read the table centred on the span of the sequence at hand, which
reaches the same rows (``max_relative_positions + i - j``). Its query, key and value are one
``in_proj`` without bias, interleaved head by head (each head's query rows, then its key rows,
then its value rows), with the query's and value's biases as ``q_bias`` / ``v_bias`` and no key
bias; ``pos_proj`` (c2p, no bias) and ``pos_q_proj`` (p2c) are ``pos_key`` / ``pos_query``. The
key map splits ``in_proj`` into ``query`` / ``key`` / ``value`` (:func:`keymap.fused_linear`) and
joins it on export, so LoRA targets and freezing rules read the same paths as for v2; a PEFT
adapter targets ``in_proj`` (:mod:`jaxtl.export`). ``talking_head`` is refused.

Padding: transformers masks whole padded query rows as well; jaxtl masks keys only (as for BERT),
which gives the same values at every real position. ``pair_mask`` replaces the padding mask as in
:class:`jaxtl.models.bert.BertEncoder`.

Not implemented, refused by name in :func:`config_from_hf`: the convolution after the first
layer (``conv_kernel_size`` > 0, DeBERTa-v2-xlarge/xxlarge), an ``attention_head_size`` other than
``hidden_size / num_attention_heads``, a pooler whose width or activation differs from the
sequence head's (``pooler_hidden_size``, ``pooler_hidden_act``), position-to-position or other
``pos_att_type`` terms and other ``norm_rel_ebd`` normalisations.

Heads (transformers 5.24):

* ``DebertaV2ForSequenceClassification``: ``ContextPooler`` (``pooler.dense`` + GELU on the first
  token, a top-level tensor, not inside ``deberta.``), dropout (``cls_dropout``), ``classifier``.
  The pooler's own input dropout (``pooler_dropout``, 0 in every released config) is not applied.
* ``DebertaV2ForTokenClassification``: dropout + ``classifier`` on every token.
* ``DebertaV2ForMaskedLM``: with ``legacy`` (the default) ``cls.predictions`` (BERT's
  ``LMPredictionHead``: dense + act + LayerNorm, decoder tied to the word embeddings with
  ``cls.predictions.bias``), else ``lm_predictions.lm_head`` (the same computation under other
  names). Both are :class:`jaxtl.models.heads.MLMHead`. The "enhanced mask decoder" of the paper
  is not part of any transformers head, so no head here needs it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtl.mesh import constrain_batch
from jaxtl.models import base
from jaxtl.models.family import Family, HeadSpec, activation_name, qa_head, require
from jaxtl.models.keymap import Rule, embedding, fused_linear, linear, mlm_rules, norm

MODEL_TYPE = "deberta-v2"
V1 = "deberta"  # DeBERTa v1: fused in_proj, no key bias, no log buckets (module docstring)
POS_ATT_TYPES = ("c2p", "p2c")


@dataclasses.dataclass(frozen=True)
class DebertaConfig:
    """Defaults are DeBERTa-v3-base's (HF's own class defaults differ; :func:`config_from_hf`
    applies those to attributes a config.json leaves out)."""

    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 0
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-7
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    embedding_size: int | None = None  # None: hidden_size
    initializer_range: float = 0.02
    relative_attention: bool = True
    max_relative_positions: int = -1  # < 1: max_position_embeddings
    position_buckets: int = 256  # <= 0: no log-bucketing
    position_biased_input: bool = False
    pos_att_type: tuple[str, ...] = ("p2c", "c2p")
    share_att_key: bool = True
    norm_rel_ebd: bool = True  # HF norm_rel_ebd="layer_norm"
    legacy: bool = True  # MLM head under cls.predictions (else lm_predictions.lm_head)
    dtype: str = "float32"
    param_dtype: str = "float32"
    model_type: str = MODEL_TYPE  # or V1

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        if self.model_type not in (MODEL_TYPE, V1):
            raise ValueError(
                f"DebertaConfig.model_type={self.model_type!r}: {MODEL_TYPE!r} or {V1!r}"
            )
        if self.v1 and (self.position_buckets > 0 or self.share_att_key or self.norm_rel_ebd):
            raise ValueError(
                "DeBERTa v1 has no position_buckets, share_att_key or norm_rel_ebd (they are v2's)"
            )
        bad = [t for t in self.pos_att_type if t not in POS_ATT_TYPES]
        if bad:
            raise ValueError(
                f"unsupported config attribute pos_att_type={list(self.pos_att_type)!r}: "
                f"{bad} (jaxtl implements {list(POS_ATT_TYPES)})"
            )
        base.activation(self.hidden_act)
        object.__setattr__(self, "pos_att_type", tuple(self.pos_att_type))
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))

    @property
    def v1(self) -> bool:
        return self.model_type == V1

    @property
    def embed_size(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def position_limit(self) -> int | None:
        """The longest example the absolute position table takes; None without one (v3):
        relative distances are clipped, so any length runs."""
        return self.max_position_embeddings if self.position_biased_input else None

    @property
    def max_relative(self) -> int:
        """The largest distance the log buckets reach (transformers' resolved value)."""
        if self.max_relative_positions < 1:
            return self.max_position_embeddings
        return self.max_relative_positions

    @property
    def span(self) -> int:
        """Half the relative table: distances are clipped to [-span, span)."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative

    @property
    def scale_factor(self) -> int:
        # transformers counts the terms of pos_att_type even when relative_attention is off.
        return 1 + len(self.pos_att_type)


def _kw(cfg: DebertaConfig) -> dict[str, Any]:
    return {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}


# --- relative positions ------------------------------------------------------------------------


def log_bucket(rel: np.ndarray, bucket_size: int, max_position: int) -> np.ndarray:
    """transformers' ``make_log_bucket_position`` in numpy, in its float32 arithmetic (so the
    ceil lands on the same bucket): |d| < bucket_size // 2 stay exact, larger distances share
    log-spaced buckets up to ``max_position``."""
    rel = np.asarray(rel, np.int64)
    sign = np.sign(rel)
    mid = bucket_size // 2
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = abs_pos.astype(np.float32) / np.float32(mid)
        log_pos = np.ceil(
            np.log(ratio) / np.log(np.float32((max_position - 1) / mid)) * np.float32(mid - 1)
        ) + np.float32(mid)
        bucket = np.where(abs_pos <= mid, rel.astype(np.float32), log_pos * sign)
    return bucket.astype(np.int64)


def relative_positions(cfg: DebertaConfig, length: int) -> np.ndarray:
    """[T, T] int: ``delta(i - j)`` for query i, key j (log-bucketed when ``position_buckets``)."""
    ids = np.arange(length, dtype=np.int64)
    rel = ids[:, None] - ids[None, :]
    if cfg.position_buckets > 0 and cfg.max_relative > 0:
        rel = log_bucket(rel, cfg.position_buckets, cfg.max_relative)
    return rel


def relative_indices(cfg: DebertaConfig, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the relative table each score reads: (c2p [q, k], p2c [k, q]) as transformers
    gathers them (``clamp(+-delta + span, 0, 2 span - 1)``); static for a given length."""
    rel = relative_positions(cfg, length)
    s = cfg.span
    c2p = np.clip(rel + s, 0, 2 * s - 1).astype(np.int32)
    p2c = np.clip(-rel + s, 0, 2 * s - 1).astype(np.int32)
    return c2p, p2c


# --- modules -----------------------------------------------------------------------------------


class DebertaEmbeddings(nnx.Module):
    def __init__(self, cfg: DebertaConfig, *, rngs: nnx.Rngs):
        e, h, std, kw = cfg.embed_size, cfg.hidden_size, cfg.initializer_range, _kw(cfg)
        self.word = base.embed(cfg.vocab_size, e, ("vocab", "embed"), std=std, rngs=rngs, **kw)
        self.position = (
            base.embed(cfg.max_position_embeddings, e, (None, "embed"), std=std, rngs=rngs, **kw)
            if cfg.position_biased_input
            else None
        )
        self.token_type = (
            base.embed(cfg.type_vocab_size, e, (None, "embed"), std=std, rngs=rngs, **kw)
            if cfg.type_vocab_size > 0
            else None
        )
        self.project = (
            base.linear(e, h, (None, "embed"), use_bias=False, std=std, rngs=rngs, **kw)
            if e != h
            else None
        )
        self.norm = base.layer_norm(h, cfg.layer_norm_eps, rngs=rngs, **kw)
        self.relative = (
            base.embed(2 * cfg.span, h, (None, "embed"), std=std, rngs=rngs, **kw)
            if cfg.relative_attention
            else None
        )
        # transformers builds this LayerNorm from norm_rel_ebd alone; without relative
        # attention it is kept (and exported) but unused.
        self.relative_norm = (
            base.layer_norm(h, cfg.layer_norm_eps, rngs=rngs, **kw) if cfg.norm_rel_ebd else None
        )


class DisentangledAttention(nnx.Module):
    def __init__(self, cfg: DebertaConfig, *, rngs: nnx.Rngs):
        h, std, kw = cfg.hidden_size, cfg.initializer_range, _kw(cfg)

        def lin(names: tuple[str | None, str | None], bias: bool = True) -> nnx.Linear:
            return base.linear(h, h, names, std=std, use_bias=bias, rngs=rngs, **kw)

        self.num_heads = cfg.num_heads
        self.pos_att_type = cfg.pos_att_type
        self.relative = cfg.relative_attention
        self.share_att_key = cfg.share_att_key
        self.scale = float(1.0 / np.sqrt(np.float32(h // cfg.num_heads) * cfg.scale_factor))
        self.query = lin(("embed", "heads"))
        self.key = lin(("embed", "heads"), bias=not cfg.v1)  # v1's in_proj has no key bias
        self.value = lin(("embed", "heads"))
        self.output = lin(("heads", "embed"))
        separate = cfg.relative_attention and not cfg.share_att_key
        self.pos_key = (
            lin(("embed", "heads"), bias=not cfg.v1)  # v1's pos_proj has no bias
            if separate and "c2p" in self.pos_att_type
            else None
        )
        self.pos_query = (
            lin(("embed", "heads")) if separate and "p2c" in self.pos_att_type else None
        )

    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array,
        rel_table: jax.Array | None,
        c2p: jax.Array | None,
        p2c: jax.Array | None,
        *,
        rate: float,
        deterministic: bool,
        rngs: nnx.Rngs | None,
    ) -> jax.Array:
        """x [B,T,H], mask bool broadcastable to [B,N,T,T], rel_table [2S,H] (dropout applied),
        c2p [T,T] / p2c [T,T] the rows of the table each score reads."""
        b, t, h = x.shape
        n = self.num_heads
        split = lambda y: y.reshape(*y.shape[:-1], n, h // n)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        f32 = jnp.float32
        logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(f32)
        if self.relative and rel_table is not None:
            if "c2p" in self.pos_att_type:
                assert c2p is not None
                pos_key = self.key if self.share_att_key else self.pos_key
                assert pos_key is not None
                scores = jnp.einsum("bqnd,rnd->bnqr", q, split(pos_key(rel_table)))
                logits = logits + jnp.take_along_axis(scores, c2p[None, None], axis=-1).astype(f32)
            if "p2c" in self.pos_att_type:
                assert p2c is not None
                pos_query = self.query if self.share_att_key else self.pos_query
                assert pos_query is not None
                scores = jnp.einsum("bknd,rnd->bnkr", k, split(pos_query(rel_table)))
                by_key = jnp.take_along_axis(scores, p2c[None, None], axis=-1)  # [B,N,k,q]
                logits = logits + jnp.swapaxes(by_key, -1, -2).astype(f32)
        logits = jnp.where(mask, logits * self.scale, jnp.finfo(f32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        weights = base.dropout(weights, rate, deterministic=deterministic, rngs=rngs)
        out = jnp.einsum("bnqk,bknd->bqnd", weights, v)
        return self.output(out.reshape(b, t, h))


class DebertaMlp(nnx.Module):
    def __init__(self, cfg: DebertaConfig, *, rngs: nnx.Rngs):
        h, m, std, kw = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range, _kw(cfg)
        self.intermediate = base.linear(h, m, ("embed", "mlp"), std=std, rngs=rngs, **kw)
        self.output = base.linear(m, h, ("mlp", "embed"), std=std, rngs=rngs, **kw)
        self.act = base.activation(cfg.hidden_act)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.output(self.act(self.intermediate(x)))


class DebertaLayer(nnx.Module):
    """Post-LN block: x -> LN(x + attn(x)) -> LN(. + mlp(.)); the relative table is dropped out
    here (transformers' ``pos_dropout``, one per layer)."""

    def __init__(self, cfg: DebertaConfig, *, rngs: nnx.Rngs):
        kw = _kw(cfg)
        self.attention = DisentangledAttention(cfg, rngs=rngs)
        self.attention_norm = base.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs, **kw)
        self.mlp = DebertaMlp(cfg, rngs=rngs)
        self.mlp_norm = base.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs, **kw)
        self.hidden_dropout = cfg.hidden_dropout
        self.attention_dropout = cfg.attention_dropout

    def __call__(self, x, mask, rel_table, c2p, p2c, *, deterministic: bool, rngs) -> jax.Array:
        drop = lambda y: base.dropout(  # noqa: E731
            y, self.hidden_dropout, deterministic=deterministic, rngs=rngs
        )
        if rel_table is not None:
            rel_table = drop(rel_table)
        a = self.attention(x, mask, rel_table, c2p, p2c, rate=self.attention_dropout,
                           deterministic=deterministic, rngs=rngs)  # fmt: skip
        x = self.attention_norm(x + drop(a))
        return self.mlp_norm(x + drop(self.mlp(x)))


class DebertaEncoder(nnx.Module):
    """DeBERTa-v2/v3 encoder.

    >>> enc = DebertaEncoder(DebertaConfig(vocab_size=100, hidden_size=32, num_layers=2,
    ...                                    num_heads=4, intermediate_size=64,
    ...                                    position_buckets=8), rngs=nnx.Rngs(0))
    >>> ids = jnp.ones((2, 5), jnp.int32)
    >>> enc(ids, jnp.ones_like(ids)).last_hidden_state.shape
    (2, 5, 32)
    """

    def __init__(self, cfg: DebertaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.family = cfg.model_type
        self.num_layers = cfg.num_layers
        self.hidden_size = cfg.hidden_size
        self.embeddings = DebertaEmbeddings(cfg, rngs=rngs)
        self.layers = nnx.List([DebertaLayer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])

    def tied_embedding(self) -> jax.Array:
        """The [vocab, embed] word-embedding matrix a tied MLM head decodes with."""
        return self.embeddings.word.embedding[...]

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        pair_mask: jax.Array | None = None,
        position_ids: jax.Array | None = None,
    ) -> base.EncoderOutput:
        """``pair_mask`` (bool [B,1,T,T]) replaces the padding mask (as for BERT);
        ``position_ids`` [B,T] index the absolute position table (only with
        ``position_biased_input``; default ``arange(T)``). Relative positions are index
        differences whatever ``position_ids`` say, as in transformers."""
        cfg, emb = self.cfg, self.embeddings
        attention_mask = base.check_inputs(input_ids, attention_mask)
        t = input_ids.shape[1]
        x = emb.word(input_ids)
        if emb.position is not None:
            if position_ids is None:
                position_ids = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], x.shape[:2])
            x = x + emb.position(position_ids)
        if emb.token_type is not None:
            if token_type_ids is None:
                token_type_ids = jnp.zeros_like(input_ids)
            x = x + emb.token_type(token_type_ids)
        if emb.project is not None:
            x = emb.project(x)
        x = emb.norm(x) * attention_mask[..., None].astype(x.dtype)
        x = base.dropout(x, cfg.hidden_dropout, deterministic=deterministic, rngs=rngs)
        rel_table = c2p = p2c = None
        if emb.relative is not None:
            c2p_np, p2c_np = relative_indices(cfg, t)
            # Only the rows these T tokens reach take part: slicing the table to them (and the
            # indices with it) gives the same scores at a fraction of the cost when T is short
            # of the table (T=128 reaches 255 of DeBERTa-v3's 512 rows).
            lo = int(min(c2p_np.min(), p2c_np.min()))
            hi = int(max(c2p_np.max(), p2c_np.max())) + 1
            rel_table = emb.relative.embedding[lo:hi]
            if emb.relative_norm is not None:
                rel_table = emb.relative_norm(rel_table)
            rel_table = rel_table.astype(cfg.dtype)
            c2p, p2c = jnp.asarray(c2p_np - lo), jnp.asarray(p2c_np - lo)
        mask = base.padding_mask(attention_mask) if pair_mask is None else pair_mask
        states = [x]
        for layer in self.layers:
            x = layer(x, mask, rel_table, c2p, p2c, deterministic=deterministic, rngs=rngs)
            x = constrain_batch(x)
            states.append(x)
        return base.EncoderOutput(tuple(states))


# --- Hugging Face conversion -------------------------------------------------------------------


def _unsupported(key: str, value: Any, why: str) -> ValueError:
    return ValueError(f"unsupported config attribute {key}={value!r}: {why}")


def _pos_att_type(hf: Mapping[str, Any]) -> tuple[str, ...]:
    value = hf.get("pos_att_type")
    if value is None:
        return ()
    items = value.lower().split("|") if isinstance(value, str) else list(value)
    out = tuple(str(x).strip() for x in items if str(x).strip())
    bad = [x for x in out if x not in POS_ATT_TYPES]
    if bad:
        raise _unsupported("pos_att_type", value, f"jaxtl implements {list(POS_ATT_TYPES)}")
    return out


def _norm_rel_ebd(hf: Mapping[str, Any]) -> bool:
    value = hf.get("norm_rel_ebd", "none")
    parts = [x.strip() for x in str(value).lower().split("|")]
    if any(p not in ("none", "layer_norm") for p in parts):
        raise _unsupported("norm_rel_ebd", value, "jaxtl implements 'none' and 'layer_norm'")
    return "layer_norm" in parts


def config_from_hf(hf: Mapping[str, Any], model_type: str = MODEL_TYPE) -> DebertaConfig:
    get = lambda k: require(hf, k, model_type)  # noqa: E731
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    if hidden % heads:
        raise ValueError(
            f"config attribute hidden_size={hidden} is not divisible by num_attention_heads={heads}"
        )
    if (hf.get("conv_kernel_size") or 0) > 0:
        raise _unsupported(
            "conv_kernel_size", hf["conv_kernel_size"],
            "the convolution after the first layer (DeBERTa-v2-xlarge) is not implemented",
        )  # fmt: skip
    if hf.get("attention_head_size", hidden // heads) != hidden // heads:
        raise _unsupported(
            "attention_head_size", hf["attention_head_size"],
            f"jaxtl's heads are hidden_size / num_attention_heads = {hidden // heads} wide",
        )  # fmt: skip
    if hf.get("pooler_hidden_size", hidden) != hidden:
        raise _unsupported(
            "pooler_hidden_size", hf["pooler_hidden_size"],
            f"the sequence head's pooler is hidden_size={hidden} wide",
        )  # fmt: skip
    if hf.get("pooler_hidden_act", "gelu") != "gelu":
        raise _unsupported(
            "pooler_hidden_act", hf["pooler_hidden_act"],
            "jaxtl's DebertaV2ForSequenceClassification head uses 'gelu'",
        )  # fmt: skip
    if model_type == V1 and hf.get("talking_head"):
        raise _unsupported(
            "talking_head", hf["talking_head"], "talking-heads attention is not implemented"
        )
    v2 = model_type == MODEL_TYPE
    embedding_size = hf.get("embedding_size")
    return DebertaConfig(
        vocab_size=get("vocab_size"),
        hidden_size=hidden,
        num_layers=get("num_hidden_layers"),
        num_heads=heads,
        intermediate_size=get("intermediate_size"),
        max_position_embeddings=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 0),
        hidden_act=activation_name(hf, "hidden_act", "gelu"),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-7),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pad_token_id=hf.get("pad_token_id", 0) or 0,
        embedding_size=embedding_size if embedding_size not in (None, hidden) else None,
        initializer_range=hf.get("initializer_range", 0.02),
        # transformers' defaults for attributes a config.json leaves out:
        relative_attention=bool(hf.get("relative_attention", False)),
        max_relative_positions=hf.get("max_relative_positions", -1),
        # v1 has none of these three; its config class ignores them
        position_buckets=hf.get("position_buckets", -1) if v2 else -1,
        position_biased_input=bool(hf.get("position_biased_input", True)),
        pos_att_type=_pos_att_type(hf),
        share_att_key=bool(hf.get("share_att_key", False)) and v2,
        norm_rel_ebd=_norm_rel_ebd(hf) and v2,
        legacy=bool(hf.get("legacy", True)),
        model_type=model_type,
    )


def config_to_hf(cfg: DebertaConfig) -> dict[str, Any]:
    out = {
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "hidden_act": cfg.hidden_act,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": cfg.initializer_range,
        "relative_attention": cfg.relative_attention,
        "max_relative_positions": cfg.max_relative_positions,
        "position_buckets": cfg.position_buckets,
        "position_biased_input": cfg.position_biased_input,
        "pos_att_type": list(cfg.pos_att_type),
        "share_att_key": cfg.share_att_key,
        "norm_rel_ebd": "layer_norm" if cfg.norm_rel_ebd else "none",
        "pooler_hidden_size": cfg.hidden_size,
        "pooler_hidden_act": "gelu",
        "legacy": cfg.legacy,
    }
    if cfg.embedding_size is not None:
        out["embedding_size"] = cfg.embed_size
    if cfg.v1:
        for key in ("position_buckets", "share_att_key", "norm_rel_ebd"):
            del out[key]
    return out


def key_map(cfg: DebertaConfig) -> list[Rule]:
    rules = embedding("embeddings.word_embeddings", "embeddings/word")
    if cfg.position_biased_input:
        rules += embedding("embeddings.position_embeddings", "embeddings/position")
    if cfg.type_vocab_size > 0:
        rules += embedding("embeddings.token_type_embeddings", "embeddings/token_type")
    if cfg.embed_size != cfg.hidden_size:
        rules += linear("embeddings.embed_proj", "embeddings/project", bias=False)
    rules += norm("embeddings.LayerNorm", "embeddings/norm")
    if cfg.relative_attention:
        rules += embedding("encoder.rel_embeddings", "embeddings/relative")
    if cfg.norm_rel_ebd:
        rules += norm("encoder.LayerNorm", "embeddings/relative_norm")
    separate = cfg.relative_attention and not cfg.share_att_key
    d = cfg.hidden_size // cfg.num_heads
    for i in range(cfg.num_layers):
        hf, me = f"encoder.layer.{i}", f"layers/{i}"
        att, mine = f"{hf}.attention.self", f"{me}/attention"
        if cfg.v1:
            qkv = [(f"{mine}/{x}", d) for x in ("query", "key", "value")]
            rules += fused_linear(f"{att}.in_proj", qkv, groups=cfg.num_heads)
            rules += [Rule(f"{att}.q_bias", f"{mine}/query/bias"),
                      Rule(f"{att}.v_bias", f"{mine}/value/bias")]  # fmt: skip
        else:
            for theirs, ours in (("query_proj", "query"), ("key_proj", "key"),
                                 ("value_proj", "value")):  # fmt: skip
                rules += linear(f"{att}.{theirs}", f"{mine}/{ours}")
        pos_key, pos_query = (
            ("pos_proj", "pos_q_proj") if cfg.v1 else ("pos_key_proj", "pos_query_proj")
        )
        if separate and "c2p" in cfg.pos_att_type:
            rules += linear(f"{att}.{pos_key}", f"{mine}/pos_key", bias=not cfg.v1)
        if separate and "p2c" in cfg.pos_att_type:
            rules += linear(f"{att}.{pos_query}", f"{mine}/pos_query")
        rules += linear(f"{hf}.attention.output.dense", f"{me}/attention/output")
        rules += norm(f"{hf}.attention.output.LayerNorm", f"{me}/attention_norm")
        rules += linear(f"{hf}.intermediate.dense", f"{me}/mlp/intermediate")
        rules += linear(f"{hf}.output.dense", f"{me}/mlp/output")
        rules += norm(f"{hf}.output.LayerNorm", f"{me}/mlp_norm")
    return rules


def mlm_head(cfg: DebertaConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    """DebertaV2ForMaskedLM's head (either naming): dense + hidden_act + LayerNorm, decoded with
    the word embeddings plus a bias."""
    from jaxtl.models.heads import MLMHead

    return MLMHead(
        cfg.hidden_size,
        cfg.embed_size,
        cfg.vocab_size,
        activation=cfg.hidden_act,
        layer_norm_eps=cfg.layer_norm_eps,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        rngs=rngs,
    )


def _mlm_map(cfg: DebertaConfig) -> list[Rule]:
    if cfg.legacy:
        p = "cls.predictions"
        return mlm_rules(f"{p}.transform.dense", f"{p}.transform.LayerNorm", f"{p}.bias")
    p = "lm_predictions.lm_head"
    return mlm_rules(f"{p}.dense", f"{p}.LayerNorm", f"{p}.bias")


def _pooler_classifier(cfg: DebertaConfig) -> list[Rule]:
    return linear("pooler.dense", "dense") + linear("classifier", "classifier")


def _classifier(cfg: DebertaConfig) -> list[Rule]:
    return linear("classifier", "classifier")


def _sequence_head(name: str) -> HeadSpec:
    return HeadSpec(
        f"{name}ForSequenceClassification",
        _pooler_classifier,
        dense=True,
        activation="gelu",
        dropout_attr="cls_dropout",
    )  # fmt: skip


def _token_head(name: str) -> HeadSpec:
    # transformers' token head takes hidden_dropout_prob: no attribute of its own.
    return HeadSpec(f"{name}ForTokenClassification", _classifier, dropout_attr=None)


DEBERTA_V2 = Family(
    model_type=MODEL_TYPE,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=DebertaEncoder,
    key_map=key_map,
    architecture="DebertaV2Model",
    prefixes=("deberta.",),
    ignore=(
        r"(^|\.)position_ids$",
        # transformers drops an absolute table that position_biased_input=False leaves unused.
        r"(^|\.)embeddings\.position_embeddings\.weight$",
        r"^cls\.",  # the legacy MLM head (loaded with load_lm_head=True)
        r"^lm_predictions\.",  # the MLM head of legacy=False configs (and of released v3)
        r"^mask_predictions\.",  # ELECTRA-style replaced-token detection head of released v3
    ),
    lm_head=mlm_head,
    lm_key_map=_mlm_map,
    lm_architecture="DebertaV2ForMaskedLM",
    lm_ignore=(r"^cls\.predictions\.decoder\.",),  # tied to the word embeddings / bias
    sequence_head=_sequence_head("DebertaV2"),
    token_head=_token_head("DebertaV2"),
    qa_head=qa_head("DebertaV2"),
)

# DeBERTa v1: the same computation and heads under Deberta* names, read by a config_from_hf that
# knows v1's attributes; the key map splits its fused in_proj (module docstring).
DEBERTA = dataclasses.replace(
    DEBERTA_V2,
    model_type=V1,
    config_from_hf=functools.partial(config_from_hf, model_type=V1),
    architecture="DebertaModel",
    lm_architecture="DebertaForMaskedLM",
    sequence_head=_sequence_head("Deberta"),
    token_head=_token_head("Deberta"),
    qa_head=qa_head("Deberta"),
)
