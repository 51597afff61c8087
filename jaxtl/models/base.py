"""What every encoder family shares: its output type and small building blocks.

Each encoder returns an :class:`EncoderOutput` whose ``hidden_states`` hold the embedding output
followed by every block's output, so representations (last layer, sum of the last four, ELMo's
scalar mix, ...) are computed the same way for BERT, GPT-2 and the BiLSTM.

Parameters carry *logical* axis names through ``nnx.with_partitioning``; ``jaxtl.mesh`` maps them to
mesh axes. The names used here: "vocab", "embed" (model width), "mlp" (FFN width), "heads"
(attention heads x head dim, kept 2-D), "kv", "layers", "labels", "norm".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


class EncoderOutput(NamedTuple):
    """``hidden_states``: ``num_layers + 1`` arrays [B,T,H] (embeddings output first)."""

    hidden_states: tuple[jax.Array, ...]

    @property
    def last_hidden_state(self) -> jax.Array:
        return self.hidden_states[-1]


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# GELU with a hand-written backward that keeps only its input. Autodiff of jax.nn.gelu keeps
# three (erf form) or five (tanh form) full [tokens, intermediate] arrays per layer for the
# backward pass; recomputing them there from x is a few elementwise ops (BENCHMARKS.md
# section 5). Values and gradients equal jax.nn.gelu's (tests/test_models_encoders.py).
def _keeping_only_input(
    f: Callable[[jax.Array], jax.Array], df: Callable[[jax.Array], jax.Array]
) -> Callable[[jax.Array], jax.Array]:
    """``f`` whose backward pass keeps only its input and computes the derivative ``df`` there."""
    g = jax.custom_vjp(f)
    g.defvjp(lambda x: (f(x), x), lambda x, ct: ((ct * df(x)).astype(x.dtype),))
    return g


def _d_gelu_exact(x: jax.Array) -> jax.Array:
    cdf = 0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))
    pdf = jnp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return cdf + x * pdf


def _d_gelu_tanh(x: jax.Array) -> jax.Array:
    t = jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _SQRT_2_OVER_PI * (
        1.0 + 3 * 0.044715 * x * x
    )


gelu_exact = _keeping_only_input(lambda x: jax.nn.gelu(x, approximate=False), _d_gelu_exact)
gelu_tanh = _keeping_only_input(lambda x: jax.nn.gelu(x, approximate=True), _d_gelu_tanh)


# Hugging Face activation names -> functions. "gelu" is HF's exact erf GELU; jax's default is the
# tanh approximation (HF "gelu_new"), which is ~2e-4 off and breaks parity.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def activation(name: str, *, where: str = "hidden_act") -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` in an HF config, or a ValueError naming the attribute."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unsupported {where}={name!r}; supported: {sorted(ACTIVATIONS)}"
        ) from None


def dtype_name(dtype: Any) -> str:
    """Canonical dtype string ("float32", "bfloat16"): configs stay hashable and JSON-friendly."""
    return jnp.dtype(dtype).name


def normal(std: float) -> Callable:
    return jax.nn.initializers.normal(stddev=std)


def linear(
    in_features: int,
    out_features: int,
    names: tuple[str | None, str | None],
    *,
    std: float = 0.02,
    use_bias: bool = True,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """nnx.Linear with logical names on its kernel (in, out) and bias (out,)."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nnx.with_partitioning(normal(std), names),
        bias_init=nnx.with_partitioning(jax.nn.initializers.zeros, (names[1],)),
        rngs=rngs,
    )


@jax.custom_vjp
def _lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
    return jnp.take(table, ids, axis=0)


def _lookup_fwd(table: jax.Array, ids: jax.Array) -> tuple[jax.Array, tuple]:
    # A zero-size array carries the table's shape and dtype as a valid residual.
    return _lookup(table, ids), (ids, jnp.zeros((0, *table.shape), table.dtype))


# Tables of at most this many rows take their gradient as one masked sum per row (see _lookup_bwd).
FEW_ROWS = 16


