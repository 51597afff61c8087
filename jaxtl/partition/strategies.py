"""Freezing strategies as named presets that expand into phases (rules + a share of the steps).

A strategy is a list of :class:`PhaseSpec`; each phase is an ordinary rule list, so strategies
compose with hand-written rules (user rules go first; first match wins). The rules are written
per *layer unit* (see :mod:`jaxtl.partition.rules`): the embeddings (unit -1, below layer 0),
blocks ``0..L-1`` (other encoder params such as final norms join the top block) and "new"
(everything outside ``encoder/``: heads, representation).

- ``finetune``: everything trains.
- ``feature_extraction``: every ``encoder/`` parameter frozen; only new parameters train.
- ``top_k``: the top ``k`` blocks (0 <= k <= L) and the new parameters train; the embeddings
  stay frozen even with ``k = L`` (use ``finetune`` to train everything).
- ``freeze_all_but_last``: ``top_k`` with ``k = 1``.
- ``chain_thaw`` (Felbo et al. 2017): new params alone; then each pretrained unit alone, from the
  embeddings up to the top block; then everything together. ``L + 3`` phases.
- ``gradual_unfreezing`` (Howard & Ruder 2018): new params + the top block; then one more block
  per phase from the top down; the last phase adds the embeddings, so everything trains.
  ``L + 1`` phases.
- ``lora`` / ``adapters``: one phase whose rules (:func:`lora_rules`, :func:`adapter_rules`)
  freeze everything but the LoRA / adapter parameters (+ LayerNorms for adapters) and the new
  parameters; the model must already carry them (the surgery is :mod:`jaxtl.peft`'s, applied by
  :class:`jaxtl.strategy.Strategy`). Every other strategy freezes LoRA / adapter parameters that
  an earlier stage's surgery left in the model (:func:`peft_frozen_rules`): a stage trains what
  its own strategy names, never another stage's parameter-efficient weights.

Discriminative fine-tuning (ULMFiT's ``lr_l = lr_{l+1} / 2.6``) is a per-unit LR multiplier
``d`` (``d = 1 / 2.6`` in the paper; ``d = 1.0`` turns it off): block ``l`` trains at
``lr * d**(L - 1 - l)``, so the top block gets ``lr``; the embeddings are the unit below block 0
and get ``lr * d**L``; other encoder params (final norms) go with the top block (``lr``); new
params (heads, representation) get ``lr``. The multiplier applies in every phase of every
strategy; a frozen unit simply has none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from jaxtl.partition.rules import (
    EMBEDDINGS,
    NEW,
    Group,
    Rule,
    layer,
    parse_rules,
    top_unit,
)

STRATEGIES = (
    "finetune",
    "feature_extraction",
    "top_k",
    "freeze_all_but_last",
    "chain_thaw",
    "gradual_unfreezing",
    "lora",
    "adapters",
)

PEFT_STRATEGIES = ("lora", "adapters")  # strategies that need model surgery first

Unit = int | None  # -1 embeddings, 0..L-1 blocks, None new

# Rule regexes for parameter-efficient weights: LoRA factors, adapter modules, and LayerNorms
# (embeddings/norm, attention_norm, mlp_norm, final_norm...: a path element ending in "norm").
LORA = r"/lora_[ab]$"
ADAPTER = r"/adapter/"
ENCODER_NORMS = r"^encoder/(?:.*/)?[a-z_]*norm/"


def lora_rules() -> list[Rule]:
    """Train LoRA factors and new params (heads, representation); freeze the rest."""
    return parse_rules(
        [
            (LORA, {"name": "lora"}),
            (NEW, {"name": "new", "optional": True}),
            (r"^encoder/", {"frozen": True, "name": "encoder"}),
        ],
        where="lora_rules",
    )


def adapter_rules() -> list[Rule]:
    """Train adapters, encoder LayerNorms and new params; freeze the rest (Houlsby)."""
    return parse_rules(
        [
            (ADAPTER, {"name": "adapters"}),
            (ENCODER_NORMS, {"name": "layer_norms"}),
            (NEW, {"name": "new", "optional": True}),
            (r"^encoder/", {"frozen": True, "name": "encoder"}),
        ],
        where="adapter_rules",
    )


def peft_frozen_rules(strategy: str) -> list[Rule]:
    """Rules placed first in every stage of strategy ``strategy``: parameter-efficient weights
    that are not this strategy's own are frozen (optional: most models carry none)."""
    own = {"lora": LORA, "adapters": ADAPTER}.get(strategy)
    return parse_rules(
        [
            (pattern, {"frozen": True, "optional": True, "name": f"{name}_not_this_stage"})
            for name, pattern in (("lora", LORA), ("adapters", ADAPTER))
            if pattern != own
        ],
        where="peft_frozen_rules",
    )


