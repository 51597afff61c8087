"""Encoder–decoder: any jaxtl encoder + a decoder with cross-attention, teacher forcing, greedy
and beam-search decoding.

The encoder is one of the existing families (the BiLSTM for CoVe, a BERT-family encoder for
MASS); the decoder attends over its output states:

- :class:`AttentionLSTMDecoder` (CoVe, McCann et al. 2017, after Luong et al. 2015): LSTM layers
  read ``[emb(y_{t-1}); h~_{t-1}]`` (input feeding), "general" attention
  ``a_t = softmax(h_t^T W_a m_s)`` over the encoder states ``m``, ``h~_t = tanh(W_c [c_t; h_t])``
  and ``logits = W_o h~_t``.
- :class:`TransformerDecoder` (MASS, Song et al. 2019): post-LN blocks of causal self-attention,
  cross-attention over the encoder states and a GELU MLP; learned absolute positions that the
  caller may set (MASS feeds a masked span at its positions in the sentence); output projection
  tied to the decoder's token embedding.

Both share one calling convention: ``decoder(memory, memory_mask, target_in, ...)`` gives logits
for every target position at once (teacher forcing: ``target_in`` is the gold target shifted
right, starting with BOS), and ``decoder.init_state`` / ``decoder.step`` advance one token at a
time, which :func:`greedy` and :func:`beam_search` drive inside ``lax.fori_loop`` with a fixed
maximum length (jit-friendly: one program per length). Token layout, as jaxtl's tokenised
targets: ``[BOS] y_1 … y_n [EOS] pad …``; decoding returns the same layout (position 0 = BOS,
padding after EOS).

In a run the decoder is the ``translation`` task's head (:func:`jaxtl.objectives.seq2seq`), so
the encoder runs once per batch in the shared switch loss and the one sharded step trains both.
:class:`Seq2Seq` bundles an encoder and a decoder for direct use (tests, research code).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtl.models import base

DECODERS = ("lstm", "transformer")
NEG = -1e9  # a log-probability that never wins (finite: avoids inf - inf = nan)


def _lstm_params(in_size: int, hidden: int, rngs: nnx.Rngs) -> tuple[nnx.Param, ...]:
    """One LSTM layer's kernels [in,4H], [H,4H] and bias [4H] (gates i, f, g, o)."""
    ki = jax.nn.initializers.lecun_normal()(rngs.params(), (in_size, 4 * hidden))
    kh = jax.nn.initializers.orthogonal()(rngs.params(), (hidden, 4 * hidden))
    # Forget-gate bias 1 (Jozefowicz et al. 2015): gradients flow through long targets early on.
    b = jnp.zeros((4 * hidden,)).at[hidden : 2 * hidden].set(1.0)
    return (
        nnx.Param(ki, sharding_names=("embed", "mlp")),
        nnx.Param(kh, sharding_names=(None, "mlp")),
        nnx.Param(b, sharding_names=("mlp",)),
    )


def _lstm_cell(x, h, c, ki, kh, b):
    gates = x @ ki + h @ kh + b
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c


