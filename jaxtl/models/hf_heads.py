"""Transformers task heads and jaxtl heads: which jaxtl head *is* its family's transformers head
(so that exporting it is exact), its tensors under HF names, and reusing a task checkpoint's head.

A family declares its heads as :class:`~jaxtl.models.family.HeadSpec` values next to its encoder
key map (``jaxtl/models/bert.py``, ``gpt2.py``). :func:`head_problem` says why a head is not the
transformers one (or None when it is); :func:`hf_head_rules` gives the rules that map it to and
from HF names; :func:`hf_head_init` fills freshly built heads from the checkpoint the encoder
came from: BERT's pretrained pooler whenever the checkpoint has one, and a fine-tuned
``*ForSequenceClassification`` / ``*ForTokenClassification`` head when its label set fits the
task (same count and, when both sides name their labels, the same names, reordered by name).
"""

from __future__ import annotations

import logging
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtl import paths
from jaxtl.models import hf
from jaxtl.models.family import Family, HeadSpec
from jaxtl.models.heads import ClassificationHead, TaggingHead
from jaxtl.models.keymap import Rule
from jaxtl.models.registry import FAMILIES

log = logging.getLogger(__name__)

SENTENCE_KINDS = ("classification", "multilabel", "regression")
HEAD_KINDS = SENTENCE_KINDS + ("tagging", "qa")
_DEFAULT_LABEL = re.compile(r"LABEL_\d+")


def family_of(encoder: Any) -> Family | None:
    return FAMILIES.get(str(getattr(encoder, "family", "")))


def head_spec(encoder: Any, kind: str) -> HeadSpec | None:
    """The encoder family's transformers head for a task kind, or None (BiLSTM, lm tasks)."""
    fam = family_of(encoder)
    return fam.task_head(kind, getattr(encoder, "cfg", None)) if fam is not None else None


def build_head(
    spec: HeadSpec,
    kind: str,
    in_size: int,
    num_labels: int,
    dropout: float,
    *,
    bilstm_hidden: int | None = None,
    rngs: nnx.Rngs,
) -> ClassificationHead | TaggingHead:
    """The jaxtl head that computes ``spec``'s transformers head for a task kind (``dropout``:
    the head's rate where ``spec`` has dropout; ``bilstm_hidden``: jaxtl's BiLSTM tagger below
    a token head, which no transformers class has)."""
    hidden = in_size if spec.dense else None
    norm_eps = spec.norm_eps if spec.norm else None
    rate = dropout if spec.dropout else 0.0
    if kind in ("tagging", "qa"):  # per token (qa: a start and an end logit, no BiLSTM)
        bilstm_hidden = bilstm_hidden if kind == "tagging" else None
        return TaggingHead(
            in_size, num_labels, bilstm_hidden, rate, hidden=hidden, activation=spec.activation,
            dense_bias=spec.dense_bias, norm_eps=norm_eps, norm_bias=spec.norm_bias, rngs=rngs,
        )  # fmt: skip
    return ClassificationHead(
        in_size, num_labels, spec.pooling, hidden, rate, activation=spec.activation,
        input_dropout=spec.input_dropout, use_bias=spec.bias, dense_bias=spec.dense_bias,
        norm_eps=norm_eps, norm_bias=spec.norm_bias, rngs=rngs,
    )  # fmt: skip


def hf_head_rules(spec: HeadSpec, cfg: Any, base_prefix: str) -> list[Rule]:
    """Rules for a head: tensors inside the base model (BERT's pooler) take ``base_prefix``
    (``bert.`` in a task model), the classifier's are top-level."""
    base = [Rule(base_prefix + r.hf, r.path, r.transform) for r in spec.base_key_map(cfg)]
    return base + list(spec.key_map(cfg))


