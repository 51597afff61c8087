"""``TransferModel``: one encoder, an optional representation, and named task heads.

It only computes features; which head runs on which batch, and with which loss, is the regime's
business. Parameter paths read ``encoder/layers/3/...``, ``representation/...``,
``heads/<task>/...``, which is what partition rules are written against.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtl.models.base import EncoderOutput, segment_mask
from jaxtl.models.representation import Representation


class TransferModel(nnx.Module):
    def __init__(
        self,
        encoder: nnx.Module,
        heads: Mapping[str, nnx.Module],
        representation: Representation | None = None,
    ):
        self.encoder = encoder
        self.representation = representation
        self.heads = nnx.Dict(dict(heads))

    def features(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        pair_mask: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        position_ids: jax.Array | None = None,
    ) -> tuple[EncoderOutput, jax.Array]:
        """(encoder output, features [B,T,H']): the representation, or the last hidden state.
        ``pair_mask`` (bool [B,1,T,T], BERT family only) replaces the padding mask: which keys
        each query may see (UNILM's unidirectional and sequence-to-sequence masks)."""
        extra: dict[str, jax.Array | None] = {} if pair_mask is None else {"pair_mask": pair_mask}
        if segment_ids is not None:  # a packed batch (jaxtl.data.packing): examples kept apart
            extra = {"pair_mask": segment_mask(segment_ids), "position_ids": position_ids}
        out = self.encoder(
            input_ids, attention_mask, token_type_ids, deterministic=deterministic, rngs=rngs,
            **extra,
        )  # fmt: skip
        if self.representation is None:
            return out, out.last_hidden_state
        return out, self.representation(out.hidden_states)

    def cache_layers(self, out: EncoderOutput) -> jax.Array:
        """What a feature cache (:mod:`jaxtl.features`) stores of a frozen encoder's output,
        [B,T,K,H']: the representation itself (K = 1) when it has no parameters (one layer, the
        sum or the concatenation of the last four), every hidden state (K = L + 1) when it mixes
        them with trained weights (``scalar_mix``)."""
        rep = self.representation
        if rep is None:
            return out.last_hidden_state[:, :, None]
        if rep.kind in ("scalar_mix", "elmo"):  # weights trained over the layers
            return jnp.stack(out.hidden_states, axis=2)
        return rep(out.hidden_states)[:, :, None]

    def cached_features(self, stored: jax.Array) -> jax.Array:
        """:meth:`features`' second output from what :meth:`cache_layers` stored: the encoder
        does not run; ``scalar_mix`` mixes the stored layers with its current weights."""
        rep = self.representation
        if rep is not None and rep.kind in ("scalar_mix", "elmo"):
            return rep(tuple(stored[:, :, k] for k in range(stored.shape[2])))
        return stored[:, :, 0]