class AttentionLSTMDecoder(nnx.Module):
    """CoVe's attentional LSTM decoder (module docstring). State: ``(h [B,L,H], c [B,L,H],
    h~ [B,H])``; the encoder keys ``m W_a`` are computed once per source (:meth:`context`)."""

    kind = "lstm"
    beam, alpha = 1, 1.0  # how evaluation decodes (build_decoder sets them)

    def __init__(
        self,
        vocab_size: int,
        memory_size: int,
        *,
        embed_size: int = 300,
        hidden_size: int = 300,
        num_layers: int = 2,
        dropout: float = 0.1,
        bos_id: int,
        eos_id: int,
        pad_id: int = 0,
        rngs: nnx.Rngs,
    ):
        self.vocab_size, self.memory_size = vocab_size, memory_size
        self.embed_size, self.hidden_size, self.num_layers = embed_size, hidden_size, num_layers
        self.dropout = dropout
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.embed = base.embed(vocab_size, embed_size, ("vocab", "embed"), std=0.1, rngs=rngs)
        layers = []
        for i in range(num_layers):
            ki, kh, b = _lstm_params(
                embed_size + hidden_size if i == 0 else hidden_size, hidden_size, rngs
            )
            layers.append(nnx.Dict({"kernel_in": ki, "kernel_hidden": kh, "bias": b}))
        self.lstm = nnx.List(layers)
        self.attention = base.linear(memory_size, hidden_size, ("embed", "mlp"), use_bias=False,
                                     std=memory_size**-0.5, rngs=rngs)  # fmt: skip
        self.combine = base.linear(memory_size + hidden_size, hidden_size, ("embed", "mlp"),
                                   use_bias=False, std=(memory_size + hidden_size) ** -0.5,
                                   rngs=rngs)  # fmt: skip
        self.output = base.linear(hidden_size, vocab_size, ("embed", "vocab"), rngs=rngs)

    def describe(self) -> dict[str, Any]:
        return {
            "class": "AttentionLSTMDecoder", "vocab_size": self.vocab_size,
            "memory_size": self.memory_size, "embed_size": self.embed_size,
            "hidden_size": self.hidden_size, "num_layers": self.num_layers,
            "dropout": self.dropout, "bos_id": self.bos_id, "eos_id": self.eos_id,
            "pad_id": self.pad_id,
        }  # fmt: skip

    # --- one step, shared by teacher forcing and decoding -----------------------------------
    def context(self, memory: jax.Array, memory_mask: jax.Array) -> tuple:
        """What every step reads about the source: (states, keys = states W_a, mask)."""
        return memory, self.attention(memory), memory_mask.astype(bool)

    def init_state(self, ctx: tuple, batch_size: int) -> tuple:
        z = jnp.zeros((batch_size, self.num_layers, self.hidden_size), ctx[0].dtype)
        return z, z, jnp.zeros((batch_size, self.hidden_size), ctx[0].dtype)

    def _step(self, ctx: tuple, state: tuple, x: jax.Array) -> tuple[jax.Array, tuple]:
        """x: embedded previous token [B,E] -> (h~_t [B,H], new state)."""
        memory, keys, mask = ctx
        hs, cs, feed = state
        inp = jnp.concatenate([x, feed], -1)
        new_h, new_c = [], []
        for i, layer in enumerate(self.lstm):
            h, c = _lstm_cell(inp, hs[:, i], cs[:, i], layer["kernel_in"][...], layer["kernel_hidden"][...],
                              layer["bias"][...])  # fmt: skip
            new_h.append(h)
            new_c.append(c)
            inp = h
        scores = jnp.einsum("bsh,bh->bs", keys, inp).astype(jnp.float32)
        weights = jax.nn.softmax(jnp.where(mask, scores, NEG), -1).astype(memory.dtype)
        attended = jnp.einsum("bs,bsm->bm", weights, memory)
        out = jnp.tanh(self.combine(jnp.concatenate([attended, inp], -1)))
        return out, (jnp.stack(new_h, 1), jnp.stack(new_c, 1), out)

    def step(self, ctx: tuple, state: tuple, token: jax.Array, t: jax.Array):
        """Logits [B,V] for the token after ``token`` [B] (``t``: its position; unused)."""
        out, state = self._step(ctx, state, self.embed(token))
        return self.output(out), state

    def __call__(
        self,
        memory: jax.Array,
        memory_mask: jax.Array,
        target_in: jax.Array,
        positions: jax.Array | None = None,  # accepted for the shared signature; unused
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """Teacher forcing: logits [B,T,V] for targets ``target_in`` [B,T] (BOS first)."""
        del positions
        drop = lambda y: base.dropout(  # noqa: E731
            y, self.dropout, deterministic=deterministic, rngs=rngs
        )
        ctx = self.context(drop(memory), memory_mask)
        x = drop(self.embed(target_in))  # [B,T,E]

        def body(state, xt):
            out, state = self._step(ctx, state, xt)
            return state, out

        _, outs = jax.lax.scan(body, self.init_state(ctx, target_in.shape[0]), x.swapaxes(0, 1))
        return self.output(drop(outs.swapaxes(0, 1)))


class _Attention(nnx.Module):
    def __init__(self, q_size: int, kv_size: int, hidden: int, heads: int, rngs: nnx.Rngs):
        self.heads = heads
        self.query = base.linear(q_size, hidden, ("embed", "heads"), rngs=rngs)
        self.key = base.linear(kv_size, hidden, ("embed", "heads"), rngs=rngs)
        self.value = base.linear(kv_size, hidden, ("embed", "heads"), rngs=rngs)
        self.output = base.linear(hidden, hidden, ("heads", "embed"), rngs=rngs)

    def __call__(self, x, kv, mask, *, rate, deterministic, rngs):
        split = lambda y: y.reshape(*y.shape[:2], self.heads, -1)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(kv)), split(self.value(kv))
        out = base.attention(q, k, v, mask, rate=rate, deterministic=deterministic, rngs=rngs)
        return self.output(out.reshape(*x.shape[:2], -1))


