"""Trained jaxtl models out: transformers task models, PEFT adapters, and jaxtl's own head files.

:func:`export_task_model` writes one task head with its encoder as a directory that
``transformers.AutoModelForSequenceClassification`` (classification, sentence pairs, regression),
``AutoModelForTokenClassification`` (tagging) or ``AutoModelForQuestionAnswering`` (qa) loads,
with the same logits: ``config.json``
(``architectures``, ``id2label`` / ``label2id``, ``problem_type``), ``model.safetensors`` (the
family's encoder key map under its prefix, ``bert.``, plus the head's key map, both declared in
``jaxtl/models/<family>.py``), the tokenizer files and a ``README.md`` model card. LoRA factors are
merged first. Heads transformers has no class for (a BiLSTM tagger, a ``model.representation``
mix of layers, ``model.head=linear`` with mean pooling or a hidden layer) and Houlsby adapters are
not an error: the encoder is written in HF layout, the head (and adapters) in jaxtl's own
``jaxtl_head.safetensors`` + ``jaxtl_head.json``, ``EXPORT.md`` says what loads where, and
:func:`load_task_model` rebuilds the model in jaxtl. Both return a small report dict.

:func:`export_peft_adapter` writes a LoRA model as a PEFT adapter (``adapter_config.json``,
``adapter_model.safetensors`` with PEFT's names, e.g.
``base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight``; the head in
``modules_to_save``) for ``peft.PeftModel.from_pretrained(AutoModelFor...(base), dir)``.

:func:`export_run` does all of it for a :class:`jaxtl.run.Run`: ``out/`` is the bare encoder
(``AutoModel``), ``out/<task name>/`` each labelled task's model, ``out/<task name>/adapter/``
its PEFT adapter when the run trained LoRA.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxtl import fileio, paths, peft, thresholds
from jaxtl import report as report_lib
from jaxtl import workdir as workdir_lib
from jaxtl.data import tokenize
from jaxtl.data.prepare import head_key
from jaxtl.models import heads as heads_lib
from jaxtl.models import hf, hf_heads
from jaxtl.models.keymap import Rule
from jaxtl.models.representation import Representation
from jaxtl.models.transfer import TransferModel

log = logging.getLogger(__name__)

CARD = "README.md"
NOTE = "EXPORT.md"
HEAD_WEIGHTS = "jaxtl_head.safetensors"
HEAD_JSON = "jaxtl_head.json"
HEAD_FORMAT = "jaxtl-task-head/1"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
TASK_TYPES = {"classification": "SEQ_CLS", "multilabel": "SEQ_CLS", "regression": "SEQ_CLS",
              "tagging": "TOKEN_CLS", "qa": "QUESTION_ANS"}  # fmt: skip
PIPELINES = {
    "classification": "text-classification",
    "multilabel": "text-classification",  # problem_type makes the pipeline apply sigmoids
    "regression": "text-classification",
    "tagging": "token-classification",
    "qa": "question-answering",
}
AUTO_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "multilabel": "AutoModelForSequenceClassification",
    "regression": "AutoModelForSequenceClassification",
    "tagging": "AutoModelForTokenClassification",
    "qa": "AutoModelForQuestionAnswering",
}
# transformers' sequence-classification problem_type of each sentence kind: its loss, and the
# function its text-classification pipeline applies to the logits.
PROBLEM_TYPES = {"classification": "single_label_classification",
                 "multilabel": "multi_label_classification", "regression": "regression"}  # fmt: skip
# peft's PeftModelForQuestionAnswering.forward (0.21) does not pass token_type_ids on to the model,
# so a BERT-like model reads every token as the question's: its logits are not the merged
# model's. The wrapped model itself computes them exactly.
QA_PEFT_NOTE = """
`peft.PeftModelForQuestionAnswering.forward` (peft 0.21) does not pass `token_type_ids` on to the
model, so its logits are not the trained model's; call the wrapped model, which computes them
exactly: `model.get_base_model()(**tokenizer(question, context, return_tensors="pt"))`.
"""
# Label attributes a loaded (task) checkpoint's config may carry from its own task.
_STALE = ("id2label", "label2id", "num_labels", "_num_labels", "problem_type", "finetuning_task")


# --- helpers -----------------------------------------------------------------------------------


def _task_and_key(task: Any) -> tuple[Any, str]:
    """A TaskData (``.task``, ``.key``) or a Task (key from its name)."""
    if hasattr(task, "task") and hasattr(task, "key"):
        return task.task, task.key
    return task, head_key(task.name)


def with_params(model: nnx.Module, params: Any | None) -> nnx.Module:
    """A copy of ``model`` holding ``params`` (a pure dict such as the trainer's selected
    params; None keeps the model's own)."""
    out = nnx.clone(model)
    if params is not None:
        state = nnx.state(out, nnx.Param)
        nnx.replace_by_pure_dict(state, jax.device_get(params))
        nnx.update(out, state)
    return out


def _labels(task: Any) -> list[str]:
    if task.kind == "qa":  # a QA head's two outputs (num_labels=2), named as transformers does
        return ["LABEL_0", "LABEL_1"]
    if task.kind == "regression":
        return list(task.label_names) if len(task.label_names) == 1 else ["LABEL_0"]
    return list(task.label_names)


def _flat(module: nnx.Module) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v, np.float32)
        for k, v in paths.flatten(nnx.to_pure_dict(nnx.state(module, nnx.Param))).items()
    }