@dataclasses.dataclass(frozen=True)
class PhaseSpec:
    name: str
    rules: list[Rule]


def discriminative_scale(unit: Unit, num_layers: int, d: float) -> float:
    """LR multiplier of a unit: ``d ** (L - 1 - unit)``; new params (None) get 1."""
    if d <= 0:
        raise ValueError(f"optim.discriminative must be > 0 (1.0 = off), got {d}")
    return 1.0 if unit is None else float(d) ** (num_layers - 1 - unit)


def unit_rules(
    num_layers: int,
    trainable: Callable[[Unit], bool],
    *,
    discriminative: float = 1.0,
    encoder_weight_decay: float | None = None,
) -> list[Rule]:
    """One rule per layer unit: frozen unless ``trainable(unit)``, LR scaled per unit.

    Covers every parameter of a model that follows the path conventions; a block index >= L is
    left uncovered (so a wrong ``num_layers`` is an error naming the extra paths), and a missing
    block is a rule that matches nothing (an error naming it).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")

    def make(pattern: str, unit: Unit, name: str, optional: bool = False) -> Rule:
        wd = None if unit is None else encoder_weight_decay
        frozen = not trainable(unit)
        group = Group(
            frozen=frozen,
            lr_scale=1.0 if frozen else discriminative_scale(unit, num_layers, discriminative),
            weight_decay=None if frozen else wd,
        )
        return Rule(pattern, group, optional=optional, name=name)

    rules = [make(EMBEDDINGS, -1, "embeddings")]
    rules += [make(layer(i), i, f"layer_{i}") for i in range(num_layers - 1)]
    rules.append(make(top_unit(num_layers), num_layers - 1, f"layer_{num_layers - 1}"))
    # A model with no new parameters (e.g. an LM head tied to the embeddings) is allowed.
    rules.append(make(NEW, None, "new", optional=True))
    return rules


def strategy_phases(
    name: str,
    num_layers: int,
    *,
    top_k: int = 1,
    discriminative: float = 1.0,
    encoder_weight_decay: float | None = None,
) -> list[PhaseSpec]:
    """The phases of strategy ``name`` (one of STRATEGIES)."""
    L = num_layers

    def phase(pname: str, trainable: Callable[[Unit], bool]) -> PhaseSpec:
        return PhaseSpec(
            pname,
            unit_rules(
                L,
                trainable,
                discriminative=discriminative,
                encoder_weight_decay=encoder_weight_decay,
            ),
        )

    if name == "finetune":
        return [phase("finetune", lambda u: True)]
    if name == "feature_extraction":
        return [phase("feature_extraction", lambda u: u is None)]
    if name in ("top_k", "freeze_all_but_last"):
        k = 1 if name == "freeze_all_but_last" else int(top_k)
        if not 0 <= k <= L:
            raise ValueError(f"optim.top_k must be in [0, {L}] for an encoder of {L} layer blocks "
                             f"(encoder/layers/<i>; ALBERT's layers share theirs), got {k}")  # fmt: skip
        return [phase(f"top_{k}", lambda u: u is None or (u >= 0 and u >= L - k))]
    if name == "chain_thaw":
        phases = [phase("chain_thaw/new", lambda u: u is None)]
        phases.append(phase("chain_thaw/embeddings", lambda u: u == -1))
        phases += [
            phase(f"chain_thaw/layer_{i}", lambda u, i=i: u is not None and u == i)  # type: ignore[misc]
            for i in range(L)
        ]
        phases.append(phase("chain_thaw/all", lambda u: True))
        return phases
    if name == "gradual_unfreezing":
        phases = [
            phase(f"gradual_unfreezing/top_{j + 1}", lambda u, j=j: u is None or u >= L - 1 - j)  # type: ignore[misc]
            for j in range(L)
        ]
        phases.append(phase("gradual_unfreezing/all", lambda u: True))
        return phases
    if name in PEFT_STRATEGIES:
        return [PhaseSpec(name, lora_rules() if name == "lora" else adapter_rules())]
    raise ValueError(f"optim.strategy: unknown strategy {name!r}; allowed: {list(STRATEGIES)}")