class _DecoderBlock(nnx.Module):
    """Post-LN: x = LN(x + SelfAttn(x)); x = LN(x + CrossAttn(x, m)); x = LN(x + MLP(x))."""

    def __init__(self, hidden: int, heads: int, mlp: int, eps: float, rngs: nnx.Rngs):
        self.self_attention = _Attention(hidden, hidden, hidden, heads, rngs)
        self.self_norm = base.layer_norm(hidden, eps, rngs=rngs)
        self.cross_attention = _Attention(hidden, hidden, hidden, heads, rngs)
        self.cross_norm = base.layer_norm(hidden, eps, rngs=rngs)
        self.intermediate = base.linear(hidden, mlp, ("embed", "mlp"), rngs=rngs)
        self.mlp_output = base.linear(mlp, hidden, ("mlp", "embed"), rngs=rngs)
        self.mlp_norm = base.layer_norm(hidden, eps, rngs=rngs)

    def __call__(self, x, memory, self_mask, cross_mask, *, rate, deterministic, rngs):
        drop = lambda y: base.dropout(y, rate, deterministic=deterministic, rngs=rngs)  # noqa: E731
        kw = {"rate": rate, "deterministic": deterministic, "rngs": rngs}
        x = self.self_norm(x + drop(self.self_attention(x, x, self_mask, **kw)))
        x = self.cross_norm(x + drop(self.cross_attention(x, memory, cross_mask, **kw)))
        h = self.mlp_output(base.gelu_exact(self.intermediate(x)))
        return self.mlp_norm(x + drop(h))