def _adapter_size(model: nnx.Module) -> int | None:
    for _, m in model.iter_modules():
        if isinstance(m, peft.AdapterLinear):
            return int(m.adapter.down.out_features)
    return None


def _strip_adapters(model: nnx.Module) -> nnx.Module:
    """A copy whose Houlsby-wrapped projections are plain linears again (the base weights)."""
    out = nnx.clone(model)
    for _, m in list(out.iter_modules()):
        for name, child in list(vars(m).items()):
            if isinstance(child, peft.AdapterLinear):
                lin = nnx.Linear(child.in_features, child.out_features,
                                 use_bias=child.bias is not None, dtype=child.dtype,
                                 param_dtype=child.param_dtype, rngs=nnx.Rngs(0))  # fmt: skip
                lin.kernel = child.kernel
                if child.bias is not None:
                    lin.bias = child.bias
                setattr(m, name, lin)
    return out


def _plain_encoder(model: nnx.Module) -> nnx.Module:
    """The model with LoRA merged and Houlsby adapters removed (what an HF encoder can hold)."""
    if peft.has_lora(model):
        model = peft.merge_lora(model)
    if peft.has_adapters(model):
        model = _strip_adapters(model)
    return model


def _save_tokenizer(tokenizer: Any, out: pathlib.Path, encoder: Any) -> Any:
    """Save the tokenizer; one with no pad token (GPT-2, Llama 3) gets its end-of-sequence token
    as pad token (the usual choice; id 0 when it has none either). Returns the saved pad id
    (None: no tokenizer). The exported config's ``pad_token_id`` is this id: transformers'
    last-token classifiers find the last token that is not it, so it must not be a word —
    id 0 is "!" in the GPT-2 and Llama 3 vocabularies, and a sentence ending in "!" would then be
    pooled one token early; an end-of-sequence token does not end ordinary input."""
    if tokenizer is None:
        return None
    if tokenizer.pad_token_id is None:
        tokenizer = copy.deepcopy(tokenizer)
        eos = tokenizer.eos_token
        tokenizer.pad_token = eos if eos is not None else tokenizer.convert_ids_to_tokens(0)
    hf.save_tokenizer(tokenizer, out, encoder)
    return tokenizer.pad_token_id


# --- task models -------------------------------------------------------------------------------


def export_task_model(
    model: nnx.Module,
    params: Any | None,
    task: Any,
    out_dir: str | pathlib.Path,
    *,
    tokenizer: Any | None = None,
    hf_config: Mapping[str, Any] | None = None,
    family: Any = None,
    description: str = "",
    base_model: str | None = None,
) -> dict[str, Any]:
    """Write the model of one task (``task``: a TaskData, or a Task whose head key is
    ``head_key(task.name)``) to ``out_dir``; see the module docstring.

    ``params``: the parameters to export (pure dict; None: the model's own). ``hf_config``: the
    encoder's loaded config (its extras, such as tokenizer ids, are kept). ``family``: the
    expected ``model_type`` (checked against the encoder). ``description``: free text for the
    model card (how it was trained); ``base_model``: the checkpoint it started from.

    Returns ``{"path", "format": "transformers" | "jaxtl", "architecture", "transformers",
    "reason", "labels", "files"}``: ``transformers`` says what transformers loads from the
    directory, ``reason`` why the head is in jaxtl's format (None for a transformers model).
    """
    t, key = _task_and_key(task)
    if t.kind not in hf_heads.HEAD_KINDS:
        raise ValueError(f"task {t.name!r}: no task-model export for kind {t.kind!r}")
    m: Any = with_params(model, params)  # a TransferModel, used by attribute (.heads, .encoder)
    if peft.has_lora(m):
        m = peft.merge_lora(m)
    if key not in m.heads:
        raise ValueError(f"task {t.name!r}: the model has no head {key!r} ({sorted(m.heads)})")
    enc = m.encoder
    want = getattr(family, "model_type", family)  # a model_type or a models.family.Family
    if want is not None and want != enc.family:
        raise ValueError(f"family={want!r}, but the model's encoder is {enc.family!r}")
    size = _adapter_size(m)
    reason = hf_heads.head_problem(m, key, t.kind)
    if size is not None:
        reason = (
            f"the encoder carries Houlsby adapters (size {size}): transformers has no such "
            "layers, so neither the encoder nor the head can load there as trained"
        )
    out = pathlib.Path(out_dir)
    if reason is None:
        rep = _write_transformers(m, key, t, out, tokenizer, hf_config, description, base_model)
    else:
        rep = _write_jaxtl(m, key, t, out, reason, tokenizer, hf_config, description, base_model)
    rep["files"] = sorted(p.name for p in out.iterdir() if p.is_file())
    log.info("%s: %s model written to %s", t.name, rep["format"], out)
    return rep


