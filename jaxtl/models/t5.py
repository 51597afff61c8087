"""T5's encoder (``t5``: T5, T5 v1.1, Flan-T5, sentence-T5 and GTR's encoders; ``mt5``: mT5;
``umt5``: UMT5): a bidirectional pre-norm transformer with RMSNorm (T5's "layer norm": no mean,
no bias), no biases anywhere, unscaled attention scores and a relative-position bias instead of
position embeddings — T5's bidirectional log buckets of the key-query distance, looked up in
block 0's ``relative_attention_bias`` ([buckets, heads]) and added to every layer's scores.
UMT5 is the same encoder with a table of its own in every block (``per_layer_bias``).

The feed-forward block is ``wo(act(wi(x)))`` (T5: ReLU) or, for ``feed_forward_proj=
"gated-gelu"`` (T5 v1.1, Flan-T5, mT5), ``wo(act(wi_0(x)) * wi_1(x))`` with the tanh GELU, as
transformers maps the attribute. Dropout (``dropout_rate``) follows the embeddings, each
residual branch, the feed-forward's activation, the attention weights and the final norm, as
transformers applies it.

Names: ``embeddings/word`` (HF ``shared``), ``relative_bias`` (``encoder.block.0.layer.0.
SelfAttention.relative_attention_bias``; UMT5's ``layers/<i>/relative_bias``, block ``i``'s), ``layers/<i>/{attention_norm, attention/{query, key,
value,output}, mlp_norm, mlp/{gate,intermediate,output}}`` (``encoder.block.<i>.layer.0.
{layer_norm, SelfAttention.{q,k,v,o}}``, ``layer.1.{layer_norm, DenseReluDense.{wi_0,wi_1 (or
wi),wo}}``) and ``final_norm`` (``encoder.final_layer_norm``): the projections carry BERT's
names so LoRA targets, adapters and freezing rules written for ``attention/query`` apply.

Checkpoints: ``T5EncoderModel``'s, and the encoder of a whole ``T5ForConditionalGeneration``
(its decoder and LM head are left), so ``t5-small`` or ``flan-t5-base`` folders load as they
are. Positions: the bias is looked up over the row's token indices; a packed row's examples are
contiguous and attention never crosses them, so each sees its own distances. T5 has no [CLS]
token: ``model.pooling=auto`` means the mean of the real tokens (``default_pooling``), as
sentence-T5 pools. transformers' only encoder-only T5 head is ``T5ForTokenClassification``
(base under ``transformer.``); a classifier or QA head exports in jaxtl's format.

``hidden_states`` follow transformers': the embeddings, each block's output, the final norm on
the last only.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtl.mesh import constrain_batch
from jaxtl.models import base
from jaxtl.models.bert import relative_buckets
from jaxtl.models.family import Family, HeadSpec, reject, require
from jaxtl.models.keymap import Rule, embedding, linear
from jaxtl.models.llama import RMSNorm

VARIANTS = ("t5", "mt5", "umt5")  # the HF model_types of this encoder


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    hidden_size: int = 512  # d_model
    head_dim: int = 64  # d_kv
    intermediate_size: int = 2048  # d_ff
    num_layers: int = 6
    num_heads: int = 8
    relative_buckets: int = 32
    relative_max_distance: int = 128
    dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    gated: bool = False  # feed_forward_proj "gated-..." (T5 v1.1, Flan-T5, mT5)
    per_layer_bias: bool = False  # a relative-position table in every block (UMT5)
    activation: str = "relu"
    initializer_range: float = 0.02
    dtype: str = "float32"
    param_dtype: str = "float32"
    model_type: str = "t5"

    def __post_init__(self) -> None:
        if self.model_type not in VARIANTS:
            raise ValueError(f"T5Config.model_type={self.model_type!r}, expected one of {VARIANTS}")
        base.activation(self.activation, where="dense_act_fn")
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))


def _kw(cfg: T5Config) -> dict[str, Any]:
    return {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}


def _linear(cfg: T5Config, i: int, o: int, names, rngs) -> nnx.Linear:
    return base.linear(
        i, o, names, std=cfg.initializer_range, use_bias=False, rngs=rngs, **_kw(cfg)
    )


class T5Attention(nnx.Module):
    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        h, inner = cfg.hidden_size, cfg.num_heads * cfg.head_dim
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.query = _linear(cfg, h, inner, ("embed", "heads"), rngs)
        self.key = _linear(cfg, h, inner, ("embed", "heads"), rngs)
        self.value = _linear(cfg, h, inner, ("embed", "heads"), rngs)
        self.output = _linear(cfg, inner, h, ("heads", "embed"), rngs)

    def __call__(self, x, mask, bias, *, rate: float, deterministic: bool, rngs) -> jax.Array:
        b, t, _ = x.shape
        q, k, v = (m(x).reshape(b, t, self.num_heads, self.head_dim)
                   for m in (self.query, self.key, self.value))  # fmt: skip
        # T5 folds the scale into its initialisation: the scores are not divided by sqrt(d)
        out = base.attention(q, k, v, mask, rate=rate, deterministic=deterministic, rngs=rngs,
                             bias=bias, scale=1.0)  # fmt: skip
        return self.output(out.reshape(b, t, self.num_heads * self.head_dim))


class T5Mlp(nnx.Module):
    """``output(act(gate(x)) * intermediate(x))`` (gated) or ``output(act(intermediate(x)))``."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        h, m = cfg.hidden_size, cfg.intermediate_size
        self.gated = cfg.gated
        if cfg.gated:
            self.gate = _linear(cfg, h, m, ("embed", "mlp"), rngs)
        self.intermediate = _linear(cfg, h, m, ("embed", "mlp"), rngs)
        self.output = _linear(cfg, m, h, ("mlp", "embed"), rngs)
        self.act = base.activation(cfg.activation, where="dense_act_fn")
        self.rate = cfg.dropout

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs) -> jax.Array:
        y = self.act(self.gate(x)) * self.intermediate(x) if self.gated else (
            self.act(self.intermediate(x))
        )  # fmt: skip
        return self.output(base.dropout(y, self.rate, deterministic=deterministic, rngs=rngs))


