"""Task heads. Every head is called as ``head(features, ..., *, deterministic, rngs)``.

``features`` are [B,T,H'] (from ``TransferModel.features``). Dropout RNGs come at call time.
Tied LM heads take the embedding matrix as an argument so the tie survives ``nnx.split`` /
``nnx.merge`` and optimiser partitions: the matrix has one owner, the encoder.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtl.models import base
from jaxtl.models.bilstm import BiLSTMLayer

POOLINGS = ("cls", "mean", "last", "concat")


def pool(features: jax.Array, attention_mask: jax.Array, how: str) -> jax.Array:
    """[B,T,H] -> [B,H]: first token ("cls"), mean of real tokens, or last real token ("last",
    for causal encoders such as GPT-2 and Llama: the rightmost position the mask marks real, so
    left and right padding alike; position 0 for a row with no real token), or ULMFiT's concat
    pooling ("concat", [B,3H]: the last real token, the max and the mean over real tokens)."""
    if how == "concat":
        real = attention_mask.astype(bool)[..., None]
        top = jnp.where(real.any(1), jnp.max(jnp.where(real, features, -jnp.inf), axis=1), 0.0)
        parts = (
            pool(features, attention_mask, "last"),
            top,
            pool(features, attention_mask, "mean"),
        )
        return jnp.concatenate(parts, axis=-1)
    if how == "cls":
        return features[:, 0]
    mask = attention_mask.astype(features.dtype)[..., None]
    if how == "mean":
        return (features * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
    if how == "last":
        positions = jnp.arange(attention_mask.shape[1], dtype=jnp.int32)[None]
        idx = jnp.max(jnp.where(attention_mask.astype(bool), positions, 0), axis=1)
        return jnp.take_along_axis(features, idx[:, None, None], axis=1)[:, 0]
    raise ValueError(f"unknown pooling {how!r}; expected one of {POOLINGS}")


def pool_segments(
    features: jax.Array, segment_ids: jax.Array, how: str, num_segments: int
) -> jax.Array:
    """[B,T,H] of a packed batch -> [B,S,H]: :func:`pool` of each segment (``segment_ids`` 1..S;
    0 is padding): its first token ("cls"), the mean of its tokens, its last token, or those
    with the max ("concat", [B,S,3H]). An empty slot gets the row's first token or zeros (its
    weight is 0, so it never counts)."""
    if how not in POOLINGS:
        raise ValueError(f"unknown pooling {how!r}; expected one of {POOLINGS}")
    b, t, h = features.shape
    if how == "concat":
        # Max per segment without a [B,T,S,H] tensor: one segment_max over (row, slot) ids.
        ids = segment_ids + jnp.arange(b, dtype=segment_ids.dtype)[:, None] * (num_segments + 1)
        top = jax.ops.segment_max(
            features.reshape(b * t, h), ids.reshape(-1), num_segments=b * (num_segments + 1)
        ).reshape(b, num_segments + 1, h)[:, 1:]
        top = jnp.where(jnp.isfinite(top), top, 0.0)  # an empty slot's max is -inf
        parts = [pool_segments(features, segment_ids, k, num_segments) for k in ("last", "mean")]
        return jnp.concatenate([parts[0], top, parts[1]], axis=-1)
    slots = jnp.arange(1, num_segments + 1, dtype=segment_ids.dtype)
    member = segment_ids[:, :, None] == slots[None, None, :]  # [B,T,S]
    if how == "mean":
        m = member.astype(features.dtype)
        return jnp.einsum("bts,bth->bsh", m, features) / jnp.maximum(m.sum(1), 1.0)[..., None]
    if how == "cls":
        idx = jnp.argmax(member, axis=1)  # first token of each segment
    else:
        idx = t - 1 - jnp.argmax(member[:, ::-1], axis=1)  # its last token
        idx = jnp.where(member.any(1), idx, 0)
    return jnp.take_along_axis(features, idx[..., None], axis=1)


class ClassificationHead(nnx.Module):
    """Sequence (or sentence-pair) classification; ``num_labels=1`` is regression.

    ``pool`` -> [dropout, if ``input_dropout``] -> [``dense`` + ``activation`` (+ LayerNorm
    ``norm``, if ``norm_eps``), if ``hidden``] -> dropout -> ``classifier``. The arguments cover the
    transformers heads (see :class:`jaxtl.models.family.HeadSpec`): BERT's pooler + classifier
    (``hidden`` = model width, tanh), RoBERTa's and ELECTRA's ``classifier.{dense,out_proj}``
    (``input_dropout``, tanh / gelu), GPT-2's ``score`` (``pooling="last"``, no dropout,
    ``use_bias=False``), ModernBERT's ``head.{dense,norm}`` + ``classifier`` (``norm_eps``, cls or
    mean pooling, ``dense_bias``/``norm_bias`` from its config); and jaxtl's linear head
    (``model.head=linear``: any pooling, an optional tanh layer of any width).
    """

    def __init__(
        self,
        in_size: int,
        num_labels: int,
        pooling: str = "cls",
        hidden: int | None = None,
        dropout: float = 0.1,
        *,
        activation: str = "tanh",
        input_dropout: bool = False,
        use_bias: bool = True,
        dense_bias: bool = True,
        norm_eps: float | None = None,
        norm_bias: bool = True,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        self.in_size, self.num_labels, self.hidden = in_size, num_labels, hidden or None
        self.pooling = pooling
        self.dropout = dropout
        self.activation = activation
        self.act = base.activation(activation, where="head activation")
        self.input_dropout = input_dropout
        self.use_bias = use_bias
        pooled = 3 * in_size if pooling == "concat" else in_size  # concat: [last; max; mean]
        self.dense, self.norm = _transform(
            pooled, hidden, dense_bias, norm_eps, norm_bias, dtype=dtype, rngs=rngs
        )
        self.classifier = base.linear(
            hidden or pooled, num_labels, ("embed", "labels"), use_bias=use_bias, dtype=dtype,
            rngs=rngs,
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The constructor arguments (JSON): rebuilds this head's structure."""
        return {
            "class": "ClassificationHead",
            "in_size": self.in_size,
            "num_labels": self.num_labels,
            "pooling": self.pooling,
            "hidden": self.hidden,
            "dropout": self.dropout,
            "activation": self.activation,
            "input_dropout": self.input_dropout,
            "use_bias": self.use_bias,
            **_transform_description(self.dense, self.norm),
        }

    def __call__(
        self,
        features: jax.Array,
        attention_mask: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        segment_ids: jax.Array | None = None,
        num_segments: int = 0,
    ) -> jax.Array:
        """[B,num_labels]; a packed batch (``segment_ids`` [B,T], ``num_segments`` slots per
        row; :mod:`jaxtl.data.packing`) gives [B,S,num_labels], one row per segment."""
        drop = lambda y: base.dropout(  # noqa: E731
            y, self.dropout, deterministic=deterministic, rngs=rngs
        )
        if segment_ids is None:
            x = pool(features, attention_mask, self.pooling)
        else:
            x = pool_segments(features, segment_ids, self.pooling, num_segments)
        if self.input_dropout:
            x = drop(x)
        if self.dense is not None:
            x = self.act(self.dense(x))
            if self.norm is not None:
                x = self.norm(x)
        return self.classifier(drop(x))