def _write_transformers(m, key, task, out, tokenizer, hf_config, description, base_model):
    enc, head = m.encoder, m.heads[key]
    fam = hf_heads.family_of(enc)
    spec = fam.task_head(task.kind, enc.cfg)
    prefix = fam.export_prefix(spec)
    tensors = hf.hf_tensors(enc, fam.key_map(enc.cfg), prefix)
    tensors.update(hf.hf_tensors(head, hf_heads.hf_head_rules(spec, enc.cfg, prefix)))
    config = hf.encoder_config(enc, {k: v for k, v in (hf_config or {}).items() if k not in _STALE})
    labels = _labels(task)
    config["architectures"] = [spec.architecture]
    config["id2label"] = {str(i): n for i, n in enumerate(labels)}
    config["label2id"] = {n: i for i, n in enumerate(labels)}
    if task.kind in PROBLEM_TYPES:
        config["problem_type"] = PROBLEM_TYPES[task.kind]
    if spec.dropout and spec.dropout_attr:
        config[spec.dropout_attr] = float(head.dropout)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (HEAD_JSON, HEAD_WEIGHTS, NOTE):  # an earlier jaxtl-format export there
        (out / stale).unlink(missing_ok=True)
    pad = _save_tokenizer(tokenizer, out, enc)
    if spec.pooling == "last":  # GPT-2's / Llama's score head finds the last non-pad token
        config["pad_token_id"] = pad if pad is not None else tokenize.pad_id(tokenizer)
    config["jaxtl_task"] = {"name": task.name, "kind": task.kind, "head_key": key}
    if task.kind == "multilabel":  # the pipeline gives probabilities; where jaxtl cut them
        config["jaxtl_task"]["thresholds"] = class_thresholds(task)
    hf.write_checkpoint(out, tensors, config)
    rep = {
        "path": str(out),
        "format": "transformers",
        "architecture": spec.architecture,
        "transformers": f"{AUTO_CLASSES[task.kind]} (the task model, exact)",
        "reason": None,
        "labels": labels,
    }
    _write_card(out, task, labels, rep, description, base_model, tokenizer is not None)
    return rep


def _write_jaxtl(m, key, task, out, reason, tokenizer, hf_config, description, base_model):
    from safetensors.numpy import save_file

    size = _adapter_size(m)
    plain = _plain_encoder(m)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(plain.encoder, out, tokenizer=None, hf_config=hf_config)
    _save_tokenizer(tokenizer, out, plain.encoder)
    tensors = {f"head/{p}": v for p, v in _flat(m.heads[key]).items()}
    if m.representation is not None:
        tensors.update({f"representation/{p}": v for p, v in _flat(m.representation).items()})
    if size is not None:
        enc_flat = _flat(m.encoder)
        tensors.update({f"encoder/{p}": v for p, v in enc_flat.items() if "/adapter/" in p})
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out / HEAD_WEIGHTS))
    rep_desc = None
    if m.representation is not None:
        r = m.representation
        rep_desc = {
            "kind": r.kind,
            "num_layers": r.num_layers,
            "hidden_size": m.encoder.hidden_size,
        }
    hf_family = hf_heads.family_of(m.encoder)
    loader = None if hf_family is None else hf_family.loader
    desc = {
        "format": HEAD_FORMAT,
        "task": {"name": task.name, "kind": task.kind, "label_names": list(task.label_names)},
        "head_key": key,
        "head": m.heads[key].describe(),
        "representation": rep_desc,
        "adapters": None if size is None else {"size": size},
        "why_not_transformers": reason,
    }
    (out / HEAD_JSON).write_text(json.dumps(desc, indent=2) + "\n")
    if size is not None:
        loads = (
            f"nothing as trained ({loader or 'AutoModel'} loads the encoder without its adapters)"
        )
    elif loader is not None:
        loads = f"{loader} (the encoder only, exact); not the task head"
    else:
        loads = "nothing (the encoder is jaxtl's own format too)"
    rep = {
        "path": str(out),
        "format": "jaxtl",
        "architecture": None,
        "transformers": loads,
        "reason": reason,
        "labels": _labels(task),
    }
    (out / NOTE).write_text(_note(task, key, rep, size, loader or "AutoModel"))
    _write_card(out, task, rep["labels"], rep, description, base_model, tokenizer is not None)
    return rep


def _note(task: Any, key: str, rep: Mapping[str, Any], adapter_size: int | None,
          loader: str = "AutoModel") -> str:  # fmt: skip
    enc = (
        "`config.json` + `model.safetensors` hold the encoder **without** its Houlsby adapters "
        f"(the pretrained projections): `transformers.{loader}` loads it, but its outputs are "
        "not the trained model's. The adapters are in `jaxtl_head.safetensors` (`encoder/...`)."
        if adapter_size is not None
        else "`config.json` + `model.safetensors` hold the trained encoder in Hugging Face "
        f"layout (`transformers.{loader}` loads it when its model_type is a transformers one)."
    )
    return f"""# Exported from jaxtl: the head is in jaxtl's format

**transformers cannot load this task model.** Why: {rep["reason"]}.

- {enc}
- `jaxtl_head.safetensors` + `jaxtl_head.json`: the task head `{key}` (and the representation
  mix or adapters, when the model has them), described so jaxtl can rebuild it.
- transformers loads: {rep["transformers"]}.

Load the whole model with jaxtl:

```python
from jaxtl import export
model, key, info = export.load_task_model("{rep["path"]}")
_, feats = model.features(input_ids, attention_mask, token_type_ids)
logits = model.heads[key](feats, attention_mask)   # labels: info["labels"]
```

To get a transformers task model instead, train with `model.head=auto` (the default),
`model.representation=last`, `model.tagger_bilstm=0` and no `adapters` strategy (LoRA is fine:
it is merged on export).
"""


def class_thresholds(task: Any) -> dict[str, float]:
    """A multilabel task's threshold per class name (train.multilabel_threshold, or its tuned
    per-class ones)."""
    return {n: float(t) for n, t in zip(task.label_names, thresholds.per_class(task))}


def card_base_model(name: str | None) -> str | None:
    """The Hub id a model card's ``base_model`` metadata may name for the checkpoint a run
    started from: a packaged short name's Hub model, a Hub id as given, None for a local folder
    (the Hub takes only model ids there; the card's text still names the folder)."""
    if not name:
        return None
    name = hf.HUB_IDS.get(name, name)
    if pathlib.Path(name).expanduser().exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        return None
    return name