class T5Layer(nnx.Module):
    """``x + drop(attn(norm(x)))``, then ``+ drop(mlp(norm(.)))``."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        h, eps, kw = cfg.hidden_size, cfg.layer_norm_eps, _kw(cfg)
        self.attention_norm = RMSNorm(h, eps, rngs=rngs, **kw)
        self.attention = T5Attention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(h, eps, rngs=rngs, **kw)
        self.mlp = T5Mlp(cfg, rngs=rngs)
        self.rate = cfg.dropout
        self.relative_bias = _bias_table(cfg, rngs) if cfg.per_layer_bias else None

    def __call__(self, x, mask, bias, *, deterministic: bool, rngs) -> jax.Array:
        """``bias``: the shared table's [1,N,T,T] bias, or (a block with its own table) the
        [T,T] buckets to look up in it."""
        kw: dict[str, Any] = {"deterministic": deterministic, "rngs": rngs}
        if self.relative_bias is not None:
            bias = _bias(self.relative_bias, bias)
        h = self.attention(self.attention_norm(x), mask, bias, rate=self.rate, **kw)
        x = x + base.dropout(h, self.rate, **kw)
        return x + base.dropout(self.mlp(self.mlp_norm(x), **kw), self.rate, **kw)


def _bias_table(cfg: T5Config, rngs: nnx.Rngs) -> nnx.Embed:
    return base.embed(cfg.relative_buckets, cfg.num_heads, (None, "heads"),
                      std=cfg.initializer_range, rngs=rngs, **_kw(cfg))  # fmt: skip


def _bias(table: nnx.Embed, buckets: Any) -> jax.Array:
    """[1,N,T,T]: each head's bias for each (query, key) bucket."""
    return table.embedding[...][buckets].transpose(2, 0, 1)[None]


class T5Embeddings(nnx.Module):
    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.word = base.embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                               std=cfg.initializer_range, rngs=rngs, **_kw(cfg))  # fmt: skip


