"""Stacked bidirectional LSTM encoder (CoVe, ELMo-style and CVT experiments).

Word embeddings feed ``num_layers`` bidirectional LSTM layers. Each layer concatenates its forward
and backward states, so its output is ``[B,T,2*hidden_size]`` and ``encoder.hidden_size`` is
``2 * cfg.hidden_size``. To give every entry of ``hidden_states`` that same width (representations
such as ELMo's scalar mix add layers together), ``hidden_states[0]`` is the word embedding passed
through ``embeddings/project`` when ``embed_size != 2 * hidden_size``; with equal sizes it is the
embedding itself.

ELMo's bidirectional language model (``independent_directions=True``): the forward and backward
LSTM stacks never read each other's states — layer ``l``'s forward LSTM reads layer ``l-1``'s
forward half, its backward LSTM the backward half; both read the context-free token layer
``hidden_states[0]`` — so the forward states at ``t`` see tokens ``<= t`` only and the backward
states tokens ``>= t`` only. :class:`BiLMHead` decodes both halves through one softmax tied to
the word embeddings (forward: the next token; backward: the previous one). The default
(``False``) feeds each layer both halves of the layer below, as CoVe and taggers do.

Padding: sequences must be right-padded (real tokens first, as jaxtl batches are). Lengths come
from ``attention_mask`` and the backward direction starts at each sequence's real last token, so
padding never leaks into real positions. Outputs at padded positions are not meaningful.

There is no Hugging Face checkpoint for this model: ``jaxtl.models.save_pretrained`` writes
``config.json`` (``model_type: "jaxtl_bilstm"``) and ``model.safetensors`` keyed by jaxtl paths, and
``jaxtl.models.from_pretrained`` reads them back.
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


@dataclasses.dataclass(frozen=True)
class BiLSTMConfig:
    vocab_size: int
    embed_size: int = 300
    hidden_size: int = 150  # per direction
    num_layers: int = 2
    dropout: float = 0.1
    independent_directions: bool = False  # ELMo's biLM: separate forward and backward stacks
    pad_token_id: int = 0
    dtype: str = "float32"
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))
        object.__setattr__(self, "independent_directions", bool(self.independent_directions))

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> BiLSTMConfig:
        """A config whose vocabulary matches an HF tokenizer (its length and pad id)."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(vocab_size=len(tokenizer), pad_token_id=pad, **kwargs)