def _lookup_bwd(res: tuple, g: jax.Array) -> tuple[jax.Array, None]:
    ids, like = res
    shape, dtype = like.shape[1:], like.dtype
    if shape[0] <= FEW_ROWS:
        # Few rows, each looked up by many tokens: BERT's token types are all 0 for single
        # sentences, so every token of the batch adds into one row. A scatter-add does that with
        # atomics on the same addresses, which a GPU serialises: on an H200, BERT-base B=256
        # T=128 spent 46 ms of its 103 ms train step in that one scatter. One masked sum per row
        # instead is a plain reduction (no atomics; cheap on any backend for a few rows),
        # accumulated in float32 whatever the table's dtype.
        flat_ids, flat_g = ids.reshape(-1), g.reshape(-1, shape[-1])
        rows = [
            jnp.sum(jnp.where((flat_ids == r)[:, None], flat_g, 0), axis=0, dtype=jnp.float32)
            for r in range(shape[0])
        ]
        return jnp.stack(rows).astype(dtype), None
    # The gradient is a scatter-add into a zero table, as autodiff of take builds it, but the
    # zeros are derived from g (0 * its first element) so they cannot exist before g does.
    # Autodiff's constant zeros were created by XLA's scheduler at the start of the step and
    # held through the whole backward pass: a vocab x width buffer (MiniLM: 45 MiB) at the peak.
    # A non-finite g makes the whole gradient non-finite, and such a step is skipped anyway.
    zero = (g.reshape(-1)[0] * 0).astype(dtype)
    table = jnp.broadcast_to(zero, shape)
    return table.at[ids.reshape(-1)].add(g.reshape(-1, shape[-1]).astype(dtype)), None


_lookup.defvjp(_lookup_fwd, _lookup_bwd)


class Embed(nnx.Embed):
    """``nnx.Embed`` whose backward pass allocates the table's gradient only when it is needed."""

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        if out_sharding is not None or self.num_embeddings == 1:
            return super().__call__(inputs, out_sharding)
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError("Input type must be an integer or unsigned integer.")
        (table,) = self.promote_dtype((self.embedding[...],), dtype=self.dtype, inexact=False)
        return _lookup(table, inputs)


