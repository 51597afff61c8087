"""ModernBERT: a pre-LN encoder with rotary positions, GeGLU and alternating global / local
attention (transformers' ``ModernBertModel``, eager / SDPA semantics).

Names: ``embeddings/{word,norm}`` (``embeddings.tok_embeddings``, ``embeddings.norm``; there are
no position embeddings), ``layers/<i>/{attention_norm, attention/{qkv,output}, mlp_norm,
mlp/{intermediate,output}}`` (``attn_norm``, ``attn.Wqkv``, ``attn.Wo``, ``mlp_norm``,
``mlp.Wi``, ``mlp.Wo``) and ``final_norm``. ``qkv`` and ``intermediate`` stay fused as in the
checkpoint: ``qkv`` is [H, 3H] (query, key, value), ``intermediate`` [H, 2I] is split in half into
the GeGLU input and gate (``act(input) * gate``). Layer 0 has no ``attention_norm`` (HF's
``Identity``: the embeddings are already normalised). Biases and LayerNorm biases exist only where
the config says (``attention_bias``, ``mlp_bias``, ``norm_bias``; all False in the released
models).

Attention: ``layer_types`` (or, in older configs, ``global_attn_every_n_layers``: layer i is
global when ``i % n == 0``) makes each layer ``full_attention`` or ``sliding_attention``. A
sliding layer's query q sees keys k with ``|q - k| <= local_attention // 2`` (HF's
``create_bidirectional_sliding_window_mask``: the window is ``local_attention`` tokens wide,
half on each side), intersected with the padding mask. Rotary embeddings (non-interleaved,
``rotate_half``, applied in float32) use ``rope_theta`` per layer type: ``rope_parameters``
(transformers 5) or ``global_rope_theta`` / ``local_rope_theta`` (older configs).

Packing: ``position_ids`` [B,T] (default ``arange(T)``, as HF) restart per packed segment, and
``pair_mask`` [B,1,T,T] (which keys each query may see: the segment, or a CVT view) replaces the
padding mask; sliding layers intersect it with the window, so packed sequences run through the
same code as padded ones instead of HF's unpadded flash-attention path.

``hidden_states`` follow HF's ``output_hidden_states``: the embedding output, then each layer's
output, the LAST with ``final_norm`` applied (HF's ``last_hidden_state``).

Heads (``ModernBertPredictionHead`` = ``head.dense`` + ``classifier_activation`` + ``head.norm``):
``*ForSequenceClassification`` pools (``classifier_pooling``: ``cls`` or the mean of real
tokens), applies the head, dropout and ``classifier`` (always with a bias);
``*ForTokenClassification`` applies the head to every token; ``*ForMaskedLM`` the head, then
``decoder`` tied to the token embeddings (bias iff ``decoder_bias``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtl.mesh import constrain_batch
from jaxtl.models import base
from jaxtl.models.family import Family, HeadSpec, activation_name, reject, require
from jaxtl.models.keymap import Rule, embedding, linear, norm

MODEL_TYPE = "modernbert"
GLOBAL, LOCAL = "full_attention", "sliding_attention"
POOLINGS = ("cls", "mean")
DEFAULT_THETA = {GLOBAL: 160_000.0, LOCAL: 10_000.0}


@dataclasses.dataclass(frozen=True)
class ModernBertConfig:
    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 22
    num_heads: int = 12
    intermediate_size: int = 1152
    max_position_embeddings: int = 8192
    hidden_act: str = "gelu"
    norm_eps: float = 1e-5
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    embedding_dropout: float = 0.0
    mlp_dropout: float = 0.0
    layer_types: tuple[str, ...] = ()  # per layer GLOBAL | LOCAL; () = every 3rd global
    global_rope_theta: float = DEFAULT_THETA[GLOBAL]
    local_rope_theta: float = DEFAULT_THETA[LOCAL]
    local_attention: int = 128  # window width; a query sees +- local_attention // 2
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # The task / MLM heads (ModernBertPredictionHead, classifier, decoder):
    classifier_pooling: str = "cls"
    classifier_activation: str = "gelu"
    classifier_bias: bool = False
    decoder_bias: bool = True
    dtype: str = "float32"  # compute dtype (bfloat16 on accelerators)
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_heads}"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"head size {self.hidden_size // self.num_heads} is odd: RoPE needs "
                             "an even head size")  # fmt: skip
        if not self.layer_types:
            types = tuple(LOCAL if i % 3 else GLOBAL for i in range(self.num_layers))
            object.__setattr__(self, "layer_types", types)
        object.__setattr__(self, "layer_types", tuple(self.layer_types))
        if len(self.layer_types) != self.num_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for "
                             f"num_hidden_layers={self.num_layers}")  # fmt: skip
        bad = sorted({t for t in self.layer_types if t not in (GLOBAL, LOCAL)})
        if bad:
            raise ValueError(f"unsupported config attribute layer_types={bad}; supported: "
                             f"{[GLOBAL, LOCAL]}")  # fmt: skip
        if self.local_attention < 0:
            raise ValueError(f"local_attention={self.local_attention} must be >= 0")
        if self.classifier_pooling not in POOLINGS:
            raise ValueError(
                f"unsupported config attribute classifier_pooling={self.classifier_pooling!r}; "
                f"supported: {POOLINGS}"
            )
        base.activation(self.hidden_act, where="hidden_activation")
        base.activation(self.classifier_activation, where="classifier_activation")
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads


def _kw(cfg: ModernBertConfig) -> dict[str, Any]:
    return {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}


def _norm(cfg: ModernBertConfig, *, pre_norm: bool = False, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return base.layer_norm(
        cfg.hidden_size, cfg.norm_eps, use_bias=cfg.norm_bias, pre_norm=pre_norm, rngs=rngs,
        **_kw(cfg),
    )  # fmt: skip


def rotary(positions: jax.Array, dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) [B,T,1,dim] for integer positions [B,T] (HF ``ModernBertRotaryEmbedding``:
    frequencies ``theta^(-2j/dim)``, the same half repeated twice), in float32."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
    return jnp.cos(emb), jnp.sin(emb)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B,T,N,D] rotated by (cos, sin) with HF's ``rotate_half``, in float32, cast back."""
    xf = x.astype(jnp.float32)
    half = xf.shape[-1] // 2
    rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    return (xf * cos + rotated * sin).astype(x.dtype)