def mismatch(head: nnx.Module, spec: HeadSpec, hidden_size: int) -> str | None:
    """Why ``head`` does not compute ``spec``'s head on features of width ``hidden_size``
    (None: it does, parameter for parameter)."""
    what = spec.architecture
    if spec.architecture.endswith(("ForTokenClassification", "ForQuestionAnswering")):
        if not isinstance(head, TaggingHead):
            return f"{type(head).__name__} is not a per-token head"
        if head.bilstm is not None:
            return f"a BiLSTM tagger (model.tagger_bilstm={head.bilstm_hidden}); {what} has none"
        if head.in_size != hidden_size:
            return f"head input width {head.in_size} != model width {hidden_size}"
        return "; ".join(_transform_problems(head, spec, hidden_size)) or None
    if not isinstance(head, ClassificationHead):
        return f"{type(head).__name__} is not a sequence-classification head"
    problems = []
    if head.pooling != spec.pooling:
        problems.append(f"pooling {head.pooling!r} ({what} reads the {spec.pooling!r} token)")
    if head.in_size != hidden_size:
        problems.append(f"input width {head.in_size} != model width {hidden_size}")
    problems += _transform_problems(head, spec, hidden_size)
    if head.use_bias != spec.bias:
        problems.append(f"classifier bias={head.use_bias} ({what}: bias={spec.bias})")
    return "; ".join(problems) or None


def _transform_problems(
    head: ClassificationHead | TaggingHead, spec: HeadSpec, hidden_size: int
) -> list[str]:
    """How the head's hidden layer (dense, activation, LayerNorm) differs from ``spec``'s."""
    what, problems = spec.architecture, []
    if spec.dense and head.dense is None:
        problems.append(f"no hidden layer ({what} has a {spec.activation} layer first)")
    if not spec.dense and head.dense is not None:
        problems.append(f"a hidden layer of width {head.hidden} ({what} has none)")
    if spec.dense and head.dense is not None:
        if head.hidden != hidden_size:
            problems.append(f"hidden layer width {head.hidden} != model width {hidden_size}")
        if head.activation != spec.activation:
            problems.append(f"{head.activation} hidden layer ({what}: {spec.activation})")
        if (head.dense.bias is not None) != spec.dense_bias:
            problems.append(f"hidden layer bias={head.dense.bias is not None} ({what}: "
                            f"{spec.dense_bias})")  # fmt: skip
        norm = head.norm
        if spec.norm != (norm is not None):
            problems.append(f"LayerNorm after the hidden layer: {norm is not None} ({what}: "
                            f"{spec.norm})")  # fmt: skip
        elif norm is not None and (
            float(norm.epsilon) != spec.norm_eps or (norm.bias is not None) != spec.norm_bias
        ):
            problems.append(f"LayerNorm eps={norm.epsilon}, bias={norm.bias is not None} "
                            f"({what}: eps={spec.norm_eps}, bias={spec.norm_bias})")  # fmt: skip
    return problems


def head_problem(model: Any, key: str, kind: str) -> str | None:
    """Why ``model.heads[key]`` (with the model's representation) is not its family's
    transformers task head; None when transformers computes exactly what it computes."""
    enc = model.encoder
    spec = head_spec(enc, kind)
    if spec is None:
        return f"model_type {getattr(enc, 'family', '?')!r} has no transformers head for {kind}"
    if getattr(model, "representation", None) is not None:
        return (
            f"model.representation={model.representation.kind!r}: the head reads a mix of "
            "encoder layers, transformers task heads read the last one"
        )
    why = mismatch(model.heads[key], spec, enc.hidden_size)
    return None if why is None else f"the head is not {spec.architecture}'s: {why}"


def _encoder_prefix(fam: Family, cfg: Any, names: set[str]) -> str:
    """The prefix the checkpoint's encoder tensors carry ("" for a bare BertModel)."""
    first = fam.key_map(cfg)[0].hf
    return next((p for p in ("",) + fam.prefixes if p + first in names), "")


def _fill(head: nnx.Module, values: Mapping[str, np.ndarray]) -> None:
    """Set head parameters (paths relative to the head) from numpy arrays, shapes checked."""
    state = nnx.state(head, nnx.Param)
    pure = nnx.to_pure_dict(state)
    flat = paths.flatten(pure)
    for path, value in values.items():
        if tuple(flat[path].shape) != tuple(value.shape):
            raise ValueError(f"{path}: shape {value.shape} != {tuple(flat[path].shape)}")
        flat[path] = jnp.asarray(value, flat[path].dtype)
    nnx.replace_by_pure_dict(state, paths.unflatten(flat, pure))
    nnx.update(head, state)


