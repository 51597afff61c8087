"""Sentence embeddings from an encoder — the feature-based approach's features, for use outside
jaxtl: ``jaxtl --embed`` and :func:`embedder`.

An input (a text, or a text pair) becomes one vector: the encoder's ``representation`` (any of
:data:`jaxtl.models.representation.KINDS`: the last layer, the second-to-last, the sum or the
concatenation of the last four, the embeddings, ELMo's or CoVe's mix) pooled over its tokens
(``mean`` of the real tokens, the ``cls`` token, or the ``last`` real token for causal
encoders), optionally scaled to unit length. The encoder is a pretrained model (``"minilm"``, a
local Hugging Face folder, a hub id in the local cache) or a finished run's selected one
(a workdir: a fine-tuned or domain-adapted encoder, with its own representation when the run
trained one, e.g. ELMo's scalar mix).

A sentence-transformers folder (``modules.json``, as the packaged all-MiniLM-L6-v2 is: the
model's, or the one a run started from) says how it is meant to be used: its ``Pooling`` mode,
the ``Dense`` projections after it (LaBSE's, EmbeddingGemma's two), whether a ``Normalize``
module follows, and its ``max_seq_length``. Those are the defaults here, so ``jaxtl --embed
--model=minilm`` gives ``SentenceTransformer(...).encode()``'s vectors (tests/test_embed.py,
1e-5); a module jaxtl does not run is refused by name rather than skipped. Elsewhere the
defaults are mean pooling, no projection, not normalised, and the encoder's position limit (at
most 512).

Inputs are packed several to a row where the encoder runs packed rows exactly (as training
does: block-diagonal attention, positions restarting per input), so short sentences cost little
padding; the encoder runs without dropout, in chunks of :data:`CHUNK` inputs, so memory does not
grow with the input.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from jaxtl.data import batching, packing, tokenize
from jaxtl.data.tasks import Example, Task
from jaxtl.models import heads
from jaxtl.models.base import supports_packing
from jaxtl.models.representation import KINDS as REPRESENTATIONS
from jaxtl.models.representation import Representation
from jaxtl.models.transfer import TransferModel

log = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "last")
CHUNK = 8192  # inputs tokenised and run per chunk
MAX_LENGTH = 512  # the default longest input (tokens) where neither the folder nor the model says


def _given(split: str) -> Any:
    raise ValueError("embedding inputs are handed over, not read from a split")


# What the inputs are to the tokenizer: a sentence task's texts (or pairs), without labels.
_INPUTS = Task("embed", "regression", loader=_given)

# sentence-transformers' Pooling modes jaxtl has, by their flags in configs before version 6
_ST_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
               "pooling_mode_lasttoken": "lasttoken"}  # fmt: skip
# sentence-transformers modules (the class name in modules.json's "type") jaxtl runs, in order:
# the model, its pooling, projections of the pooled vector, unit length.
_ST_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x: np.ndarray) -> np.ndarray:  # torch.nn.GELU(): the exact (erf) form
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


# A Dense module's activation, as its config names the torch class (Tanh when it names none)
_ST_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "torch.nn.modules.linear.Identity": lambda x: x,
    "torch.nn.modules.activation.Tanh": np.tanh,
    "torch.nn.modules.activation.ReLU": lambda x: np.maximum(x, 0.0),
    "torch.nn.modules.activation.GELU": _gelu,
    "torch.nn.modules.activation.Sigmoid": _sigmoid,
    "torch.nn.modules.activation.SiLU": lambda x: x * _sigmoid(x),
}


@dataclasses.dataclass(frozen=True)
class Dense:
    """A sentence-transformers ``Dense`` module on the pooled vector: ``act(x W^T + b)``, plus
    ``x`` (or its projection, when the widths differ) with ``use_residual``."""

    where: str  # the module's folder, for errors
    weight: np.ndarray  # [out, in] float32, as torch.nn.Linear stores it
    bias: np.ndarray | None
    activation: str  # a key of _ST_ACTIVATIONS
    residual: np.ndarray | None = None  # [out, in]: the residual's projection
    use_residual: bool = False

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight.T + (0.0 if self.bias is None else self.bias)
        y = _ST_ACTIVATIONS[self.activation](y)
        if self.use_residual:
            y = y + (x if self.residual is None else x @ self.residual.T)
        return y.astype(np.float32)


def _dense(folder: epath.Path, allow_pickle: bool) -> Dense:
    """The Dense module saved in ``folder`` (its config.json and weights)."""
    from jaxtl.models import hf

    cfg = json.loads((folder / "config.json").read_text())
    act = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
    if act not in _ST_ACTIVATIONS:
        raise ValueError(f"{folder}/config.json: activation_function {act!r} is not one jaxtl "
                         f"runs ({', '.join(sorted(_ST_ACTIVATIONS))})")  # fmt: skip
    if cfg.get("module_input_name", "sentence_embedding") != "sentence_embedding":
        raise ValueError(f"{folder}/config.json: a Dense module on "
                         f"{cfg['module_input_name']!r}, not the pooled sentence_embedding, is "
                         "not one jaxtl runs")  # fmt: skip
    tensors = hf.read_tensors(pathlib.Path(str(folder)), allow_pickle=allow_pickle)
    weight = np.asarray(tensors["linear.weight"], np.float32)
    if weight.shape != (cfg["out_features"], cfg["in_features"]):
        raise ValueError(f"{folder}: linear.weight has shape {weight.shape}, the config says "
                         f"({cfg['out_features']}, {cfg['in_features']})")  # fmt: skip
    bias = tensors.get("linear.bias") if cfg.get("bias", True) else None
    residual = tensors.get("residual.weight")
    return Dense(str(folder), weight, None if bias is None else np.asarray(bias, np.float32),
                 act, None if residual is None else np.asarray(residual, np.float32),
                 bool(cfg.get("use_residual", False)))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Settings:
    """How an input becomes a vector; None = the model folder's own (see the module docstring)."""

    representation: str | None = None
    pooling: str | None = None
    normalize: bool | None = None
    dense: bool | None = None  # the folder's Dense projections (None: where it has them)
    prompt_name: str | None = None  # one of the folder's prompts, put before each text
    prompt: str | None = None  # a prompt of one's own (None: the folder's default, if any)
    max_length: int | None = None
    batch_size: int = 64  # rows per encoder call

    def check(self) -> None:
        if self.representation is not None and self.representation not in REPRESENTATIONS:
            raise ValueError(f"--representation={self.representation}: choose one of "
                             f"{', '.join(REPRESENTATIONS)}")  # fmt: skip
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ValueError(f"--pooling={self.pooling}: choose one of {', '.join(POOLINGS)}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"--max_length={self.max_length}: must be 2 tokens or more")
        if self.prompt is not None and self.prompt_name is not None:
            raise ValueError("give one of --prompt (a text) or --prompt_name (one of the "
                             "folder's prompts), not both")  # fmt: skip
        if self.batch_size < 1:
            raise ValueError(f"--batch_size={self.batch_size}: must be 1 or more")


def sentence_transformers_defaults(path: str | epath.Path,
                                   allow_pickle: bool = False) -> dict[str, Any]:  # fmt: skip
    """``pooling``, ``dense`` (its :class:`Dense` modules, in order), ``normalize`` and
    ``max_length`` as a sentence-transformers folder declares them (``modules.json``, its
    modules' configs, ``sentence_bert_config.json`` or the tokenizer's config), its named
    ``prompts`` and whether its texts are lowercased (``lower_case``); {} for any other
    folder. ``path`` may be the model's own folder in the older layout (``0_Transformer/``
    below ``modules.json``). A module or pooling mode jaxtl does not have (max, weighted mean)
    is refused by name."""
    from jaxtl.models import hf

    folder = epath.Path(path)
    modules_file = folder / "modules.json"
    if not modules_file.exists() and hf.first_module(folder.parent) == folder.name:
        folder, modules_file = folder.parent, folder.parent / "modules.json"  # the older layout
    if not modules_file.exists():
        return {}
    modules = json.loads(modules_file.read_text())
    # the model's folder: its own settings are there in the older layout, at the top in the new
    model = folder / hf.first_module(folder)
    out: dict[str, Any] = {"folder": folder, "normalize": False, "dense": ()}
    order = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    known = [k for k in order if k in _ST_MODULES]
    if known != order or known != sorted(known, key=_ST_MODULES.index):
        raise ValueError(f"{modules_file}: modules {order}: jaxtl runs "
                         f"{' -> '.join(_ST_MODULES)} (Dense and Normalize optional), in that "
                         "order; use the model's own library for the others")  # fmt: skip
    for m, kind in zip(modules, order):
        if kind == "Normalize":
            out["normalize"] = True
        elif kind == "Dense":
            out["dense"] += (_dense(folder / m.get("path", ""), allow_pickle),)
        elif kind == "Pooling":
            cfg = json.loads((folder / m.get("path", "") / "config.json").read_text())
            # sentence-transformers >= 6 saves "pooling_mode": "mean" (or a list of modes,
            # concatenated); earlier versions one true flag among "pooling_mode_*_tokens"
            on = cfg.get("pooling_mode")
            if on is None:
                on = [_ST_POOLING.get(k, k) for k, v in cfg.items()
                      if k.startswith("pooling_mode_") and v is True]  # fmt: skip
            on = [on] if isinstance(on, str) else list(on)
            if len(on) != 1 or on[0] not in _ST_POOLING.values():
                raise ValueError(f"{folder / m.get('path', '')}/config.json: pooling {on} is not "
                                 f"one jaxtl has ({', '.join(POOLINGS)}); set --pooling")  # fmt: skip
            out["pooling"] = {"lasttoken": "last"}.get(on[0], on[0])
            out["include_prompt"] = cfg.get("include_prompt", True)
    # Named prompts (E5's "query: ", EmbeddingGemma's, Qwen3-Embedding's instructions), and
    # the one encode() puts before every text unless told otherwise.
    own = folder / "config_sentence_transformers.json"
    if own.exists():
        cfg = json.loads(own.read_text())
        out["prompts"] = dict(cfg.get("prompts") or {})
        out["default_prompt_name"] = cfg.get("default_prompt_name")

    def settings(name: str) -> dict[str, Any]:
        file = model / name
        return json.loads(file.read_text()) if file.exists() else {}

    transformer = settings("sentence_bert_config.json")
    if transformer.get("do_lower_case"):
        out["lower_case"] = True  # its Transformer lowercases every text, whatever the tokenizer
    # The longest input: sentence_bert_config.json's max_seq_length, or (sentence-transformers
    # >= 6 keeps it there) the tokenizer's model_max_length; an unset one is a huge number.
    for length in (transformer.get("max_seq_length"),
                   settings("tokenizer_config.json").get("model_max_length")):  # fmt: skip
        if isinstance(length, int) and 1 < length < 1_000_000:
            out["max_length"] = length
            break
    return out


def _prompt(settings: Settings, own: dict[str, Any], folder: epath.Path | None) -> str:
    """The text put before every input: ``--prompt``, the folder's prompt ``--prompt_name``
    names, else the folder's ``default_prompt_name``'s (as ``encode()`` does), else none."""
    prompts = own.get("prompts", {})
    folder = own.get("folder", folder)  # the one holding modules.json, in either layout
    prompt = settings.prompt
    if prompt is None and settings.prompt_name is not None:
        if settings.prompt_name not in prompts:
            where = f"{folder}/config_sentence_transformers.json" if folder else "the model"
            raise ValueError(f"--prompt_name={settings.prompt_name}: {where} names the prompts "
                             f"{sorted(prompts) or 'none'}")  # fmt: skip
        prompt = prompts[settings.prompt_name]
    elif prompt is None and own.get("default_prompt_name"):
        prompt = prompts.get(own["default_prompt_name"])
    if prompt and not own.get("include_prompt", True):
        raise ValueError(f"{folder}: its Pooling leaves the prompt's tokens out "
                         "(include_prompt=false), which jaxtl does not do")  # fmt: skip
    return prompt or ""


class Embedder:
    """``embed(inputs) -> float32 [N, D]``: one vector per text or (text, text_pair)."""

    def __init__(self, model: TransferModel, tokenizer: Any, settings: Settings, *,
                 folder: epath.Path | None = None, allow_pickle: bool = False):  # fmt: skip
        settings.check()
        own = sentence_transformers_defaults(folder, allow_pickle) if folder is not None else {}
        self.tokenizer = tokenizer
        self.representation = settings.representation or (
            model.representation.kind if model.representation is not None else "last"
        )
        self.pooling = settings.pooling or own.get("pooling", "mean")
        self.normalize = own.get("normalize", False) if settings.normalize is None else (
            settings.normalize
        )  # fmt: skip
        limit = getattr(getattr(model.encoder, "cfg", None), "position_limit", None) or MAX_LENGTH
        self.max_length = int(
            settings.max_length or own.get("max_length") or min(limit, MAX_LENGTH)
        )
        if self.max_length > limit:
            raise ValueError(f"--max_length={self.max_length}: the model's positions reach "
                             f"{limit} tokens")  # fmt: skip
        if model.representation is None or model.representation.kind != self.representation:
            enc: Any = model.encoder
            model = TransferModel(enc, {}, Representation(
                self.representation, enc.num_layers, enc.hidden_size, rngs=nnx.Rngs(0)))  # fmt: skip
        self.model = model
        self.dense: tuple[Dense, ...] = () if settings.dense is False else own.get("dense", ())
        self.prompt = _prompt(settings, own, folder)
        self.lower_case = bool(own.get("lower_case"))
        pooled = self._pooled_dim
        if self.dense and self.dense[0].in_features != pooled:
            raise ValueError(f"--representation={self.representation} gives {pooled} features; "
                             f"the folder's {self.dense[0].where} projects "
                             f"{self.dense[0].in_features} (--dense=false leaves its projections "
                             "out)")  # fmt: skip
        self.packed = supports_packing(model.encoder)
        # rows of the longest input; shorter ones share them (packed) or take a smaller bucket
        self.buckets = tuple(sorted({b for b in (32, 64, 128, 256) if b < self.max_length}
                                    | {self.max_length}))  # fmt: skip
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.batch_size = settings.batch_size
        self._run = nnx.jit(_pooled, static_argnames=("how", "slots"))

    @property
    def _pooled_dim(self) -> int:
        rep = self.model.representation
        enc: Any = self.model.encoder
        return int(rep.output_size if rep is not None else enc.hidden_size)

    @property
    def dim(self) -> int:
        return int(self.dense[-1].weight.shape[0]) if self.dense else self._pooled_dim

    def describe(self) -> str:
        dense = f" dense={len(self.dense)}" if self.dense else ""
        prompt = f" prompt={self.prompt!r}" if self.prompt else ""
        return (f"representation={self.representation} pooling={self.pooling}{dense}{prompt} "
                f"normalize={self.normalize} max_length={self.max_length} dim={self.dim}")  # fmt: skip

    def _finish(self, vec: np.ndarray) -> np.ndarray:
        """The pooled vectors through the folder's projections, then to unit length
        (sentence-transformers' Normalize: x / max(||x||, 1e-12))."""
        for layer in self.dense:
            vec = layer(vec)
        if self.normalize:
            vec = vec / np.maximum(np.linalg.norm(vec, axis=-1, keepdims=True), 1e-12)
        return vec.astype(np.float32)

    def embed(self, inputs: Sequence[str | tuple[str, str]]) -> np.ndarray:
        """One vector per input, in input order: float32 [len(inputs), dim]."""
        parts = list(self.embed_stream(inputs))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def embed_stream(self, inputs: Iterable[str | tuple[str, str]]) -> Iterator[np.ndarray]:
        """:meth:`embed` a chunk of :data:`CHUNK` inputs at a time (bounded memory)."""
        chunk: list[str | tuple[str, str]] = []
        for x in inputs:
            chunk.append(x)
            if len(chunk) == CHUNK:
                yield self._embed_chunk(chunk)
                chunk = []
        if chunk:
            yield self._embed_chunk(chunk)

    def _embed_chunk(self, inputs: Sequence[str | tuple[str, str]]) -> np.ndarray:
        p = self.prompt  # before the text (a pair's first), as sentence-transformers puts it
        case = str.lower if self.lower_case else str
        examples = [Example(case(p + x), source=f"input:{i + 1}") if isinstance(x, str) else
                    Example(case(p + x[0]), text_pair=case(x[1]), source=f"input:{i + 1}")
                    for i, x in enumerate(inputs)]  # fmt: skip
        if len({ex.text_pair is None for ex in examples}) > 1:
            raise ValueError("inputs mix single texts and (text, text_pair) pairs; embed "
                             "them apart")  # fmt: skip
        # tokenised as a sentence task's unlabelled inputs are (cut at max_length, pairs too)
        enc = tokenize.encode(_INPUTS, examples, self.tokenizer, max_length=self.max_length,
                              labelled=False)  # fmt: skip
        out = np.zeros((len(examples), self.dim), np.float32)
        if self.packed:
            batches = packing.eval_batches(enc, batch_size=self.batch_size, buckets=self.buckets,
                                           pad_id=self.pad_id)  # fmt: skip
            for b in batches:
                slots = int(b["label"].shape[1])
                got = np.asarray(self._run(self.model, _device(b), how=self.pooling, slots=slots))
                real = b["example_weight"] > 0
                out[b["example_index"][real]] = self._finish(got[real])
            return out
        order = batching.eval_order(enc, buckets=self.buckets)
        rows = []
        for b in batching.eval_batches(enc, batch_size=self.batch_size, buckets=self.buckets,
                                       pad_id=self.pad_id):  # fmt: skip
            got = np.asarray(self._run(self.model, _device(b), how=self.pooling, slots=0))
            rows.append(self._finish(got[b["example_weight"] > 0]))
        out[order] = np.concatenate(rows)
        return out


def _device(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    keys = ("input_ids", "attention_mask", "token_type_ids", "segment_ids", "position_ids")
    return {k: jnp.asarray(batch[k]) for k in keys if k in batch}


def _pooled(model: TransferModel, batch: dict, *, how: str, slots: int):
    """[B,D] (one input per row) or [B,S,D] (``slots`` inputs per packed row) pooled vectors."""
    kw = {}
    if slots:
        kw = {"segment_ids": batch["segment_ids"], "position_ids": batch["position_ids"]}
    _, feats = model.features(batch["input_ids"], batch["attention_mask"],
                              batch["token_type_ids"], **kw)  # fmt: skip
    feats = feats.astype(jnp.float32)
    if slots:
        vec = heads.pool_segments(feats, batch["segment_ids"], how, slots)
    else:
        vec = heads.pool(feats, batch["attention_mask"], how)
    return vec


def embedder(model: str | None = None, *, workdir: str | None = None, task: str | None = None,
             settings: Settings | None = None, allow_pickle: bool = False) -> Embedder:  # fmt: skip
    """An :class:`Embedder` for a pretrained ``model`` (``"minilm"``, a local HF folder, a hub id
    in the local cache) or a finished run's selected encoder (``workdir``; ``task`` picks whose
    selected params when the run's stages selected differently).

    >>> vecs = embedder("minilm").embed(["A cat sat.", "A dog ran."])  # doctest: +SKIP
    """
    settings = settings or Settings()
    settings.check()
    if (model is None) == (workdir is None):
        raise ValueError("give one of --model (a pretrained model) or --workdir (a finished run)")
    from jaxtl.models import hf

    if workdir is not None:
        from jaxtl import export
        from jaxtl import predictor as predictor_lib

        p = predictor_lib.load(workdir)
        trained = export.with_params(p.model, p.selected_params(task))
        assert isinstance(trained, TransferModel)
        # the model the run started from says how its vectors are meant to be pooled (the
        # run loaded it, so it is on this machine)
        return Embedder(trained, p.tokenizer, settings, folder=hf.resolve(p.config.model.name),
                        allow_pickle=allow_pickle)  # fmt: skip
    assert model is not None
    pre = hf.from_pretrained(model, allow_pickle=allow_pickle)
    if pre.tokenizer is None:
        raise ValueError(f"--model={model}: {pre.path} has no tokenizer files")
    enc = pre.model
    return Embedder(
        TransferModel(enc, {}), pre.tokenizer, settings, folder=pre.path, allow_pickle=allow_pickle
    )


OUTPUT_FORMATS = ("npy", "parquet", "json", "jsonl")


def output_format(dest: str) -> str:
    """``.npy`` (float32 [N, D]), ``.parquet`` (id, text, embedding), ``.json`` (one JSON
    array of such records), else JSON lines."""
    suffix = "" if dest == "-" else epath.Path(dest).suffix.lower()
    fmt = {".npy": "npy", ".parquet": "parquet", ".json": "json"}.get(suffix, "jsonl")
    return fmt


# --input_format values, and the table formats an input's extension names.
INPUT_FORMATS = ("auto", "lines", "jsonl", "tsv", "csv", "parquet")
_TABLES = {".tsv": "tsv", ".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl",
           ".json": "jsonl"}  # fmt: skip


def run_columns(workdir: str, task: str | None = None) -> tuple[str | None, str | None]:
    """The text and pair columns a run's task read from its own files (a ``file:``/``hf:``
    spec's ``text=``/``text_pair=``): where ``--embed --workdir`` looks first in a table
    input. (None, None) when the run does not say (several tasks and none named, a
    built-in task)."""
    from jaxtl import fileio
    from jaxtl import workdir as workdir_lib
    from jaxtl.data.spec import is_spec, parse

    tasks = workdir_lib.read_json(fileio.workdir(workdir) / "tasks.json", "tasks")["tasks"]
    chosen = [t for t in tasks if task in (None, t["name"])]
    if len(chosen) != 1 or not is_spec(chosen[0]["spec"]):
        return None, None
    options = parse(chosen[0]["spec"])[1]
    text, pair = options.get("text"), options.get("text_pair")
    return (text if isinstance(text, str) else None, pair if isinstance(pair, str) else None)


def read_inputs(
    path: str,
    input_format: str = "auto",
    text_column: str | None = None,
    pair_column: str | None = None,
    run_columns: tuple[str | None, str | None] = (None, None),
) -> Iterator[tuple[str | tuple[str, str], str, Any]]:
    """(input, where, id) per input of ``path`` ("-" = stdin): ``lines``, one text per non-blank
    line (tabs kept); ``jsonl``, objects (one a line, or one array) with ``text`` and optionally
    ``text_pair``; ``tsv``/``csv``/``parquet``, a table's rows, its ``text`` column embedded
    (with ``text_pair`` when it has one). ``text_column``/``pair_column`` name other keys or
    columns (``review``); without them a table's columns named by ``run_columns`` (those a
    run's task read: :func:`run_columns`) are taken where it has them. ``id``: the row's own,
    from an ``id`` key or column, else None (its number). ``auto`` goes by the extension
    (``.jsonl``/``.json``, ``.tsv``, ``.csv``, ``.parquet``, compressed or not), else lines."""
    from jaxtl.data import DataError
    from jaxtl.data.io import extension, json_values, text_lines

    if input_format == "auto":
        input_format = "lines" if path == "-" else _TABLES.get(extension(path), "lines")
    if input_format not in INPUT_FORMATS[1:]:
        raise ValueError(f"--input_format={input_format}: choose one of {', '.join(INPUT_FORMATS)}")
    if input_format == "lines":
        if text_column or pair_column:
            raise ValueError("--text_column/--text_pair_column name a table's or JSON's "
                             "columns; lines input is a text a line")  # fmt: skip
        for line, where in text_lines(path):
            yield line, where, None
        return
    if input_format in ("tsv", "csv", "parquet"):
        yield from _table_inputs(path, input_format, text_column, pair_column, run_columns)
        return
    text, pair = text_column or "text", pair_column
    for rec, where in json_values(path):
        if not isinstance(rec, dict) or not isinstance(rec.get(text), str):
            got = f"; its keys: {', '.join(rec)}" if isinstance(rec, dict) else ""
            flag = "" if text_column else " (--text_column names another key)"
            raise DataError(f"{where}: expected an object with a string {text!r} (and "
                            f"optionally {pair or 'text_pair'!r}){flag}{got}")  # fmt: skip
        second = rec.get(pair or "text_pair")
        if pair and second is None:
            raise DataError(f"{where}: no {pair!r} (--text_pair_column) in this object")
        if second is not None and not isinstance(second, str):
            raise DataError(f"{where}: {pair or 'text_pair'!r} must be a string, got {second!r}")
        yield (rec[text] if second is None else (rec[text], second)), where, rec.get("id")


def _table_inputs(
    path: str,
    fmt: str,
    text_column: str | None,
    pair_column: str | None,
    run_columns: tuple[str | None, str | None],
) -> Iterator[tuple[str | tuple[str, str], str, Any]]:
    """:func:`read_inputs` of a TSV/CSV (streamed a row at a time) or Parquet table."""
    from jaxtl.data import DataError
    from jaxtl.data.io import column, default_id_at, table_rows

    names, rows = table_rows(path, fmt)
    # Unnamed, the run's own columns where the table has them, else text / text_pair.
    text: str = text_column or next(
        (c for c in (run_columns[0], "text") if c is not None and c in names), "text"
    )
    pair = pair_column or next((c for c in (run_columns[1],) if c and c in names), None)
    try:
        at = column(names, text, path)
    except DataError as e:
        raise DataError(f"{e}; --text_column names the column to embed") from None
    pair_at = column(names, pair, path) if pair else (
        names.index("text_pair") if "text_pair" in names else None)  # fmt: skip
    _, id_at = default_id_at(names)  # "ID"/"Id" too
    for where, fields in rows:
        value = fields[at]
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: column {text!r} is empty")
        second = None if pair_at is None else fields[pair_at]
        if pair_at is not None and not isinstance(second, str):
            raise DataError(f"{where}: column {names[pair_at]!r} is empty")
        yield (value if second is None else (value, second)), where, (
            None if id_at is None else fields[id_at])  # fmt: skip


def embed_command(
    e: Embedder,
    input_path: str,
    output: str,
    input_format: str = "auto",
    text_column: str | None = None,
    pair_column: str | None = None,
    run_columns: tuple[str | None, str | None] = (None, None),
) -> int:
    """``jaxtl --embed``: one vector per non-blank input line to ``output`` (:func:`output_format`),
    written a chunk of :data:`CHUNK` vectors at a time, the file appearing whole at the end
    (never half-written); returns how many. A file is read twice, a chunk at a time: once to
    count and check its inputs (before the model runs), once to embed them, so neither its
    texts nor its vectors are held whole (stdin, which reads once, is held)."""
    import itertools

    from jaxtl import fileio
    from jaxtl.data import DataError

    fmt = output_format(output)
    if fmt != "jsonl" and output == "-":
        raise ValueError(f"--output=- is JSON lines; {fmt} needs a file")

    def source() -> Iterator[tuple[str | tuple[str, str], str, Any]]:
        return read_inputs(input_path, input_format, text_column, pair_column, run_columns)

    if input_path == "-":
        held = list(source())
        source = lambda: iter(held)  # noqa: E731
    n, id_types, singles = 0, set(), set()
    for x, _, rid in source():
        id_types.add(type(n if rid is None else rid))
        singles.add(isinstance(x, str))
        n += 1
    if not n:
        where = "stdin" if input_path == "-" else f"--input={input_path}"
        raise DataError(f"{where}: no text to embed (the input is empty or blank)")
    if len(singles) > 1:
        raise ValueError("inputs mix single texts and (text, text_pair) pairs; embed them apart")
    with_pairs = singles == {False}
    as_str = len(id_types) > 1  # some rows with ids of their own: one column type

    def chunks() -> Iterator[tuple[list[Any], list[str], list[str | None], np.ndarray]]:
        """(ids, texts, pairs, vectors) a chunk at a time."""
        rows = enumerate(source())
        while part := list(itertools.islice(rows, CHUNK)):
            inputs = [x for _, (x, _, _) in part]
            ids = [i if rid is None else rid for i, (_, _, rid) in part]
            (v,) = e.embed_stream(inputs)
            yield ([str(i) for i in ids] if as_str else ids,
                   [x if isinstance(x, str) else x[0] for x in inputs],
                   [None if isinstance(x, str) else x[1] for x in inputs], v)  # fmt: skip

    if fmt == "npy":  # the header first (the shape is known), then each chunk's rows
        with fileio.open_atomic(output, binary=True) as f:
            header = {"descr": "<f4", "fortran_order": False, "shape": (n, e.dim)}
            np.lib.format.write_array_header_1_0(f, header)
            for _, _, _, v in chunks():
                f.write(np.ascontiguousarray(v, "<f4").tobytes())
    elif fmt == "parquet":  # a row group per chunk
        import pyarrow as pa
        import pyarrow.parquet as pq

        with fileio.open_atomic(output, binary=True) as f:
            writer = None
            for ids, texts, pairs, v in chunks():
                columns: dict[str, Any] = {"id": ids, "text": texts}
                if with_pairs:
                    columns["text_pair"] = pairs
                columns["embedding"] = pa.array(list(v), type=pa.list_(pa.float32()))
                table = pa.table(columns)
                writer = writer or pq.ParquetWriter(f, table.schema)
                writer.write_table(table)
            assert writer is not None
            writer.close()
    else:  # JSON lines, or one JSON array (.json): written as prediction records are
        from jaxtl.predictions import open_writer

        with open_writer(output, fmt) as writer:
            for ids, texts, pairs, v in chunks():
                for i, row in enumerate(v):
                    rec: dict[str, Any] = {"id": ids[i], "text": texts[i]}
                    if pairs[i] is not None:
                        rec["text_pair"] = pairs[i]
                    rec["embedding"] = [float(x) for x in row]
                    writer.write(rec)
    return n