def _hub_note(path: str | None, name: str | None) -> str:
    """`` (on the Hub: id)`` when the adapter's base is a local copy of a Hub model."""
    hub_id = card_base_model(name)
    return f" (on the Hub: `{hub_id}`)" if hub_id and hub_id != path else ""


def _card_base_lines(name: str | None) -> list[str]:
    """A card's front-matter ``base_model`` line, when ``name`` has a Hub id."""
    hub_id = card_base_model(name)
    return [f"base_model: {json.dumps(hub_id)}"] if hub_id else []


def _write_card(
    out: pathlib.Path,
    task: Any,
    labels: Sequence[str],
    rep: Mapping[str, Any],
    description: str,
    base_model: str | None,
    has_tokenizer: bool,
) -> None:
    front = [
        "---",
        "library_name: " + ("transformers" if rep["format"] == "transformers" else "jaxtl"),
        *_card_base_lines(base_model),
    ]
    front += [f"pipeline_tag: {PIPELINES[task.kind]}", "tags:", "- jaxtl", "---", ""]
    lines = [
        f"# {task.name} ({task.kind})",
        "",
        f"- Base model: `{base_model or 'unknown'}`"
        + (f" ({hf.HUB_IDS[base_model]})" if base_model in hf.HUB_IDS else ""),
        f"- Task: `{task.name}`, kind `{task.kind}`, {len(labels)} label(s): "
        + ", ".join(f"`{n}`" for n in labels),
        f"- Format: {rep['format']}"
        + (f" (`{rep['architecture']}`)" if rep["architecture"] else ""),
        f"- transformers loads: {rep['transformers']}",
    ]
    if task.kind == "multilabel":
        cut = class_thresholds(task)
        lines.append(
            "- A class applies where its probability exceeds its threshold (`config.json`: "
            "`jaxtl_task.thresholds`): " + ", ".join(f"`{n}` {t:g}" for n, t in cut.items())
        )
    if not has_tokenizer:
        lines.append("- No tokenizer files: the run had no Hugging Face tokenizer.")
    lines += ["", "## How it was trained", "", description or "(no description given)", ""]
    if rep["format"] == "transformers":
        lines += [
            "## Use",
            "",
            "```python",
            "import transformers",
            f'model = transformers.{AUTO_CLASSES[task.kind]}.from_pretrained("{out}")',
        ]
        if task.kind == "qa":  # transformers 5 has no question-answering pipeline
            lines += [
                f'tok = transformers.AutoTokenizer.from_pretrained("{out}")',
                'enc = tok(question, context, truncation="only_second", return_tensors="pt")',
                "out = model(**enc)  # out.start_logits, out.end_logits: the answer's first "
                "and last token",
                "```",
                "",
                "`jaxtl --predict` decodes the best span over a long context's windows.",
                "",
            ]
        elif task.kind == "tagging":  # jaxtl tags a word by its first sub-token only
            lines += [
                f'pipe = transformers.pipeline("{PIPELINES[task.kind]}", model="{out}",',
                '                              aggregation_strategy="first")',
                "```",
                "",
                "jaxtl trained each word's tag on the word's first sub-token (the other pieces "
                'carry no label), so `aggregation_strategy="first"` gives jaxtl\'s tags, one '
                "per word, grouped into entities; without it the pipeline also lists the "
                "continuation pieces' (untrained) tags. The pipeline reads text, so its words "
                "are the tokenizer's: a word with punctuation inside (`AL-AIN`) becomes several."
                + (
                    ""
                    if task.iob
                    else " These tags are not IOB, so the pipeline joins neighbouring words "
                    "of one tag into one entry."
                )
                + " For jaxtl's tag of each of your words, take the logits at each word's "
                "first sub-token (`tokenizer(words, is_split_into_words=True).word_ids()`), "
                "as `jaxtl --predict` does.",
                "",
            ]
        else:
            lines += [
                f'pipe = transformers.pipeline("{PIPELINES[task.kind]}", model="{out}")',
                "```",
                "",
            ]
    else:
        lines += [f"## Use\n\n**transformers cannot load the head**: see `{NOTE}`.", ""]
    (out / CARD).write_text("\n".join(front + lines))


# --- loading back into jaxtl -------------------------------------------------------------------


