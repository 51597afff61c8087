"""Declarative maps between Hugging Face tensor names and jaxtl parameter paths.

A family lists one :class:`Rule` per tensor: the HF name (without the model prefix such as
``bert.``), the jaxtl path (``layers/3/attention/query/kernel``) and how the array changes on the
way in. ``transpose`` covers ``torch.nn.Linear`` weights, stored (out, in) where a Flax kernel is
(in, out); GPT-2's ``Conv1D`` is already (in, out) and uses ``none``. The same list read backwards
exports weights, so loading and saving cannot drift apart.

A checkpoint may fuse several jaxtl parameters into one tensor (DeBERTa's ``in_proj`` holds the
query, key and value, interleaved head by head; Phi-3's ``qkv_proj`` and ``gate_up_proj`` stack
them). Each part is then its own rule with ``rows``: the HF tensor's first (output) axis is
``groups`` equal blocks, and the part is rows ``[start, stop)`` of every block. Loading slices the
part out; :func:`hf_arrays` concatenates the parts back, so the fused tensor round-trips exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Transform = Literal["none", "transpose"]


@dataclass(frozen=True)
class Rule:
    hf: str
    path: str
    transform: Transform = "none"
    rows: tuple[int, int, int] | None = None  # (groups, start, stop) of a fused tensor

    def to_jax(self, array: np.ndarray) -> np.ndarray:
        if self.rows is not None:
            groups, start, stop = self.rows
            rest = array.shape[1:]
            array = array.reshape(groups, -1, *rest)[:, start:stop].reshape(-1, *rest)
        return array.T if self.transform == "transpose" else array

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        """This parameter in the HF layout (for a fused tensor, its part only: see
        :func:`hf_arrays`)."""
        # safetensors needs C-contiguous buffers; a transposed view is not.
        out = array.T if self.transform == "transpose" else array
        return np.ascontiguousarray(out)


def hf_arrays(rules: Sequence[Rule], values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF tensors by name from jaxtl arrays by path (``values``), fused parts joined."""
    out: dict[str, np.ndarray] = {}
    parts: dict[str, list[tuple[tuple[int, int, int], np.ndarray]]] = defaultdict(list)
    for r in rules:
        if r.rows is None:
            out[r.hf] = r.to_hf(values[r.path])
        else:
            parts[r.hf].append((r.rows, r.to_hf(values[r.path])))
    for name, pieces in parts.items():
        pieces.sort(key=lambda p: p[0][1])
        groups, rest = pieces[0][0][0], pieces[0][1].shape[1:]
        stops = [0] + [stop for (_, _, stop), _ in pieces]
        starts = [start for (_, start, _), _ in pieces]
        if starts != stops[:-1] or any(g != groups for (g, _, _), _ in pieces):
            raise AssertionError(f"key map: the parts of {name} do not tile it: {starts, stops}")
        blocks = [a.reshape(groups, -1, *rest) for _, a in pieces]
        out[name] = np.ascontiguousarray(np.concatenate(blocks, axis=1).reshape(-1, *rest))
    return out


def fused_linear(hf: str, parts: Sequence[tuple[str, int]], *, groups: int = 1,
                 bias: bool = False) -> list[Rule]:  # fmt: skip
    """Rules for dense layers fused into one HF ``Linear`` (``hf.weight``, + bias): ``parts`` are
    (jaxtl path, rows per group) in the tensor's order, repeated ``groups`` times along its
    output axis."""
    rules, start = [], 0
    for path, size in parts:
        rows = (groups, start, start + size)
        rules.append(Rule(f"{hf}.weight", f"{path}/kernel", "transpose", rows))
        if bias:
            rules.append(Rule(f"{hf}.bias", f"{path}/bias", rows=rows))
        start += size
    return rules


def linear(hf: str, path: str, *, bias: bool = True, conv1d: bool = False) -> list[Rule]:
    """Rules for one dense layer: ``hf.weight`` -> ``path/kernel`` (+ bias)."""
    rules = [Rule(f"{hf}.weight", f"{path}/kernel", "none" if conv1d else "transpose")]
    if bias:
        rules.append(Rule(f"{hf}.bias", f"{path}/bias"))
    return rules


def norm(hf: str, path: str, *, bias: bool = True) -> list[Rule]:
    rules = [Rule(f"{hf}.weight", f"{path}/scale")]
    if bias:
        rules.append(Rule(f"{hf}.bias", f"{path}/bias"))
    return rules


def embedding(hf: str, path: str) -> list[Rule]:
    return [Rule(f"{hf}.weight", f"{path}/embedding")]


def mlm_rules(dense: str, layer_norm: str, bias: str) -> list[Rule]:
    """A tied MLM head's rules (:class:`~jaxtl.models.heads.MLMHead`) from its HF names: the
    dense transform, its LayerNorm and the output bias (the decoder is the word embeddings)."""
    return linear(dense, "transform") + norm(layer_norm, "norm") + [Rule(bias, "bias")]
