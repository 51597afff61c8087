"""Llama-architecture decoders (Llama 2/3, SmolLM, TinyLlama ...): a causal pre-norm transformer
with RMSNorm, rotary positions (RoPE), a SwiGLU MLP and grouped-query attention.

Three more model types are this architecture with one difference each, and load, train and
export under their own transformers classes (``Qwen2Model``, ``MistralForSequenceClassification``
...):

* ``qwen2`` (Qwen2, Qwen2.5): biases on the query, key and value projections, none on the
  output projection (``attention_output_bias``). Its optional sliding-window layers
  (``use_sliding_window=true``, off in the released checkpoints) are refused by name, as are
  Qwen3's.
* ``qwen3``: an RMSNorm over each head's query and key before the rotation (``qk_norm``;
  ``self_attn.q_norm`` / ``k_norm``, here ``attention/query_norm`` / ``key_norm``).
* ``mistral``: every layer attends within a sliding window (``sliding_window`` tokens, the
  query's own included, as transformers' ``create_sliding_window_causal_mask``; ``null`` = none,
  as from Mistral 7B v0.2 on), counted over the row's token indices, so the same in a packed
  segment as alone.

* ``phi3`` (Phi-3, Phi-3.5, Phi-4 and Phi-4-mini): the query, key and value are one
  ``qkv_proj`` and the gate and up projections one ``gate_up_proj`` in its checkpoints, which the
  key map splits into the projections below and joins again on export
  (:func:`keymap.fused_linear`; a PEFT adapter then targets the fused module); dropout on each
  block's attention and MLP output before it is added (``resid_pdrop``); Mistral's sliding window
  when the config has one (Phi-3-mini-4k: 2047); RoPE on the first ``partial_rotary_factor`` of
  each head's dimensions (Phi-4-mini: 0.75) and LongRoPE (``rope_type="longrope"``, Phi-3.5 and
  Phi-4-mini: per-frequency ``short_factor`` / ``long_factor``, the long ones where a batch's
  positions reach past ``original_max_position_embeddings``, as transformers chooses per batch;
  cos and sin scaled by ``attention_factor``).

* ``smollm3`` (SmolLM3): every fourth layer has no rotary positions (NoPE; ``no_rope_layers``
  says which rotate: ``rope_layers`` here), and a sliding window on those only when
  ``use_sliding_window`` (off in the released model).
* ``ministral`` (Ministral 8B): Mistral with ``layer_types`` saying which layers attend within
  the window.

* ``olmo2`` (OLMo 2): the block normalises only what the attention and the MLP give back
  (``x + norm(attn(x))``, no norm on their inputs: ``pre_norms=False`` with the output norms of
  ``sandwich_norms``), its query and key norms span all heads' projections (``qk_norm_full``),
  and its RMSNorm scales in float32 before casting.

Gemma's three generations differ in more ways, each an attribute of ``LlamaConfig`` read from the
checkpoint's config (the defaults are Llama's):

* ``gemma``: every RMSNorm scales by ``1 + weight`` in float32 (``norm_offset``; the weight
  starts at 0), the embeddings are multiplied by ``sqrt(hidden_size)`` (``embedding_scale``; not
  the tied LM head's matrix), and the MLP's gate is the tanh GELU (``hidden_act="gelu"`` in the
  released configs means it, as transformers reads it).
* ``gemma2``: adds an RMSNorm on the attention's and on the MLP's output before each is added
  (``sandwich_norms``; HF's ``post_attention_layernorm`` is that first one here,
  ``attention_output_norm``, and ``pre_feedforward_layernorm`` is ``mlp_norm``), scores scaled by
  ``query_pre_attn_scalar ** -0.5``, ``layer_types`` (every other layer attends within
  ``sliding_window``), and scores and LM logits capped as ``cap * tanh(x / cap)``
  (``attn_logit_softcapping``, ``final_logit_softcapping``).
* ``gemma3_text`` (gemma-3-1b, 270m): Gemma 2 without the caps, with the query/key norms
  (Gemma's ``1 + w``), five sliding layers in six, and the sliding layers' own RoPE base
  (``rope_local_base_freq``, unscaled; the full layers' may be scaled). EmbeddingGemma is this
  model with ``use_bidirectional_attention`` (``bidirectional``): no causal mask, and a sliding
  layer's token sees those within ``sliding_window // 2`` positions on either side (as
  transformers reads the attribute); the encoder is then not ``causal``. The multimodal
  checkpoints (``gemma3``, 4B and up) are read as this text model
  (``jaxtl.models.hf.read_config``, ``GEMMA3`` below).

Names: ``embeddings/word`` (HF ``embed_tokens``), ``layers/<i>/{attention_norm, attention/{query,
key,value,output}, mlp_norm, mlp/{gate,intermediate,output}}`` (``input_layernorm``,
``self_attn.{q,k,v,o}_proj``, ``post_attention_layernorm``, ``mlp.{gate,up,down}_proj``) and
``final_norm`` (``norm``). The attention projections carry BERT's names so that LoRA targets,
adapters and freezing rules written for ``attention/query`` ... apply unchanged; the MLP's
``up_proj`` is ``intermediate`` and ``down_proj`` is ``output`` for the same reason, and
``gate`` is the SwiGLU gate (``mlp.output = down(act(gate(x)) * intermediate(x))``).

Grouped-query attention: ``num_kv_heads`` key/value heads, each shared by
``num_heads / num_kv_heads`` consecutive query heads (HF's ``repeat_kv``).

Padding: the attention mask combines causality with the padding mask (as GPT-2's), so left or
right padding both work. Position ids count real tokens (``cumsum(mask) - 1``), so a left-padded
sequence gets the same positions, and outputs, as the unpadded one; HF ``LlamaModel`` uses
``arange(T)`` unless given ``position_ids`` (with right padding the two agree). A caller may
pass ``position_ids`` itself (packed sequences restart them per segment).

``hidden_states`` follow HF's ``output_hidden_states``: the embedding output, each block's
output, with the final RMSNorm applied to the LAST entry only (it equals HF's
``last_hidden_state``), exactly as GPT-2's.

RoPE: ``rope_theta`` and the ``rope_type`` values ``default``, ``linear`` and ``llama3`` (Llama
3.1+'s frequency-dependent scaling) are implemented, and Phi-3's ``longrope``; any other type,
and ``partial_rotary_factor != 1`` outside Phi-3, is refused naming the attribute. Both config layouts are read:
transformers 5's ``rope_parameters`` dict and the older ``rope_theta`` + ``rope_scaling``.

LM head: ``tie_word_embeddings=True`` decodes with the input embedding matrix (no parameters of
its own, like GPT-2's); ``False`` (Llama's default) has its own ``lm_head.weight``.

``token_type_ids`` are accepted for the shared signature and ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtl.mesh import constrain_batch
from jaxtl.models import base
from jaxtl.models.family import Family, HeadSpec, activation_name, qa_head, require
from jaxtl.models.gpt2 import causal_mask
from jaxtl.models.keymap import Rule, embedding, fused_linear, linear

MODEL_TYPE = "llama"
# the HF model_types of this architecture
VARIANTS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3",
            "smollm3", "ministral", "olmo2")  # fmt: skip
ROPE_TYPES = ("default", "linear", "llama3", "longrope")
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int | None = None  # None = num_heads (no grouping)
    head_dim: int | None = None  # None = hidden_size // num_heads
    activation: str = "silu"
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_type: str = "default"  # one of ROPE_TYPES
    rope_factor: float = 1.0  # linear / llama3
    rope_low_freq_factor: float = 1.0  # llama3
    rope_high_freq_factor: float = 4.0  # llama3
    rope_original_max_position_embeddings: int | None = None  # llama3, longrope
    rope_short_factor: tuple[float, ...] | None = None  # longrope: one per rotated frequency
    rope_long_factor: tuple[float, ...] | None = None  # longrope, past the original length
    rope_attention_factor: float = 1.0  # longrope: cos and sin are scaled by it
    partial_rotary_factor: float = 1.0  # Phi-3: RoPE on this fraction of each head's dims
    residual_dropout: float = 0.0  # Phi-3's resid_pdrop: on the attention's and MLP's outputs
    rope_layers: tuple[bool, ...] | None = None  # SmolLM3: which layers rotate (None: all)
    attention_bias: bool = False  # query, key, value (and output, unless said below)
    attention_output_bias: bool | None = None  # None: attention_bias (Llama); Qwen2: False
    mlp_bias: bool = False
    sliding_window: int | None = None  # Mistral: keys within this many tokens of the query
    qk_norm: bool = False  # Qwen3: RMSNorm on each head's query and key, before RoPE
    qk_norm_full: bool = False  # OLMo 2: those norms over all heads' query / key projections
    pre_norms: bool = True  # False (OLMo 2): no norm on the attention's and MLP's inputs
    norm_scale_float32: bool = False  # OLMo 2: RMSNorm multiplies by its weight, then casts
    # Gemma's differences (the defaults are Llama's):
    norm_offset: bool = False  # every RMSNorm scales by (1 + weight), in float32
    embedding_scale: bool = False  # the embeddings are multiplied by sqrt(hidden_size)
    sandwich_norms: bool = False  # Gemma 2/3: RMSNorms on the attention's and MLP's outputs too
    query_pre_attn_scalar: float | None = None  # scores scaled by its -1/2 power, not head_dim's
    attention_softcap: float | None = None  # Gemma 2: scores -> cap * tanh(scores / cap)
    final_logit_softcap: float | None = None  # Gemma 2: the LM's logits capped the same way
    # Per layer: "sliding_attention" layers attend within ``sliding_window``, "full_attention"
    # ones see every earlier token; None: every layer as ``sliding_window`` says (Mistral).
    layer_types: tuple[str, ...] | None = None
    local_rope_theta: float | None = None  # Gemma 3: the sliding layers' RoPE base (default type)
    # EmbeddingGemma: every token sees every other, on sliding layers those within
    # ``sliding_window // 2`` positions either side (transformers' reading of the attribute)
    bidirectional: bool = False
    attention_dropout: float = 0.0
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    dtype: str = "float32"
    param_dtype: str = "float32"
    model_type: str = MODEL_TYPE  # one of VARIANTS: the family's registry key

    def __post_init__(self) -> None:
        if self.model_type not in VARIANTS:
            raise ValueError(
                f"LlamaConfig.model_type={self.model_type!r}, expected one of {VARIANTS}"
            )
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window={self.sliding_window}: must be >= 1 (or null)")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_heads} (and no head_dim is given)"
            )
        if self.kv_heads < 1 or self.num_heads % self.kv_heads:
            raise ValueError(
                f"num_key_value_heads={self.kv_heads} must divide "
                f"num_attention_heads={self.num_heads}"
            )
        if self.rotary_dim % 2 or self.rotary_dim < 2:
            raise ValueError(
                f"head_dim={self.dim_per_head} x partial_rotary_factor="
                f"{self.partial_rotary_factor} = {self.rotary_dim} rotated dimensions: must be "
                "even and >= 2"
            )
        if self.rope_type == "longrope":
            for name in ("rope_short_factor", "rope_long_factor"):
                value = getattr(self, name)
                if value is None or len(value) != self.rotary_dim // 2:
                    raise ValueError(
                        f"longrope's {name.removeprefix('rope_')} must list {self.rotary_dim // 2} "
                        f"factors (one per rotated frequency); got {value!r}"
                    )
                object.__setattr__(self, name, tuple(float(x) for x in value))
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"unsupported rope_type={self.rope_type!r}; supported: {ROPE_TYPES}")
        if self.rope_layers is not None:
            object.__setattr__(self, "rope_layers", tuple(bool(x) for x in self.rope_layers))
            if len(self.rope_layers) != self.num_layers:
                raise ValueError(
                    f"no_rope_layers={[int(x) for x in self.rope_layers]}: expected "
                    f"{self.num_layers} values (num_hidden_layers), 1 where a layer rotates"
                )
        if self.layer_types is not None:
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
            if len(self.layer_types) != self.num_layers or set(self.layer_types) - {*LAYER_TYPES}:
                raise ValueError(
                    f"layer_types={list(self.layer_types)}: expected {self.num_layers} values "
                    f"(num_hidden_layers), each one of {LAYER_TYPES}"
                )
        base.activation(self.activation, where="hidden_act")
        # Canonical: a config that spells out the defaults equals one that leaves them out.
        object.__setattr__(self, "num_kv_heads", self.kv_heads)
        object.__setattr__(self, "head_dim", self.dim_per_head)
        if self.attention_output_bias is None:
            object.__setattr__(self, "attention_output_bias", self.attention_bias)
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def rotary_dim(self) -> int:
        """How many of each head's dimensions RoPE rotates (the first ones)."""
        return int(self.dim_per_head * self.partial_rotary_factor)

    def sliding(self, layer: int) -> bool:
        """Whether layer ``layer`` attends within ``sliding_window`` (and rotates with the local
        RoPE base, where there is one)."""
        if self.layer_types is None:
            return self.sliding_window is not None
        return self.layer_types[layer] == "sliding_attention"

    def local_rope(self) -> LlamaConfig:
        """The RoPE settings of the sliding layers: Gemma 3's local base, unscaled."""
        if self.local_rope_theta is None:
            return self
        return dataclasses.replace(self, rope_theta=self.local_rope_theta, rope_type="default",
                                   rope_factor=1.0)  # fmt: skip


