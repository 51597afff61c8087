"""The run's model: a pretrained encoder, a representation, one head per task, the surgery its
stages' strategies need, and params-only initialisation from another run.

The order is fixed (it decides which random numbers each part gets): the encoder is loaded, the
optional :class:`~jaxtl.models.Representation` and the task heads are drawn from
``nnx.Rngs(config.seed)`` in task order, then each stage strategy's surgery (LoRA, adapters)
draws from the same stream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import ml_collections
from etils import epath
from flax import nnx

from jaxtl import checkpoint as ckpt_lib
from jaxtl import models, report, runtime
from jaxtl.data import tasks, tokenize
from jaxtl.data.prepare import TaskData
from jaxtl.models import hf_heads, scratch, seq2seq
from jaxtl.models.base import supports_packing
from jaxtl.strategy import Strategy

log = logging.getLogger(__name__)

HEADS = ("auto", "linear")


def default_pooling(encoder: Any) -> str:
    """``model.pooling=auto``: the encoder's own (``encoder.default_pooling``: T5's mean, as it
    has no [CLS]), else the last real token for a causal encoder (``encoder.causal``: GPT-2,
    Llama; only it has seen the whole sequence), the first token otherwise."""
    own = getattr(encoder, "default_pooling", None)
    if own is not None:
        return str(own)
    return "last" if getattr(encoder, "causal", False) else "cls"


def make_head(
    task: tasks.Task,
    in_size: int,
    config: ml_collections.ConfigDict,
    rngs: nnx.Rngs,
    *,
    encoder: nnx.Module | None = None,
    tokenizer: Any = None,
):
    """The task's head. ``model.head=auto`` (default) builds the encoder family's transformers
    head (:class:`jaxtl.models.family.HeadSpec`: BERT's pooler + classifier, RoBERTa's and
    ELECTRA's ``classifier.{dense,out_proj}``, GPT-2's ``score`` on the last token; per-token
    ``classifier`` for tagging), so that :mod:`jaxtl.export` writes a model transformers loads
    exactly; its pretrained weights (BERT's pooler) are loaded by :func:`build_model`. Without
    ``encoder``, or for a family with no transformers heads (BiLSTM), ``auto`` is the linear
    head. ``model.head=linear`` is jaxtl's linear classifier on the pooled representation
    (``model.pooling``, :func:`default_pooling` for ``auto``; ``model.head_hidden``).
    ``model.tagger_bilstm > 0`` puts a BiLSTM under either tagging head (no transformers class
    has one: export says so).
    """
    m = config.model
    choice = m.get("head", "auto")
    if choice not in HEADS:
        raise ValueError(f"model.head={choice!r}; expected one of {HEADS}")
    spec = None
    if choice == "auto" and encoder is not None:
        spec = hf_heads.head_spec(encoder, task.kind)
    if spec is not None and task.kind in hf_heads.SENTENCE_KINDS:
        # "cls" was the default before "auto": configs written then still build.
        if m.pooling not in ("auto", "cls", spec.pooling) or m.head_hidden:
            raise ValueError(
                f"model.pooling={m.pooling!r} / model.head_hidden={m.head_hidden} shape the "
                "linear head: with model.head=auto the head is the model family's own "
                f"({spec.architecture}). Set model.head=linear to use them"
            )
        n = 1 if task.kind == "regression" else task.num_labels
        return hf_heads.build_head(spec, task.kind, in_size, n, m.dropout, rngs=rngs)
    pooling = default_pooling(encoder) if m.pooling == "auto" else m.pooling
    if task.kind in ("classification", "multilabel"):  # one logit per class either way
        return models.ClassificationHead(
            in_size, task.num_labels, pooling, m.head_hidden or None, m.dropout, rngs=rngs
        )
    if task.kind == "regression":
        return models.ClassificationHead(
            in_size, 1, pooling, m.head_hidden or None, m.dropout, rngs=rngs
        )
    if task.kind == "tagging" and spec is not None:
        return hf_heads.build_head(
            spec, task.kind, in_size, task.num_labels, m.dropout,
            bilstm_hidden=m.tagger_bilstm or None, rngs=rngs,
        )  # fmt: skip
    if task.kind == "tagging":
        return models.TaggingHead(
            in_size, task.num_labels, m.tagger_bilstm or None, m.dropout, rngs=rngs
        )
    if task.kind == "qa":
        # a start and an end logit per token from a linear layer without dropout, as every
        # transformers *ForQuestionAnswering computes them (its qa_outputs: jaxtl.export)
        if spec is not None:  # its dropout where the family's head has one (ModernBERT's)
            return hf_heads.build_head(spec, task.kind, in_size, 2, m.dropout, rngs=rngs)
        return models.TaggingHead(in_size, 2, None, 0.0, rngs=rngs)
    if task.kind == "translation":
        return decoder_head(config, encoder, tokenizer, rngs)
    raise ValueError(f"task {task.name!r}: no head for kind {task.kind!r} in this regime")


def decoder_head(config: ml_collections.ConfigDict, encoder: Any, tokenizer: Any, rngs: nnx.Rngs):
    """A translation task's head: the decoder ``model.decoder`` describes
    (:mod:`jaxtl.models.seq2seq`), over the encoder's last hidden states, predicting the
    tokenizer's vocabulary; BOS/EOS are the tokenizer's CLS/SEP (or BOS/EOS) tokens, which
    tokenised targets start and end with."""
    if tokenizer is None or encoder is None:
        raise ValueError("a translation task's decoder needs the encoder and its tokenizer")
    bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if bos is None or eos is None or bos == eos:
        raise ValueError(f"{type(tokenizer).__name__}: a translation task needs distinct start "
                         "(CLS/BOS) and end (SEP/EOS) tokens around its targets")  # fmt: skip
    d = config.model.decoder
    if d.kind == "lstm":
        sizes = {"embed_size": d.embed_size, "hidden_size": d.hidden_size,
                 "num_layers": d.num_layers}  # fmt: skip
    else:
        sizes = {"hidden_size": d.hidden_size, "num_layers": d.num_layers,
                 "num_heads": d.num_heads, "intermediate_size": d.intermediate_size,
                 "max_positions": max(config.data.max_length, *config.data.buckets)}  # fmt: skip
    return seq2seq.build_decoder(
        d.kind, len(tokenizer), encoder.hidden_size, bos_id=int(bos), eos_id=int(eos),
        pad_id=tokenize.pad_id(tokenizer), dropout=d.dropout, beam=d.beam, alpha=d.alpha,
        rngs=rngs, **sizes,
    )  # fmt: skip


def packing(config: ml_collections.ConfigDict, encoder: Any, *, joint_stream: bool = False) -> bool:
    """Whether the run's labelled tasks are packed, several examples per row
    (:mod:`jaxtl.data.packing`): ``data.packing`` (default True) where packing is exact, else
    padded batches with a log line saying why, never an error. Exact needs an encoder whose call
    takes ``pair_mask`` and ``position_ids`` (not the BiLSTM), no BiLSTM under a tagging head
    (it would read across examples) and no stage that draws the tasks together with an
    objective's unpacked stream, nor an objective branch that cannot read packed batches
    (``joint_stream``: self-supervised joint training, :attr:`Objective.packs`)."""
    if not config.data.get("packing", False):
        return False
    why = ""
    if not supports_packing(encoder):
        name = getattr(encoder, "family", type(encoder).__name__)
        why = f"the {name} encoder takes no pair_mask/position_ids"
    elif config.model.get("tagger_bilstm", 0):
        why = "model.tagger_bilstm: a BiLSTM under the tagging head reads across examples"
    elif joint_stream:
        why = "the objective's stream or branch does not take packed batches"
    if why:
        log.info("data.packing: off (%s); batches are padded to their bucket", why)
    return not why


def check_lengths(config: ml_collections.ConfigDict, encoder: Any, *, packed: bool) -> None:
    """Stop, naming the key, a length the encoder's position table cannot take — before any
    data is read. Past the table a lookup does not fail: it reads NaN (JAX's out-of-bounds
    gather), and the run would stop later on a non-finite loss that points at the learning
    rate. An example is at most ``data.max_length`` tokens; unpacked rows are padded to their
    bucket with positions running on (packed rows restart them per example); LM blocks are
    ``<section>.block_size`` tokens in every stage that trains."""
    limit = getattr(getattr(encoder, "cfg", None), "position_limit", None)
    if limit is None:  # rotary or relative positions, a BiLSTM: no table to run past
        return
    lengths = {"data.max_length": int(config.data.max_length)}
    if not packed:
        lengths["data.buckets"] = max(config.data.buckets)
    for name, section in config.items():
        if isinstance(section, ml_collections.ConfigDict) and "block_size" in section:
            if int(section.get("steps", 1)) > 0:
                lengths[f"{name}.block_size"] = int(section.block_size)
    for key, length in lengths.items():
        if length > limit:
            what = "its largest bucket" if key == "data.buckets" else key
            raise ValueError(
                f"{key}: {length} tokens, but model {config.model.name!r} takes at most {limit} "
                f"(its position table): set {what} to {limit} or less"
            )


def load_encoder(config: ml_collections.ConfigDict) -> models.Pretrained:
    """``model.name``'s encoder: a checkpoint, or a random one for a ``new:`` name
    (:mod:`jaxtl.models.scratch`)."""
    if scratch.is_spec(config.model.name):
        return scratch.pretrained(
            config.model.name, seed=config.seed, dtype=runtime.compute_dtype(config)
        )
    return models.from_pretrained(
        config.model.name,
        allow_pickle=config.model.allow_pickle,
        dtype=runtime.compute_dtype(config),
    )


def load_lm_model(config: ml_collections.ConfigDict, *, from_scratch: bool = False):
    return models.load_lm_model(
        config.model.name,
        allow_pickle=config.model.allow_pickle,
        dtype=runtime.compute_dtype(config),
        seed=config.seed,
        from_scratch=from_scratch,
    )


def build_model(
    encoder: Any,  # an NNX encoder, used by attribute (.num_layers, .hidden_size, .checkpoint)
    task_list: Sequence[TaskData],
    config: ml_collections.ConfigDict,
    *,
    extra_heads: dict[str, nnx.Module] | None = None,
    optims: Sequence[Any] = (),
    tokenizer: Any = None,
) -> models.TransferModel:
    """Encoder + representation + one head per task + the surgery of each stage's strategy.

    ``extra_heads`` are heads the caller built itself (an LM head tied to the encoder's
    embeddings, keyed like its ``lm``-kind task); tasks whose key they name get no
    :func:`make_head` head. ``optims``: every stage's ``optim`` block (default: the top-level
    ``config.optim``), so a LoRA source stage gets its factors as well as a LoRA target stage.

    An encoder loaded from a Hugging Face directory (``encoder.checkpoint``) gives its task heads
    what that checkpoint has for them (:func:`jaxtl.models.hf_heads.hf_head_init`: BERT's
    pretrained pooler; a ``*ForSequenceClassification`` / ``*ForTokenClassification`` head when
    its labels fit the task); the decisions are logged and kept as ``model.init_report``
    (``.to_json()``), for the caller to write.
    """
    rngs = nnx.Rngs(config.seed)
    rep = None
    if config.model.representation != "last":
        rep = models.Representation(
            config.model.representation, encoder.num_layers, encoder.hidden_size, rngs=rngs
        )
    in_size = rep.output_size if rep is not None else encoder.hidden_size
    extra_heads = dict(extra_heads or {})
    heads = {
        td.key: make_head(td.task, in_size, config, rngs, encoder=encoder, tokenizer=tokenizer)
        for td in task_list
        if td.key not in extra_heads
    }
    heads.update(extra_heads)
    model = models.TransferModel(encoder, heads, rep)
    checkpoint = getattr(encoder, "checkpoint", None)
    if checkpoint:  # loaded from HF: its pooler / task head where they fit (draws no RNG)
        own = [td for td in task_list if td.key not in extra_heads]
        # Set only on models whose encoder came from an HF checkpoint, so TransferModel does not
        # declare it; run.py reads it with getattr(model, "init_report", None).
        model.init_report = hf_heads.InitReport(  # type: ignore[attr-defined]
            hf_heads.hf_head_init(model, own, checkpoint)
        )
    for optim in optims or (config.optim,):
        model = Strategy.of(optim).surgery(model, rngs=rngs)
    return model


def init_from_checkpoint(
    model: nnx.Module, source: str, workdir: epath.Path | None = None,
    skip: Sequence[str] = (),
) -> ckpt_lib.TransferReport:  # fmt: skip
    """Params-only initialisation from another run (different structure allowed); parameters
    whose path matches a ``skip`` pattern keep their fresh initialisation."""
    state = nnx.state(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    new_params, rep = ckpt_lib.load_params(source, params, skip=skip)
    nnx.replace_by_pure_dict(state, new_params)
    nnx.update(model, state)
    if workdir is not None:
        report.write_json(epath.Path(workdir) / "transfer_report.json", rep.to_json())
    return rep
