"""The four transfer regimes; each builds stages and hands them to ``jaxtl.train``.

``REGIMES`` lists the names ``launch.py --regime`` accepts; ``get(name)`` imports one module.
"""

from __future__ import annotations

import importlib
from types import ModuleType

REGIMES = ("self_supervised", "unsupervised_sequential", "multitask", "supervised_sequential")


def get(name: str) -> ModuleType:
    if name not in REGIMES:
        raise ValueError(f"unknown regime {name!r}; choose one of: {', '.join(REGIMES)}")
    try:
        return importlib.import_module(f"jaxtl.regimes.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"jaxtl.regimes.{name}":
            raise NotImplementedError(f"regime {name!r} is not implemented yet") from e
        raise