def _kw(cfg: LlamaConfig) -> dict[str, Any]:
    return {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}


class RMSNorm(nnx.Module):
    """HF's ``LlamaRMSNorm``: normalise in float32, cast back to the compute dtype, then scale.
    ``offset`` (Gemma's): scale by ``1 + weight`` (the weight starts at 0) in float32, then
    cast."""

    def __init__(self, features: int, eps: float, *, dtype: Any, param_dtype: Any, rngs,
                 offset: bool = False, scale_float32: bool = False):  # fmt: skip
        start = jax.nn.initializers.zeros if offset else jax.nn.initializers.ones
        init = nnx.with_partitioning(start, ("norm",))
        self.scale = nnx.Param(init(rngs.params(), (features,), param_dtype))
        self.eps, self.dtype, self.offset = eps, dtype, offset
        self.scale_float32 = scale_float32  # OLMo 2's order: scale in float32, then cast

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        if self.offset:
            return (y * (1.0 + self.scale[...].astype(jnp.float32))).astype(self.dtype)
        if self.scale_float32:
            return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)
        return y.astype(self.dtype) * self.scale[...].astype(self.dtype)


def _norm(cfg: LlamaConfig, features: int, rngs: nnx.Rngs) -> RMSNorm:
    return RMSNorm(features, cfg.rms_norm_eps, rngs=rngs, offset=cfg.norm_offset,
                   scale_float32=cfg.norm_scale_float32, **_kw(cfg))  # fmt: skip