def load_task_model(path: str | pathlib.Path) -> tuple[TransferModel, str, dict[str, Any]]:
    """A directory written by :func:`export_task_model` as a jaxtl model:
    ``(TransferModel with one head, its key, {"task", "kind", "labels"})``. Works for both
    formats (a transformers task model, or an encoder with jaxtl's head files)."""
    from safetensors.numpy import load_file

    path = pathlib.Path(path)
    pre = hf.from_pretrained(path)
    enc: Any = pre.model  # the encoder, used by attribute (.hidden_size, .cfg)
    rngs = nnx.Rngs(0)
    desc_file = path / HEAD_JSON
    if desc_file.is_file():
        desc = json.loads(desc_file.read_text())
        if desc.get("format") != HEAD_FORMAT:
            raise ValueError(f"{desc_file}: unknown format {desc.get('format')!r}")
        if desc.get("adapters"):
            peft.apply_adapters(enc, size=int(desc["adapters"]["size"]), rngs=rngs)
        rep = None
        if desc.get("representation"):
            r = desc["representation"]
            rep = Representation(r["kind"], r["num_layers"], r["hidden_size"], rngs=rngs)
        key = desc["head_key"]
        model = TransferModel(enc, {key: heads_lib.from_description(desc["head"], rngs=rngs)}, rep)
        names = {"head": f"heads/{key}", "representation": "representation", "encoder": "encoder"}
        values = {}
        for name, value in load_file(str(path / HEAD_WEIGHTS)).items():
            top, rest = name.split("/", 1)
            values[f"{names[top]}/{rest}"] = value
        _set(model, values)
        info = {"task": desc["task"]["name"], "kind": desc["task"]["kind"],
                "labels": list(desc["task"]["label_names"])}  # fmt: skip
        return model, key, info
    config = pre.hf_config
    arch = (config.get("architectures") or [""])[0]
    jt = config.get("jaxtl_task") or {}
    if arch.endswith("ForTokenClassification"):
        kind = "tagging"
    elif arch.endswith("ForQuestionAnswering"):
        kind = "qa"
    elif arch.endswith("ForSequenceClassification"):
        kind = {v: k for k, v in PROBLEM_TYPES.items()}.get(
            str(config.get("problem_type")), "classification"
        )
    else:
        raise ValueError(f"{path}: architectures={config.get('architectures')} is no task model")
    fam = hf_heads.family_of(enc)
    assert fam is not None  # hf.from_pretrained built the encoder from a registered family
    spec = fam.task_head(kind, enc.cfg)
    if spec is None:
        raise ValueError(f"{path}: model_type {fam.model_type!r} has no transformers {kind} head")
    labels = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    h = enc.hidden_size
    dropout = 0.1
    if kind != "tagging" and spec.dropout:
        dropout = float(config.get(spec.dropout_attr or "classifier_dropout") or 0.1)
    head = hf_heads.build_head(spec, kind, h, len(labels), dropout, rngs=rngs)
    key = jt.get("head_key") or "task"
    model = TransferModel(enc, {key: head})
    rules = hf_heads.hf_head_rules(spec, enc.cfg, fam.export_prefix(spec))
    tensors = hf.read_named_tensors(path, [r.hf for r in rules])
    _set(model, {f"heads/{key}/{r.path}": r.to_jax(tensors[r.hf]) for r in rules})
    return model, key, {"task": jt.get("name"), "kind": kind, "labels": labels}


def _set(model: nnx.Module, values: Mapping[str, np.ndarray]) -> None:
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    flat = paths.flatten(pure)
    unknown = set(values) - set(flat)
    if unknown:
        raise ValueError(f"exported tensors match no parameter: {sorted(unknown)[:5]}")
    for p, v in values.items():
        if np.size(v) == 1 and np.size(flat[p]) == 1:  # safetensors stores a scalar as (1,)
            v = np.reshape(v, np.shape(flat[p]))
        if tuple(np.shape(v)) != tuple(flat[p].shape):
            raise ValueError(f"{p}: exported shape {np.shape(v)} != {tuple(flat[p].shape)}")
        flat[p] = np.asarray(v, flat[p].dtype)
    nnx.replace_by_pure_dict(state, paths.unflatten(flat, pure))
    nnx.update(model, state)


# --- PEFT adapters -----------------------------------------------------------------------------


def _lora_modules(encoder: nnx.Module) -> list[tuple[str, peft.LoRALinear]]:
    return [
        ("/".join(str(p) for p in path), m)
        for path, m in encoder.iter_modules()
        if isinstance(m, peft.LoRALinear)
    ]


def _block_suffix(name: str) -> str:
    """A module's name after its layer index: ``attention.self.query`` of
    ``bert.encoder.layer.3.attention.self.query`` (the whole name when it has none)."""
    parts = name.split(".")
    idx = max((i for i, p in enumerate(parts) if p.isdigit()), default=-1)
    return ".".join(parts[idx + 1 :])


def _target_modules(targeted: set[str], every: set[str]) -> list[str]:
    """PEFT ``target_modules`` naming exactly ``targeted`` among ``every`` module of the task
    model: the per-block suffixes (``attention.self.query``) when they select exactly those,
    else the full names. PEFT matches a name or a ``.``-separated suffix of it."""
    suffixes = {_block_suffix(name) for name in targeted}
    chosen = {n for n in every if any(n == s or n.endswith("." + s) for s in suffixes)}
    return sorted(suffixes) if chosen == targeted else sorted(targeted)


def _peft_factors(
    module: str, parts: Sequence[tuple[Rule, peft.LoRALinear]], rules: Sequence[Rule]
) -> tuple[np.ndarray, np.ndarray, tuple[int, float]]:
    """PEFT's (lora_A [r, in], lora_B [out, r], (r, alpha)) for one transformers module from
    the jaxtl LoRA factors on it. A module fusing several jaxtl projections (DeBERTa's
    ``in_proj``, Phi-3's ``qkv_proj``: ``keymap.Rule.rows``) gets one factor pair holding each
    targeted part's: A stacks their A rows, B places each part's B in that part's output rows
    and its own rank's columns (zeros elsewhere), so ``B A x`` is every part's update at once;
    rank and alpha grow by the number of parts, keeping PEFT's ``alpha / r`` scale."""
    (rule, mod), n = parts[0], len(parts)
    if rule.rows is None:
        a, b = np.asarray(mod.lora_a[...], np.float32), np.asarray(mod.lora_b[...], np.float32)
        return a.T, b.T, (int(mod.rank), float(mod.alpha))
    if len({(m.rank, m.alpha) for _, m in parts}) != 1:
        raise ValueError(f"{module}: its parts have LoRA ranks / alphas that differ; PEFT "
                         "holds one factor pair for the fused module")  # fmt: skip
    r = int(mod.rank)
    groups = rule.rows[0]
    block = max(x.rows[2] for x in rules if x.hf == rule.hf and x.rows is not None)
    a_rows, b = [], np.zeros((groups, block, n * r), np.float32)
    for k, (part, m) in enumerate(parts):
        assert part.rows is not None
        _, start, stop = part.rows
        a_rows.append(np.asarray(m.lora_a[...], np.float32).T)
        b_part = np.asarray(m.lora_b[...], np.float32).T  # [out of the part, r], group-major
        b[:, start:stop, k * r : (k + 1) * r] = b_part.reshape(groups, stop - start, r)
    return np.concatenate(a_rows), b.reshape(groups * block, n * r), (n * r, n * float(mod.alpha))


