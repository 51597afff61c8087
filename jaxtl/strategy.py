"""One stage's adaptation strategy, read once: the model surgery it needs and its phases.

``optim.strategy`` decides two things that must agree: which parameters the model carries
(LoRA factors, Houlsby adapters: :mod:`jaxtl.peft`'s surgery) and which of them train, phase by
phase (:mod:`jaxtl.partition`). :class:`Strategy` is the only reader of that key. Regimes give
every stage's ``optim`` block to :func:`jaxtl.assembly.build_model` (which applies
:meth:`Strategy.surgery` for each, so a LoRA *source* stage gets its factors too), and the trainer
asks :meth:`Strategy.phases` for each stage's plan. A stage whose strategy is not ``lora`` /
``adapters`` freezes whatever LoRA / adapter weights another stage's surgery added, so it trains
exactly what its own ``plan.json`` entry says.

    >>> s = Strategy.of(config.optim)                       # doctest: +SKIP
    >>> model = s.surgery(model, rngs=nnx.Rngs(0))          # doctest: +SKIP
    >>> phases = s.phases(params, total_steps=300)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import ml_collections
from flax import nnx

from jaxtl import partition, peft
from jaxtl.partition import phases as phases_lib
from jaxtl.partition import strategies

# Surgery works in place and returns the model it was given, so callers keep its type.
_M = TypeVar("_M", bound=nnx.Module)


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A validated ``optim`` block (see :func:`jaxtl.partition.default_optim_config`)."""

    optim: ml_collections.ConfigDict

    @classmethod
    def of(cls, optim: Any) -> Strategy:
        if isinstance(optim, Strategy):
            return optim
        phases_lib.check(optim)  # unknown keys / values fail here, before any model work
        return cls(
            ml_collections.ConfigDict(optim.to_dict() if hasattr(optim, "to_dict") else optim)
        )

    @property
    def name(self) -> str:
        return str(self.optim.get("strategy", "finetune"))

    def surgery(self, model: _M, *, rngs: nnx.Rngs) -> _M:
        """Add the parameters this strategy trains (once: a second LoRA stage reuses them)."""
        o = self.optim
        if self.name == "lora" and not peft.has_lora(model):
            return peft.apply_lora(
                model, rank=int(o.lora_rank), alpha=float(o.lora_alpha), mlp=bool(o.lora_mlp),
                rngs=rngs,
            )  # fmt: skip
        if self.name == "adapters" and not peft.has_adapters(model):
            return peft.apply_adapters(model, size=int(o.adapter_size), rngs=rngs)
        return model

    def phases(self, params: Any, *, total_steps: int,
               num_layers: int | None = None) -> list[partition.Phase]:  # fmt: skip
        """The stage's phases; other strategies' parameter-efficient weights come first, frozen.
        Layer-wise strategies count the distinct encoder blocks in ``params`` unless
        ``num_layers`` says otherwise."""
        optim = ml_collections.ConfigDict(self.optim.to_dict())
        optim.rules = tuple(strategies.peft_frozen_rules(self.name)) + tuple(self.optim.rules)
        return partition.phases_from_config(
            optim, params, num_layers=num_layers, total_steps=total_steps
        )
