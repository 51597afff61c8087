"""AWD-LSTM (Merity et al. 2018), ULMFiT's language model: a unidirectional LSTM stack with its
regularisers, called like every jaxtl encoder.

Word embeddings (``embed_size``) feed ``num_layers`` LSTM layers; the last layer's width is
``embed_size`` so the LM softmax can be tied to the embeddings (:class:`AWDLMHead`), the others
have ``hidden_size`` units. ``encoder.hidden_size`` is ``embed_size`` (what task heads read).

Regularisation, all in training only (``deterministic=False``), all off at evaluation:

- ``weight_dropout`` (DropConnect): one mask on each layer's hidden-to-hidden matrix ``W_hh``
  per forward pass, so every time step of the sequence uses the same dropped weights;
- ``embed_dropout``: whole rows of the embedding matrix (word types) dropped per batch;
- ``input_dropout`` / ``hidden_dropout`` / ``output_dropout``: variational ("locked") dropout on
  the embeddings, between layers and on the last layer's output — one mask per sequence and
  feature, reused at every time step (:func:`locked_dropout`).

``hidden_states`` are ``(embeddings as layer 0 reads them, layer 1, …, layer L)``; the last one is
after ``output_dropout``, which is what the LM head and task heads read. Padding: right-padded
sequences (real tokens first); the LSTM is causal, so padding never reaches a real position.
State is reset at every sequence (no BPTT carry across batches: jaxtl's LM blocks are
independent). Saved in jaxtl's own format (``model_type: "jaxtl_awd_lstm"``), like the BiLSTM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtl import paths
from jaxtl.mesh import constrain_batch
from jaxtl.models import base
from jaxtl.models.family import Family, require
from jaxtl.models.keymap import Rule

DROPOUTS = ("embed_dropout", "input_dropout", "hidden_dropout", "output_dropout", "weight_dropout")


@dataclasses.dataclass(frozen=True)
class AWDLSTMConfig:
    vocab_size: int
    embed_size: int = 400
    hidden_size: int = 1150
    num_layers: int = 3
    embed_dropout: float = 0.1  # dropoute: word types
    input_dropout: float = 0.65  # dropouti: locked, on the embeddings
    hidden_dropout: float = 0.3  # dropouth: locked, between layers
    output_dropout: float = 0.4  # dropout: locked, on the last layer's output
    weight_dropout: float = 0.5  # wdrop: DropConnect on W_hh
    pad_token_id: int = 0
    dtype: str = "float32"
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))
        if self.num_layers < 1:
            raise ValueError(f"num_layers={self.num_layers}: an AWD-LSTM needs at least one layer")
        for name in DROPOUTS:
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)}: must be in [0, 1)")


def locked_dropout(
    x: jax.Array, rate: float, *, deterministic: bool, rngs: nnx.Rngs | None
) -> jax.Array:
    """Variational dropout on [B,T,F]: one mask per (sequence, feature), the same at every t."""
    if deterministic or rate == 0.0:
        return x
    if rngs is None:
        raise ValueError("deterministic=False needs rngs=nnx.Rngs(dropout=...) at call time")
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rngs.dropout(), keep, (x.shape[0], 1, x.shape[-1]))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class WeightDropLSTM(nnx.Module):
    """One LSTM layer [B,T,in] -> [B,T,hidden] whose ``hh`` matrix is DropConnect-ed in training.

    Gates are ``i, f, g, o`` along the last axis of ``ih(x_t) + h_{t-1} @ hh``."""

    def __init__(
        self,
        in_size: int,
        hidden: int,
        weight_dropout: float,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.hidden, self.weight_dropout = hidden, float(weight_dropout)
        self.ih = nnx.Linear(
            in_size,
            4 * hidden,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=nnx.with_partitioning(jax.nn.initializers.lecun_normal(), ("embed", "mlp")),
            # forget-gate bias 1: remember by default early in training
            bias_init=nnx.with_partitioning(
                lambda key, shape, dt: jnp.zeros(shape, dt).at[hidden : 2 * hidden].set(1.0),
                ("mlp",),
            ),
            rngs=rngs,
        )
        init = jax.nn.initializers.orthogonal()(rngs.params(), (hidden, 4 * hidden), param_dtype)
        self.hh = nnx.Param(init, sharding_names=(None, "mlp"))

    def recurrent_kernel(self, *, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
        """``hh`` as this forward pass uses it: one DropConnect mask for the whole sequence."""
        w = self.hh[...]
        if deterministic or self.weight_dropout == 0.0:
            return w
        if rngs is None:
            raise ValueError("deterministic=False needs rngs=nnx.Rngs(dropout=...) at call time")
        keep = 1.0 - self.weight_dropout
        mask = jax.random.bernoulli(rngs.dropout(), keep, w.shape)
        return jnp.where(mask, w / keep, 0.0).astype(w.dtype)

    def __call__(
        self, x: jax.Array, *, deterministic: bool = True, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        w_hh = self.recurrent_kernel(deterministic=deterministic, rngs=rngs)
        inputs = jnp.swapaxes(self.ih(x), 0, 1)  # [T,B,4H]: the input projection for all t
        zeros = jnp.zeros((x.shape[0], self.hidden), inputs.dtype)

        def step(carry, z_in):
            c, h = carry
            z = z_in + h @ w_hh.astype(h.dtype)
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        _, hs = jax.lax.scan(step, (zeros, zeros), inputs)
        return jnp.swapaxes(hs, 0, 1)


class AWDEmbeddings(nnx.Module):
    def __init__(self, cfg: AWDLSTMConfig, *, rngs: nnx.Rngs):
        self.word = base.embed(cfg.vocab_size, cfg.embed_size, ("vocab", "embed"), std=0.1,
                               dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                               rngs=rngs)  # fmt: skip


class AWDLSTMEncoder(nnx.Module):
    """Embeddings + weight-dropped LSTM stack (module docstring)."""

    causal = True  # left to right: a causal LM (clm), last-token pooling by default

    def __init__(self, cfg: AWDLSTMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.family = "jaxtl_awd_lstm"
        self.num_layers = cfg.num_layers
        self.hidden_size = cfg.embed_size
        kw = {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}
        self.embeddings = AWDEmbeddings(cfg, rngs=rngs)
        last = cfg.num_layers - 1
        self.layers = nnx.List(
            [
                WeightDropLSTM(
                    cfg.embed_size if i == 0 else cfg.hidden_size,
                    cfg.embed_size if i == last else cfg.hidden_size,
                    cfg.weight_dropout,
                    rngs=rngs,
                    **kw,
                )
                for i in range(cfg.num_layers)
            ]
        )

    def tied_embedding(self) -> jax.Array:
        return self.embeddings.word.embedding[...]

    def embed(
        self, input_ids: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None
    ) -> jax.Array:
        """Word embeddings with embedding dropout: a word type is dropped in the whole batch."""
        x = self.embeddings.word(input_ids)
        rate = self.cfg.embed_dropout
        if deterministic or rate == 0.0:
            return x
        if rngs is None:
            raise ValueError("deterministic=False needs rngs=nnx.Rngs(dropout=...) at call time")
        keep = 1.0 - rate
        rows = jax.random.bernoulli(rngs.dropout(), keep, (self.cfg.vocab_size,))
        return jnp.where(rows[input_ids][..., None], x / keep, 0.0).astype(x.dtype)

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,  # accepted for the shared signature; unused
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> base.EncoderOutput:
        base.check_inputs(input_ids, attention_mask)
        c = self.cfg
        kw: dict[str, Any] = {"deterministic": deterministic, "rngs": rngs}
        x = self.embed(input_ids, **kw)
        x = locked_dropout(x, c.input_dropout, **kw)
        states = [x]
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = locked_dropout(x, c.hidden_dropout, **kw)
            x = constrain_batch(layer(x, **kw))
            states.append(x)
        states[-1] = locked_dropout(x, c.output_dropout, **kw)
        return base.EncoderOutput(tuple(states))


class AWDLMHead(nnx.Module):
    """The decoder tied to the word embeddings, plus a per-word bias: [B,T,E] -> [B,T,V]."""

    def __init__(self, cfg: AWDLSTMConfig, *, rngs: nnx.Rngs | None = None):
        self.bias = nnx.Param(
            jnp.zeros((cfg.vocab_size,), jnp.dtype(cfg.param_dtype)), sharding_names=("vocab",)
        )

    def __call__(
        self,
        features: jax.Array,
        embedding: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        return features @ embedding.astype(features.dtype).T + self.bias[...].astype(features.dtype)


# --- save / restore (jaxtl's own format through the same registry) -----------------------------


def config_from_hf(hf: Mapping[str, Any]) -> AWDLSTMConfig:
    fields = {f.name for f in dataclasses.fields(AWDLSTMConfig)}
    require(hf, "vocab_size", "jaxtl_awd_lstm")
    return AWDLSTMConfig(**{k: v for k, v in hf.items() if k in fields})


def config_to_hf(cfg: AWDLSTMConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    out["model_type"] = "jaxtl_awd_lstm"
    return out


def _identity(module: Any, prefix: str = "") -> list[Rule]:
    state = nnx.to_pure_dict(nnx.state(nnx.eval_shape(module), nnx.Param))
    return [Rule(prefix + p, p) for p in paths.iter_paths(state)]


def key_map(cfg: AWDLSTMConfig) -> list[Rule]:
    """Identity map: tensors are stored under their jaxtl paths."""
    return _identity(lambda: AWDLSTMEncoder(cfg, rngs=nnx.Rngs(0)))


def lm_key_map(cfg: AWDLSTMConfig) -> list[Rule]:
    return _identity(lambda: AWDLMHead(cfg), "lm_head.")


AWD_LSTM = Family(
    model_type="jaxtl_awd_lstm",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=AWDLSTMEncoder,
    key_map=key_map,
    architecture="JaxtlAWDLSTM",
    loader=None,
    lm_head=AWDLMHead,
    lm_key_map=lm_key_map,
    lm_architecture="JaxtlAWDLSTMLM",
)