def _peft_patterns(
    shapes: Mapping[str, tuple[int, float]],
) -> tuple[tuple[int, float], dict[str, int], dict[str, float]]:
    """adapter_config's ``r`` / ``lora_alpha`` (the most common pair) and ``rank_pattern`` /
    ``alpha_pattern`` for modules that differ (a fused module whose parts were targeted): keyed
    by the per-block suffix (``self_attn.qkv_proj``) where every module ending so has the same
    pair, else by the full name. PEFT matches ``(.*\\.)?<key>$``, so the dots are escaped."""
    counts: dict[tuple[int, float], int] = {}
    for shape in shapes.values():
        counts[shape] = counts.get(shape, 0) + 1
    common = max(counts, key=lambda s: (counts[s], -s[0]))  # a tie: the unfused rank
    by_suffix: dict[str, set[tuple[int, float]]] = {}
    for module, shape in shapes.items():
        by_suffix.setdefault(_block_suffix(module), set()).add(shape)
    others: dict[str, tuple[int, float]] = {}
    for module, shape in sorted(shapes.items()):
        if shape != common:
            suffix = _block_suffix(module)
            others[re.escape(suffix if len(by_suffix[suffix]) == 1 else module)] = shape
    return (
        common,
        {k: s[0] for k, s in others.items() if s[0] != common[0]},
        {k: s[1] for k, s in others.items() if s[1] != common[1]},
    )