@functools.lru_cache(maxsize=32)
def inverse_frequencies(cfg: LlamaConfig, long: bool = False) -> np.ndarray:
    """[rotary_dim / 2] float32 RoPE inverse frequencies, as transformers computes them
    (``long``: LongRoPE's for positions past the original length)."""
    d = cfg.rotary_dim
    if cfg.rope_type == "longrope":
        factors = cfg.rope_long_factor if long else cfg.rope_short_factor
        powers = np.float32(cfg.rope_theta) ** (np.arange(0, d, 2, dtype=np.float32) / d)
        return (1.0 / (np.asarray(factors, np.float32) * powers)).astype(np.float32)
    inv = (1.0 / cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float32) / d)).astype(np.float32)
    if cfg.rope_type == "linear":
        return (inv / np.float32(cfg.rope_factor)).astype(np.float32)
    if cfg.rope_type == "llama3":
        # Long wavelengths are divided by ``factor``, short ones kept, the band between
        # interpolated (transformers' _compute_llama3_parameters).
        old = cfg.rope_original_max_position_embeddings or cfg.max_position_embeddings
        lo, hi, f = cfg.rope_low_freq_factor, cfg.rope_high_freq_factor, cfg.rope_factor
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / lo, inv / f, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / f + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        return np.where(medium, smoothed, scaled).astype(np.float32)
    return inv


