"""Parameter-efficient transfer: LoRA and bottleneck adapters, by NNX model surgery.

LoRA (Hu et al. 2021): each targeted ``nnx.Linear`` in ``encoder.layers[i].attention`` (and
optionally ``.mlp``) is replaced by a :class:`LoRALinear` that *keeps the original kernel and
bias as its own ``kernel`` / ``bias``*, so pretrained weights, checkpoints and partition rules
still see ``encoder/layers/3/attention/query/kernel``; it adds ``lora_a`` [in, r] (uniform
+-1/sqrt(in), as in the reference implementation) and ``lora_b`` [r, out] (zeros, so the model
starts exactly as the pretrained one) and computes ``x W + b + (alpha / r) (x A) B``.
:func:`merge_lora` folds ``(alpha / r) A B`` back into plain ``nnx.Linear`` kernels, so
``jaxtl.models.save_pretrained`` exports ordinary HF safetensors.

Adapters (Houlsby et al. 2019): the attention output projection and the MLP output projection of
every block are wrapped by :class:`AdapterLinear`: ``y = x W + b; y + up(act(down(y)))`` with
``up`` initialised to zero (the block starts as the pretrained one). The adapter sits after the
projection and before the block's residual add and LayerNorm, as in the paper. Its parameters
live at ``.../attention/output/adapter/{down,up}/...``; the projection's own weights keep their
paths.

The rule presets that train these weights (``optim.strategy = "lora"`` / ``"adapters"``) live in
:mod:`jaxtl.partition.strategies`; :class:`jaxtl.strategy.Strategy` applies the surgery and the
rules together, so ``optim.strategy`` is read in one place.

Example::

    >>> model = apply_lora(model, rank=8, alpha=16, rngs=nnx.Rngs(0))  # doctest: +SKIP
    >>> ... train with optim.strategy = "lora" ...
    >>> save_pretrained(merge_lora(model).encoder, "out/")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

ATTENTION_TARGETS = ("query", "key", "value", "qkv", "output")
# "gate": a gated MLP's gate projection (Llama's SwiGLU; up_proj is "intermediate").
MLP_TARGETS = ("gate", "intermediate", "output")


def _names(var: nnx.Variable) -> tuple[Any, Any]:
    names = var.get_metadata().get("out_sharding") or (None, None)
    return tuple(names)


def _param(value: jax.Array, names: tuple[Any, ...]) -> nnx.Param:
    return nnx.Param(value, out_sharding=names) if any(names) else nnx.Param(value)


def _dense(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, dtype: Any) -> jax.Array:
    if dtype is not None:
        x, kernel = x.astype(dtype), kernel.astype(dtype)
        bias = None if bias is None else bias.astype(dtype)
    y = x @ kernel
    return y if bias is None else y + bias


class LoRALinear(nnx.Module):
    """``nnx.Linear`` plus a low-rank update; ``kernel``/``bias`` are the original Params."""

    def __init__(self, base: nnx.Linear, *, rank: int, alpha: float, rngs: nnx.Rngs):
        if rank < 1:
            raise ValueError(f"lora rank must be >= 1, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.dtype, self.param_dtype = base.dtype, base.param_dtype
        self.kernel = base.kernel  # same Param object: same path, same pretrained value
        self.bias = base.bias
        self.rank, self.alpha = int(rank), float(alpha)
        names_in, names_out = _names(base.kernel)
        bound = 1.0 / (self.in_features**0.5)
        a = jax.random.uniform(
            rngs.params(), (self.in_features, rank), base.param_dtype, -bound, bound
        )
        self.lora_a = _param(a, (names_in, None))
        self.lora_b = _param(
            jnp.zeros((rank, self.out_features), base.param_dtype), (None, names_out)
        )

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def delta(self) -> jax.Array:
        """The kernel update ``(alpha / r) A B`` [in, out]."""
        return (self.lora_a[...] @ self.lora_b[...]) * self.scaling

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = None if self.bias is None else self.bias[...]
        y = _dense(x, self.kernel[...], bias, self.dtype)
        low = _dense(_dense(x, self.lora_a[...], None, self.dtype), self.lora_b[...], None, None)
        return y + (low * self.scaling).astype(y.dtype)


class Adapter(nnx.Module):
    """Houlsby bottleneck: ``h + up(act(down(h)))``, ``up`` zero-initialised."""

    def __init__(
        self,
        features: int,
        size: int,
        *,
        act: Callable[[jax.Array], jax.Array] = jax.nn.gelu,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        if size < 1:
            raise ValueError(f"adapter_size must be >= 1, got {size}")
        init = nnx.initializers.normal(1e-3)
        self.down = nnx.Linear(
            features,
            size,
            kernel_init=nnx.with_partitioning(init, ("embed", None)),
            bias_init=nnx.with_partitioning(nnx.initializers.zeros, (None,)),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.up = nnx.Linear(
            size,
            features,
            kernel_init=nnx.with_partitioning(nnx.initializers.zeros, (None, "embed")),
            bias_init=nnx.with_partitioning(nnx.initializers.zeros, ("embed",)),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.act = act

    def __call__(self, h: jax.Array) -> jax.Array:
        return h + self.up(self.act(self.down(h)))


class AdapterLinear(nnx.Module):
    """A projection followed by an adapter; ``kernel``/``bias`` are the original Params."""

    def __init__(self, base: nnx.Linear, *, size: int, rngs: nnx.Rngs):
        self.in_features, self.out_features = base.in_features, base.out_features
        self.dtype, self.param_dtype = base.dtype, base.param_dtype
        self.kernel = base.kernel
        self.bias = base.bias
        self.adapter = Adapter(
            base.out_features, size, param_dtype=base.param_dtype, dtype=base.dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = None if self.bias is None else self.bias[...]
        return self.adapter(_dense(x, self.kernel[...], bias, self.dtype))


# --- surgery -----------------------------------------------------------------------------------


# Surgery works in place and returns the model it was given, so callers keep its type.
_M = TypeVar("_M", bound=nnx.Module)


def _encoder(model: nnx.Module) -> Any:
    """The encoder (duck-typed NNX module: its blocks are ``.layers``, checked here)."""
    enc = getattr(model, "encoder", model)
    if not hasattr(enc, "layers"):
        raise ValueError(f"{type(model).__name__}: expected an encoder with `layers` (or .encoder)")
    return enc


def _replace(
    model: _M,
    where: Sequence[tuple[str, Sequence[str]]],
    wrap: Callable[[nnx.Linear], nnx.Module],
    what: str,
) -> _M:
    enc = _encoder(model)
    for i, layer in enumerate(enc.layers):
        n = 0
        for sub_name, targets in where:
            sub = getattr(layer, sub_name, None)
            for t in targets:
                lin = getattr(sub, t, None) if sub is not None else None
                if isinstance(lin, nnx.Linear):
                    setattr(sub, t, wrap(lin))
                    n += 1
        if n == 0:
            want = ", ".join(f"{s}.{{{','.join(ts)}}}" for s, ts in where)
            raise ValueError(
                f"{what}: encoder layer {i} ({type(layer).__name__}) has no nnx.Linear at {want}"
            )
    return model


def apply_lora(
    model: _M,
    *,
    rank: int = 8,
    alpha: float = 16.0,
    mlp: bool = False,
    attention_targets: Sequence[str] = ATTENTION_TARGETS,
    rngs: nnx.Rngs,
) -> _M:
    """Wrap attention (and with ``mlp``, MLP) projections of every block in LoRA, in place.

    Targets that a family lacks are skipped (GPT-2 has a fused ``qkv``); a block with none of them
    is an error. Returns ``model`` for chaining.
    """
    where = [("attention", tuple(attention_targets))]
    if mlp:
        where.append(("mlp", MLP_TARGETS))
    return _replace(
        model, where, lambda lin: LoRALinear(lin, rank=rank, alpha=alpha, rngs=rngs), "apply_lora"
    )


def apply_adapters(model: _M, *, size: int = 64, rngs: nnx.Rngs) -> _M:
    """Houlsby adapters after every block's attention output and MLP output, in place."""
    return _replace(
        model,
        [("attention", ("output",)), ("mlp", ("output",))],
        lambda lin: AdapterLinear(lin, size=size, rngs=rngs),
        "apply_adapters",
    )