def embed(
    num: int,
    features: int,
    names: tuple[str | None, str | None],
    *,
    std: float = 0.02,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Embed:
    return Embed(
        num,
        features,
        dtype=dtype,
        param_dtype=param_dtype,
        embedding_init=nnx.with_partitioning(normal(std), names),
        rngs=rngs,
    )


def _layer_norm_forward(x, scale, bias, eps):
    """nnx.LayerNorm's arithmetic over the last axis, op for op (statistics and result in
    float32, variance as mean((x - mean)^2)); returns the output and what the backward keeps."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    centred = x32 - mean
    inv = jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)
    mul = inv if scale is None else inv * scale.astype(jnp.float32)
    y = centred * mul
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    return y, (x, mean, inv, scale, bias)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _layer_norm(x, scale, bias, eps, out_dtype):
    return _layer_norm_forward(x, scale, bias, eps)[0].astype(out_dtype)


def _layer_norm_fwd(x, scale, bias, eps, out_dtype):
    y, kept = _layer_norm_forward(x, scale, bias, eps)
    return y.astype(out_dtype), kept


def _layer_norm_bwd(eps, out_dtype, kept, ct):
    """The closed form of LayerNorm's input gradient, x-hat recomputed from the kept input:
    dx = inv * (g - mean(g) - x_hat * mean(g * x_hat)) with g = ct * scale."""
    del eps, out_dtype
    x, mean, inv, scale, bias = kept
    ct = ct.astype(jnp.float32)
    x_hat = (x.astype(jnp.float32) - mean) * inv
    g = ct if scale is None else ct * scale.astype(jnp.float32)
    dx = inv * (
        g
        - jnp.mean(g, axis=-1, keepdims=True)
        - x_hat * jnp.mean(g * x_hat, axis=-1, keepdims=True)
    )
    leading = tuple(range(ct.ndim - 1))
    d_scale = None if scale is None else jnp.sum(ct * x_hat, axis=leading).astype(scale.dtype)
    d_bias = None if bias is None else jnp.sum(ct, axis=leading).astype(bias.dtype)
    return dx.astype(x.dtype), d_scale, d_bias


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class LayerNorm(nnx.LayerNorm):
    """``nnx.LayerNorm`` (its parameters, attributes and forward values) with a hand-written
    backward pass: the closed-form input gradient, keeping only the input and two statistics
    per row. :func:`layer_norm` builds it for the norms that open a pre-norm block's branch.

    Why: autodiff of the normalisation leaves a dozen elementwise terms per LayerNorm in the
    gradient of the residual stream. In a pre-norm block (GPT-2, ModernBERT) that gradient
    is a running sum through every later block, and XLA:CPU's own kernels fuse the whole sum
    again into each of its consumers (the weight gradients' transposes), work quadratic in
    depth: a 12-layer GPT-2 step of 32 x 128 tokens took 1.91x PyTorch's time with autodiff's
    backward and 0.75x with this one, ModernBERT 2.21x and 0.92x (BENCHMARKS.md section 10).
    In a post-norm block the norm sits on the stream itself, and there this backward made
    XLA recompute the stream's gradient instead (MiniLM's LoRA step at 32 x 128 took 1.14x
    as long, its full step as long), so post-norm encoders keep autodiff's. Values equal
    ``nnx.LayerNorm``'s and gradients its autodiff's (tests/test_models_encoders.py).
    Normalises over the last axis only, as every jaxtl encoder does; other settings fall back
    to ``nnx.LayerNorm``'s call.
    """

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        last = (-1,), (x.ndim - 1,)
        plain = (
            mask is None
            and self.axis_name is None
            and _as_tuple(self.reduction_axes) in last
            and _as_tuple(self.feature_axes) in last
        )
        if not plain:
            return super().__call__(x, mask=mask)
        scale = self.scale[...] if self.scale is not None else None
        bias = self.bias[...] if self.bias is not None else None
        x, scale, bias = self.promote_dtype((x, scale, bias), dtype=self.dtype)
        given = [a for a in (x, scale, bias) if a is not None]
        out_dtype = self.dtype if self.dtype is not None else jnp.result_type(*given)
        return _layer_norm(x, scale, bias, float(self.epsilon), jnp.dtype(out_dtype))


def _as_tuple(axes: Any) -> tuple[int, ...]:
    return tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)


def layer_norm(
    features: int,
    eps: float,
    *,
    use_bias: bool = True,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    pre_norm: bool = False,
    rngs: nnx.Rngs,
) -> nnx.LayerNorm:
    """``use_bias=False``: scale only (ModernBERT's ``norm_bias=False``). ``pre_norm=True``
    for a norm whose output opens a residual branch (x + f(norm(x))): a :class:`LayerNorm`,
    whose backward keeps the step linear in depth on CPU; otherwise ``nnx.LayerNorm``."""
    return (LayerNorm if pre_norm else nnx.LayerNorm)(
        features,
        epsilon=eps,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nnx.with_partitioning(jax.nn.initializers.ones, ("norm",)),
        bias_init=nnx.with_partitioning(jax.nn.initializers.zeros, ("norm",)),
        # HF LayerNorm computes mean((x - mean)^2); the fast E[x^2]-E[x]^2 form loses precision.
        use_fast_variance=False,
        rngs=rngs,
    )


DROPOUT_LEVELS = 256  # dropout masks are drawn as 8-bit integers (see dropout)


def dropout(x: jax.Array, rate: float, *, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
    """Inverted dropout with call-time RNGs, so modules hold parameters only."""
    if deterministic or rate == 0.0:
        return x
    if rngs is None:
        raise ValueError("deterministic=False needs rngs=nnx.Rngs(dropout=...) at call time")
    # The mask compares 8-bit random integers with round(keep * 256), as FlashAttention draws its
    # dropout: a quarter of the threefry hashing of 32-bit uniforms and a quarter of the bytes the
    # backward pass keeps (with the GELU below, MiniLM's step at B=32 T=128 went from 1774 to
    # 1302 MiB of XLA temporaries: BENCHMARKS.md section 5). The realised rate is within 1/512
    # of ``rate`` and the scale uses it, so the expectation stays exact.
    keep_levels = round((1.0 - rate) * DROPOUT_LEVELS)
    if keep_levels >= DROPOUT_LEVELS:
        return x
    if keep_levels <= 0:
        return jnp.zeros_like(x)
    mask = random_bytes(rngs.dropout(), x.shape) < keep_levels
    return jnp.where(mask, x * (DROPOUT_LEVELS / keep_levels), jnp.zeros_like(x))


def random_bytes(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform random uint8 of ``shape``, four to each 32-bit word the generator draws.

    Under ``jax_threefry_partitionable`` (JAX's default) ``jax.random.bits(key, shape, uint8)``
    hashes once per byte, keeping 8 of the 32 bits it computed. Drawing words for the last axis
    a quarter as long and splitting each into its bytes gives the same distribution from a
    quarter of the hashing, and stays partitionable: only the last axis is reinterpreted, so
    a sharded batch axis is untouched. (At B=32 T=128, MiniLM's masks for one step took 250 ms
    as bytes and 63 ms as words: BENCHMARKS.md, "Dropout's bits on several devices".) A last
    axis that is not a multiple of four takes the per-byte draw."""
    if not shape or shape[-1] % 4:
        return jax.random.bits(key, shape, jnp.uint8)
    words = jax.random.bits(key, (*shape[:-1], shape[-1] // 4), jnp.uint32)
    return jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(shape)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array,
    *,
    rate: float,
    deterministic: bool,
    rngs: nnx.Rngs | None,
    bias: jax.Array | None = None,
    scale: float | None = None,
    softcap: float | None = None,
) -> jax.Array:
    """Multi-head attention over [B,T,N,D] inputs with a boolean mask broadcastable to [B,N,T,T]
    (and ``bias`` broadcastable to it added to the scaled scores: MPNet's relative positions).
    ``scale`` replaces ``D ** -0.5`` (Gemma 2/3's ``query_pre_attn_scalar ** -0.5``);
    ``softcap`` bounds the scaled scores to ``(-softcap, softcap)`` as ``softcap *
    tanh(scores / softcap)`` before the mask (Gemma 2's ``attn_logit_softcapping``).

    Without dropout or a cap this is ``jax.nn.dot_product_attention`` (fused where the backend
    has it; tests check it against the explicit softmax to 1e-6). Attention dropout needs the
    weights and the cap the scores, so those take the explicit path. Rows with no visible key
    (left padding under a causal mask) give uniform weights rather than NaN in both paths.
    """
    train = not deterministic and rate > 0.0
    if not train and softcap is None:
        return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32) * scale
    if softcap is not None:
        logits = capped(logits, softcap)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
    if train:
        weights = dropout(weights, rate, deterministic=False, rngs=rngs)
    return jnp.einsum("bnqk,bknd->bqnd", weights, v)


def capped(x: jax.Array, cap: float) -> jax.Array:
    """``cap * tanh(x / cap)``: ``x`` bounded to ``(-cap, cap)``, near ``x`` where it is small
    (Gemma 2's soft caps on attention scores and LM logits)."""
    return jnp.tanh(x / cap) * cap


def padding_mask(attention_mask: jax.Array) -> jax.Array:
    """[B,T] 0/1 -> boolean key mask [B,1,1,T] (every query may see every real key)."""
    return attention_mask.astype(bool)[:, None, None, :]


def segment_mask(segment_ids: jax.Array) -> jax.Array:
    """[B,T] segment ids of a packed batch (0 = padding) -> boolean [B,1,T,T]: a token sees only
    the tokens of its own example. The diagonal is always visible so a padding query never has
    an empty row; real queries are unaffected. Causal encoders AND their causal mask onto it."""
    t = segment_ids.shape[1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    keys = (segment_ids > 0)[:, None, :]
    return ((same & keys) | jnp.eye(t, dtype=bool))[:, None]


def supports_packing(encoder: Any) -> bool:
    """Whether ``encoder`` can run packed batches exactly: its call takes ``pair_mask`` (which keys
    each query may see) and ``position_ids`` (each token's index within its own example)."""
    import inspect

    try:
        params = inspect.signature(encoder.__call__).parameters
    except (TypeError, ValueError):
        return False
    return "pair_mask" in params and "position_ids" in params


def check_inputs(input_ids: jax.Array, attention_mask: jax.Array | None) -> jax.Array:
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, length], got shape {input_ids.shape}")
    if attention_mask is None:
        return jnp.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {attention_mask.shape} != input_ids shape {input_ids.shape}"
        )
    return attention_mask