def window_mask(t: int, local_attention: int) -> jax.Array:
    """bool [1,1,T,T]: key k is within the sliding window of query q (``|q-k| <= w // 2``)."""
    idx = jnp.arange(t)
    return (jnp.abs(idx[:, None] - idx[None, :]) <= local_attention // 2)[None, None]


class ModernBertEmbeddings(nnx.Module):
    def __init__(self, cfg: ModernBertConfig, *, rngs: nnx.Rngs):
        std = cfg.initializer_range
        self.word = base.embed(
            cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), std=std, rngs=rngs, **_kw(cfg)
        )
        self.norm = _norm(cfg, rngs=rngs)


class ModernBertAttention(nnx.Module):
    def __init__(self, cfg: ModernBertConfig, *, rngs: nnx.Rngs):
        h, std, kw, bias = cfg.hidden_size, cfg.initializer_range, _kw(cfg), cfg.attention_bias
        self.num_heads = cfg.num_heads
        self.qkv = base.linear(h, 3 * h, ("embed", "heads"), std=std, use_bias=bias, rngs=rngs,
                               **kw)  # fmt: skip
        self.output = base.linear(h, h, ("heads", "embed"), std=std, use_bias=bias, rngs=rngs,
                                  **kw)  # fmt: skip

    def __call__(self, x, mask, rope, *, rate: float, deterministic: bool, rngs) -> jax.Array:
        b, t, h = x.shape
        split = lambda y: y.reshape(b, t, self.num_heads, h // self.num_heads)  # noqa: E731
        q, k, v = (split(y) for y in jnp.split(self.qkv(x), 3, axis=-1))
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = base.attention(q, k, v, mask, rate=rate, deterministic=deterministic, rngs=rngs)
        out = self.output(out.reshape(b, t, h))
        # HF's out_drop: attention_dropout again, on the projected output.
        return base.dropout(out, rate, deterministic=deterministic, rngs=rngs)


class ModernBertMlp(nnx.Module):
    """GeGLU: ``output(drop(act(input) * gate))`` with ``input, gate = intermediate(x)`` halves."""

    def __init__(self, cfg: ModernBertConfig, *, rngs: nnx.Rngs):
        h, m, std, kw = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range, _kw(cfg)
        self.intermediate = base.linear(h, 2 * m, ("embed", "mlp"), std=std,
                                        use_bias=cfg.mlp_bias, rngs=rngs, **kw)  # fmt: skip
        self.output = base.linear(m, h, ("mlp", "embed"), std=std, use_bias=cfg.mlp_bias,
                                  rngs=rngs, **kw)  # fmt: skip
        self.act = base.activation(cfg.hidden_act, where="hidden_activation")
        self.dropout = cfg.mlp_dropout

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs) -> jax.Array:
        inp, gate = jnp.split(self.intermediate(x), 2, axis=-1)
        y = base.dropout(self.act(inp) * gate, self.dropout, deterministic=deterministic, rngs=rngs)
        return self.output(y)