def _shapes_fit(head: nnx.Module, rules: Sequence[Rule], tensors: Mapping[str, np.ndarray]):
    flat = paths.flatten(nnx.to_pure_dict(nnx.state(head, nnx.Param)))
    return all(
        r.path in flat and tuple(r.to_jax(tensors[r.hf]).shape) == tuple(flat[r.path].shape)
        for r in rules
    )


def checkpoint_labels(config: Mapping[str, Any]) -> list[str] | None:
    """The checkpoint's label names in id order, or None when it has none / only LABEL_i."""
    id2label = config.get("id2label") or {}
    try:
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None
    if not names or all(_DEFAULT_LABEL.fullmatch(n) for n in names):
        return None
    return names


def _label_order(
    task: Any, n_ckpt: int, ckpt_names: list[str] | None, problem_type: str | None
) -> tuple[list[int] | None, str]:
    """(checkpoint row of each task label, or None when the label set does not fit; why)."""
    if task.kind == "qa":  # start and end logits, whatever the config calls them
        if n_ckpt == 2:
            return [0, 1], "start and end logits (question answering)"
        return None, f"the checkpoint head has {n_ckpt} outputs; a question-answering head has 2"
    if task.kind == "regression":
        if n_ckpt == 1 and problem_type in (None, "regression"):
            return [0], "one output (regression)"
        return None, f"the checkpoint head has {n_ckpt} outputs ({problem_type}); regression has 1"
    if problem_type == "regression":
        return None, "the checkpoint head is a regression head"
    # One linear layer either way, but trained for a softmax over the classes or a sigmoid per
    # class: a head trained for the other is not reused (problem_type None says neither).
    multi = task.kind == "multilabel"
    other = "single_label_classification" if multi else "multi_label_classification"
    if problem_type == other:
        return None, (f"the checkpoint head is a {other.replace('_', '-')} head; {task.name} is "
                      f"a {task.kind} task")  # fmt: skip
    names = list(task.label_names)
    if n_ckpt != len(names):
        return None, f"the checkpoint head has {n_ckpt} labels, the task {len(names)}"
    if ckpt_names is None:
        return list(range(n_ckpt)), f"{n_ckpt} labels; the checkpoint's are unnamed: kept in order"
    index = {n.casefold(): i for i, n in enumerate(ckpt_names)}
    found = [index.get(n.casefold()) for n in names]
    order = [i for i in found if i is not None]
    if len(order) != len(names) or len(set(order)) != len(order):
        return None, f"label names differ: checkpoint {ckpt_names}, task {names}"
    if order == list(range(n_ckpt)):
        return order, f"same labels {names}"
    return order, f"same labels, reordered by name (checkpoint rows {order})"