class TransformerDecoder(nnx.Module):
    """MASS's Transformer decoder (module docstring). Decoding state: the token buffer [B,L];
    each step re-runs the causal decoder on it and reads position ``t`` (O(L²) per sequence,
    fine at the lengths jaxtl decodes; no key/value cache to keep in step with beams)."""

    kind = "transformer"
    beam, alpha = 1, 1.0

    def __init__(
        self,
        vocab_size: int,
        memory_size: int,
        *,
        hidden_size: int = 256,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int = 1024,
        max_positions: int = 512,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        bos_id: int,
        eos_id: int,
        pad_id: int = 0,
        rngs: nnx.Rngs,
    ):
        if hidden_size % num_heads:
            raise ValueError(f"decoder hidden_size={hidden_size} is not divisible by "
                             f"num_heads={num_heads}")  # fmt: skip
        self.vocab_size, self.memory_size, self.hidden_size = vocab_size, memory_size, hidden_size
        self.num_layers, self.num_heads, self.intermediate_size = (
            num_layers, num_heads, intermediate_size)  # fmt: skip
        self.max_positions, self.dropout, self.layer_norm_eps = (
            max_positions, dropout, layer_norm_eps)  # fmt: skip
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.embed = base.embed(vocab_size, hidden_size, ("vocab", "embed"), rngs=rngs)
        self.positions = base.embed(max_positions, hidden_size, (None, "embed"), rngs=rngs)
        self.embed_norm = base.layer_norm(hidden_size, layer_norm_eps, rngs=rngs)
        self.memory_project = (
            base.linear(memory_size, hidden_size, ("embed", "embed"), rngs=rngs)
            if memory_size != hidden_size
            else None
        )
        self.layers = nnx.List(
            [
                _DecoderBlock(hidden_size, num_heads, intermediate_size, layer_norm_eps, rngs)
                for _ in range(num_layers)
            ]
        )
        self.bias = nnx.Param(jnp.zeros((vocab_size,)), sharding_names=("vocab",))

    def describe(self) -> dict[str, Any]:
        return {
            "class": "TransformerDecoder", "vocab_size": self.vocab_size,
            "memory_size": self.memory_size, "hidden_size": self.hidden_size,
            "num_layers": self.num_layers, "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size, "max_positions": self.max_positions,
            "dropout": self.dropout, "layer_norm_eps": self.layer_norm_eps,
            "bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id,
        }  # fmt: skip

    def context(self, memory: jax.Array, memory_mask: jax.Array) -> tuple:
        if self.memory_project is not None:
            memory = self.memory_project(memory)
        return memory, memory_mask.astype(bool)[:, None, None, :]

    def _run(self, ctx, target_in, positions, *, deterministic, rngs):
        memory, cross_mask = ctx
        t = target_in.shape[1]
        if positions is None:
            positions = jnp.arange(t)[None]  # one lookup for the batch (bert.table_positions)
        x = self.embed_norm(self.embed(target_in) + self.positions(positions))
        x = base.dropout(x, self.dropout, deterministic=deterministic, rngs=rngs)
        # Causal: query i sees keys j <= i. Right padding sits after every real token, so real
        # positions never see it and need no padding mask.
        causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
        for layer in self.layers:
            x = layer(x, memory, causal, cross_mask, rate=self.dropout,
                      deterministic=deterministic, rngs=rngs)  # fmt: skip
        return x @ self.embed.embedding[...].astype(x.dtype).T + self.bias[...].astype(x.dtype)

    def __call__(
        self,
        memory: jax.Array,
        memory_mask: jax.Array,
        target_in: jax.Array,
        positions: jax.Array | None = None,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        """Teacher forcing: logits [B,T,V]; ``positions`` [B,T] default ``0..T-1``."""
        ctx = self.context(memory, memory_mask)
        return self._run(ctx, target_in, positions, deterministic=deterministic, rngs=rngs)

    def init_state(self, ctx: tuple, batch_size: int, max_len: int = 0) -> jax.Array:
        return jnp.full((batch_size, max_len), self.pad_id, jnp.int32)

    def step(self, ctx: tuple, state: jax.Array, token: jax.Array, t: jax.Array):
        buf = jax.lax.dynamic_update_index_in_dim(state, token.astype(jnp.int32), t, axis=1)
        logits = self._run(ctx, buf, None, deterministic=True, rngs=None)
        return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False), buf


Decoder = AttentionLSTMDecoder | TransformerDecoder


def _start(decoder: Decoder, ctx: tuple, batch_size: int, max_len: int):
    if isinstance(decoder, TransformerDecoder):
        return decoder.init_state(ctx, batch_size, max_len)
    return decoder.init_state(ctx, batch_size)


