"""Objectives: what a stage's loss learns from, as small objects the one step runs.

- :mod:`~jaxtl.objectives.supervised`: labelled tasks' head losses and predictions, one
  ``lax.switch`` over the run's tasks (the multi-task loss/predict pair every regime uses).
- :mod:`~jaxtl.objectives.base`: the :class:`Objective` interface an unlabelled-text objective
  implements (its stream, its heads, its loss branch, the heads it updates).
- :mod:`~jaxtl.objectives.language_model`: masked / causal LM (pretraining, ``aux_lm``).
- :mod:`~jaxtl.objectives.consistency`: UDA-style consistency under token noise.
- :mod:`~jaxtl.objectives.cvt`: Cross-View Training.
- :mod:`~jaxtl.objectives.unilm`: UNILM's masked LM under bidirectional, seq2seq and
  unidirectional attention masks.
"""

from jaxtl.objectives.base import Objective, divergence, kl, real_token_mask
from jaxtl.objectives.consistency import Consistency
from jaxtl.objectives.cvt import CrossView
from jaxtl.objectives.language_model import LanguageModelling
from jaxtl.objectives.supervised import heads_active_fn, switch_loss, switch_predict
from jaxtl.objectives.unilm import Unilm

__all__ = [
    "Consistency",
    "CrossView",
    "LanguageModelling",
    "Objective",
    "divergence",
    "heads_active_fn",
    "kl",
    "real_token_mask",
    "switch_loss",
    "switch_predict",
    "Unilm",
]