class T5Encoder(nnx.Module):
    """T5's encoder stack, called like every jaxtl encoder.

    >>> enc = T5Encoder(T5Config(vocab_size=100, hidden_size=32, head_dim=8, intermediate_size=64,
    ...                          num_layers=2, num_heads=4), rngs=nnx.Rngs(0))
    >>> ids = jnp.ones((2, 5), jnp.int32)
    >>> enc(ids, jnp.ones_like(ids)).last_hidden_state.shape
    (2, 5, 32)
    """

    default_pooling = "mean"  # no [CLS] token: model.pooling=auto pools the mean

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.family = cfg.model_type
        self.num_layers = cfg.num_layers
        self.hidden_size = cfg.hidden_size
        self.embeddings = T5Embeddings(cfg, rngs=rngs)
        self.relative_bias = None if cfg.per_layer_bias else _bias_table(cfg, rngs)
        self.layers = nnx.List([T5Layer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs, **_kw(cfg))

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
        """``pair_mask`` (bool [B,1,T,T]) replaces the padding mask, as in the BERT encoder;
        ``position_ids`` are accepted for the shared signature (the bias counts over the row's
        indices, which within a packed example are its own; see the module docstring)."""
        del token_type_ids, position_ids
        cfg = self.cfg
        attention_mask = base.check_inputs(input_ids, attention_mask)
        kw: dict[str, Any] = {"deterministic": deterministic, "rngs": rngs}
        x = base.dropout(self.embeddings.word(input_ids), cfg.dropout, **kw)
        mask = base.padding_mask(attention_mask) if pair_mask is None else pair_mask
        buckets = relative_buckets(input_ids.shape[1], cfg.relative_buckets,
                                   cfg.relative_max_distance)  # fmt: skip
        # the shared table's bias, once; blocks with tables of their own look the buckets up
        bias = buckets if self.relative_bias is None else _bias(self.relative_bias, buckets)
        states = [x]
        for layer in self.layers:
            x = constrain_batch(layer(x, mask, bias, **kw))
            states.append(x)
        states[-1] = base.dropout(self.final_norm(x), cfg.dropout, **kw)
        return base.EncoderOutput(tuple(states))


# --- Hugging Face conversion -------------------------------------------------------------------


def config_from_hf(hf: Mapping[str, Any], model_type: str = "t5") -> T5Config:
    get = lambda k: require(hf, k, model_type)  # noqa: E731
    reject(hf, "is_decoder", (False,), "jaxtl reads T5's encoder")
    proj = str(hf.get("feed_forward_proj", "relu"))
    parts = proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(f"unsupported config attribute feed_forward_proj={proj!r}: "
                         "'{ACT}' or 'gated-{ACT}', as transformers reads it")  # fmt: skip
    # transformers: "gated-gelu" means the tanh GELU (gelu_new), for T5 v1.1's checkpoints
    act = "gelu_new" if proj == "gated-gelu" else parts[-1]
    if act not in base.ACTIVATIONS:
        raise ValueError(f"unsupported config attribute feed_forward_proj={proj!r}: activation "
                         f"{act!r}; supported: {sorted(base.ACTIVATIONS)}")  # fmt: skip
    d_model = get("d_model")
    return T5Config(
        vocab_size=get("vocab_size"),
        hidden_size=d_model,
        head_dim=hf.get("d_kv", 64),
        intermediate_size=get("d_ff"),
        num_layers=get("num_layers"),
        num_heads=get("num_heads"),
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        dropout=float(hf.get("dropout_rate", 0.1)),
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        gated=len(parts) == 2,
        per_layer_bias=model_type == "umt5",
        activation=act,
        initializer_range=float(hf.get("initializer_factor", 1.0)) * d_model**-0.5,
        model_type=model_type,
    )


def config_to_hf(cfg: T5Config) -> dict[str, Any]:
    act = "gelu" if cfg.gated and cfg.activation == "gelu_new" else cfg.activation
    return {
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.hidden_size,
        "d_kv": cfg.head_dim,
        "d_ff": cfg.intermediate_size,
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_buckets,
        "relative_attention_max_distance": cfg.relative_max_distance,
        "dropout_rate": cfg.dropout,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "feed_forward_proj": f"gated-{act}" if cfg.gated else act,
    }


def key_map(cfg: T5Config) -> list[Rule]:
    rules = embedding("shared", "embeddings/word")
    table = "layer.0.SelfAttention.relative_attention_bias"
    if not cfg.per_layer_bias:
        rules += embedding(f"encoder.block.0.{table}", "relative_bias")
    for i in range(cfg.num_layers):
        hf, me = f"encoder.block.{i}.layer", f"layers/{i}"
        if cfg.per_layer_bias:
            rules += embedding(f"encoder.block.{i}.{table}", f"{me}/relative_bias")
        rules.append(Rule(f"{hf}.0.layer_norm.weight", f"{me}/attention_norm/scale"))
        for theirs, ours in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "output")):
            rules += linear(f"{hf}.0.SelfAttention.{theirs}", f"{me}/attention/{ours}", bias=False)
        rules.append(Rule(f"{hf}.1.layer_norm.weight", f"{me}/mlp_norm/scale"))
        ff = f"{hf}.1.DenseReluDense"
        if cfg.gated:
            rules += linear(f"{ff}.wi_0", f"{me}/mlp/gate", bias=False)
            rules += linear(f"{ff}.wi_1", f"{me}/mlp/intermediate", bias=False)
        else:
            rules += linear(f"{ff}.wi", f"{me}/mlp/intermediate", bias=False)
        rules += linear(f"{ff}.wo", f"{me}/mlp/output", bias=False)
    return rules + [Rule("encoder.final_layer_norm.weight", "final_norm/scale")]


def _family(model_type: str, name: str) -> Family:
    return Family(
        model_type=model_type,
        config_from_hf=functools.partial(config_from_hf, model_type=model_type),
        config_to_hf=config_to_hf,
        encoder=T5Encoder,
        key_map=key_map,
        architecture=f"{name}EncoderModel",
        loader=f"{name}EncoderModel",  # AutoModel would build T5Model, decoder and all
        prefixes=("transformer.",),
        # the tied copy of ``shared``; a whole seq2seq checkpoint's decoder and LM head
        ignore=(r"^(transformer\.)?encoder\.embed_tokens\.weight$", r"^decoder\.", r"^lm_head\."),
        token_head=HeadSpec(
            f"{name}ForTokenClassification", lambda cfg: linear("classifier", "classifier")
        ),  # fmt: skip
    )


T5 = _family("t5", "T5")
MT5 = _family("mt5", "MT5")
UMT5 = _family("umt5", "UMT5")
