"""Declarative maps between Hugging Face tensor names and jaxtl parameter paths.

A family lists one :class:`Rule` per tensor: the HF name (without the model prefix such as
``bert.``), the jaxtl path (``layers/3/attention/query/kernel``) and how the array changes on the
way in. ``transpose`` covers ``torch.nn.Linear`` weights, stored (out, in) where a Flax kernel is
(in, out); GPT-2's ``Conv1D`` is already (in, out) and uses ``none``. The same list read backwards
exports weights, so loading and saving cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Transform = Literal["none", "transpose"]


@dataclass(frozen=True)
class Rule:
    hf: str
    path: str
    transform: Transform = "none"

    def to_jax(self, array: np.ndarray) -> np.ndarray:
        return array.T if self.transform == "transpose" else array

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        # safetensors needs C-contiguous buffers; a transposed view is not.
        out = array.T if self.transform == "transpose" else array
        return np.ascontiguousarray(out)


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