class ModernBertLayer(nnx.Module):
    """Pre-LN block: x + attn(LN(x)) (no LN in layer 0), then + mlp(LN(.))."""

    def __init__(self, cfg: ModernBertConfig, index: int, *, rngs: nnx.Rngs):
        self.attention_norm = _norm(cfg, pre_norm=True, rngs=rngs) if index > 0 else None
        self.attention = ModernBertAttention(cfg, rngs=rngs)
        self.mlp_norm = _norm(cfg, pre_norm=True, rngs=rngs)
        self.mlp = ModernBertMlp(cfg, rngs=rngs)
        self.attention_dropout = cfg.attention_dropout

    def __call__(self, x, mask, rope, *, deterministic: bool, rngs) -> jax.Array:
        y = x if self.attention_norm is None else self.attention_norm(x)
        x = x + self.attention(
            y, mask, rope, rate=self.attention_dropout, deterministic=deterministic, rngs=rngs
        )
        return x + self.mlp(self.mlp_norm(x), deterministic=deterministic, rngs=rngs)


class ModernBertEncoder(nnx.Module):
    """ModernBERT encoder (see the module docstring).

    >>> enc = ModernBertEncoder(ModernBertConfig(vocab_size=100, hidden_size=32, num_layers=3,
    ...                                          num_heads=4, intermediate_size=48,
    ...                                          local_attention=4), rngs=nnx.Rngs(0))
    >>> ids = jnp.ones((2, 9), jnp.int32)
    >>> enc(ids, jnp.ones_like(ids)).last_hidden_state.shape
    (2, 9, 32)
    """

    def __init__(self, cfg: ModernBertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.family = MODEL_TYPE
        self.num_layers = cfg.num_layers
        self.hidden_size = cfg.hidden_size
        self.embeddings = ModernBertEmbeddings(cfg, rngs=rngs)
        self.layers = nnx.List([ModernBertLayer(cfg, i, rngs=rngs) for i in range(cfg.num_layers)])
        self.final_norm = _norm(cfg, rngs=rngs)

    def tied_embedding(self) -> jax.Array:
        """The [vocab, hidden] token-embedding matrix the MLM decoder is tied to."""
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
        """``token_type_ids`` are accepted for the shared signature and ignored (ModernBERT has
        none). ``pair_mask`` (bool [B,1,T,T]) replaces the padding mask (global layers) and is
        intersected with the window (local layers); ``position_ids`` [B,T] default to
        ``arange(T)``."""
        del token_type_ids
        cfg = self.cfg
        attention_mask = base.check_inputs(input_ids, attention_mask)
        b, t = input_ids.shape
        if position_ids is None:
            position_ids = jnp.arange(t, dtype=jnp.int32)[None]
        position_ids = jnp.broadcast_to(position_ids, (b, t))
        x = self.embeddings.norm(self.embeddings.word(input_ids))
        x = base.dropout(x, cfg.embedding_dropout, deterministic=deterministic, rngs=rngs)
        full = base.padding_mask(attention_mask) if pair_mask is None else pair_mask
        masks = {GLOBAL: full, LOCAL: full & window_mask(t, cfg.local_attention)}
        thetas = {GLOBAL: cfg.global_rope_theta, LOCAL: cfg.local_rope_theta}
        ropes = {k: rotary(position_ids, cfg.head_size, thetas[k]) for k in set(cfg.layer_types)}
        states = [x]
        for layer, kind in zip(self.layers, cfg.layer_types):
            x = layer(x, masks[kind], ropes[kind], deterministic=deterministic, rngs=rngs)
            x = constrain_batch(x)
            states.append(x)
        states[-1] = self.final_norm(x)  # as HF: final_norm only on the last hidden state
        return base.EncoderOutput(tuple(states))


# --- Hugging Face conversion -------------------------------------------------------------------


def _layer_types(hf: Mapping[str, Any], num_layers: int) -> tuple[str, ...]:
    types = hf.get("layer_types")
    if types is not None:
        return tuple(types)
    every = hf.get("global_attn_every_n_layers", 3)
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"config attribute global_attn_every_n_layers={every!r} must be >= 1")
    return tuple(LOCAL if i % every else GLOBAL for i in range(num_layers))