def rotary(cfg: LlamaConfig, positions: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) [B,T,1,rotary_dim] for integer positions [B,T] (float32 math, then
    ``dtype``). LongRoPE takes its long factors for the whole batch when a position reaches
    past the original length (transformers' ``max(position_ids) + 1`` test)."""
    inv = jnp.asarray(inverse_frequencies(cfg))
    if cfg.rope_type == "longrope":
        original = cfg.rope_original_max_position_embeddings or cfg.max_position_embeddings
        beyond = jnp.max(positions) + 1 > original
        inv = jnp.where(beyond, jnp.asarray(inverse_frequencies(cfg, long=True)), inv)
    freqs = positions.astype(jnp.float32)[..., None] * inv
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(emb), jnp.sin(emb)
    if cfg.rope_attention_factor != 1.0:
        cos, sin = cos * cfg.rope_attention_factor, sin * cfg.rope_attention_factor
    return cos.astype(dtype), sin.astype(dtype)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B,T,N,D]: ``x cos + rotate_half(x) sin`` with rotate_half = (-x2, x1) on the first
    ``cos.shape[-1]`` dimensions (all of them unless RoPE is partial); the rest pass through."""
    d = cos.shape[-1]
    rot, rest = (x, None) if d == x.shape[-1] else (x[..., :d], x[..., d:])
    x1, x2 = jnp.split(rot, 2, axis=-1)
    out = rot * cos + jnp.concatenate([-x2, x1], axis=-1) * sin
    return out if rest is None else jnp.concatenate([out, rest], axis=-1)


class LlamaEmbeddings(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.word = base.embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                               std=cfg.initializer_range, rngs=rngs, **_kw(cfg))  # fmt: skip


class LlamaAttention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        h, d, std, kw = cfg.hidden_size, cfg.dim_per_head, cfg.initializer_range, _kw(cfg)
        self.num_heads, self.kv_heads, self.head_dim = cfg.num_heads, cfg.kv_heads, d
        bias = cfg.attention_bias

        def lin(i: int, o: int, names: tuple[str, str], bias: bool = bias) -> nnx.Linear:
            return base.linear(i, o, names, std=std, use_bias=bias, rngs=rngs, **kw)

        self.query = lin(h, cfg.num_heads * d, ("embed", "heads"))
        self.key = lin(h, cfg.kv_heads * d, ("embed", "heads"))
        self.value = lin(h, cfg.kv_heads * d, ("embed", "heads"))
        self.output = lin(cfg.num_heads * d, h, ("heads", "embed"), bool(cfg.attention_output_bias))
        self.qk_norm, self.qk_norm_full = cfg.qk_norm, cfg.qk_norm_full
        if cfg.qk_norm:  # one scale over head_dim, shared by the heads
            self.query_norm, self.key_norm = _norm(cfg, d, rngs), _norm(cfg, d, rngs)
        elif cfg.qk_norm_full:  # one over all heads' projections (OLMo 2)
            self.query_norm = _norm(cfg, cfg.num_heads * d, rngs)
            self.key_norm = _norm(cfg, cfg.kv_heads * d, rngs)
        scalar = cfg.query_pre_attn_scalar
        self.scale = None if scalar is None else float(scalar) ** -0.5
        self.softcap = cfg.attention_softcap

    def __call__(self, x, cos, sin, mask, *, rate: float, deterministic: bool, rngs) -> jax.Array:
        b, t, _ = x.shape
        q, k = self.query(x), self.key(x)
        if self.qk_norm_full:
            q, k = self.query_norm(q), self.key_norm(k)
        q = q.reshape(b, t, self.num_heads, self.head_dim)
        k = k.reshape(b, t, self.kv_heads, self.head_dim)
        v = self.value(x).reshape(b, t, self.kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.query_norm(q), self.key_norm(k)
        if cos is not None:  # None: a NoPE layer (SmolLM3's)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        group = self.num_heads // self.kv_heads
        if group > 1:  # kv head j serves query heads j*group .. (j+1)*group-1 (HF repeat_kv)
            k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
        out = base.attention(q, k, v, mask, rate=rate, deterministic=deterministic, rngs=rngs,
                             scale=self.scale, softcap=self.softcap)  # fmt: skip
        return self.output(out.reshape(b, t, self.num_heads * self.head_dim))


class LlamaMlp(nnx.Module):
    """SwiGLU: ``output(act(gate(x)) * intermediate(x))``."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        h, m, std, kw = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range, _kw(cfg)
        bias = cfg.mlp_bias
        self.gate = base.linear(h, m, ("embed", "mlp"), std=std, use_bias=bias, rngs=rngs, **kw)
        self.intermediate = base.linear(h, m, ("embed", "mlp"), std=std, use_bias=bias, rngs=rngs,
                                        **kw)  # fmt: skip
        self.output = base.linear(m, h, ("mlp", "embed"), std=std, use_bias=bias, rngs=rngs, **kw)
        self.act = base.activation(cfg.activation, where="hidden_act")

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.output(self.act(self.gate(x)) * self.intermediate(x))


class LlamaLayer(nnx.Module):
    """Pre-norm block: x + attn(RMSNorm(x)), then + mlp(RMSNorm(.)); no dropout on the residual
    stream (transformers' Llama has none), attention dropout only. With ``sandwich_norms``
    (Gemma 2/3) the attention's and the MLP's outputs are normalised too before they are added.
    """

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        h = cfg.hidden_size
        self.attention_norm = _norm(cfg, h, rngs) if cfg.pre_norms else None
        self.attention = LlamaAttention(cfg, rngs=rngs)
        self.mlp_norm = _norm(cfg, h, rngs) if cfg.pre_norms else None
        self.mlp = LlamaMlp(cfg, rngs=rngs)
        self.sandwich = cfg.sandwich_norms
        if cfg.sandwich_norms:
            self.attention_output_norm, self.mlp_output_norm = (
                _norm(cfg, h, rngs),
                _norm(cfg, h, rngs),
            )
        self.attention_dropout = cfg.attention_dropout
        self.residual_dropout = cfg.residual_dropout

    def __call__(self, x, cos, sin, mask, *, deterministic: bool, rngs) -> jax.Array:
        drop = lambda y: base.dropout(  # noqa: E731
            y, self.residual_dropout, deterministic=deterministic, rngs=rngs
        )
        pre = lambda norm, y: y if norm is None else norm(y)  # noqa: E731
        h = self.attention(
            pre(self.attention_norm, x), cos, sin, mask,
            rate=self.attention_dropout, deterministic=deterministic, rngs=rngs,
        )  # fmt: skip
        x = x + drop(self.attention_output_norm(h) if self.sandwich else h)
        h = self.mlp(pre(self.mlp_norm, x))
        return x + drop(self.mlp_output_norm(h) if self.sandwich else h)