def _cell(in_size: int, hidden: int, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> nnx.RNN:
    cell = nnx.OptimizedLSTMCell(
        in_size,
        hidden,
        kernel_init=nnx.with_partitioning(jax.nn.initializers.lecun_normal(), ("embed", "mlp")),
        recurrent_kernel_init=nnx.with_partitioning(
            jax.nn.initializers.orthogonal(), (None, "mlp")
        ),
        bias_init=nnx.with_partitioning(jax.nn.initializers.zeros, ("mlp",)),
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )
    # rngs=False: the RNN keeps no RNG state, so the module's state is its parameters only.
    return nnx.RNN(cell, rngs=False)


class BiLSTMLayer(nnx.Module):
    """One bidirectional LSTM layer: [B,T,in] -> [B,T,2*hidden] (forward states, backward states)."""

    def __init__(
        self,
        in_size: int,
        hidden_size: int,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.hidden_size = hidden_size
        self.forward = _cell(in_size, hidden_size, dtype, param_dtype, rngs)
        self.backward = _cell(in_size, hidden_size, dtype, param_dtype, rngs)

    def __call__(
        self, x: jax.Array, attention_mask: jax.Array, backward_input: jax.Array | None = None
    ) -> jax.Array:
        """``backward_input``: what the backward LSTM reads instead of ``x`` (ELMo's separate
        stacks)."""
        lengths = attention_mask.astype(jnp.int32).sum(axis=1)
        # A zero (c, h) carry, built here because the cells keep no RNG to build one.
        zeros = jnp.zeros((x.shape[0], self.hidden_size), x.dtype)
        carry = (zeros, zeros)
        fwd = self.forward(x, initial_carry=carry, seq_lengths=lengths)
        # reverse + keep_order with seq_lengths flips only each row's real prefix, so the backward
        # direction starts at the real last token and its outputs line up with the inputs.
        bwd = self.backward(
            x if backward_input is None else backward_input,
            initial_carry=carry,
            seq_lengths=lengths,
            reverse=True,
            keep_order=True,
        )
        return jnp.concatenate([fwd, bwd], axis=-1)


class BiLSTMEmbeddings(nnx.Module):
    def __init__(self, cfg: BiLSTMConfig, *, rngs: nnx.Rngs):
        kw: dict[str, Any] = {
            "dtype": jnp.dtype(cfg.dtype),
            "param_dtype": jnp.dtype(cfg.param_dtype),
        }
        width = 2 * cfg.hidden_size
        self.word = base.embed(cfg.vocab_size, cfg.embed_size, ("vocab", "embed"), std=0.1,
                               rngs=rngs, **kw)  # fmt: skip
        self.project = (
            base.linear(cfg.embed_size, width, (None, "embed"), rngs=rngs, **kw)
            if cfg.embed_size != width
            else None
        )


class BiLSTMEncoder(nnx.Module):
    """Word embeddings + stacked BiLSTM, called like every jaxtl encoder."""

    def __init__(self, cfg: BiLSTMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.family = "jaxtl_bilstm"
        self.num_layers = cfg.num_layers
        self.hidden_size = 2 * cfg.hidden_size
        kw = {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}
        self.embeddings = BiLSTMEmbeddings(cfg, rngs=rngs)
        # Separate stacks: above the token layer each direction reads its own half only.
        sizes = [
            cfg.hidden_size if cfg.independent_directions and i > 0 else self.hidden_size
            for i in range(cfg.num_layers)
        ]
        self.layers = nnx.List(
            [BiLSTMLayer(size, cfg.hidden_size, rngs=rngs, **kw) for size in sizes]
        )

    @property
    def bilm(self) -> bool:
        """ELMo's biLM (``jaxtl.objectives.language_model.kind_for`` picks ``bilm``)."""
        return bool(self.cfg.independent_directions)

    def tied_embedding(self) -> jax.Array:
        return self.embeddings.word.embedding[...]

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,  # accepted for the shared signature; unused
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> base.EncoderOutput:
        attention_mask = base.check_inputs(input_ids, attention_mask)
        drop = lambda y: base.dropout(  # noqa: E731
            y, self.cfg.dropout, deterministic=deterministic, rngs=rngs
        )
        x = self.embeddings.word(input_ids)
        if self.embeddings.project is not None:
            x = self.embeddings.project(x)
        states = [x]
        h = self.cfg.hidden_size
        for i, layer in enumerate(self.layers):
            if self.cfg.independent_directions and i > 0:
                x = drop(x)
                x = layer(x[..., :h], attention_mask, backward_input=x[..., h:])
            else:
                x = layer(drop(x), attention_mask)
            x = constrain_batch(x)
            states.append(x)
        return base.EncoderOutput(tuple(states))


class BiLMHead(nnx.Module):
    """ELMo's softmax, shared by both directions and tied to the word embeddings: features
    [B,T,2H] -> (forward logits, backward logits), each [B,T,V]. The forward half at ``t``
    predicts token ``t+1``, the backward half token ``t-1`` (:func:`jaxtl.losses.lm` scores the
    pair). ``project`` maps a direction's ``H`` states to the embedding width when they differ."""

    def __init__(self, cfg: BiLSTMConfig, *, rngs: nnx.Rngs):
        if not cfg.independent_directions:
            raise ValueError(
                "a jaxtl_bilstm with independent_directions=False is no language model (each "
                "direction reads the other's states above layer 0, so it sees the tokens it "
                "would predict): build it with independent_directions=1 (ELMo's biLM)"
            )
        kw: dict[str, Any] = {
            "dtype": jnp.dtype(cfg.dtype),
            "param_dtype": jnp.dtype(cfg.param_dtype),
        }
        self.hidden, self.dropout = cfg.hidden_size, cfg.dropout
        self.project = (
            base.linear(cfg.hidden_size, cfg.embed_size, ("mlp", "embed"), rngs=rngs, **kw)
            if cfg.hidden_size != cfg.embed_size
            else None
        )
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
    ) -> tuple[jax.Array, jax.Array]:
        x = base.dropout(features, self.dropout, deterministic=deterministic, rngs=rngs)

        def decode(half: jax.Array) -> jax.Array:
            if self.project is not None:
                half = self.project(half)
            return half @ embedding.astype(half.dtype).T + self.bias[...].astype(half.dtype)

        return decode(x[..., : self.hidden]), decode(x[..., self.hidden :])


# --- save / restore (jaxtl's own format through the same registry) -----------------------------


def config_from_hf(hf: Mapping[str, Any]) -> BiLSTMConfig:
    fields = {f.name for f in dataclasses.fields(BiLSTMConfig)}
    require(hf, "vocab_size", "jaxtl_bilstm")
    return BiLSTMConfig(**{k: v for k, v in hf.items() if k in fields})


def config_to_hf(cfg: BiLSTMConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    out["model_type"] = "jaxtl_bilstm"
    return out


def key_map(cfg: BiLSTMConfig) -> list[Rule]:
    """Identity map: tensors are stored under their jaxtl paths."""
    abstract = nnx.eval_shape(lambda: BiLSTMEncoder(cfg, rngs=nnx.Rngs(0)))
    state = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
    return [Rule(p, p) for p in paths.iter_paths(state)]


def lm_key_map(cfg: BiLSTMConfig) -> list[Rule]:
    """The biLM head's tensors, stored as ``lm_head.<jaxtl path>``."""
    abstract = nnx.eval_shape(lambda: BiLMHead(cfg, rngs=nnx.Rngs(0)))
    state = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
    return [Rule(f"lm_head.{p}", p) for p in paths.iter_paths(state)]


BILSTM = Family(
    model_type="jaxtl_bilstm",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=BiLSTMEncoder,
    key_map=key_map,
    architecture="JaxtlBiLSTM",
    loader=None,
    lm_head=BiLMHead,
    lm_key_map=lm_key_map,
    lm_architecture="JaxtlBiLM",
)
