"""What a (possibly frozen) encoder hands its task heads: one layer or a mix of layers.

BERT's feature-based CoNLL-2003 experiment ranks these choices (dev F1): concatenation of the last
four layers 96.1 > weighted sum of the last four 95.9 > second-to-last 95.6 > last 94.9 >
embeddings 91.0. ``scalar_mix`` is ELMo's learned mix over *all* layers:
``gamma * sum_j softmax(w)_j * h_j``. ``elmo`` is how ELMo feeds a target model: that scalar mix
concatenated with the token layer ``h_0`` (the model's context-free word embeddings),
``[gamma * sum_j softmax(w)_j * h_j ; h_0]``, twice the width. ``cove`` is CoVe's input to a
target model (McCann et al. 2017): ``[h_0 ; h_L]``, the input embeddings next to the top layer of
an encoder trained as a translation encoder (``configs/supervised_sequential_cove.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

KINDS = (
    "embeddings",
    "last",
    "second_to_last",
    "sum_last_four",
    "concat_last_four",
    "scalar_mix",
    "elmo",
    "cove",
)


class Representation(nnx.Module):
    """``Representation(kind, num_layers, hidden_size)(hidden_states) -> [B,T,output_size]``.

    ``num_layers`` is the encoder's block count; ``hidden_states`` has ``num_layers + 1`` entries.
    """

    def __init__(self, kind: str, num_layers: int, hidden_size: int, *, rngs: nnx.Rngs):
        if kind not in KINDS:
            raise ValueError(f"unknown representation kind {kind!r}; expected one of {KINDS}")
        needed = {"second_to_last": 1, "sum_last_four": 3, "concat_last_four": 3}.get(kind, 0)
        if num_layers < needed:
            raise ValueError(f"representation {kind!r} needs at least {needed} encoder layers")
        self.kind = kind
        self.num_layers = num_layers
        widths = {"concat_last_four": 4, "elmo": 2, "cove": 2}
        self.output_size = widths.get(kind, 1) * hidden_size
        if kind in ("scalar_mix", "elmo"):
            self.weights = nnx.Param(jnp.zeros((num_layers + 1,)), sharding_names=(None,))
            self.gamma = nnx.Param(jnp.ones(()), sharding_names=())

    def __call__(
        self,
        hidden_states: Sequence[jax.Array],
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        if len(hidden_states) != self.num_layers + 1:
            raise ValueError(
                f"representation built for {self.num_layers} layers got "
                f"{len(hidden_states)} hidden states (expected {self.num_layers + 1})"
            )
        k = self.kind
        if k == "embeddings":
            return hidden_states[0]
        if k == "last":
            return hidden_states[-1]
        if k == "second_to_last":
            return hidden_states[-2]
        if k == "sum_last_four":
            h = hidden_states  # num_layers >= 3 (checked in __init__): four entries at least
            return h[-4] + h[-3] + h[-2] + h[-1]
        if k == "concat_last_four":
            return jnp.concatenate(hidden_states[-4:], axis=-1)
        if k == "cove":
            return jnp.concatenate([hidden_states[0], hidden_states[-1]], axis=-1)
        w = jax.nn.softmax(self.weights[...])
        stacked = jnp.stack(hidden_states, axis=0)
        mix = self.gamma[...] * jnp.tensordot(w.astype(stacked.dtype), stacked, axes=1)
        return jnp.concatenate([mix, hidden_states[0]], axis=-1) if k == "elmo" else mix
