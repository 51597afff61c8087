"""DistilBERT: HF names in and out; the encoder is :class:`jaxtl.models.bert.BertEncoder`.

DistilBERT is BERT's post-LN block (attention + LayerNorm, FFN + LayerNorm, GELU by default)
without token types or a pooler, under other names (``transformer.layer.N.attention.q_lin``,
``sa_layer_norm``, ``ffn.lin1`` ...). It runs as a configuration of the BERT encoder
(``variant="distilbert"``, ``type_vocab_size=0``) rather than as a copy of it, so its parameter
paths are BERT's (``layers/<i>/attention/query``, ``mlp/intermediate``, ...) and everything keyed
on them (LoRA and adapter targets, freezing rules, CVT's restricted attention) works unchanged.
This module holds what is DistilBERT's own: the config attribute names, the declarative key map,
the MLM head's names and the task heads.

* ``token_type_ids`` are accepted and dropped (jaxtl batches always carry them).
* ``sinusoidal_pos_embds``: transformers stores the position table in the checkpoint either way
  (sinusoidal only initialises it, and the table is a trainable parameter there), so jaxtl loads
  and exports it as it is; a freshly built encoder (``build_encoder``) starts from the sinusoids.
  To keep them fixed while fine-tuning, freeze ``encoder/embeddings/position`` with a rule.
* Sequence head (``DistilBertForSequenceClassification``): ``pre_classifier`` (dense + ReLU on
  [CLS]), dropout (``seq_classif_dropout``), ``classifier``. Token head: dropout + ``classifier``.
* MLM head (``DistilBertForMaskedLM``): ``vocab_transform`` + activation + ``vocab_layer_norm``,
  then ``vocab_projector`` tied to the word embeddings (its bias is the head's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxtl.models.bert import (
    BertConfig,
    BertEncoder,
    block_rules,
    classifier,
    embedding_rules,
    mlm_head,
)
from jaxtl.models.family import Family, HeadSpec, activation_name, qa_head, reject, require
from jaxtl.models.keymap import Rule, linear, mlm_rules

MODEL_TYPE = "distilbert"
LAYER_NORM_EPS = 1e-12  # fixed in transformers' DistilBERT, not a config attribute
# The MLM head's tensors: known, unused unless load_lm_head=True (jaxtl.models.hf).
LM_PATTERN = r"^vocab_(transform|layer_norm|projector)\."


def config_from_hf(hf: Mapping[str, Any]) -> BertConfig:
    get = lambda k: require(hf, k, MODEL_TYPE)  # noqa: E731
    why = "the jaxtl DistilBERT encoder is an encoder-only stack"
    reject(hf, "is_decoder", (False,), why)
    reject(hf, "add_cross_attention", (False,), why)
    act = activation_name(hf, "activation", "gelu")
    dim, heads = get("dim"), get("n_heads")
    if dim % heads:
        raise ValueError(f"config attribute dim={dim} is not divisible by n_heads={heads}")
    return BertConfig(
        vocab_size=get("vocab_size"),
        hidden_size=dim,
        num_layers=get("n_layers"),
        num_heads=heads,
        intermediate_size=get("hidden_dim"),
        max_position_embeddings=get("max_position_embeddings"),
        type_vocab_size=0,
        hidden_act=act,
        layer_norm_eps=LAYER_NORM_EPS,
        hidden_dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.1),
        pad_token_id=hf.get("pad_token_id", 0) or 0,
        initializer_range=hf.get("initializer_range", 0.02),
        variant=MODEL_TYPE,
        sinusoidal_positions=bool(hf.get("sinusoidal_pos_embds", False)),
    )


def config_to_hf(cfg: BertConfig) -> dict[str, Any]:
    return {
        "model_type": MODEL_TYPE,
        "vocab_size": cfg.vocab_size,
        "dim": cfg.hidden_size,
        "n_layers": cfg.num_layers,
        "n_heads": cfg.num_heads,
        "hidden_dim": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "sinusoidal_pos_embds": cfg.sinusoidal_positions,
        "activation": cfg.hidden_act,
        "dropout": cfg.hidden_dropout,
        "attention_dropout": cfg.attention_dropout,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": cfg.initializer_range,
    }


def key_map(cfg: BertConfig) -> list[Rule]:
    rules = embedding_rules(cfg)  # type_vocab_size 0: no token types
    for i in range(cfg.num_layers):
        rules += block_rules(f"transformer.layer.{i}", i, BLOCK)
    return rules


BLOCK = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
         "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm")  # fmt: skip


def _mlm_map(cfg: BertConfig) -> list[Rule]:
    return mlm_rules("vocab_transform", "vocab_layer_norm", "vocab_projector.bias")


def _pre_classifier(cfg: BertConfig) -> list[Rule]:
    return linear("pre_classifier", "dense") + linear("classifier", "classifier")


DISTILBERT = Family(
    model_type=MODEL_TYPE,
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    encoder=BertEncoder,
    key_map=key_map,
    architecture="DistilBertModel",
    prefixes=("distilbert.",),
    ignore=(r"(^|\.)position_ids$", LM_PATTERN),
    lm_head=mlm_head,
    lm_key_map=_mlm_map,
    lm_architecture="DistilBertForMaskedLM",
    lm_ignore=(r"^vocab_projector\.weight$",),  # tied to the word embeddings
    sequence_head=HeadSpec(
        "DistilBertForSequenceClassification",
        _pre_classifier,
        dense=True,
        activation="relu",
        dropout_attr="seq_classif_dropout",
    ),  # fmt: skip
    # transformers' token head takes the encoder's ``dropout``: no attribute of its own.
    token_head=HeadSpec("DistilBertForTokenClassification", classifier, dropout_attr=None),
    qa_head=qa_head("DistilBert"),
)