class LlamaEncoder(nnx.Module):
    """The Llama decoder stack, called like every jaxtl encoder.

    >>> enc = LlamaEncoder(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
    ...                                num_layers=2, num_heads=4, num_kv_heads=2),
    ...                    rngs=nnx.Rngs(0))
    >>> ids = jnp.ones((2, 5), jnp.int32)
    >>> enc(ids, jnp.ones_like(ids)).last_hidden_state.shape
    (2, 5, 32)
    """

    causal = True  # each position sees itself and earlier ones: CLM, last-token pooling

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.causal = not cfg.bidirectional
        self.family = cfg.model_type
        self.num_layers = cfg.num_layers
        self.hidden_size = cfg.hidden_size
        self.embeddings = LlamaEmbeddings(cfg, rngs=rngs)
        self.layers = nnx.List([LlamaLayer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = _norm(cfg, cfg.hidden_size, rngs)

    def tied_embedding(self) -> jax.Array:
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
        """``pair_mask`` (bool [B,1,T,T]: which keys each query may see) replaces the padding
        mask built from ``attention_mask``, as in the BERT encoder, and is ANDed with causality
        (a packed batch's segment mask: each token sees the earlier tokens of its own example);
        ``position_ids`` [B,T] replace the real-token count (packing restarts it per segment)."""
        cfg = self.cfg
        attention_mask = base.check_inputs(input_ids, attention_mask)
        if position_ids is None:
            position_ids = jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1, 0)
        elif position_ids.shape != input_ids.shape:
            raise ValueError(
                f"position_ids shape {position_ids.shape} != input_ids shape {input_ids.shape}"
            )
        x = self.embeddings.word(input_ids)
        if cfg.embedding_scale:  # Gemma: sqrt(hidden_size) in the compute dtype, as HF rounds it
            x = x * jnp.asarray(cfg.hidden_size**0.5, x.dtype)
        rope = {False: rotary(cfg, position_ids, x.dtype)}
        if cfg.local_rope_theta is not None:
            rope[True] = rotary(cfg.local_rope(), position_ids, x.dtype)
        t = input_ids.shape[1]
        if pair_mask is None:
            full = base.padding_mask(attention_mask) if cfg.bidirectional else causal_mask(
                attention_mask
            )  # fmt: skip
        else:
            full = pair_mask if cfg.bidirectional else (
                pair_mask & jnp.tril(jnp.ones((t, t), bool))[None, None]
            )  # fmt: skip
        masks = {False: full, True: full}
        if cfg.sliding_window is not None:
            # causal: query i sees keys j with i - j < window (and j <= i, above)
            apart = np.subtract.outer(np.arange(t), np.arange(t))
            near = (np.abs(apart) < cfg.sliding_window // 2 + 1) if cfg.bidirectional else (
                apart < cfg.sliding_window
            )  # fmt: skip
            if not near.all():
                masks[True] = full & jnp.asarray(near)[None, None]
        states = [x]
        for i, layer in enumerate(self.layers):
            local = cfg.sliding(i)
            cos, sin = rope.get(local, rope[False])
            if cfg.rope_layers is not None and not cfg.rope_layers[i]:  # NoPE: no rotation
                x = layer(x, None, None, masks[local], deterministic=deterministic, rngs=rngs)
            else:
                x = layer(x, cos, sin, masks[local], deterministic=deterministic, rngs=rngs)
            x = constrain_batch(x)
            states.append(x)
        states[-1] = self.final_norm(x)  # as HF: the final norm only on the last hidden state
        return base.EncoderOutput(tuple(states))


# --- Hugging Face conversion -------------------------------------------------------------------


def _rope(hf: Mapping[str, Any], model_type: str = MODEL_TYPE) -> dict[str, Any]:
    """RoPE settings from either config layout; unsupported ones are refused by name."""
    if model_type == "gemma3_text":
        return _gemma3_rope(hf)
    legacy = hf.get("rope_scaling")
    where = "rope_scaling" if legacy else "rope_parameters"
    rope = dict(legacy or hf.get("rope_parameters") or {})
    if rope and all(isinstance(v, Mapping) for v in rope.values()):
        raise ValueError(
            f"unsupported config attribute {where}={rope!r}: per-layer-type RoPE is not Llama's"
        )
    kind = rope.get("rope_type", rope.get("type", "default"))
    if model_type == "phi3" and kind in ("su", "yarn"):  # Phi-3's earlier names (transformers')
        kind = "longrope"
    supported = ROPE_TYPES if model_type == "phi3" else tuple(set(ROPE_TYPES) - {"longrope"})
    if kind not in supported:
        raise ValueError(
            f"unsupported config attribute {where}.rope_type={kind!r} (supported: "
            f"{sorted(supported)})"
        )
    partial = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0) and model_type != "phi3":
        raise ValueError(
            f"unsupported config attribute partial_rotary_factor={partial!r} (supported: 1.0); "
            f"transformers' {model_type} rotates every head dimension"
        )
    out: dict[str, Any] = {
        "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        "rope_type": kind,
        "partial_rotary_factor": float(partial or 1.0),
    }
    if kind == "longrope":
        out.update(_longrope(hf, rope, where))
    if kind in ("linear", "llama3"):
        if "factor" not in rope:
            raise ValueError(f"config attribute {where} of rope_type {kind!r} lacks 'factor'")
        out["rope_factor"] = float(rope["factor"])
    if kind == "llama3":
        out["rope_low_freq_factor"] = float(rope.get("low_freq_factor", 1.0))
        out["rope_high_freq_factor"] = float(rope.get("high_freq_factor", 4.0))
        out["rope_original_max_position_embeddings"] = rope.get("original_max_position_embeddings")
    return out


def _longrope(hf: Mapping[str, Any], rope: Mapping[str, Any], where: str) -> dict[str, Any]:
    """LongRoPE's factors and its cos/sin scale, as transformers' ``_compute_longrope_parameters``
    resolves them (``attention_factor`` unless given: from max_position_embeddings over the
    original length, not from ``factor``, which Phi-3's configs also carry)."""
    original = rope.get("original_max_position_embeddings",
                        hf.get("original_max_position_embeddings"))  # fmt: skip
    missing = [k for k, v in (("short_factor", rope.get("short_factor")),
                              ("long_factor", rope.get("long_factor")),
                              ("original_max_position_embeddings", original)) if v is None]  # fmt: skip
    if missing:
        raise ValueError(f"config attribute {where} of rope_type 'longrope' lacks {missing}")
    factor = rope.get("factor")
    if factor is None:
        factor = hf.get("max_position_embeddings", original) / original
    attention = rope.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return {
        "rope_short_factor": tuple(rope["short_factor"]),
        "rope_long_factor": tuple(rope["long_factor"]),
        "rope_original_max_position_embeddings": int(original),
        "rope_attention_factor": float(attention),
    }


def _gemma3_rope(hf: Mapping[str, Any]) -> dict[str, Any]:
    """Gemma 3 rotates its full-attention layers with ``rope_theta`` (1e6 unless said; scaled by
    ``rope_scaling`` in the larger models) and its sliding layers with the unscaled
    ``rope_local_base_freq`` (1e4); transformers 5 writes both under ``rope_parameters``
    ``{"full_attention": ..., "sliding_attention": ...}``."""
    nested = hf.get("rope_parameters")
    if isinstance(nested, Mapping) and set(nested) & set(LAYER_TYPES):
        full = dict(nested.get("full_attention") or {})
        local = dict(nested.get("sliding_attention") or {})
    else:
        full = dict(hf.get("rope_scaling") or {})
        local = {}
    full.setdefault("rope_theta", hf.get("rope_theta", 1e6))
    kind = local.get("rope_type", "default")
    if kind != "default":
        raise ValueError(
            f"unsupported config attribute rope_parameters.sliding_attention.rope_type={kind!r} "
            "(supported: 'default')"
        )
    flat = {"rope_parameters": full, "partial_rotary_factor": hf.get("partial_rotary_factor")}
    theta = local.get("rope_theta", hf.get("rope_local_base_freq", 10000.0))
    return {**_rope(flat), "local_rope_theta": float(theta)}


