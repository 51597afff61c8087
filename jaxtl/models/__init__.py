"""Flax NNX encoders, task heads and Hugging Face weights in and out.

>>> from jaxtl import models
>>> enc, tokenizer, hf_config, path = models.from_pretrained("minilm")  # doctest: +SKIP
>>> out = enc(ids, mask)                      # EncoderOutput(hidden_states=(emb, l1, ..., l6))
>>> models.save_pretrained(enc, "out/", tokenizer=tokenizer, hf_config=hf_config)  # doctest: +SKIP
"""

from jaxtl.models.base import EncoderOutput
from jaxtl.models.bert import BertConfig, BertEncoder
from jaxtl.models.bilstm import BiLSTMConfig, BiLSTMEncoder
from jaxtl.models.gpt2 import GPT2Config, GPT2Encoder
from jaxtl.models.heads import ClassificationHead, CLMHead, MLMHead, TaggingHead, UntiedCLMHead
from jaxtl.models.hf import Pretrained, build_encoder, from_pretrained, save_pretrained
from jaxtl.models.llama import LlamaConfig, LlamaEncoder
from jaxtl.models.lm import LM_KEY, LMModel, load_lm_model
from jaxtl.models.registry import FAMILIES
from jaxtl.models.representation import Representation
from jaxtl.models.transfer import TransferModel

__all__ = [
    "FAMILIES",
    "LM_KEY",
    "LMModel",
    "BertConfig",
    "BertEncoder",
    "BiLSTMConfig",
    "BiLSTMEncoder",
    "CLMHead",
    "ClassificationHead",
    "EncoderOutput",
    "GPT2Config",
    "GPT2Encoder",
    "LlamaConfig",
    "LlamaEncoder",
    "MLMHead",
    "Pretrained",
    "Representation",
    "TaggingHead",
    "TransferModel",
    "UntiedCLMHead",
    "build_encoder",
    "from_pretrained",
    "load_lm_model",
    "save_pretrained",
]
