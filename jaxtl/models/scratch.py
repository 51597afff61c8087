"""A model that does not exist yet: ``model.name="new:<model_type>,tokenizer=<name>,<attr>=<v>…"``.

ELMo's biLM and ULMFiT's AWD-LSTM are pretrained inside a jaxtl run, so there is no checkpoint to
load: a ``new:`` name builds a randomly initialised encoder of any registered family from config
attributes (``jaxtl_bilstm``, ``jaxtl_awd_lstm``, ``bert`` …) with the tokenizer of another
model (``tokenizer=minilm`` by default, or any model directory). ``vocab_size`` and
``pad_token_id`` come from the tokenizer unless given. Values are read as int, float or boolean
(``1/0/true/false``) where they parse, else kept as text. The name rebuilds the same
architecture everywhere a run reads ``model.name`` (resume, ``jaxtl.load``, ``model.init_from``
runs); the trained weights come from the run's checkpoints.

    new:jaxtl_bilstm,tokenizer=minilm,embed_size=256,hidden_size=256,num_layers=2,independent_directions=1
"""

from __future__ import annotations

import os
from typing import Any

from flax import nnx

from jaxtl.models import hf
from jaxtl.models.registry import family as get_family

PREFIX = "new:"


def is_spec(name: str | os.PathLike) -> bool:
    return str(name).startswith(PREFIX)


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse(name: str) -> tuple[str, str, dict[str, Any]]:
    """``new:`` name -> (model_type, tokenizer name, config attributes)."""
    body = str(name)[len(PREFIX) :]
    model_type, *items = [p.strip() for p in body.split(",")]
    if not model_type or "=" in model_type:
        raise ValueError(
            f"model.name={name!r}: a new model is 'new:<model_type>,tokenizer=<name>,<attr>=<value>"
            "…' (model_type first)"
        )
    attrs: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"model.name={name!r}: {item!r} is not <attr>=<value>")
        attrs[key.strip()] = _value(value.strip())
    tokenizer = str(attrs.pop("tokenizer", "minilm"))
    return model_type, tokenizer, attrs


def build(
    name: str, *, seed: int = 0, dtype: Any = None
) -> tuple[nnx.Module, Any, dict[str, Any], Any]:
    """(random encoder, tokenizer, its config dict, the tokenizer's directory) of a ``new:``
    name; a config attribute the family does not implement is an error naming it."""
    model_type, tok_name, attrs = parse(name)
    path = hf.resolve(tok_name)
    tokenizer = hf.load_tokenizer(path)
    if tokenizer is None:
        raise ValueError(f"model.name={name!r}: tokenizer={tok_name!r} has no tokenizer files")
    attrs.setdefault("vocab_size", len(tokenizer))
    if tokenizer.pad_token_id is not None:
        attrs.setdefault("pad_token_id", int(tokenizer.pad_token_id))
    config = {"model_type": model_type, **attrs}
    encoder: Any  # an NNX encoder, used by attribute (.cfg)
    try:
        encoder = hf.build_encoder(model_type, config, rngs=nnx.Rngs(seed), dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model.name={name!r}: {e}") from None
    known = get_family(model_type).config_to_hf(encoder.cfg)
    unknown = sorted(set(attrs) - set(known))
    if unknown:  # families read HF configs leniently; a typo here must not pass silently
        raise ValueError(
            f"model.name={name!r}: {model_type} has no attribute(s) {unknown}; it has "
            f"{sorted(k for k in known if k not in ('model_type', 'dtype', 'param_dtype'))}"
        )
    return encoder, tokenizer, config, path


def pretrained(name: str, *, seed: int = 0, dtype: Any = None) -> hf.Pretrained:
    """:func:`build` in the shape :func:`jaxtl.models.from_pretrained` returns."""
    encoder, tokenizer, config, path = build(name, seed=seed, dtype=dtype)
    return hf.Pretrained(encoder, tokenizer, config, path)
