"""GPT-2: causal pre-LN transformer with learned positions and a final LayerNorm.

Names: ``embeddings/{word,position}`` (HF ``wte``/``wpe``), ``layers/<i>/{attention_norm,
attention/{qkv,output}, mlp_norm, mlp/{intermediate,output}}`` (``ln_1``, ``attn.c_attn``,
``attn.c_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) and ``final_norm`` (``ln_f``). HF's
``Conv1D`` weights are already (in, out), so they load without a transpose; ``qkv`` stays fused.

Padding: the attention mask combines causality with the padding mask, so either left or right
padding works. Position ids count real tokens only (``cumsum(mask) - 1``), so a left-padded
sequence gets the same positions, and outputs, as the unpadded one. HF ``GPT2Model`` uses
``arange(T)`` unless given ``position_ids``; with right padding the two agree.

``hidden_states`` follow HF's ``output_hidden_states``: the embedding output, then each block's
output, except that the LAST entry has ``ln_f`` applied (it equals HF's ``last_hidden_state``).
So ``last_hidden_state`` is what a GPT-2 LM head consumes, and layer-mixing representations see
the un-normalised residual stream for every other layer, exactly as with HF features.

``token_type_ids`` are accepted for the shared signature and ignored (HF would add ``wte`` rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtl.mesh import constrain_batch
from jaxtl.models import base
from jaxtl.models.family import Family, HeadSpec, activation_name, qa_head, reject, require
from jaxtl.models.keymap import Rule, embedding, linear, norm


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    max_position_embeddings: int = 1024
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int | None = None  # None = 4 * hidden_size
    activation: str = "gelu_new"
    layer_norm_eps: float = 1e-5
    hidden_dropout: float = 0.1  # resid_pdrop
    embedding_dropout: float = 0.1  # embd_pdrop
    attention_dropout: float = 0.1  # attn_pdrop
    initializer_range: float = 0.02
    dtype: str = "float32"
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        base.activation(self.activation, where="activation_function")
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))

    @property
    def inner_size(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def position_limit(self) -> int:
        """The longest sequence the position table takes (``n_positions``)."""
        return self.max_position_embeddings


def _kw(cfg: GPT2Config) -> dict[str, Any]:
    return {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}


class GPT2Embeddings(nnx.Module):
    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        h, std, kw = cfg.hidden_size, cfg.initializer_range, _kw(cfg)
        self.word = base.embed(cfg.vocab_size, h, ("vocab", "embed"), std=std, rngs=rngs, **kw)
        self.position = base.embed(
            cfg.max_position_embeddings, h, (None, "embed"), std=std, rngs=rngs, **kw
        )


class GPT2Attention(nnx.Module):
    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        h, std, kw = cfg.hidden_size, cfg.initializer_range, _kw(cfg)
        self.num_heads = cfg.num_heads
        self.qkv = base.linear(h, 3 * h, ("embed", "heads"), std=std, rngs=rngs, **kw)
        self.output = base.linear(h, h, ("heads", "embed"), std=std, rngs=rngs, **kw)

    def __call__(self, x, mask, *, rate: float, deterministic: bool, rngs) -> jax.Array:
        b, t, h = x.shape
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        split = lambda y: y.reshape(b, t, self.num_heads, h // self.num_heads)  # noqa: E731
        out = base.attention(
            split(q), split(k), split(v), mask,
            rate=rate, deterministic=deterministic, rngs=rngs,
        )  # fmt: skip
        return self.output(out.reshape(b, t, h))


class GPT2Mlp(nnx.Module):
    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        h, m, std, kw = cfg.hidden_size, cfg.inner_size, cfg.initializer_range, _kw(cfg)
        self.intermediate = base.linear(h, m, ("embed", "mlp"), std=std, rngs=rngs, **kw)
        self.output = base.linear(m, h, ("mlp", "embed"), std=std, rngs=rngs, **kw)
        self.act = base.activation(cfg.activation, where="activation_function")

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.output(self.act(self.intermediate(x)))


class GPT2Layer(nnx.Module):
    """Pre-LN block: x + attn(LN(x)), then + mlp(LN(.))."""

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        kw = _kw(cfg)
        self.attention_norm = base.layer_norm(
            cfg.hidden_size, cfg.layer_norm_eps, pre_norm=True, rngs=rngs, **kw
        )
        self.attention = GPT2Attention(cfg, rngs=rngs)
        self.mlp_norm = base.layer_norm(
            cfg.hidden_size, cfg.layer_norm_eps, pre_norm=True, rngs=rngs, **kw
        )
        self.mlp = GPT2Mlp(cfg, rngs=rngs)
        self.hidden_dropout = cfg.hidden_dropout
        self.attention_dropout = cfg.attention_dropout

    def __call__(self, x, mask, *, deterministic: bool, rngs) -> jax.Array:
        drop = lambda y: base.dropout(  # noqa: E731
            y, self.hidden_dropout, deterministic=deterministic, rngs=rngs
        )
        a = self.attention(
            self.attention_norm(x), mask,
            rate=self.attention_dropout, deterministic=deterministic, rngs=rngs,
        )  # fmt: skip
        x = x + drop(a)
        return x + drop(self.mlp(self.mlp_norm(x)))


def causal_mask(attention_mask: jax.Array) -> jax.Array:
    """[B,T] -> [B,1,T,T]: query q sees real keys k <= q. The diagonal is always visible so a
    padding query (left padding) never has an empty row; real queries are unaffected."""
    t = attention_mask.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))
    keys = attention_mask.astype(bool)[:, None, None, :] | jnp.eye(t, dtype=bool)
    return causal[None, None] & keys


class GPT2Encoder(nnx.Module):
    causal = True  # each position sees itself and earlier ones: CLM, last-token pooling

    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.family = "gpt2"
        self.num_layers = cfg.num_layers
        self.hidden_size = cfg.hidden_size
        self.embeddings = GPT2Embeddings(cfg, rngs=rngs)
        self.layers = nnx.List([GPT2Layer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = base.layer_norm(
            cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs, **_kw(cfg)
        )

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
        """``pair_mask`` (bool [B,1,T,T]) replaces the padding part of the mask; causality is
        always applied on top. ``position_ids`` [B,T]: each token's index within its own
        example (packed batches); default: real tokens counted from 0."""
        attention_mask = base.check_inputs(input_ids, attention_mask)
        positions = position_ids
        if positions is None:
            positions = jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1, 0)
        x = self.embeddings.word(input_ids) + self.embeddings.position(positions)
        x = base.dropout(x, self.cfg.embedding_dropout, deterministic=deterministic, rngs=rngs)
        if pair_mask is None:
            mask = causal_mask(attention_mask)
        else:
            t = input_ids.shape[1]
            mask = pair_mask & jnp.tril(jnp.ones((t, t), bool))[None, None]
        states = [x]
        for layer in self.layers:
            x = layer(x, mask, deterministic=deterministic, rngs=rngs)
            x = constrain_batch(x)
            states.append(x)
        states[-1] = self.final_norm(x)  # as HF: ln_f only on the last hidden state
        return base.EncoderOutput(tuple(states))


# --- Hugging Face conversion -------------------------------------------------------------------


def config_from_hf(hf: Mapping[str, Any]) -> GPT2Config:
    why = "the jaxtl GPT-2 implements the standard scaled attention without cross-attention"
    reject(hf, "scale_attn_weights", (True,), why)
    reject(hf, "scale_attn_by_inverse_layer_idx", (False,), why)
    reject(hf, "add_cross_attention", (False,), why)
    act = activation_name(hf, "activation_function", "gelu_new")
    get = lambda k: require(hf, k, "gpt2")  # noqa: E731
    return GPT2Config(
        vocab_size=get("vocab_size"),
        max_position_embeddings=get("n_positions"),
        hidden_size=get("n_embd"),
        num_layers=get("n_layer"),
        num_heads=get("n_head"),
        intermediate_size=hf.get("n_inner"),
        activation=act,
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        hidden_dropout=hf.get("resid_pdrop", 0.1),
        embedding_dropout=hf.get("embd_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        initializer_range=hf.get("initializer_range", 0.02),
    )


def config_to_hf(cfg: GPT2Config) -> dict[str, Any]:
    return {
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_position_embeddings,
        "n_embd": cfg.hidden_size,
        "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads,
        "n_inner": cfg.intermediate_size,
        "activation_function": cfg.activation,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "resid_pdrop": cfg.hidden_dropout,
        "embd_pdrop": cfg.embedding_dropout,
        "attn_pdrop": cfg.attention_dropout,
        "initializer_range": cfg.initializer_range,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
    }


def key_map(cfg: GPT2Config) -> list[Rule]:
    rules = embedding("wte", "embeddings/word") + embedding("wpe", "embeddings/position")
    for i in range(cfg.num_layers):
        hf, me = f"h.{i}", f"layers/{i}"
        rules += norm(f"{hf}.ln_1", f"{me}/attention_norm")
        rules += linear(f"{hf}.attn.c_attn", f"{me}/attention/qkv", conv1d=True)
        rules += linear(f"{hf}.attn.c_proj", f"{me}/attention/output", conv1d=True)
        rules += norm(f"{hf}.ln_2", f"{me}/mlp_norm")
        rules += linear(f"{hf}.mlp.c_fc", f"{me}/mlp/intermediate", conv1d=True)
        rules += linear(f"{hf}.mlp.c_proj", f"{me}/mlp/output", conv1d=True)
    return rules + norm("ln_f", "final_norm")


def _clm_head(cfg: GPT2Config, *, rngs: nnx.Rngs) -> nnx.Module:
    from jaxtl.models.heads import CLMHead

    return CLMHead(rngs=rngs)


# GPT2ForSequenceClassification: ``score`` (no bias, no dropout) on the last real token (HF:
# the rightmost token that is not ``pad_token_id``; jaxtl batches are right-padded, so the same);
# GPT2ForTokenClassification: dropout and ``classifier`` on every token.
SEQUENCE_HEAD = HeadSpec(
    "GPT2ForSequenceClassification",
    lambda cfg: linear("score", "classifier", bias=False),
    pooling="last",
    dropout=False,
    bias=False,
)
TOKEN_HEAD = HeadSpec("GPT2ForTokenClassification", lambda cfg: linear("classifier", "classifier"))

GPT2 = Family(
    model_type="gpt2",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=GPT2Encoder,
    key_map=key_map,
    architecture="GPT2Model",
    prefixes=("transformer.",),
    # attn.bias / attn.masked_bias are causal-mask buffers in older checkpoints, not weights.
    ignore=(r"(^|\.)attn\.bias$", r"(^|\.)attn\.masked_bias$", r"^lm_head\."),
    lm_head=_clm_head,
    lm_key_map=lambda cfg: [],
    lm_architecture="GPT2LMHeadModel",
    lm_ignore=(r"^lm_head\.weight$",),  # tied to wte
    sequence_head=SEQUENCE_HEAD,
    token_head=TOKEN_HEAD,
    qa_head=qa_head("GPT2"),
)