def config_from_hf(hf: Mapping[str, Any], model_type: str = MODEL_TYPE) -> LlamaConfig:
    get = lambda k: require(hf, k, model_type)  # noqa: E731
    variant = _variant_from_hf(hf, model_type)
    act = variant.pop("activation", None) or activation_name(hf, "hidden_act", "silu")
    heads = get("num_attention_heads")
    kv = hf.get("num_key_value_heads") or heads
    if kv < 1 or heads % kv:
        raise ValueError(
            f"config attribute num_key_value_heads={kv} does not divide num_attention_heads={heads}"
        )
    return LlamaConfig(
        vocab_size=get("vocab_size"),
        hidden_size=get("hidden_size"),
        intermediate_size=get("intermediate_size"),
        num_layers=get("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=hf.get("head_dim"),
        activation=act,
        rms_norm_eps=hf.get("rms_norm_eps", 1e-5 if model_type in ("phi3", "olmo2") else 1e-6),
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        **variant,
        attention_dropout=float(hf.get("attention_dropout") or 0.0),
        # transformers' LlamaConfig default is untied, Gemma's tied
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", model_type.startswith("gemma"))),
        initializer_range=hf.get("initializer_range", 0.02),
        **_rope(hf, model_type),
    )


def _variant_from_hf(hf: Mapping[str, Any], model_type: str) -> dict[str, Any]:
    """What tells the model types apart: biases, the query/key norms and the sliding window."""
    if model_type.startswith("gemma"):
        return _gemma_from_hf(hf, model_type)
    if model_type in ("qwen2", "qwen3") and hf.get("use_sliding_window"):
        raise ValueError(
            "unsupported config attribute use_sliding_window=True: the Qwen sliding-window "
            "layers are not implemented (the released Qwen2, Qwen2.5 and Qwen3 checkpoints "
            "have none)"
        )
    if model_type == "qwen2":
        return {"attention_bias": True, "attention_output_bias": False, "model_type": model_type}
    if model_type == "qwen3":
        bias = bool(hf.get("attention_bias", False))
        return {"attention_bias": bias, "qk_norm": True, "model_type": model_type}
    if model_type == "mistral":
        return {"sliding_window": hf.get("sliding_window"), "model_type": model_type}
    if model_type == "phi3":
        return {"sliding_window": hf.get("sliding_window"), "model_type": model_type,
                "residual_dropout": float(hf.get("resid_pdrop") or 0.0)}  # fmt: skip
    if model_type == "ministral":  # every layer sliding unless layer_types says otherwise
        window = hf.get("sliding_window", 4096)
        kind = "sliding_attention" if window is not None else "full_attention"
        layers = require(hf, "num_hidden_layers", model_type)
        return {"sliding_window": window, "model_type": model_type,
                "layer_types": tuple(hf.get("layer_types") or [kind] * layers)}  # fmt: skip
    if model_type == "smollm3":
        return _smollm3_from_hf(hf)
    if model_type == "olmo2":
        return {"model_type": model_type, "attention_bias": bool(hf.get("attention_bias", False)),
                "qk_norm_full": True, "pre_norms": False, "sandwich_norms": True,
                "norm_scale_float32": True}  # fmt: skip
    return {"attention_bias": bool(hf.get("attention_bias", False)),
            "mlp_bias": bool(hf.get("mlp_bias", False))}  # fmt: skip


def _smollm3_from_hf(hf: Mapping[str, Any]) -> dict[str, Any]:
    """SmolLM3's NoPE layers (``no_rope_layers``: 1 where a layer rotates; by default every
    ``no_rope_layer_interval``-th does not) and its optional window (``use_sliding_window``:
    on the layers ``layer_types`` names, by default the NoPE ones), as its config resolves
    them."""
    layers = require(hf, "num_hidden_layers", "smollm3")
    every = int(hf.get("no_rope_layer_interval") or 4)
    rotates = hf.get("no_rope_layers") or [int((i + 1) % every != 0) for i in range(layers)]
    out: dict[str, Any] = {
        "model_type": "smollm3",
        "attention_bias": bool(hf.get("attention_bias", False)),
        "mlp_bias": bool(hf.get("mlp_bias", False)),
        "rope_layers": tuple(bool(x) for x in rotates),
    }
    window = hf.get("sliding_window")
    if hf.get("use_sliding_window") and window is not None:
        default = ["full_attention" if r else "sliding_attention" for r in rotates]
        out.update(sliding_window=window, layer_types=tuple(hf.get("layer_types") or default))
    return out


def _gemma_from_hf(hf: Mapping[str, Any], model_type: str) -> dict[str, Any]:
    """Gemma: (1 + w) norms, scaled embeddings, a GELU gate; Gemma 2 and 3 add the sandwich
    norms, ``query_pre_attn_scalar`` and sliding layers (every other one in Gemma 2, five of
    six in Gemma 3); Gemma 2 caps the attention scores and the LM's logits, Gemma 3 normalises
    each head's query and key."""
    bidirectional = bool(hf.get("use_bidirectional_attention"))
    if bidirectional and model_type != "gemma3_text":
        raise ValueError(
            f"unsupported config attribute use_bidirectional_attention=True for {model_type!r}: "
            "jaxtl's bidirectional Gemma is Gemma 3's (EmbeddingGemma)"
        )
    out: dict[str, Any] = {
        "model_type": model_type,
        "norm_offset": True,
        "embedding_scale": True,
        "attention_bias": bool(hf.get("attention_bias", False)),
    }
    if model_type == "gemma":
        # "gelu" is a legacy value of the released configs meant as the tanh approximation
        # (transformers reads it so)
        act = hf.get("hidden_act", "gelu_pytorch_tanh")
        act = "gelu_pytorch_tanh" if act == "gelu" else act
        out["activation"] = activation_name({"hidden_act": act}, "hidden_act", act)
        return out
    out["activation"] = activation_name(hf, "hidden_activation", "gelu_pytorch_tanh")
    layers = require(hf, "num_hidden_layers", model_type)
    every = 2 if model_type == "gemma2" else int(hf.get("sliding_window_pattern") or 6)
    default = ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(layers)]
    out.update(
        sandwich_norms=True,
        query_pre_attn_scalar=hf.get("query_pre_attn_scalar", 256),  # an int to transformers
        sliding_window=hf.get("sliding_window", 4096),
        layer_types=tuple(hf.get("layer_types") or default),
    )
    if model_type == "gemma2":
        out["attention_softcap"] = hf.get("attn_logit_softcapping", 50.0)
        out["final_logit_softcap"] = hf.get("final_logit_softcapping", 30.0)
    else:  # transformers' Gemma 3 attention does not apply attn_logit_softcapping
        out["qk_norm"] = True
        out["final_logit_softcap"] = hf.get("final_logit_softcapping")
        out["bidirectional"] = bidirectional
    return out


