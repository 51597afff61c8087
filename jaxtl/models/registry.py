"""Model families by HF ``model_type``.

Adding a family is one file and one line here: write ``jaxtl/models/<family>.py`` with a frozen
config dataclass, an encoder ``Encoder(cfg, *, rngs)`` returning ``EncoderOutput`` (blocks under
``layers``, embeddings under ``embeddings``, attribute ``family`` = the model_type), the
``config_from_hf`` / ``config_to_hf`` pair, a ``key_map(cfg) -> list[Rule]`` and a
``jaxtl.models.family.Family`` value; then add that value to ``FAMILIES`` below. Loading, saving,
strict key checking and ``build_encoder`` then work for it unchanged. Give the family its
transformers task heads as ``HeadSpec`` values (``sequence_head``, ``token_head``: how the head
computes, and its key map) and ``model.head=auto`` builds them, ``jaxtl.export`` writes
``*ForSequenceClassification`` / ``*ForTokenClassification`` models transformers loads exactly,
and task checkpoints' heads are reused (``jaxtl.models.hf_heads``); copy ``tests/test_export.py``.
A family that is an existing architecture under other names reuses that encoder: XLM-RoBERTa,
CamemBERT and data2vec-text are RoBERTa's ``Family`` with other class names, ERNIE BERT's
(``jaxtl/models/bert.py``), DistilBERT and ALBERT BERT configurations with their own key maps
and heads (``jaxtl/models/distilbert.py``, ``jaxtl/models/albert.py``: factorised embeddings,
blocks shared across layers), DeBERTa v1 a DeBERTa-v2 configuration whose fused ``in_proj`` its
key map splits (``jaxtl/models/deberta.py``, ``keymap.fused_linear``), Qwen2, Qwen3, Mistral,
Ministral, Phi-3, SmolLM3, OLMo 2 and Gemma 1/2/3 Llama configurations with their own biases, norms, windows, caps, fused
tensors and class names (``jaxtl/models/llama.py``), UMT5 a T5 one with a relative-position
table per block (``jaxtl/models/t5.py``).
"""

from __future__ import annotations

from jaxtl.models.albert import ALBERT
from jaxtl.models.awd_lstm import AWD_LSTM
from jaxtl.models.bert import (
    BERT,
    CAMEMBERT,
    DATA2VEC_TEXT,
    ELECTRA,
    ERNIE,
    ROBERTA,
    XLM_ROBERTA,
)
from jaxtl.models.bilstm import BILSTM
from jaxtl.models.deberta import DEBERTA, DEBERTA_V2
from jaxtl.models.distilbert import DISTILBERT
from jaxtl.models.family import Family
from jaxtl.models.gpt2 import GPT2
from jaxtl.models.llama import (
    GEMMA,
    GEMMA2,
    GEMMA3,
    LLAMA,
    MINISTRAL,
    MISTRAL,
    OLMO2,
    PHI3,
    QWEN2,
    QWEN3,
    SMOLLM3,
)
from jaxtl.models.modernbert import MODERNBERT
from jaxtl.models.mpnet import MPNET
from jaxtl.models.t5 import MT5, T5, UMT5

FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (BERT, ROBERTA, XLM_ROBERTA, ELECTRA, DISTILBERT, MPNET, DEBERTA_V2, GPT2, BILSTM)
}
FAMILIES[CAMEMBERT.model_type] = CAMEMBERT
FAMILIES[DEBERTA.model_type] = DEBERTA
FAMILIES[ALBERT.model_type] = ALBERT
FAMILIES[ERNIE.model_type] = ERNIE
FAMILIES[DATA2VEC_TEXT.model_type] = DATA2VEC_TEXT
# one architecture
FAMILIES.update(
    {
        f.model_type: f
        for f in (
            LLAMA,
            QWEN2,
            QWEN3,
            MISTRAL,
            MINISTRAL,
            PHI3,
            SMOLLM3,
            OLMO2,
            GEMMA,
            GEMMA2,
            GEMMA3,
        )
    }
)
FAMILIES[MODERNBERT.model_type] = MODERNBERT
FAMILIES[AWD_LSTM.model_type] = AWD_LSTM
FAMILIES.update({f.model_type: f for f in (T5, MT5, UMT5)})


def family(model_type: str, *, where: str = "config.json") -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(
            f"{where}: unknown model_type {model_type!r}; jaxtl supports {sorted(FAMILIES)} "
            "(see jaxtl/models/registry.py to add a family)"
        ) from None
