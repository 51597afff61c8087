"""Which weights train, and when: path rules -> plans -> optax.partition, phases and schedules.

- :mod:`~jaxtl.partition.rules`: ordered (regex, group) rules resolved into a :class:`Plan`.
- :mod:`~jaxtl.partition.optimizer`: a Plan compiled to one optax transformation.
- :mod:`~jaxtl.partition.strategies`: finetune, feature extraction, top-k, chain-thaw, gradual
  unfreezing, discriminative LRs, expanded into phases.
- :mod:`~jaxtl.partition.schedules`: constant, linear, cosine, STLR.
- :mod:`~jaxtl.partition.l2sp`: L2-SP as an optax transformation.
- :mod:`~jaxtl.partition.carry`: optimizer state across phase changes.
- :mod:`~jaxtl.partition.phases`: the config face the trainer uses.
"""

from jaxtl.partition.carry import carry_over
from jaxtl.partition.l2sp import l2sp, l2sp_penalty
from jaxtl.partition.optimizer import OPTIMIZERS, build_tx, make_optimizer
from jaxtl.partition.phases import OPTIM_KEYS, Phase, default_optim_config, phases_from_config
from jaxtl.partition.rules import (
    ALL,
    EMBEDDINGS,
    ENCODER,
    ENCODER_OTHER,
    HEADS,
    NEW,
    REPRESENTATION,
    Group,
    ParamEntry,
    Plan,
    Rule,
    layer,
    layer_of,
    layers_between,
    layers_from,
    num_blocks,
    parse_rules,
    resolve,
    rule,
    top_unit,
)
from jaxtl.partition.schedules import SCHEDULES, make_schedule
from jaxtl.partition.strategies import STRATEGIES, PhaseSpec, strategy_phases, unit_rules

__all__ = [
    "ALL",
    "EMBEDDINGS",
    "ENCODER",
    "ENCODER_OTHER",
    "HEADS",
    "NEW",
    "OPTIMIZERS",
    "OPTIM_KEYS",
    "REPRESENTATION",
    "SCHEDULES",
    "STRATEGIES",
    "Group",
    "ParamEntry",
    "Phase",
    "PhaseSpec",
    "Plan",
    "Rule",
    "build_tx",
    "carry_over",
    "default_optim_config",
    "l2sp",
    "l2sp_penalty",
    "layer",
    "layer_of",
    "layers_between",
    "layers_from",
    "make_optimizer",
    "make_schedule",
    "num_blocks",
    "parse_rules",
    "phases_from_config",
    "resolve",
    "rule",
    "strategy_phases",
    "top_unit",
    "unit_rules",
]