def merge_lora(model: nnx.Module) -> nnx.Module:
    """A copy of ``model`` with every LoRALinear folded into a plain ``nnx.Linear``.

    The merged kernel is ``W + (alpha / r) A B``; bias, dtypes and sharding names are kept, so
    the result has exactly the paths of the model before :func:`apply_lora`.
    """
    merged = nnx.clone(model)
    enc = _encoder(merged)
    for layer in enc.layers:
        for sub_name in ("attention", "mlp"):
            sub = getattr(layer, sub_name, None)
            if sub is None:
                continue
            for name, child in list(vars(sub).items()):
                if isinstance(child, LoRALinear):
                    setattr(sub, name, _plain(child))
    return merged


def _plain(m: LoRALinear) -> nnx.Linear:
    names = _names(m.kernel)
    lin = nnx.Linear(
        m.in_features,
        m.out_features,
        use_bias=m.bias is not None,
        dtype=m.dtype,
        param_dtype=m.param_dtype,
        kernel_init=nnx.with_partitioning(nnx.initializers.zeros, names),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros, (names[1],)),
        rngs=nnx.Rngs(0),
    )
    lin.kernel.value = (m.kernel[...] + m.delta()).astype(m.kernel[...].dtype)
    if m.bias is not None:
        assert lin.bias is not None  # built with use_bias=True just above
        lin.bias.value = m.bias[...]
    return lin


def has_lora(model: nnx.Module) -> bool:
    """Whether ``model`` already carries LoRA factors (surgery is applied once)."""
    return any(isinstance(m, LoRALinear) for _, m in model.iter_modules())


def has_adapters(model: nnx.Module) -> bool:
    return any(isinstance(m, AdapterLinear) for _, m in model.iter_modules())