def config_to_hf(cfg: LlamaConfig) -> dict[str, Any]:
    rope: dict[str, Any] = {"rope_type": cfg.rope_type, "rope_theta": cfg.rope_theta}
    if cfg.rope_type in ("linear", "llama3"):
        rope["factor"] = cfg.rope_factor
    if cfg.rope_type == "llama3":
        rope["low_freq_factor"] = cfg.rope_low_freq_factor
        rope["high_freq_factor"] = cfg.rope_high_freq_factor
        rope["original_max_position_embeddings"] = (
            cfg.rope_original_max_position_embeddings or cfg.max_position_embeddings
        )
    if cfg.rope_type == "longrope":
        rope.update(short_factor=list(cfg.rope_short_factor or ()),
                    long_factor=list(cfg.rope_long_factor or ()),
                    attention_factor=cfg.rope_attention_factor,
                    original_max_position_embeddings=cfg.rope_original_max_position_embeddings)  # fmt: skip
    if cfg.partial_rotary_factor != 1.0:
        rope["partial_rotary_factor"] = cfg.partial_rotary_factor
    out = {
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.dim_per_head,
        "hidden_act": cfg.activation,
        "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "attention_bias": cfg.attention_bias,
        "mlp_bias": cfg.mlp_bias,
        "attention_dropout": cfg.attention_dropout,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "initializer_range": cfg.initializer_range,
        # transformers 5 reads rope_parameters (but lets a non-empty rope_scaling override it);
        # 4.x reads rope_theta + rope_scaling. All three say the same.
        "rope_parameters": rope,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": dict(rope) if cfg.rope_type != "default" else None,
    }
    if cfg.model_type not in (MODEL_TYPE, "smollm3"):  # their configs have no MLP bias
        del out["mlp_bias"]  # attribute: the type says
        if cfg.model_type in ("qwen2", "mistral", "ministral", "phi3"):  # nor the attention's
            del out["attention_bias"]
    if cfg.model_type in ("qwen2", "qwen3"):
        out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_layers)
    if cfg.model_type == "mistral":
        out["sliding_window"] = cfg.sliding_window
    if cfg.model_type == "ministral":
        out.update(sliding_window=cfg.sliding_window, layer_types=list(cfg.layer_types or ()))
    if cfg.model_type == "smollm3":
        rotates = cfg.rope_layers or (True,) * cfg.num_layers
        out.update(no_rope_layers=[int(x) for x in rotates],
                   use_sliding_window=cfg.sliding_window is not None,
                   sliding_window=cfg.sliding_window,
                   layer_types=list(cfg.layer_types or ["full_attention"] * cfg.num_layers))  # fmt: skip
    if cfg.model_type == "phi3":
        del out["head_dim"]  # Phi3Config has none: hidden_size / num_attention_heads
        out.update(sliding_window=cfg.sliding_window, resid_pdrop=cfg.residual_dropout,
                   embd_pdrop=0.0, partial_rotary_factor=cfg.partial_rotary_factor,
                   original_max_position_embeddings=cfg.rope_original_max_position_embeddings
                   or cfg.max_position_embeddings)  # fmt: skip
    if cfg.model_type.startswith("gemma"):
        _gemma_to_hf(cfg, out)
    return out


def _gemma_to_hf(cfg: LlamaConfig, out: dict[str, Any]) -> None:
    if cfg.model_type == "gemma":
        return
    out["hidden_activation"] = out.pop("hidden_act")
    out.update(
        query_pre_attn_scalar=cfg.query_pre_attn_scalar,
        sliding_window=cfg.sliding_window,
        layer_types=list(cfg.layer_types or ()),
        final_logit_softcapping=cfg.final_logit_softcap,
    )
    if cfg.model_type == "gemma2":
        out["attn_logit_softcapping"] = cfg.attention_softcap
    else:
        local = {"rope_type": "default", "rope_theta": cfg.local_rope_theta}
        out["rope_parameters"] = {"full_attention": out["rope_parameters"],
                                  "sliding_attention": local}  # fmt: skip
        out["rope_local_base_freq"] = cfg.local_rope_theta
        out["use_bidirectional_attention"] = cfg.bidirectional


