"""The description of one model family that ``jaxtl.models.hf`` needs to load and save it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flax import nnx

from jaxtl.models.keymap import Rule


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


def require(hf: Mapping[str, Any], key: str, model_type: str) -> Any:
    if key not in hf:
        raise ValueError(f"config.json of a {model_type!r} model lacks required attribute {key!r}")
    return hf[key]


def reject(hf: Mapping[str, Any], key: str, allowed: tuple[Any, ...], why: str) -> None:
    """Error naming ``key`` when the config sets it to something the encoder does not implement."""
    if key in hf and hf[key] not in allowed:
        raise ValueError(
            f"unsupported config attribute {key}={hf[key]!r} (supported: {allowed}); {why}"
        )