def _log_probs(decoder: Decoder, logits: jax.Array) -> jax.Array:
    """Log-probabilities with BOS and padding banned as outputs (they are never targets)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    banned = (
        jnp.zeros(logp.shape[-1], bool).at[decoder.bos_id].set(True).at[decoder.pad_id].set(True)
    )
    return jnp.where(banned, NEG, logp)


def greedy(decoder: Decoder, memory: jax.Array, memory_mask: jax.Array, max_len: int) -> jax.Array:
    """Greedy decoding: int32[B, max_len], ``[BOS] y_1 … [EOS] pad …`` (no EOS if cut off)."""
    b = memory.shape[0]
    ctx = decoder.context(memory, memory_mask)
    tokens = jnp.full((b, max_len), decoder.pad_id, jnp.int32).at[:, 0].set(decoder.bos_id)

    def body(t, carry):
        tokens, state, done = carry
        logits, state = decoder.step(ctx, state, tokens[:, t], t)
        nxt = jnp.argmax(_log_probs(decoder, logits), -1).astype(jnp.int32)
        nxt = jnp.where(done, decoder.pad_id, nxt)
        tokens = jax.lax.dynamic_update_index_in_dim(tokens, nxt, t + 1, axis=1)
        return tokens, state, done | (nxt == decoder.eos_id)

    carry = (tokens, _start(decoder, ctx, b, max_len), jnp.zeros((b,), bool))
    return jax.lax.fori_loop(0, max_len - 1, body, carry)[0]


def beam_search(
    decoder: Decoder,
    memory: jax.Array,
    memory_mask: jax.Array,
    max_len: int,
    width: int = 4,
    alpha: float = 1.0,
) -> jax.Array:
    """Beam search: int32[B, max_len] in :func:`greedy`'s layout.

    ``width`` hypotheses per source; each step keeps the ``width`` best (sum of log-probs) of
    their extensions. A hypothesis that emitted EOS stays in the beam, extended by padding at no
    cost. At the end the hypothesis with the best length-normalised score ``sum log p /
    length**alpha`` wins (``length`` counts generated tokens, EOS included; ``alpha=0``: no
    normalisation). With ``width=1`` every step keeps the argmax: the result equals :func:`greedy`.
    """
    if width < 1:
        raise ValueError(f"beam width must be >= 1, got {width}")
    b, k = memory.shape[0], width
    rep = lambda x: jnp.repeat(x, k, axis=0)  # noqa: E731 ([B,...] -> [B*K,...], beams adjacent)
    ctx = decoder.context(rep(memory), rep(memory_mask))
    tokens = jnp.full((b, k, max_len), decoder.pad_id, jnp.int32).at[:, :, 0].set(decoder.bos_id)
    scores = jnp.where(jnp.arange(k) == 0, 0.0, NEG)[None].repeat(b, 0)  # one live beam first
    finished_row = jnp.full((decoder.vocab_size,), NEG).at[decoder.pad_id].set(0.0)

    def regroup(x, beam):  # [B*K, ...] rows of beam indices [B,K]
        x = x.reshape(b, k, *x.shape[1:])
        idx = beam.reshape(b, k, *([1] * (x.ndim - 2)))
        return jnp.take_along_axis(x, idx, axis=1).reshape(b * k, *x.shape[2:])

    def body(t, carry):
        tokens, state, scores, done, lengths = carry
        logits, state = decoder.step(ctx, state, tokens[:, :, t].reshape(b * k), t)
        logp = _log_probs(decoder, logits).reshape(b, k, -1)
        logp = jnp.where(done[..., None], finished_row, logp)
        cand = (scores[..., None] + logp).reshape(b, -1)
        scores, flat = jax.lax.top_k(cand, k)
        beam, tok = flat // logp.shape[-1], (flat % logp.shape[-1]).astype(jnp.int32)
        state = jax.tree.map(lambda s: regroup(s, beam), state)  # every state is batch-first
        tokens = jnp.take_along_axis(tokens, beam[..., None], axis=1)
        tokens = jax.lax.dynamic_update_index_in_dim(tokens, tok, t + 1, axis=2)
        was_done = jnp.take_along_axis(done, beam, axis=1)
        lengths = jnp.take_along_axis(lengths, beam, axis=1) + (~was_done).astype(jnp.int32)
        return tokens, state, scores, was_done | (tok == decoder.eos_id), lengths

    carry = (tokens, _start(decoder, ctx, b * k, max_len), scores, jnp.zeros((b, k), bool),
             jnp.zeros((b, k), jnp.int32))  # fmt: skip
    tokens, _, scores, _, lengths = jax.lax.fori_loop(0, max_len - 1, body, carry)
    normed = scores / jnp.maximum(lengths, 1).astype(jnp.float32) ** alpha
    best = jnp.argmax(normed, -1)
    return jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]


def generate(
    decoder: Decoder, memory: jax.Array, memory_mask: jax.Array, max_len: int, *,
    beam: int = 1, alpha: float = 1.0,
) -> jax.Array:  # fmt: skip
    """Greedy for ``beam=1``, else :func:`beam_search`."""
    if beam == 1:
        return greedy(decoder, memory, memory_mask, max_len)
    return beam_search(decoder, memory, memory_mask, max_len, beam, alpha)


def shift(target_ids: jax.Array, target_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Teacher forcing from ``[BOS] y … [EOS] pad``: (decoder inputs ``[:, :-1]``, labels
    ``[:, 1:]``, bool valid ``[:, 1:]``)."""
    return target_ids[:, :-1], target_ids[:, 1:], target_mask[:, 1:] > 0


