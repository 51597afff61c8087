"""MPNet (``mpnet``: all-mpnet-base-v2 and the other sentence-transformers MPNets): HF names in
and out; the encoder is :class:`jaxtl.models.bert.BertEncoder`.

MPNet's encoder is BERT's post-LN block under other names (``encoder.layer.N.attention.attn.q``,
``attention.LayerNorm``, ``intermediate.dense``, ``output.dense``, ``output.LayerNorm``) with
RoBERTa's embeddings (positions start at ``pad_token_id + 1`` and skip padding; no token types)
and one addition: a relative-position bias, T5's bidirectional log buckets of the query-key
distance looked up in ``encoder.relative_attention_bias`` ([buckets, heads]) once and added to
every layer's attention scores. It runs as a configuration of the BERT encoder
(``variant="mpnet"``, ``relative_attention_buckets``) so its parameter paths are BERT's and every
rule keyed on them (LoRA, adapters, freezing, CVT's restricted attention, packing) applies.

* ``token_type_ids`` are accepted and dropped (MPNet's tokenizer gives none).
* The bias table (``encoder/relative_bias``) is an encoder parameter outside the blocks, so the
  layer-wise strategies (discriminative rates, gradual unfreezing, chain-thaw) group it with the
  top layer, as every such parameter (``jaxtl/partition/rules.py``; DeBERTa's relative
  embeddings too).
* Sequence head (``MPNetForSequenceClassification``): RoBERTa's ``classifier.dense`` + tanh +
  ``classifier.out_proj`` on <s>, dropout before each, at the encoder's ``hidden_dropout_prob``
  (no attribute of its own). Token head: dropout + ``classifier``; QA head: ``qa_outputs``.
* MLM head (``MPNetForMaskedLM``): ``lm_head.dense`` + exact GELU + ``lm_head.layer_norm``, the
  decoder tied to the word embeddings (its bias is ``lm_head.bias``), as RoBERTa's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxtl.models import bert
from jaxtl.models.bert import (
    POOLER,
    RELATIVE_BUCKETS,
    BertConfig,
    BertEncoder,
    _classifier_dense_out_proj,
    _roberta_mlm_map,
    block_rules,
    classifier,
    embedding_rules,
    mlm_head,
)
from jaxtl.models.family import Family, HeadSpec, qa_head
from jaxtl.models.keymap import Rule, embedding

MODEL_TYPE = "mpnet"
PAD_ID = 1  # transformers' MPNetEmbeddings counts positions from padding_idx 1, whatever the config


def config_from_hf(hf: Mapping[str, Any]) -> BertConfig:
    """BERT's attribute names (:func:`jaxtl.models.bert.config_from_hf` reads them), with no
    token types, MPNet's LayerNorm epsilon and padding id, and the bias table's rows."""
    buckets = int(hf.get("relative_attention_num_buckets", RELATIVE_BUCKETS))
    if buckets < RELATIVE_BUCKETS:
        raise ValueError(f"config attribute relative_attention_num_buckets={buckets}: transformers' "
                         f"MPNet looks up {RELATIVE_BUCKETS} buckets, so the table needs at least "
                         "that many rows")  # fmt: skip
    cfg = bert.config_from_hf({**hf, "model_type": MODEL_TYPE, "type_vocab_size": 0,
                               "layer_norm_eps": hf.get("layer_norm_eps", 1e-5),
                               "pad_token_id": PAD_ID})  # fmt: skip
    return dataclasses.replace(cfg, relative_attention_buckets=buckets)


def config_to_hf(cfg: BertConfig) -> dict[str, Any]:
    out = bert.config_to_hf(cfg)
    del out["type_vocab_size"], out["position_embedding_type"]  # not MPNetConfig's attributes
    return out | {"relative_attention_num_buckets": cfg.relative_attention_buckets}


def key_map(cfg: BertConfig) -> list[Rule]:
    rules = embedding_rules(cfg)  # type_vocab_size 0: no token types
    rules += embedding("encoder.relative_attention_bias", "relative_bias")
    for i in range(cfg.num_layers):
        rules += block_rules(f"encoder.layer.{i}", i, BLOCK)
    return rules


BLOCK = ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
         "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")  # fmt: skip


MPNET = Family(
    model_type=MODEL_TYPE,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=BertEncoder,
    key_map=key_map,
    architecture="MPNetModel",
    prefixes=("mpnet.",),
    carried=POOLER,
    # The pooler (dense + tanh on <s>) is no task head's: transformers' heads build their own.
    ignore=(r"(^|\.)position_ids$", r"^(mpnet\.)?pooler\.", r"^lm_head\."),
    lm_head=mlm_head,
    lm_key_map=_roberta_mlm_map,
    lm_architecture="MPNetForMaskedLM",
    lm_ignore=(r"^lm_head\.decoder\.",),  # tied to the word embeddings and lm_head.bias
    sequence_head=HeadSpec(
        "MPNetForSequenceClassification",
        _classifier_dense_out_proj,
        dense=True,
        input_dropout=True,
        dropout_attr=None,
    ),
    token_head=HeadSpec("MPNetForTokenClassification", classifier, dropout_attr=None),
    qa_head=qa_head("MPNet"),
)
