"""ALBERT: HF names in and out; the encoder is :class:`jaxtl.models.bert.BertEncoder`.

ALBERT (Lan et al. 2020) is BERT's post-LN block with two changes, both configurations of the
BERT encoder rather than a copy of it (``variant="albert"``):

* Factorised embeddings: word, position and token-type tables of ``embedding_size`` (128 in the
  released models), LayerNorm'd there, then ``embedding_hidden_mapping_in`` maps them to the
  model width. jaxtl keeps that layer under ``embeddings/project`` (as ELECTRA's), so every rule
  about "the embeddings" covers it.
* Cross-layer sharing: ``num_hidden_layers`` layer applications run ``num_hidden_groups`` groups
  of ``inner_group_num`` blocks (``BertConfig.block_order``); the released models have one group
  of one block, run twelve (or 24) times. ``layers/<i>`` holds each *distinct* block once, so a
  freezing rule, a learning rate, LoRA or an adapter on ``layers/0`` applies wherever that block
  runs (as PEFT's LoRA on transformers' shared module does); layer-wise strategies (top-k,
  gradual unfreezing, discriminative rates) count blocks, not applications. Every application
  still adds a hidden state, so ``model.representation`` mixes all twelve.

Sequence head (``AlbertForSequenceClassification``): the pretrained ``pooler`` (dense + tanh on
[CLS], inside the base model), dropout (``classifier_dropout_prob``), ``classifier``; token head:
dropout + ``classifier``; QA: ``qa_outputs``. MLM head (``AlbertForMaskedLM``'s
``predictions``): dense to ``embedding_size`` + activation + LayerNorm, the decoder tied to the
word embeddings, a per-token bias. Pretraining's sentence-order head (``sop_classifier``) is
known and unused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxtl.models import bert
from jaxtl.models.bert import (
    POOLER,
    BertConfig,
    BertEncoder,
    block_rules,
    classifier,
    embedding_rules,
    mlm_head,
)
from jaxtl.models.family import Family, HeadSpec, qa_head, require
from jaxtl.models.keymap import Rule, linear, mlm_rules

MODEL_TYPE = "albert"
SOP = r"^sop_classifier\."  # pretraining's sentence-order head: known, never loaded


def config_from_hf(hf: Mapping[str, Any]) -> BertConfig:
    get = lambda k: require(hf, k, MODEL_TYPE)  # noqa: E731
    cfg = bert.config_from_hf({"hidden_act": "gelu_new", **hf, "model_type": MODEL_TYPE})
    return dataclasses.replace(
        cfg,
        embedding_size=get("embedding_size"),
        num_hidden_groups=hf.get("num_hidden_groups", 1),
        inner_group_num=hf.get("inner_group_num", 1),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.0),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.0),
    )


def config_to_hf(cfg: BertConfig) -> dict[str, Any]:
    return bert.config_to_hf(cfg) | {
        "embedding_size": cfg.embed_size,
        "num_hidden_groups": cfg.num_hidden_groups,
        "inner_group_num": cfg.inner_group_num,
    }


def key_map(cfg: BertConfig) -> list[Rule]:
    rules = embedding_rules(cfg)
    rules += linear("encoder.embedding_hidden_mapping_in", "embeddings/project")
    for b in range(cfg.num_blocks):
        group, inner = divmod(b, cfg.inner_group_num)
        rules += block_rules(f"encoder.albert_layer_groups.{group}.albert_layers.{inner}", b,
                             BLOCK)  # fmt: skip
    return rules


BLOCK = ("attention.query", "attention.key", "attention.value", "attention.dense",
         "attention.LayerNorm", "ffn", "ffn_output", "full_layer_layer_norm")  # fmt: skip


def _mlm_map(cfg: BertConfig) -> list[Rule]:
    return mlm_rules("predictions.dense", "predictions.LayerNorm", "predictions.bias")


def _pooler(cfg: BertConfig) -> list[Rule]:
    return linear("pooler", "dense")


ALBERT = Family(
    model_type=MODEL_TYPE,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=BertEncoder,
    key_map=key_map,
    architecture="AlbertModel",
    prefixes=("albert.",),
    carried=POOLER,
    # the pooler is the sequence head's pretrained layer (loaded when task heads are built);
    # the MLM head is loaded only with load_lm_head, the sentence-order head never
    ignore=(r"(^|\.)position_ids$", r"^(albert\.)?pooler\.", r"^predictions\.", SOP),
    lm_head=mlm_head,
    lm_key_map=_mlm_map,
    lm_architecture="AlbertForMaskedLM",
    # The decoder is tied to the word embeddings (and its bias to predictions.bias).
    lm_ignore=(r"^predictions\.decoder\.", SOP),
    sequence_head=HeadSpec(
        "AlbertForSequenceClassification",
        classifier,
        base_key_map=_pooler,
        dense=True,
        dropout_attr="classifier_dropout_prob",
    ),  # fmt: skip
    token_head=HeadSpec(
        "AlbertForTokenClassification", classifier, dropout_attr="classifier_dropout_prob"
    ),
    qa_head=qa_head("Albert"),
)