def token_nll(
    logits: jax.Array, labels: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(summed cross-entropy over valid positions, their count): the step's sum convention."""
    import optax

    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), jnp.where(valid, labels, 0)
    )
    return jnp.where(valid, ce, 0.0).sum(), valid.sum().astype(jnp.float32)


def build_decoder(
    kind: str, vocab_size: int, memory_size: int, *, bos_id: int, eos_id: int, pad_id: int,
    rngs: nnx.Rngs, beam: int = 1, alpha: float = 1.0, **sizes: Any,
) -> Decoder:  # fmt: skip
    """The decoder ``kind`` (``lstm`` | ``transformer``) with the given sizes; ``beam`` and
    ``alpha`` are how a run decodes with it at evaluation (:func:`generate`)."""
    if kind not in DECODERS:
        raise ValueError(f"decoder kind {kind!r}; expected one of {DECODERS}")
    cls: Callable[..., Decoder] = AttentionLSTMDecoder if kind == "lstm" else TransformerDecoder
    dec = cls(vocab_size, memory_size, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, rngs=rngs,
              **sizes)  # fmt: skip
    dec.beam, dec.alpha = int(beam), float(alpha)
    return dec


def from_description(desc: dict[str, Any], *, rngs: nnx.Rngs) -> Decoder:
    args = dict(desc)
    cls = {"AttentionLSTMDecoder": AttentionLSTMDecoder, "TransformerDecoder": TransformerDecoder}
    name = args.pop("class", None)
    if name not in cls:
        raise ValueError(f"unknown decoder description {desc!r}")
    vocab, memory = args.pop("vocab_size"), args.pop("memory_size")
    return cls[name](vocab, memory, **args, rngs=rngs)


class Seq2Seq(nnx.Module):
    """An encoder and a decoder, for direct use: ``model(src, src_mask, target_in)`` → logits,
    ``model.generate(src, src_mask, max_len, beam=...)`` → tokens."""

    def __init__(self, encoder: nnx.Module, decoder: Decoder):
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, src, src_mask, *, deterministic=True, rngs=None) -> jax.Array:
        out = self.encoder(src, src_mask, None, deterministic=deterministic, rngs=rngs)
        return out.last_hidden_state

    def __call__(self, src, src_mask, target_in, *, deterministic=True, rngs=None):
        memory = self.encode(src, src_mask, deterministic=deterministic, rngs=rngs)
        return self.decoder(memory, src_mask, target_in, deterministic=deterministic, rngs=rngs)

    def generate(self, src, src_mask, max_len: int, *, beam: int = 1, alpha: float = 1.0):
        return generate(self.decoder, self.encode(src, src_mask), src_mask, max_len, beam=beam,
                        alpha=alpha)  # fmt: skip