def export_peft_adapter(
    model: nnx.Module,
    params: Any | None,
    task: Any,
    out_dir: str | pathlib.Path,
    *,
    base_hf_config: Mapping[str, Any] | None = None,
    base_model_name_or_path: str | None = None,
    base_dir: str | pathlib.Path | None = None,
    description: str = "",
    base_model: str | None = None,
) -> dict[str, Any]:
    """Write a LoRA model's factors and task head as a PEFT LoRA adapter.

    ``peft.PeftModel.from_pretrained(AutoModelFor<Sequence|Token>Classification.from_pretrained(
    base, num_labels=N), out_dir)`` then computes the model's logits, where ``base`` holds the
    encoder weights the factors were trained on. ``base_dir``: that checkpoint, when at hand;
    the model's base (non-LoRA) encoder weights are compared with it, and a ValueError names
    those that differ (an adapter over other weights would give other outputs: export the
    merged model instead). ``base_model_name_or_path`` goes into ``adapter_config.json``
    (default: ``base_dir``, else ``base_hf_config["_name_or_path"]``); ``base_model``, the
    name the run started from (default: that), gives the card's ``base_model`` metadata.

    The head travels in ``modules_to_save`` (``classifier``; ``pooler`` for BERT; ``score`` for
    GPT-2). Returns ``{"path", "task_type", "r", "lora_alpha", "target_modules",
    "modules_to_save", "tensors"}``.
    """
    from safetensors.numpy import save_file

    t, key = _task_and_key(task)
    m: Any = with_params(model, params)  # a TransferModel, used by attribute (.heads, .encoder)
    enc = m.encoder
    lora = _lora_modules(enc)
    if not lora:
        raise ValueError("the model has no LoRA factors: nothing to write as a PEFT adapter")
    if peft.has_adapters(m):
        raise ValueError("the model also has Houlsby adapters, which PEFT's LoRA cannot hold")
    if t.kind not in TASK_TYPES:
        raise ValueError(f"task {t.name!r}: no PEFT task type for kind {t.kind!r}")
    problem = hf_heads.head_problem(m, key, t.kind)
    if problem is not None:
        raise ValueError(f"task {t.name!r}: {problem}; a PEFT adapter needs a transformers head")
    # head_problem returned None: the encoder's family has a transformers head for this kind.
    fam = hf_heads.family_of(enc)
    assert fam is not None
    spec = fam.task_head(t.kind, enc.cfg)
    assert spec is not None
    prefix = fam.export_prefix(spec)
    enc_rules = fam.key_map(enc.cfg)
    by_path = {r.path: r for r in enc_rules}
    if base_dir is not None:
        _check_base(enc, enc_rules, fam, pathlib.Path(base_dir))

    tensors: dict[str, np.ndarray] = {}
    by_module: dict[str, list[tuple[Rule, peft.LoRALinear]]] = {}
    conv1d = False
    for path, mod in lora:
        rule = by_path[f"{path}/kernel"]
        by_module.setdefault(prefix + rule.hf.removesuffix(".weight"), []).append((rule, mod))
        conv1d |= rule.transform == "none"
    targeted = set(by_module)
    shapes: dict[str, tuple[int, float]] = {}  # module -> (rank, alpha) of its PEFT factors
    for module, parts in by_module.items():
        a, b, shapes[module] = _peft_factors(module, parts, enc_rules)
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = np.ascontiguousarray(a)  # [r, in]
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = np.ascontiguousarray(b)  # [out, r]
    (rank, alpha), rank_pattern, alpha_pattern = _peft_patterns(shapes)
    head_rules = hf_heads.hf_head_rules(spec, enc.cfg, prefix)
    for name, value in hf.hf_tensors(m.heads[key], head_rules).items():
        tensors[PEFT_PREFIX + name] = value
    every = {prefix + r.hf.removesuffix(".weight") for r in enc_rules if r.hf.endswith(".weight")}
    every |= {r.hf.removesuffix(".weight") for r in head_rules if r.hf.endswith(".weight")}
    to_save = sorted({r.hf.split(".")[0] for r in spec.key_map(enc.cfg)}
                     | {r.hf.split(".")[0] for r in spec.base_key_map(enc.cfg)})  # fmt: skip
    name_or_path = base_model_name_or_path or (
        str(base_dir) if base_dir is not None else (base_hf_config or {}).get("_name_or_path")
    )
    config: dict[str, Any] = {  # adapter_config.json
        "peft_type": "LORA",
        "task_type": TASK_TYPES[t.kind],
        "base_model_name_or_path": name_or_path,
        "r": rank,
        "lora_alpha": alpha,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "lora_dropout": 0.0,
        "target_modules": _target_modules(targeted, every),
        "modules_to_save": to_save,
        "fan_in_fan_out": conv1d,  # GPT-2's Conv1D stores weights (in, out)
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    labels = _labels(t)
    auto = AUTO_CLASSES[t.kind]
    problem = ', problem_type="multi_label_classification"' if t.kind == "multilabel" else ""
    base_line = "".join(f"{x}\n" for x in _card_base_lines(base_model or name_or_path))
    (out / CARD).write_text(
        f"""---
library_name: peft
{base_line}tags:
- jaxtl
- lora
---

# {t.name}: LoRA adapter (PEFT)

LoRA factors (r={config["r"]}, alpha={config["lora_alpha"]}) on
{", ".join(f"`{x}`" for x in config["target_modules"])}, and the task head
({", ".join(f"`{x}`" for x in to_save)}, as `modules_to_save`), for `{spec.architecture}` over
the base model `{name_or_path}`{_hub_note(name_or_path, base_model)}. Labels ({len(labels)}): {", ".join(f"`{n}`" for n in labels)}.

```python
import peft, transformers
base = transformers.{auto}.from_pretrained("{name_or_path}", num_labels={len(labels)}{problem})
model = peft.PeftModel.from_pretrained(base, "{out}")
```
{QA_PEFT_NOTE if t.kind == "qa" else ""}
The same model with the factors merged, as a plain transformers task model, is in the parent
directory when it was exported with `jaxtl.export.export_run`.

## How it was trained

{description or "(no description given)"}
"""
    )
    log.info("%s: PEFT LoRA adapter written to %s", t.name, out)
    return {
        "path": str(out),
        "task_type": config["task_type"],
        "r": config["r"],
        "lora_alpha": config["lora_alpha"],
        "target_modules": config["target_modules"],
        "modules_to_save": to_save,
        "tensors": len(tensors),
    }


def _check_base(enc: nnx.Module, rules: Sequence[Rule], fam: Any, base_dir: pathlib.Path) -> None:
    names = hf.tensor_names(base_dir)
    if names is None:
        names = set(hf.read_tensors(base_dir, allow_pickle=True))
    prefix = next((p for p in ("",) + fam.prefixes if p + rules[0].hf in names), "")
    ckpt = hf.read_named_tensors(base_dir, [prefix + r.hf for r in rules], allow_pickle=True)
    flat = _flat(enc)  # LoRALinear keeps the base kernel / bias at the pretrained paths
    differ = []
    for r in rules:
        theirs = ckpt.get(prefix + r.hf)
        if theirs is None or np.abs(r.to_jax(theirs) - flat[r.path]).max() > 1e-6:
            differ.append(r.path)
    if differ:
        raise ValueError(
            f"the encoder's base weights differ from {base_dir} at {differ[:5]}"
            f"{' ...' if len(differ) > 5 else ''}: a LoRA adapter over that checkpoint would not "
            "reproduce the model (use the merged task model)"
        )


# --- a whole run -------------------------------------------------------------------------------


def _run_description(run: Any) -> str:
    c = run.config
    m, o = c.model, c.optim
    epochs = c.train.get("epochs", 0)
    length = f"train.epochs={epochs:g}" if epochs else f"train.steps={c.train.steps}"
    lines = [
        f"Trained with jaxtl (workdir `{run.workdir}`).",
        "",
        f"- model.name={m.name}, model.head={m.get('head', 'auto')}, "
        f"model.representation={m.representation}, seed={c.seed}",
        f"- optim.strategy={o.get('strategy', '?')}, optim.lr={o.get('lr', '?')}, "
        f"{length}, train.batch_size={c.train.batch_size}",
        "- tasks: " + ", ".join(f"{td.task.name} ({td.task.kind})" for td in run.tasks),
    ]
    try:
        results = json.loads((run.workdir / "results.json").read_text())
        lines.append("- dev results: " + json.dumps(results, sort_keys=True))
    except (OSError, ValueError, TypeError):
        pass
    return "\n".join(lines)


EXPORT_REPORT = workdir_lib.EXPORT_REPORT


def export_run(run: Any, params: Any | None, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Export a trained :class:`jaxtl.run.Run` with ``params`` (e.g. the selected best).

    Writes ``out_dir/`` (the bare encoder, LoRA merged: ``transformers.AutoModel`` loads it),
    ``out_dir/<task name>/`` for every labelled task (:func:`export_task_model`) and, for a
    LoRA model, ``out_dir/<task name>/adapter/`` (:func:`export_peft_adapter`, over the
    checkpoint the encoder was loaded from). Returns ``{task name: its report}`` plus
    ``"(encoder)"``: the bare encoder's, also written to ``out_dir/export_report.json`` — by the
    run's own export and by ``--export`` alike. ``out_dir`` may be any ``epath`` URL
    (``gs://``): transformers, tokenizers and safetensors write local folders, so the export is
    then written to a local temporary folder and copied up.
    """
    dest = os.fspath(out_dir)
    workdir_lib.check_export_folder(dest, "out_dir")
    # Written whole into a new folder that then replaces dest: a re-export leaves no file of
    # the one before (another run's task folder, a LoRA run's adapter/), a stopped one no
    # half-written folder.
    with fileio.replaced_dir(dest) as local:
        report = _export_run(run, params, pathlib.Path(local))
        report_lib.write_json(pathlib.Path(local) / EXPORT_REPORT, report)
        if local != dest:  # cards and reports name the destination, not the temporary folder
            for f in pathlib.Path(local).rglob("*"):
                if f.suffix in (".md", ".json") and local in (text := f.read_text()):
                    f.write_text(text.replace(local, dest))
            report = json.loads(json.dumps(report).replace(local, dest))
    return report


def _export_run(run: Any, params: Any | None, out: pathlib.Path) -> dict[str, Any]:
    m: Any = with_params(run.model, params)  # a TransferModel, used by attribute (.heads, .encoder)
    plain: Any = _plain_encoder(m)
    hf.save_pretrained(plain.encoder, out, tokenizer=run.tokenizer, hf_config=run.hf_config)
    size = _adapter_size(m)
    fam = hf_heads.family_of(m.encoder)
    loader = fam.loader if fam is not None else None
    report: dict[str, Any] = {
        "(encoder)": {
            "path": str(out),
            "transformers": (loader or "nothing (jaxtl's own format)") + (
                " (without the run's Houlsby adapters: not the trained model's outputs)"
                if size is not None and loader else ""
            ),
            "lora_merged": peft.has_lora(m),
        }
    }  # fmt: skip
    description = _run_description(run)
    base_name = str(run.config.model.name)
    checkpoint = getattr(m.encoder, "checkpoint", None)
    for td in run.tasks:
        name = td.task.name
        if td.task.kind not in hf_heads.HEAD_KINDS or td.key not in m.heads:
            report[name] = {"skipped": f"no task-model export for kind {td.task.kind!r}"}
            continue
        rep = export_task_model(
            m, None, td, out / name, tokenizer=run.tokenizer, hf_config=run.hf_config,
            description=description, base_model=base_name,
        )  # fmt: skip
        if peft.has_lora(m):
            if checkpoint is None:
                rep["adapter"] = {"written": False, "reason": "the encoder has no HF checkpoint"}
            else:
                local = pathlib.Path(base_name).expanduser().is_dir() or base_name in hf.SHORT_NAMES
                try:
                    rep["adapter"] = export_peft_adapter(
                        m, None, td, out / name / "adapter", base_hf_config=run.hf_config,
                        base_model_name_or_path=checkpoint if local else base_name,
                        base_dir=checkpoint, description=description, base_model=base_name,
                    )  # fmt: skip
                except ValueError as e:
                    rep["adapter"] = {"written": False, "reason": str(e)}
                    log.warning("%s: no PEFT adapter: %s", name, e)
        report[name] = rep
    _write_encoder_card(out, report, description, base_name, loader)
    return report


def _write_encoder_card(
    out: pathlib.Path, report: Mapping[str, Any], description: str, base_model: str | None,
    loader: str | None = "AutoModel",
) -> None:  # fmt: skip
    """``out/README.md``: the top folder is the encoder alone (no head: loaded as a task model
    it would get a new, untrained one), and which folder holds each task's model."""
    tasks = {k: v for k, v in report.items() if k != "(encoder)"}
    loads = (f': `transformers.{loader}.from_pretrained("{out}")` gives its hidden states'
             if loader else " (jaxtl's own model type: `jaxtl.models.from_pretrained` reads "
             "it, transformers does not)")  # fmt: skip
    front = ["---", "library_name: transformers", *_card_base_lines(base_model),
             "pipeline_tag: feature-extraction", "tags:", "- jaxtl", "---", ""]  # fmt: skip
    lines = [
        "# Encoder",
        "",
        "This folder is the run's encoder alone, in Hugging Face layout"
        + (" (LoRA merged)" if report["(encoder)"].get("lora_merged") else "")
        + f"{loads}. It has "
        "no task head: loaded as a task model (`AutoModelForSequenceClassification`, a "
        "`pipeline`) it would get a new, untrained one. Each task's trained model is in its own "
        "folder:",
        "",
        "| task | folder | loads as |",
        "|---|---|---|",
    ]
    for name, rep in tasks.items():
        loads = rep.get("skipped") or rep.get("transformers") or rep.get("format", "")
        lines.append(f"| `{name}` | `{rep.get('path', out / name)}` | {loads} |")
    lines += ["", "## How it was trained", "", description or "(no description given)", ""]
    (out / CARD).write_text("\n".join(front + lines))