def _transform(
    in_size: int,
    hidden: int | None,
    dense_bias: bool,
    norm_eps: float | None,
    norm_bias: bool,
    *,
    dtype: Any,
    rngs: nnx.Rngs,
) -> tuple[nnx.Linear | None, nnx.LayerNorm | None]:
    """A head's optional hidden layer: ``dense`` [in, hidden] and, with ``norm_eps``, a LayerNorm
    ``norm`` after its activation (ModernBERT's prediction head)."""
    if not hidden:
        return None, None
    dense = base.linear(
        in_size, hidden, ("embed", "mlp"), use_bias=dense_bias, dtype=dtype, rngs=rngs
    )
    norm = (
        base.layer_norm(hidden, norm_eps, use_bias=norm_bias, dtype=dtype, rngs=rngs)
        if norm_eps is not None
        else None
    )
    return dense, norm


def _transform_description(dense: nnx.Linear | None, norm: nnx.LayerNorm | None) -> dict:
    return {
        "dense_bias": dense is None or dense.bias is not None,
        "norm_eps": None if norm is None else float(norm.epsilon),
        "norm_bias": norm is None or norm.bias is not None,
    }


class TaggingHead(nnx.Module):
    """Per-token tags [B,T,num_tags]: dropout + linear ``classifier`` (every transformers
    ``*ForTokenClassification``), optionally through a BiLSTM stack first (BERT's feature-based
    NER experiment: two BiLSTM layers on frozen features; no transformers class has that).
    ``hidden``: a ``dense`` + ``activation`` (+ LayerNorm ``norm``, with ``norm_eps``) layer
    before the dropout, as ModernBERT's ``head`` (see :class:`ClassificationHead`)."""

    def __init__(
        self,
        in_size: int,
        num_tags: int,
        bilstm_hidden: int | None = None,
        dropout: float = 0.1,
        *,
        bilstm_layers: int = 2,
        hidden: int | None = None,
        activation: str = "gelu",
        dense_bias: bool = True,
        norm_eps: float | None = None,
        norm_bias: bool = True,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_size, self.num_labels = in_size, num_tags
        self.bilstm_hidden, self.bilstm_layers = bilstm_hidden or None, bilstm_layers
        self.dropout = dropout
        sizes = [in_size] + [2 * (bilstm_hidden or 0)] * (bilstm_layers - 1)
        self.bilstm = (
            nnx.List([BiLSTMLayer(s, bilstm_hidden, dtype=dtype, rngs=rngs) for s in sizes])
            if bilstm_hidden
            else None
        )
        width = 2 * bilstm_hidden if bilstm_hidden else in_size
        self.hidden, self.activation = hidden or None, activation
        self.act = base.activation(activation, where="head activation")
        self.dense, self.norm = _transform(
            width, hidden, dense_bias, norm_eps, norm_bias, dtype=dtype, rngs=rngs
        )
        self.classifier = base.linear(
            hidden or width, num_tags, ("embed", "labels"), dtype=dtype, rngs=rngs
        )

    def describe(self) -> dict[str, Any]:
        """The constructor arguments (JSON): rebuilds this head's structure."""
        return {
            "class": "TaggingHead",
            "in_size": self.in_size,
            "num_tags": self.num_labels,
            "bilstm_hidden": self.bilstm_hidden,
            "dropout": self.dropout,
            "bilstm_layers": self.bilstm_layers,
            "hidden": self.hidden,
            "activation": self.activation,
            **_transform_description(self.dense, self.norm),
        }

    def __call__(
        self,
        features: jax.Array,
        attention_mask: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        segment_ids: jax.Array | None = None,
        num_segments: int = 0,
    ) -> jax.Array:
        """Per token, so a packed batch needs nothing of its own (``segment_ids`` and
        ``num_segments`` are accepted for the shared call); a BiLSTM under the head would read
        across segments, so runs with one do not pack (:func:`jaxtl.assembly.packing`)."""
        del segment_ids, num_segments
        x = features
        if self.bilstm is not None:
            for layer in self.bilstm:
                x = layer(base.dropout(x, self.dropout, deterministic=deterministic, rngs=rngs),
                          attention_mask)  # fmt: skip
        if self.dense is not None:
            x = self.act(self.dense(x))
            if self.norm is not None:
                x = self.norm(x)
        x = base.dropout(x, self.dropout, deterministic=deterministic, rngs=rngs)
        return self.classifier(x)


def from_description(desc: dict[str, Any], *, rngs: nnx.Rngs) -> nnx.Module:
    """The head a :meth:`ClassificationHead.describe` / :meth:`TaggingHead.describe` dict names
    (random values: fill its parameters afterwards)."""
    args = dict(desc)
    cls = {"ClassificationHead": ClassificationHead, "TaggingHead": TaggingHead}.get(
        args.pop("class", None)
    )
    if cls is None:
        raise ValueError(f"unknown head description {desc!r}")
    return cls(**args, rngs=rngs)


class MLMHead(nnx.Module):
    """BERT's ``cls.predictions``: dense + activation + LayerNorm, then the decoder tied to the
    word embeddings plus a per-token bias. Loadable from HF (``load_lm_head=True``).
    ``transform_bias`` / ``norm_bias`` / ``decoder_bias`` drop those biases (ModernBERT's
    ``classifier_bias`` / ``norm_bias`` / ``decoder_bias``)."""

    def __init__(
        self,
        hidden_size: int,
        embed_size: int,
        vocab_size: int,
        *,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-12,
        transform_bias: bool = True,
        norm_bias: bool = True,
        decoder_bias: bool = True,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = {"dtype": jnp.dtype(dtype), "param_dtype": jnp.dtype(param_dtype)}
        self.activation = activation
        self.act = base.activation(activation)
        self.transform = base.linear(
            hidden_size, embed_size, ("embed", "embed"), use_bias=transform_bias, rngs=rngs, **kw
        )
        self.norm = base.layer_norm(embed_size, layer_norm_eps, use_bias=norm_bias, rngs=rngs, **kw)
        self.bias = (
            nnx.Param(jnp.zeros((vocab_size,), jnp.dtype(param_dtype)), sharding_names=("vocab",))
            if decoder_bias
            else None
        )

    def __call__(
        self,
        features: jax.Array,
        embedding: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """features [B,T,H], embedding [V,E] -> logits [B,T,V]."""
        x = self.norm(self.act(self.transform(features)))
        logits = x @ embedding.astype(x.dtype).T
        return logits if self.bias is None else logits + self.bias[...].astype(x.dtype)


class CLMHead(nnx.Module):
    """GPT-2's ``lm_head``: logits = features @ wte^T (tied, no bias, no parameters of its own).
    ``softcap``: logits bounded as ``softcap * tanh(logits / softcap)`` (Gemma 2's
    ``final_logit_softcapping``)."""

    def __init__(self, *, softcap: float | None = None, rngs: nnx.Rngs | None = None):
        self.softcap = softcap

    def __call__(
        self,
        features: jax.Array,
        embedding: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        return self.cap(features @ embedding.astype(features.dtype).T)

    def cap(self, logits: jax.Array) -> jax.Array:
        return logits if self.softcap is None else base.capped(logits, self.softcap)


class UntiedCLMHead(CLMHead):
    """A causal LM head with its own output matrix (Llama's ``lm_head`` when
    ``tie_word_embeddings=False``): logits = features @ ``decoder``. It is called like the tied
    heads, with the embedding matrix, and ignores it."""

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        *,
        std: float = 0.02,
        softcap: float | None = None,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.softcap = softcap
        self.decoder = base.linear(
            hidden_size, vocab_size, ("embed", "vocab"), std=std, use_bias=False,
            dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(param_dtype), rngs=rngs,
        )  # fmt: skip

    def __call__(
        self,
        features: jax.Array,
        embedding: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        del embedding  # untied: the head's own matrix decodes
        return self.cap(self.decoder(features))