def _rope_theta(hf: Mapping[str, Any], kind: str, old_key: str) -> float:
    """The layer type's RoPE base: ``rope_parameters[kind].rope_theta`` (transformers 5), else
    the older ``global_rope_theta`` / ``local_rope_theta``; only the default RoPE is built."""
    params = (hf.get("rope_parameters") or {}).get(kind) or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise ValueError(
            f"unsupported config attribute rope_parameters[{kind!r}].rope_type={rope_type!r}; "
            "supported: 'default'"
        )
    theta = params.get("rope_theta")
    if theta is None:
        theta = hf.get(old_key)
    return float(DEFAULT_THETA[kind] if theta is None else theta)


def config_from_hf(hf: Mapping[str, Any]) -> ModernBertConfig:
    get = lambda k: require(hf, k, MODEL_TYPE)  # noqa: E731
    why = "the jaxtl ModernBERT encoder implements the default (unscaled) rotary embedding"
    reject(hf, "rope_scaling", (None,), why)
    reject(hf, "is_decoder", (False,), "the jaxtl ModernBERT encoder attends both ways")
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    reject(hf, "head_dim", (None, hidden // heads), "heads are hidden_size / num_attention_heads")
    num_layers = get("num_hidden_layers")
    return ModernBertConfig(
        vocab_size=get("vocab_size"),
        hidden_size=hidden,
        num_layers=num_layers,
        num_heads=heads,
        intermediate_size=get("intermediate_size"),
        max_position_embeddings=hf.get("max_position_embeddings", 8192),
        hidden_act=activation_name(hf, "hidden_activation", "gelu"),
        norm_eps=hf.get("norm_eps", 1e-5),
        norm_bias=bool(hf.get("norm_bias", False)),
        attention_bias=bool(hf.get("attention_bias", False)),
        mlp_bias=bool(hf.get("mlp_bias", False)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        embedding_dropout=float(hf.get("embedding_dropout", 0.0)),
        mlp_dropout=float(hf.get("mlp_dropout", 0.0)),
        layer_types=_layer_types(hf, num_layers),
        global_rope_theta=_rope_theta(hf, GLOBAL, "global_rope_theta"),
        local_rope_theta=_rope_theta(hf, LOCAL, "local_rope_theta"),
        local_attention=hf.get("local_attention", 128),
        pad_token_id=hf.get("pad_token_id", 0) or 0,
        initializer_range=hf.get("initializer_range", 0.02),
        classifier_pooling=hf.get("classifier_pooling", "cls"),
        classifier_activation=activation_name(hf, "classifier_activation", "gelu"),
        classifier_bias=bool(hf.get("classifier_bias", False)),
        decoder_bias=bool(hf.get("decoder_bias", True)),
    )


def config_to_hf(cfg: ModernBertConfig) -> dict[str, Any]:
    rope = lambda theta: {"rope_type": "default", "rope_theta": theta}  # noqa: E731
    return {
        "model_type": MODEL_TYPE,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "hidden_activation": cfg.hidden_act,
        "norm_eps": cfg.norm_eps,
        "norm_bias": cfg.norm_bias,
        "attention_bias": cfg.attention_bias,
        "mlp_bias": cfg.mlp_bias,
        "attention_dropout": cfg.attention_dropout,
        "embedding_dropout": cfg.embedding_dropout,
        "mlp_dropout": cfg.mlp_dropout,
        "layer_types": list(cfg.layer_types),
        "rope_parameters": {
            GLOBAL: rope(cfg.global_rope_theta),
            LOCAL: rope(cfg.local_rope_theta),
        },
        "local_attention": cfg.local_attention,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": cfg.initializer_range,
        "classifier_pooling": cfg.classifier_pooling,
        "classifier_activation": cfg.classifier_activation,
        "classifier_bias": cfg.classifier_bias,
        "decoder_bias": cfg.decoder_bias,
    }


def key_map(cfg: ModernBertConfig) -> list[Rule]:
    nb = cfg.norm_bias
    rules = embedding("embeddings.tok_embeddings", "embeddings/word")
    rules += norm("embeddings.norm", "embeddings/norm", bias=nb)
    for i in range(cfg.num_layers):
        hf, me = f"layers.{i}", f"layers/{i}"
        if i > 0:
            rules += norm(f"{hf}.attn_norm", f"{me}/attention_norm", bias=nb)
        rules += linear(f"{hf}.attn.Wqkv", f"{me}/attention/qkv", bias=cfg.attention_bias)
        rules += linear(f"{hf}.attn.Wo", f"{me}/attention/output", bias=cfg.attention_bias)
        rules += norm(f"{hf}.mlp_norm", f"{me}/mlp_norm", bias=nb)
        rules += linear(f"{hf}.mlp.Wi", f"{me}/mlp/intermediate", bias=cfg.mlp_bias)
        rules += linear(f"{hf}.mlp.Wo", f"{me}/mlp/output", bias=cfg.mlp_bias)
    return rules + norm("final_norm", "final_norm", bias=nb)


def _prediction_head(cfg: ModernBertConfig, dense: str = "dense", ln: str = "norm") -> list[Rule]:
    """``head.dense`` / ``head.norm`` (ModernBertPredictionHead) onto a jaxtl head's layers."""
    return linear("head.dense", dense, bias=cfg.classifier_bias) + norm(
        "head.norm", ln, bias=cfg.norm_bias
    )


def mlm_head(cfg: ModernBertConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    """``ModernBertForMaskedLM``'s ``head`` and ``decoder`` (tied to the token embeddings)."""
    from jaxtl.models.heads import MLMHead

    return MLMHead(
        cfg.hidden_size,
        cfg.hidden_size,
        cfg.vocab_size,
        activation=cfg.classifier_activation,
        layer_norm_eps=cfg.norm_eps,
        transform_bias=cfg.classifier_bias,
        norm_bias=cfg.norm_bias,
        decoder_bias=cfg.decoder_bias,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        rngs=rngs,
    )


def _mlm_map(cfg: ModernBertConfig) -> list[Rule]:
    rules = _prediction_head(cfg, "transform", "norm")
    return rules + ([Rule("decoder.bias", "bias")] if cfg.decoder_bias else [])


def _task_head_map(cfg: ModernBertConfig) -> list[Rule]:
    return _prediction_head(cfg) + linear("classifier", "classifier")


def _head_settings(cfg: ModernBertConfig) -> dict[str, Any]:
    """The HeadSpec fields a ModernBERT config decides."""
    return {
        "pooling": cfg.classifier_pooling,
        "activation": cfg.classifier_activation,
        "dense_bias": cfg.classifier_bias,
        "norm_eps": cfg.norm_eps,
        "norm_bias": cfg.norm_bias,
    }


def _head(architecture: str) -> HeadSpec:
    return HeadSpec(
        architecture, _task_head_map, dense=True, activation="gelu", dense_bias=False, norm=True,
        norm_bias=False, configure=_head_settings,
    )  # fmt: skip


MODERNBERT = Family(
    model_type=MODEL_TYPE,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=ModernBertEncoder,
    key_map=key_map,
    architecture="ModernBertModel",
    prefixes=("model.",),
    # The MLM decoder's bias (its weight is the token embeddings); ``head.*`` is also the task
    # heads' layer, known through their key maps.
    ignore=(r"^decoder\.",),
    lm_head=mlm_head,
    lm_key_map=_mlm_map,
    lm_architecture="ModernBertForMaskedLM",
    lm_ignore=(r"^decoder\.weight$",),
    sequence_head=_head("ModernBertForSequenceClassification"),
    token_head=_head("ModernBertForTokenClassification"),
    # its head layer, dropout and ``classifier`` (2 outputs) on every token, as the token head
    qa_head=_head("ModernBertForQuestionAnswering"),
)