def key_map(cfg: LlamaConfig) -> list[Rule]:
    ab, ob, mb = cfg.attention_bias, bool(cfg.attention_output_bias), cfg.mlp_bias
    rules = embedding("embed_tokens", "embeddings/word")
    for i in range(cfg.num_layers):
        hf, me = f"layers.{i}", f"layers/{i}"
        if cfg.pre_norms:
            rules.append(Rule(f"{hf}.input_layernorm.weight", f"{me}/attention_norm/scale"))
        if cfg.model_type == "phi3":  # one qkv_proj: [query heads; key heads; value heads]
            q, kv = cfg.num_heads * cfg.dim_per_head, cfg.kv_heads * cfg.dim_per_head
            parts = [(f"{me}/attention/query", q), (f"{me}/attention/key", kv),
                     (f"{me}/attention/value", kv)]  # fmt: skip
            rules += fused_linear(f"{hf}.self_attn.qkv_proj", parts, bias=ab)
            rules += linear(f"{hf}.self_attn.o_proj", f"{me}/attention/output", bias=ob)
        else:
            for theirs, ours in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"),
                                 ("o_proj", "output")):  # fmt: skip
                bias = ob if ours == "output" else ab
                rules += linear(f"{hf}.self_attn.{theirs}", f"{me}/attention/{ours}", bias=bias)
        if cfg.qk_norm or cfg.qk_norm_full:
            for theirs, ours in (("q_norm", "query_norm"), ("k_norm", "key_norm")):
                rules.append(
                    Rule(f"{hf}.self_attn.{theirs}.weight", f"{me}/attention/{ours}/scale")
                )
        if not cfg.pre_norms:  # OLMo 2: only the output norms
            rules += [
                Rule(f"{hf}.post_attention_layernorm.weight", f"{me}/attention_output_norm/scale"),
                Rule(f"{hf}.post_feedforward_layernorm.weight", f"{me}/mlp_output_norm/scale"),
            ]
        elif cfg.sandwich_norms:  # Gemma 2/3's post_attention_layernorm follows the attention
            rules += [
                Rule(f"{hf}.post_attention_layernorm.weight", f"{me}/attention_output_norm/scale"),
                Rule(f"{hf}.pre_feedforward_layernorm.weight", f"{me}/mlp_norm/scale"),
                Rule(f"{hf}.post_feedforward_layernorm.weight", f"{me}/mlp_output_norm/scale"),
            ]
        else:
            rules.append(Rule(f"{hf}.post_attention_layernorm.weight", f"{me}/mlp_norm/scale"))
        if cfg.model_type == "phi3":  # one gate_up_proj: [gate; up]
            m = cfg.intermediate_size
            parts = [(f"{me}/mlp/gate", m), (f"{me}/mlp/intermediate", m)]
            rules += fused_linear(f"{hf}.mlp.gate_up_proj", parts, bias=mb)
            rules += linear(f"{hf}.mlp.down_proj", f"{me}/mlp/output", bias=mb)
            continue
        for theirs, ours in (("gate_proj", "gate"), ("up_proj", "intermediate"),
                             ("down_proj", "output")):  # fmt: skip
            rules += linear(f"{hf}.mlp.{theirs}", f"{me}/mlp/{ours}", bias=mb)
    return rules + [Rule("norm.weight", "final_norm/scale")]


def _lm_head(cfg: LlamaConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    from jaxtl.models.heads import CLMHead, UntiedCLMHead

    cap = cfg.final_logit_softcap
    if cfg.tie_word_embeddings:
        return CLMHead(softcap=cap, rngs=rngs)
    return UntiedCLMHead(cfg.hidden_size, cfg.vocab_size, std=cfg.initializer_range,
                         softcap=cap, rngs=rngs, **_kw(cfg))  # fmt: skip


def _lm_key_map(cfg: LlamaConfig) -> list[Rule]:
    return [] if cfg.tie_word_embeddings else linear("lm_head", "decoder", bias=False)


# LlamaForSequenceClassification (transformers' generic head): ``score`` (no bias, no dropout) on
# the rightmost token that is not ``pad_token_id``; jaxtl pools the last real token by the mask,
# which is that token for left and right padding alike. LlamaForTokenClassification: dropout
# (``classifier_dropout``) and ``score`` (with bias) on every token. Qwen2's, Mistral's and
# Gemma's heads are the same generic ones under their own class names.
def _family(
    model_type: str, name: str, qa_prefix: str | None, *, text: str = "", tagging: bool = True
) -> Family:
    """``qa_prefix``: where ``<name>ForQuestionAnswering`` keeps its base model (Llama's and
    Qwen2's under ``transformer.``, kept for old checkpoints; Mistral's under ``model.``); None:
    transformers has no such class (Gemma), as with ``tagging=False`` no token classifier
    (Gemma 3). ``text``: the infix of the text-only classes' names (``Gemma3TextModel``)."""
    return Family(
        model_type=model_type,
        config_from_hf=functools.partial(config_from_hf, model_type=model_type),
        config_to_hf=config_to_hf,
        encoder=LlamaEncoder,
        key_map=key_map,
        architecture=f"{name}{text}Model",
        prefixes=("model.", "transformer."),
        # Older checkpoints store RoPE's inverse frequencies as a buffer; they come from the config.
        ignore=(r"(^|\.)rotary_emb\.inv_freq$", r"^lm_head\."),
        lm_head=_lm_head,
        lm_key_map=_lm_key_map,
        lm_architecture=f"{name}ForCausalLM",
        lm_ignore=(r"^lm_head\.weight$",),  # tied checkpoints may still carry the copy
        sequence_head=HeadSpec(
            f"{name}{text}ForSequenceClassification",
            lambda cfg: linear("score", "classifier", bias=False),
            pooling="last",
            dropout=False,
            bias=False,
        ),
        token_head=HeadSpec(
            f"{name}ForTokenClassification", lambda cfg: linear("score", "classifier")
        )
        if tagging
        else None,
        qa_head=None
        if qa_prefix is None
        else dataclasses.replace(qa_head(name), encoder_prefix=qa_prefix),
    )


LLAMA = _family(MODEL_TYPE, "Llama", "transformer.")
QWEN2 = _family("qwen2", "Qwen2", "transformer.")
QWEN3 = _family("qwen3", "Qwen3", "transformer.")
MISTRAL = _family("mistral", "Mistral", "")
PHI3 = _family("phi3", "Phi3", None)  # transformers has no Phi3ForQuestionAnswering
SMOLLM3 = _family("smollm3", "SmolLM3", "transformer.")
MINISTRAL = _family("ministral", "Ministral", "transformer.")
# transformers has Olmo2ForSequenceClassification only
OLMO2 = _family("olmo2", "Olmo2", None, tagging=False)
GEMMA = _family("gemma", "Gemma", None)
GEMMA2 = _family("gemma2", "Gemma2", None)
# Gemma 3's multimodal checkpoints (4B and up) keep this text model under
# ``language_model.model.`` (``model.language_model.`` as some transformers versions saved it),
# beside a vision tower and projector it does not use; jaxtl.models.hf.read_config reads their
# text_config.
GEMMA3 = _family("gemma3_text", "Gemma3", None, text="Text", tagging=False)
GEMMA3 = dataclasses.replace(
    GEMMA3,
    prefixes=GEMMA3.prefixes + ("language_model.model.", "model.language_model."),
    ignore=GEMMA3.ignore
    + (r"^(model\.)?(vision_tower|multi_modal_projector)\.", r"^language_model\.lm_head\."),
)
