"""BERT-family encoders: BERT, MiniLM (a small BERT), ERNIE, RoBERTa, XLM-RoBERTa, CamemBERT, the
ELECTRA discriminator, DistilBERT, MPNet and ALBERT.

They differ only in the input embeddings (and in their HF names):

* BERT / MiniLM: word + absolute position (0..T-1) + token type, LayerNorm. ERNIE (``ERNIE``
  below) adds, where its config says ``use_task_id``, a task-type table's row 0.
* RoBERTa, XLM-RoBERTa, CamemBERT and data2vec-text (the last three: the same architecture with
  their own config classes, and tokenizers or tensor prefixes; ``XLM_ROBERTA``, ``CAMEMBERT``
  and ``DATA2VEC_TEXT`` below are RoBERTa's family under other class names): positions start
  at ``pad_token_id + 1`` and skip padding tokens, as HF's ``create_position_ids_from_input_ids``
  (so a left-padded sentence sees the same positions as an unpadded one); usually a single token
  type.
* DistilBERT (``jaxtl/models/distilbert.py`` maps its names): no token types
  (``type_vocab_size=0``: ``token_type_ids`` are accepted and dropped), and no dropout after the
  attention output projection. ``sinusoidal_positions`` only sets how a fresh encoder's position
  table is initialised; the table is a parameter either way, as in transformers.
* MPNet (``jaxtl/models/mpnet.py`` maps its names): RoBERTa's positions, no token types, and a
  relative-position bias (``relative_attention_buckets``) added to every layer's scores.
* ALBERT (``jaxtl/models/albert.py`` maps its names): narrower embeddings always projected
  (``embeddings/project``), and layers that share blocks: ``layers`` holds the distinct blocks,
  ``BertConfig.block_order`` says which one each layer runs.
* ELECTRA: the embedding width may be smaller than the model width; ``embeddings/project``
  (HF ``embeddings_project``) maps it up. It lives under ``embeddings`` so that every rule about
  "the embeddings" (freezing, learning rates) covers it.

Blocks are post-LN transformer layers named ``layers/<i>/{attention/{query,key,value,output},
attention_norm, mlp/{intermediate,output}, mlp_norm}``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtl.mesh import constrain_batch
from jaxtl.models import base
from jaxtl.models.family import Family, HeadSpec, qa_head, reject, require
from jaxtl.models.keymap import Rule, embedding, linear, mlm_rules, norm

VARIANTS = ("bert", "roberta", "xlm-roberta", "camembert", "data2vec-text", "electra", "distilbert",
            "mpnet", "albert", "ernie")  # fmt: skip
# positions skip padding; lm_head uses exact GELU
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "mpnet")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    embedding_size: int | None = None  # ELECTRA, ALBERT: None means hidden_size
    initializer_range: float = 0.02
    variant: str = "bert"  # one of VARIANTS: the HF model_type (the family's registry key)
    sinusoidal_positions: bool = False  # initialise the position table with sinusoids
    # MPNet: rows of the relative-position bias table shared by every layer (0 = none)
    relative_attention_buckets: int = 0
    # ALBERT's cross-layer sharing: 0 = every layer its own block (BERT); else the layers run
    # this many groups of ``inner_group_num`` blocks (see ``block_order``).
    num_hidden_groups: int = 0
    inner_group_num: int = 1
    # ERNIE's task-type table (use_task_id): its row 0 is added to every token, as transformers
    # does when no task_type_ids are given (jaxtl never gives them); 0 = none
    task_type_vocab_size: int = 0
    dtype: str = "float32"  # compute dtype (bfloat16 on accelerators)
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"BertConfig.variant={self.variant!r}, expected one of {VARIANTS}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        base.activation(self.hidden_act)
        if self.num_hidden_groups and not (
            1 <= self.num_hidden_groups <= self.num_layers and self.inner_group_num >= 1
        ):
            raise ValueError(
                f"num_hidden_groups={self.num_hidden_groups}, inner_group_num="
                f"{self.inner_group_num}: expected 1 <= num_hidden_groups <= num_hidden_layers="
                f"{self.num_layers} and inner_group_num >= 1"
            )
        object.__setattr__(self, "dtype", base.dtype_name(self.dtype))
        object.__setattr__(self, "param_dtype", base.dtype_name(self.param_dtype))

    @property
    def position_limit(self) -> int:
        """The longest example the position table takes (RoBERTa's rows start after
        ``pad_token_id + 1``): a longer one would index past the table."""
        return self.max_position_embeddings - (
            self.pad_token_id + 1 if self.variant in ROBERTA_LIKE else 0
        )

    @property
    def embed_size(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def projects_embeddings(self) -> bool:
        """Whether a dense layer maps the embeddings to the model width (ELECTRA's when they
        are narrower; ALBERT's ``embedding_hidden_mapping_in`` always)."""
        return self.embed_size != self.hidden_size or self.variant == "albert"

    @property
    def block_order(self) -> tuple[int, ...]:
        """The block each layer application runs, bottom to top: ``0..L-1`` for BERT. ALBERT's
        layer ``i`` runs group ``int(i / (L / num_hidden_groups))``, whose ``inner_group_num``
        blocks run in turn (transformers' ``AlbertTransformer``): albert-base-v2 runs its one
        block twelve times. Each application adds a hidden state."""
        if not self.num_hidden_groups:
            return tuple(range(self.num_layers))
        n, g, inner = self.num_layers, self.num_hidden_groups, self.inner_group_num
        return tuple(int(i / (n / g)) * inner + j for i in range(n) for j in range(inner))

    @property
    def num_blocks(self) -> int:
        """Distinct blocks (``layers/<i>``): ``num_layers`` unless layers share them."""
        return self.num_hidden_groups * self.inner_group_num or self.num_layers


def _kw(cfg: BertConfig) -> dict[str, Any]:
    return {"dtype": jnp.dtype(cfg.dtype), "param_dtype": jnp.dtype(cfg.param_dtype)}


def sinusoids(num: int, dim: int) -> np.ndarray:
    """[num, dim] fixed position encodings (DistilBERT's ``create_sinusoidal_embeddings``):
    even columns sin(pos / 10000^(2(j//2)/dim)), odd columns cos of the same."""
    pos = np.arange(num, dtype=np.float64)[:, None]
    angle = pos / np.power(10000, 2 * (np.arange(dim) // 2) / dim)[None, :]
    out = np.empty((num, dim), np.float64)
    out[:, 0::2] = np.sin(angle[:, 0::2])
    out[:, 1::2] = np.cos(angle[:, 1::2])
    return out.astype(np.float32)


def _sinusoid_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    del key
    return jnp.asarray(sinusoids(*shape), dtype)


class BertEmbeddings(nnx.Module):
    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        e, std, kw = cfg.embed_size, cfg.initializer_range, _kw(cfg)
        self.word = base.embed(cfg.vocab_size, e, ("vocab", "embed"), std=std, rngs=rngs, **kw)
        if cfg.sinusoidal_positions:
            self.position = nnx.Embed(
                cfg.max_position_embeddings, e, **kw, rngs=rngs,
                embedding_init=nnx.with_partitioning(_sinusoid_init, (None, "embed")),
            )  # fmt: skip
        else:
            self.position = base.embed(
                cfg.max_position_embeddings, e, (None, "embed"), std=std, rngs=rngs, **kw
            )
        self.token_type = (
            base.embed(cfg.type_vocab_size, e, (None, "embed"), std=std, rngs=rngs, **kw)
            if cfg.type_vocab_size > 0
            else None
        )
        self.task_type = (
            base.embed(cfg.task_type_vocab_size, e, (None, "embed"), std=std, rngs=rngs, **kw)
            if cfg.task_type_vocab_size > 0
            else None
        )
        self.norm = base.layer_norm(e, cfg.layer_norm_eps, rngs=rngs, **kw)
        self.project = (
            base.linear(e, cfg.hidden_size, (None, "embed"), std=std, rngs=rngs, **kw)
            if cfg.projects_embeddings
            else None
        )


class BertAttention(nnx.Module):
    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        h, std, kw = cfg.hidden_size, cfg.initializer_range, _kw(cfg)
        self.num_heads = cfg.num_heads
        self.query = base.linear(h, h, ("embed", "heads"), std=std, rngs=rngs, **kw)
        self.key = base.linear(h, h, ("embed", "heads"), std=std, rngs=rngs, **kw)
        self.value = base.linear(h, h, ("embed", "heads"), std=std, rngs=rngs, **kw)
        self.output = base.linear(h, h, ("heads", "embed"), std=std, rngs=rngs, **kw)

    def __call__(self, x, mask, *, rate: float, deterministic: bool, rngs, bias=None) -> jax.Array:
        b, t, h = x.shape
        split = lambda y: y.reshape(b, t, self.num_heads, h // self.num_heads)  # noqa: E731
        out = base.attention(
            split(self.query(x)),
            split(self.key(x)),
            split(self.value(x)),
            mask,
            rate=rate,
            deterministic=deterministic,
            rngs=rngs,
            bias=bias,
        )
        return self.output(out.reshape(b, t, h))


class BertMlp(nnx.Module):
    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        h, m, std, kw = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range, _kw(cfg)
        self.intermediate = base.linear(h, m, ("embed", "mlp"), std=std, rngs=rngs, **kw)
        self.output = base.linear(m, h, ("mlp", "embed"), std=std, rngs=rngs, **kw)
        self.act = base.activation(cfg.hidden_act)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.output(self.act(self.intermediate(x)))


class BertLayer(nnx.Module):
    """Post-LN block: x -> LN(x + attn(x)) -> LN(. + mlp(.))."""

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        kw = _kw(cfg)
        self.attention = BertAttention(cfg, rngs=rngs)
        self.attention_norm = base.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs, **kw)
        self.mlp = BertMlp(cfg, rngs=rngs)
        self.mlp_norm = base.layer_norm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs, **kw)
        self.hidden_dropout = cfg.hidden_dropout
        self.attention_dropout = cfg.attention_dropout
        # DistilBERT's out_lin has no dropout after it (BERT's attention.output.dense has).
        self.attention_output_dropout = cfg.variant != "distilbert"

    def __call__(self, x, mask, *, deterministic: bool, rngs, bias=None) -> jax.Array:
        drop = lambda y: base.dropout(  # noqa: E731
            y, self.hidden_dropout, deterministic=deterministic, rngs=rngs
        )
        a = self.attention(
            x, mask, rate=self.attention_dropout, deterministic=deterministic, rngs=rngs, bias=bias
        )
        x = self.attention_norm(x + (drop(a) if self.attention_output_dropout else a))
        return self.mlp_norm(x + drop(self.mlp(x)))


def table_positions(
    cfg: BertConfig, input_ids: jax.Array, within: jax.Array | None = None
) -> jax.Array:
    """Rows of the position table: ``within`` (each token's index within its own example, as
    a packed batch gives) plus RoBERTa's ``pad_token_id + 1`` offset; without it, counted here.
    [B,T], or [1,T] when every row counts 0..T-1: the lookup then runs once for the batch, and
    its gradient sums over the batch before the scatter-add instead of adding B rows into each
    table row (atomics on the same addresses, which a GPU serialises)."""
    if within is not None:
        return within + (cfg.pad_token_id + 1 if cfg.variant in ROBERTA_LIKE else 0)
    t = input_ids.shape[1]
    if cfg.variant in ROBERTA_LIKE:
        real = (input_ids != cfg.pad_token_id).astype(jnp.int32)
        return jnp.cumsum(real, axis=1) * real + cfg.pad_token_id
    return jnp.arange(t, dtype=jnp.int32)[None]


# MPNet's relative positions: transformers' MPNetEncoder buckets with 32 buckets and a largest
# distance of 128 (its defaults; the config's relative_attention_num_buckets sizes the table).
RELATIVE_BUCKETS, RELATIVE_MAX_DISTANCE = 32, 128


@functools.cache
def relative_buckets(
    t: int, buckets: int = RELATIVE_BUCKETS, max_distance: int = RELATIVE_MAX_DISTANCE
) -> np.ndarray:
    """[T,T] bucket of each (query i, key j): T5's bidirectional log buckets of i - j (of
    ``buckets``, the far ones reaching ``max_distance``), as transformers'
    ``MPNetEncoder.relative_position_bucket`` and T5's ``_relative_position_bucket`` compute
    them (float32 logs, truncated). Counted over the row, as there: a packed row's examples are
    contiguous, so distances within one are the same, and attention never crosses them."""
    pos = np.arange(t)
    n = pos[:, None] - pos[None, :]
    half = buckets // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    far = np.maximum(n, exact).astype(np.float32)  # the near ones are exact buckets (below)
    ratio = np.log(far / np.float32(exact)) / np.float32(math.log(max_distance / exact))
    large = np.minimum(exact + (ratio * np.float32(half - exact)).astype(np.int64), half - 1)
    return (out + np.where(n < exact, n, large)).astype(np.int32)


class BertEncoder(nnx.Module):
    """BERT / MiniLM / RoBERTa / XLM-R / ELECTRA-discriminator / DistilBERT encoder.

    >>> enc = BertEncoder(BertConfig(vocab_size=100, hidden_size=32, num_layers=2,
    ...                              num_heads=4, intermediate_size=64), rngs=nnx.Rngs(0))
    >>> ids = jnp.ones((2, 5), jnp.int32)
    >>> enc(ids, jnp.ones_like(ids)).last_hidden_state.shape
    (2, 5, 32)
    """

    def __init__(self, cfg: BertConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.family = cfg.variant
        # hidden states above the embeddings: one per layer application (ALBERT's layers share
        # blocks, so ``layers`` may hold fewer: cfg.block_order)
        self.num_layers = len(cfg.block_order)
        self.hidden_size = cfg.hidden_size
        self.embeddings = BertEmbeddings(cfg, rngs=rngs)
        self.layers = nnx.List([BertLayer(cfg, rngs=rngs) for _ in range(cfg.num_blocks)])
        self.relative_bias = (
            base.embed(
                cfg.relative_attention_buckets,
                cfg.num_heads,
                (None, "heads"),
                std=cfg.initializer_range,
                rngs=rngs,
                **_kw(cfg),
            )  # fmt: skip
            if cfg.relative_attention_buckets
            else None
        )

    def tied_embedding(self) -> jax.Array:
        """The [vocab, embed] word-embedding matrix a tied MLM head decodes with."""
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
        """``pair_mask`` (bool [B,1,T,T]: which keys each query may see) replaces the padding
        mask built from ``attention_mask`` — restricted views such as left-context-only
        attention (Cross-View Training) run through the same encoder. ``position_ids`` [B,T]:
        each token's index within its own example (packed batches, ``jaxtl.data.packing``);
        the family's offset is added here."""
        cfg, emb = self.cfg, self.embeddings
        attention_mask = base.check_inputs(input_ids, attention_mask)
        positions = table_positions(cfg, input_ids, position_ids)
        x = emb.word(input_ids) + emb.position(positions)
        if emb.token_type is not None:
            if token_type_ids is None:
                token_type_ids = jnp.zeros_like(input_ids)
            x = x + emb.token_type(token_type_ids)
        if emb.task_type is not None:  # task type 0 (ERNIE's default) for every token
            x = x + emb.task_type.embedding[...][0]
        x = emb.norm(x)
        x = base.dropout(x, cfg.hidden_dropout, deterministic=deterministic, rngs=rngs)
        if emb.project is not None:
            x = emb.project(x)
        mask = base.padding_mask(attention_mask) if pair_mask is None else pair_mask
        bias = None
        if self.relative_bias is not None:  # [1,N,T,T], the same for every layer
            buckets = relative_buckets(input_ids.shape[1])
            bias = self.relative_bias.embedding[...][buckets].transpose(2, 0, 1)[None]
        states = [x]
        for block in cfg.block_order:
            x = self.layers[block](x, mask, deterministic=deterministic, rngs=rngs, bias=bias)
            x = constrain_batch(x)
            states.append(x)
        return base.EncoderOutput(tuple(states))


# --- Hugging Face conversion -------------------------------------------------------------------


def config_from_hf(hf: Mapping[str, Any]) -> BertConfig:
    model_type = hf.get("model_type", "bert")
    why = "the jaxtl BERT-family encoder implements absolute positions and an encoder-only stack"
    reject(hf, "position_embedding_type", (None, "absolute"), why)
    reject(hf, "is_decoder", (False,), why)
    reject(hf, "add_cross_attention", (False,), why)
    get = lambda k: require(hf, k, model_type)  # noqa: E731
    act = hf.get("hidden_act", "gelu")
    if act not in base.ACTIVATIONS:
        raise ValueError(
            f"unsupported config attribute hidden_act={act!r}; supported: {sorted(base.ACTIVATIONS)}"
        )
    return BertConfig(
        vocab_size=get("vocab_size"),
        hidden_size=get("hidden_size"),
        num_layers=get("num_hidden_layers"),
        num_heads=get("num_attention_heads"),
        intermediate_size=get("intermediate_size"),
        max_position_embeddings=get("max_position_embeddings"),
        type_vocab_size=hf.get("type_vocab_size", 2),
        hidden_act=act,
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pad_token_id=hf.get("pad_token_id", 1 if model_type in ROBERTA_LIKE else 0) or 0,
        embedding_size=hf.get("embedding_size") if model_type == "electra" else None,
        task_type_vocab_size=(
            int(hf.get("task_type_vocab_size", 3)) if hf.get("use_task_id") else 0
        ),  # fmt: skip
        initializer_range=hf.get("initializer_range", 0.02),
        variant=model_type,
    )


def config_to_hf(cfg: BertConfig) -> dict[str, Any]:
    out = {
        "model_type": cfg.variant,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "hidden_act": cfg.hidden_act,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": cfg.initializer_range,
        "position_embedding_type": "absolute",
    }
    if cfg.variant == "electra":
        out["embedding_size"] = cfg.embed_size
    if cfg.variant == "ernie":
        out["use_task_id"] = cfg.task_type_vocab_size > 0
        if cfg.task_type_vocab_size:
            out["task_type_vocab_size"] = cfg.task_type_vocab_size
    return out


def embedding_rules(cfg: BertConfig) -> list[Rule]:
    """:class:`BertEmbeddings`' tables and LayerNorm under BERT's names, which every BERT-block
    family keeps (no token types where ``type_vocab_size`` is 0)."""
    rules = embedding("embeddings.word_embeddings", "embeddings/word")
    rules += embedding("embeddings.position_embeddings", "embeddings/position")
    if cfg.type_vocab_size > 0:
        rules += embedding("embeddings.token_type_embeddings", "embeddings/token_type")
    if cfg.task_type_vocab_size > 0:
        rules += embedding("embeddings.task_type_embeddings", "embeddings/task_type")
    return rules + norm("embeddings.LayerNorm", "embeddings/norm")


def key_map(cfg: BertConfig) -> list[Rule]:
    rules = embedding_rules(cfg)
    if cfg.embed_size != cfg.hidden_size:
        rules += linear("embeddings_project", "embeddings/project")
    for i in range(cfg.num_layers):
        rules += block_rules(f"encoder.layer.{i}", i, BERT_BLOCK)
    return rules


# A post-LN block's HF names (after the block's prefix), in BLOCK_PATHS' order: query, key,
# value, attention output, its LayerNorm, MLP in, MLP out, its LayerNorm.
BLOCK_PATHS = ("attention/query", "attention/key", "attention/value", "attention/output",
               "attention_norm", "mlp/intermediate", "mlp/output", "mlp_norm")  # fmt: skip
BERT_BLOCK = ("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
              "output.dense", "output.LayerNorm")  # fmt: skip


def block_rules(hf: str, index: int, names: tuple[str, ...]) -> list[Rule]:
    """The rules of block ``layers/<index>`` (:class:`BertLayer`) from the HF block at ``hf``
    whose tensors ``names`` name (in :data:`BLOCK_PATHS`' order): BERT's, DistilBERT's,
    MPNet's and ALBERT's blocks differ only in these names."""
    rules: list[Rule] = []
    for theirs, ours in zip(names, BLOCK_PATHS, strict=True):
        make = norm if ours.endswith("_norm") else linear
        rules += make(f"{hf}.{theirs}", f"layers/{index}/{ours}")
    return rules


def mlm_head(cfg: BertConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    """The tied MLM head: BERT's ``cls.predictions``, RoBERTa's ``lm_head``, DistilBERT's
    ``vocab_transform`` / ``vocab_layer_norm`` / ``vocab_projector``."""
    from jaxtl.models.heads import MLMHead

    # RoBERTa's lm_head always uses exact GELU; BERT's / DistilBERT's follow the encoder's act.
    act = "gelu" if cfg.variant in ROBERTA_LIKE else cfg.hidden_act
    return MLMHead(
        cfg.hidden_size,
        cfg.embed_size,
        cfg.vocab_size,
        activation=act,
        layer_norm_eps=cfg.layer_norm_eps,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        rngs=rngs,
    )


def _bert_mlm_map(cfg: BertConfig) -> list[Rule]:
    p = "cls.predictions"
    return mlm_rules(f"{p}.transform.dense", f"{p}.transform.LayerNorm", f"{p}.bias")


def _roberta_mlm_map(cfg: BertConfig) -> list[Rule]:
    return mlm_rules("lm_head.dense", "lm_head.layer_norm", "lm_head.bias")


# Task heads, as transformers builds them (jaxtl.models.heads computes the same; see HeadSpec).
# BertForSequenceClassification: the pretrained pooler (dense + tanh on [CLS], inside the base
# model), dropout, ``classifier``. RoBERTa / ELECTRA: ``classifier.dense`` on <s> (tanh / exact
# GELU) and ``classifier.out_proj``, dropout before each. *ForTokenClassification: dropout and
# ``classifier`` on every token.
def classifier(cfg: BertConfig) -> list[Rule]:
    return linear("classifier", "classifier")


def _pooler(cfg: BertConfig) -> list[Rule]:
    return linear("pooler.dense", "dense")


def _classifier_dense_out_proj(cfg: BertConfig) -> list[Rule]:
    return linear("classifier.dense", "dense") + linear("classifier.out_proj", "classifier")


def _token_head(name: str) -> HeadSpec:
    return HeadSpec(f"{name}ForTokenClassification", classifier)


# Known tensors the encoder does not use. Pretraining heads are loaded only with load_lm_head;
# the pooler is BERT's sequence head's pretrained layer (loaded when task heads are built).
_COMMON_IGNORE = (r"(^|\.)position_ids$",
                  r"^(bert\.|roberta\.|electra\.|ernie\.|data2vec_text\.)?pooler\.")  # fmt: skip
# BertModel's and RobertaModel's pooler (dense + tanh on [CLS]), which the encoder does not run:
# a bare-encoder export carries the checkpoint's (Family.carried)
POOLER = r"^pooler\."

BERT = Family(
    model_type="bert",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=BertEncoder,
    key_map=key_map,
    architecture="BertModel",
    prefixes=("bert.",),
    carried=POOLER,
    ignore=_COMMON_IGNORE + (r"^cls\.",),
    lm_head=mlm_head,
    lm_key_map=_bert_mlm_map,
    lm_architecture="BertForMaskedLM",
    # The decoder is tied to the word embeddings (and its bias to cls.predictions.bias).
    lm_ignore=(r"^cls\.predictions\.decoder\.", r"^cls\.seq_relationship\."),
    sequence_head=HeadSpec(
        "BertForSequenceClassification", classifier, base_key_map=_pooler, dense=True
    ),
    token_head=_token_head("Bert"),
    qa_head=qa_head("Bert"),
)


def _roberta_sequence_head(name: str) -> HeadSpec:
    return HeadSpec(
        f"{name}ForSequenceClassification",
        _classifier_dense_out_proj,
        dense=True,
        input_dropout=True,
    )


# ERNIE (1.0-3.0, ERNIE-Gram, ERNIE-Health: model_type "ernie") is BERT's architecture and
# tensor names under the "ernie." prefix and Ernie* class names, with an optional task-type table.
ERNIE = dataclasses.replace(
    BERT,
    model_type="ernie",
    architecture="ErnieModel",
    prefixes=("ernie.",),
    lm_architecture="ErnieForMaskedLM",
    sequence_head=HeadSpec(
        "ErnieForSequenceClassification", classifier, base_key_map=_pooler, dense=True
    ),
    token_head=_token_head("Ernie"),
    qa_head=qa_head("Ernie"),
)


ROBERTA = Family(
    model_type="roberta",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=BertEncoder,
    key_map=key_map,
    architecture="RobertaModel",
    prefixes=("roberta.",),
    carried=POOLER,
    ignore=_COMMON_IGNORE + (r"^lm_head\.",),
    lm_head=mlm_head,
    lm_key_map=_roberta_mlm_map,
    lm_architecture="RobertaForMaskedLM",
    lm_ignore=(r"^lm_head\.decoder\.",),
    sequence_head=_roberta_sequence_head("Roberta"),
    token_head=_token_head("Roberta"),
    qa_head=qa_head("Roberta"),
)


def _roberta_renamed(model_type: str, name: str, prefix: str = "roberta.") -> Family:
    """RoBERTa's architecture, tensor names and heads under ``<name>*`` class names (its own
    config class, often its own tokenizer); task checkpoints keep the "roberta." prefix unless
    ``prefix`` says otherwise."""
    return dataclasses.replace(
        ROBERTA,
        model_type=model_type,
        prefixes=(prefix,),
        architecture=f"{name}Model",
        lm_architecture=f"{name}ForMaskedLM",
        sequence_head=_roberta_sequence_head(name),
        token_head=_token_head(name),
        qa_head=qa_head(name),
    )


XLM_ROBERTA = _roberta_renamed("xlm-roberta", "XLMRoberta")
CAMEMBERT = _roberta_renamed("camembert", "Camembert")  # French
# data2vec's text model (facebook/data2vec-text-base): RoBERTa's, its own prefix
DATA2VEC_TEXT = _roberta_renamed("data2vec-text", "Data2VecText", "data2vec_text.")

ELECTRA = Family(
    model_type="electra",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=BertEncoder,
    key_map=key_map,
    architecture="ElectraModel",
    prefixes=("electra.",),
    # The discriminator's replaced-token head and a generator's LM head are pretraining-only.
    ignore=_COMMON_IGNORE + (r"^discriminator_predictions\.", r"^generator_"),
    sequence_head=HeadSpec(
        "ElectraForSequenceClassification",
        _classifier_dense_out_proj,
        dense=True,
        activation="gelu",
        input_dropout=True,
    ),  # fmt: skip
    token_head=_token_head("Electra"),
    qa_head=qa_head("Electra"),
)
