"""``TransferModel``: one encoder, an optional representation, and named task heads.

It only computes features; which head runs on which batch, and with which loss, is the regime's
business. Parameter paths read ``encoder/layers/3/...``, ``representation/...``,
``heads/<task>/...``, which is what partition rules are written against.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
from flax import nnx

from jaxtl.models.base import EncoderOutput
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
    ) -> tuple[EncoderOutput, jax.Array]:
        """(encoder output, features [B,T,H']): the representation, or the last hidden state."""
        out = self.encoder(
            input_ids, attention_mask, token_type_ids, deterministic=deterministic, rngs=rngs
        )
        if self.representation is None:
            return out, out.last_hidden_state
        return out, self.representation(out.hidden_states)