class InitReport:
    """:func:`hf_head_init`'s report, held on the model (``model.init_report``) as static data:
    compared by identity, so the model's graphdef stays hashable. ``data`` is JSON."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data

    def __repr__(self) -> str:
        return f"InitReport({self.data!r})"


def hf_head_init(
    model: Any, task_list: Sequence[Any], checkpoint_dir: str | pathlib.Path
) -> dict[str, Any]:
    """Fill the task heads of ``model`` from the checkpoint its encoder was loaded from.

    ``task_list`` holds objects with ``.task`` (name, kind, label_names) and ``.key`` (the head
    key), e.g. :class:`jaxtl.data.prepare.TaskData`. For each task whose head is its family's
    transformers head: the pretrained part HF keeps in the base model (BERT's ``pooler.dense``)
    is loaded when the checkpoint has it; a task checkpoint's head (``config.json``
    ``architectures`` ``*ForSequenceClassification`` / ``*ForTokenClassification``) is reused
    when its label set fits the task (:func:`_label_order`) and dropped otherwise, leaving the
    fresh head. Every decision is logged and returned (JSON)::

        {"checkpoint": dir, "architecture": ..., "labels": [...] | None, "tasks":
         {task: {"head_key", "kind", "classifier": "reused" | "dropped" | "fresh",
                 "pooler": "checkpoint" | "fresh" | "unused" (BERT sequence heads),
                 "reason"}}}
    """
    path = pathlib.Path(checkpoint_dir)
    enc = model.encoder
    fam = family_of(enc)
    config = hf.read_config(path)
    arch = (config.get("architectures") or [None])[0]
    ckpt_kind = None
    if arch and arch.endswith("ForSequenceClassification"):
        ckpt_kind = "sequence"
    elif arch and arch.endswith("ForTokenClassification"):
        ckpt_kind = "token"
    elif arch and arch.endswith("ForQuestionAnswering"):
        ckpt_kind = "qa"
    ckpt_names = checkpoint_labels(config)
    problem_type = config.get("problem_type")
    report: dict[str, Any] = {
        "checkpoint": str(path),
        "architecture": arch,
        "labels": ckpt_names,
        "tasks": {},
    }
    if fam is None:
        return report
    names = hf.tensor_names(path)
    if names is None:  # pickle-only: the encoder loaded from it, so it was allowed
        names = set(hf.read_tensors(path, allow_pickle=True))
    prefix = _encoder_prefix(fam, enc.cfg, names)
    for td in task_list:
        kind, name = td.task.kind, td.task.name
        spec = fam.task_head(kind, enc.cfg)
        if spec is None or td.key not in model.heads:
            continue
        head = model.heads[td.key]
        entry: dict[str, Any] = {"head_key": td.key, "kind": kind}
        report["tasks"][name] = entry
        why_not = mismatch(head, spec, enc.hidden_size)
        base_rules = hf_head_rules(spec, enc.cfg, prefix)[: len(spec.base_key_map(enc.cfg))]
        cls_rules = list(spec.key_map(enc.cfg))
        tensors = hf.read_named_tensors(
            path, [r.hf for r in base_rules + cls_rules], allow_pickle=True
        )
        if base_rules:
            have = all(r.hf in tensors for r in base_rules)
            if why_not is not None:
                entry["pooler"] = "unused"  # the head has no such layer (model.head=linear...)
            elif have and _shapes_fit(head, base_rules, tensors):
                _fill(head, {r.path: r.to_jax(tensors[r.hf]) for r in base_rules})
                entry["pooler"] = "checkpoint"
            else:
                entry["pooler"] = "fresh"
        head_kind = {"tagging": "token", "qa": "qa"}.get(kind, "sequence")
        has_head = all(r.hf in tensors for r in cls_rules)
        if not has_head or ckpt_kind is None:
            entry["classifier"] = "fresh"
            entry["reason"] = "the checkpoint has no task head"
            if has_head:
                entry["reason"] = (
                    f"the checkpoint has {cls_rules[0].hf} but its config.json names no "
                    "*ForSequenceClassification / *ForTokenClassification / "
                    "*ForQuestionAnswering architecture"
                )
        elif ckpt_kind != head_kind:
            entry["classifier"] = "dropped"
            entry["reason"] = f"the checkpoint's head is {arch}'s; {name} is a {kind} task"
        elif why_not is not None:
            entry["classifier"] = "dropped"
            entry["reason"] = f"the task's head is not {spec.architecture}'s: {why_not}"
        else:
            out_rule = next(r for r in cls_rules if r.path == "classifier/kernel")
            n_ckpt = int(out_rule.to_jax(tensors[out_rule.hf]).shape[-1])
            order, why = _label_order(td.task, n_ckpt, ckpt_names, problem_type)
            if order is None:
                entry["classifier"], entry["reason"] = "dropped", why
            elif not _shapes_fit(head, cls_rules, tensors):
                entry["classifier"] = "dropped"
                entry["reason"] = "the checkpoint head's layers have other widths than the task's"
            else:
                values = {}
                for r in cls_rules:
                    v = r.to_jax(tensors[r.hf])
                    values[r.path] = v[..., order] if r.path.startswith("classifier/") else v
                _fill(head, values)
                entry["classifier"], entry["reason"] = "reused", why
        _log(name, arch, entry)
    return report


def _log(task: str, arch: str | None, entry: Mapping[str, Any]) -> None:
    pooler = "; pooler from the checkpoint" if entry.get("pooler") == "checkpoint" else ""
    if entry["classifier"] == "fresh":
        if pooler:
            log.info("head %s: fresh classifier%s", task, pooler)
        return
    level = logging.INFO if entry["classifier"] == "reused" else logging.WARNING
    log.log(level, "head %s: %s's head %s (%s)%s", task, arch, entry["classifier"],
            entry["reason"], pooler)  # fmt: skip
