"""The description of one model family that ``jaxtl.models.hf`` needs to load and save it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flax import nnx

from jaxtl.models.base import ACTIVATIONS
from jaxtl.models.keymap import Rule, linear


def _no_rules(cfg: Any) -> list[Rule]:
    return []


@dataclass(frozen=True)
class HeadSpec:
    """One transformers task head in jaxtl terms: the :class:`~jaxtl.models.heads.ClassificationHead`
    / :class:`~jaxtl.models.heads.TaggingHead` arguments that compute it, and its key map.

    architecture:  the transformers class (``BertForSequenceClassification``), written to
                   ``architectures`` on export.
    key_map:       cfg -> Rules from top-level HF names (``classifier.out_proj.weight``) to paths
                   inside the jaxtl head (``classifier/kernel``).
    base_key_map:  cfg -> Rules for head tensors HF keeps inside the base model (BERT's
                   ``pooler.dense``): exported under the encoder's prefix (``bert.pooler...``),
                   loaded from whichever prefix the checkpoint's encoder has. They are the
                   pretrained part of the head: loaded whenever present, even when the
                   classifier itself is not reused.
    pooling, dense, activation, input_dropout, dropout, bias: how the head computes (sequence
                   heads): which token it reads (``cls`` | ``last``), whether a dense layer of
                   the model width with ``activation`` comes first, dropout before that layer /
                   before the classifier, whether the classifier has a bias.
    dense_bias, norm, norm_eps, norm_bias: whether that dense layer has a bias, and whether a
                   LayerNorm (``norm_eps``, with or without bias) follows its activation
                   (ModernBERT's ``head``; in a token head too: then ``dense`` applies there).
    configure:     cfg -> overrides of the fields above for one model's config (ModernBERT reads
                   ``classifier_pooling``, ``classifier_activation``, ``classifier_bias``,
                   ``norm_eps``, ``norm_bias`` from it); :meth:`for_config` applies them.
    dropout_attr:  the HF config attribute holding the head's dropout rate, written on export
                   (``classifier_dropout``; DistilBERT's ``seq_classif_dropout``); None: the
                   transformers head takes the encoder's rate, so none is written.
    encoder_prefix: where the encoder's tensors sit in this head's checkpoint when not under
                   the family's first prefix ("" = that one): ``LlamaForQuestionAnswering``
                   keeps its ``LlamaModel`` as ``transformer.`` where Llama's other heads say
                   ``model.`` (the family lists both, so either loads).
    """

    architecture: str
    key_map: Callable[[Any], list[Rule]]
    base_key_map: Callable[[Any], list[Rule]] = _no_rules
    pooling: str = "cls"
    dense: bool = False
    activation: str = "tanh"
    input_dropout: bool = False
    dropout: bool = True
    bias: bool = True
    dropout_attr: str | None = "classifier_dropout"
    dense_bias: bool = True
    norm: bool = False
    norm_eps: float = 1e-5
    norm_bias: bool = True
    configure: Callable[[Any], Mapping[str, Any]] | None = None
    encoder_prefix: str = ""

    def for_config(self, cfg: Any) -> HeadSpec:
        """This head as a model of config ``cfg`` has it (``configure``'s overrides applied)."""
        if self.configure is None or cfg is None:
            return self
        return replace(self, **self.configure(cfg), configure=None)


def _qa_outputs(cfg: Any) -> list[Rule]:
    return linear("qa_outputs", "classifier")


def qa_head(name: str) -> HeadSpec:
    """``<name>ForQuestionAnswering``, as the BERT-like families and GPT-2 have it:
    ``qa_outputs`` (a start and an end logit) on every token, top-level, no dropout
    (DistilBERT's before it is inactive in inference). ModernBERT's is its token head's layout."""
    return HeadSpec(f"{name}ForQuestionAnswering", _qa_outputs, dropout=False, dropout_attr=None)


@dataclass(frozen=True)
class Family:
    """Everything family-specific about HF weights in and out.

    model_type:    HF ``config.json`` ``model_type`` (the registry key).
    config_from_hf: HF config dict -> the family's frozen config; raises ValueError naming any
                   attribute whose value the encoder does not implement.
    config_to_hf:  the family config -> HF config attributes (merged over the original on save).
    encoder:       ``Encoder(cfg, *, rngs)``.
    key_map:       cfg -> encoder Rules (HF names without prefix).
    prefixes:      prefixes the encoder's tensors may carry in task checkpoints ("bert.").
    ignore:        regexes of HF tensors that are known and deliberately unused (full names).
    architecture:  ``architectures`` entry written on export of the bare encoder.
    lm_head:       optional (cfg, rngs) -> tied LM head module; ``lm_key_map`` its Rules
                   (full HF names), ``lm_architecture`` the export name with that head.
    loader:        the transformers class that loads the bare encoder (``AutoModel``; T5's
                   ``T5EncoderModel``, as AutoModel would build its decoder too); None for
                   jaxtl's own families, which transformers does not know.
    carried:       regex of tensors (prefix dropped) that transformers' base model holds and
                   the encoder does not run (BERT's pooler): a bare-encoder export copies them
                   from the checkpoint the encoder was loaded from, so that ``loader`` finds
                   its model complete rather than initialising them at random.
    sequence_head: the family's transformers sequence-classification head
                   (``*ForSequenceClassification``), ``token_head`` its token-classification head
                   (``*ForTokenClassification``), ``qa_head`` its extractive QA head
                   (``*ForQuestionAnswering``); None: the family has none (jaxtl's BiLSTM).
    """

    model_type: str
    config_from_hf: Callable[[Mapping[str, Any]], Any]
    config_to_hf: Callable[[Any], dict[str, Any]]
    encoder: Callable[..., nnx.Module]
    key_map: Callable[[Any], list[Rule]]
    architecture: str
    prefixes: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    lm_head: Callable[..., nnx.Module] | None = None
    lm_key_map: Callable[[Any], list[Rule]] | None = None
    lm_architecture: str | None = None
    lm_ignore: tuple[str, ...] = field(default=())
    loader: str | None = "AutoModel"
    carried: str | None = None
    sequence_head: HeadSpec | None = None
    token_head: HeadSpec | None = None
    qa_head: HeadSpec | None = None

    def task_head(self, kind: str, cfg: Any = None) -> HeadSpec | None:
        """The transformers head for a task kind (classification / regression / tagging / qa),
        as a model of config ``cfg`` (the encoder's) has it."""
        spec = None
        if kind in ("classification", "multilabel", "regression"):
            spec = self.sequence_head
        elif kind == "tagging":
            spec = self.token_head
        elif kind == "qa":
            spec = self.qa_head
        return None if spec is None else spec.for_config(cfg)

    def export_prefix(self, spec: HeadSpec) -> str:
        """The prefix of the encoder's tensors in a checkpoint with head ``spec``."""
        return spec.encoder_prefix or self.prefixes[0]

    def head_tensor_names(self, cfg: Any) -> set[str]:
        """HF names of every task-head tensor this family knows (without the encoder prefix for
        those HF keeps inside the base model): a task checkpoint's head is used when the task
        heads are built (``jaxtl.models.hf_heads.hf_head_init``), not by the encoder loader."""
        names: set[str] = set()
        for spec in (self.sequence_head, self.token_head, self.qa_head):
            if spec is not None:
                names |= {r.hf for r in spec.key_map(cfg)}
                names |= {p + r.hf for r in spec.base_key_map(cfg) for p in ("",) + self.prefixes}
        return names


def require(hf: Mapping[str, Any], key: str, model_type: str) -> Any:
    if key not in hf:
        raise ValueError(f"config.json of a {model_type!r} model lacks required attribute {key!r}")
    return hf[key]


def activation_name(hf: Mapping[str, Any], key: str, default: str) -> str:
    """The config's activation (``key``, else ``default``); an error naming it when jaxtl has none
    of that name."""
    act = hf.get(key, default)
    if act not in ACTIVATIONS:
        raise ValueError(
            f"unsupported config attribute {key}={act!r}; supported: {sorted(ACTIVATIONS)}"
        )
    return act


def reject(hf: Mapping[str, Any], key: str, allowed: tuple[Any, ...], why: str) -> None:
    """Error naming ``key`` when the config sets it to something the encoder does not implement."""
    if key in hf and hf[key] not in allowed:
        raise ValueError(
            f"unsupported config attribute {key}={hf[key]!r} (supported: {allowed}); {why}"
        )
