"""The four transfer regimes; each builds stages and hands them to ``jaxtl.train``.

``REGIMES`` lists the names ``launch.py --regime`` accepts; ``get(name)`` imports one module.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

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


def sections(name: str) -> set[str]:
    """The top-level config sections a regime's configs have: the base config's plus those
    its ``add_config`` adds (``source``/``target``, ``pretrain``, ``unlabelled``, ``refine``)."""
    from jaxtl import config as config_lib

    return set(get(name).add_config(config_lib.base_config()).keys())


def check_config(name: str, config: Any) -> None:
    """Stop, with one line, a config built for another regime (``--regime`` and ``--config``
    disagreeing), before anything loads: otherwise it fails deep in the run on a missing key."""
    missing = sections(name) - set(config.keys())
    if not missing:
        return
    fits = [r for r in REGIMES if r != name and sections(r) <= set(config.keys())]
    owner = f"is for --regime={' or '.join(fits)}, not" if fits else "is not a config of"
    hint = f"run it with --regime={fits[0]}, or " if fits else ""
    raise ValueError(
        f"--config: this config {owner} --regime={name} (it has no "
        f"{', '.join(sorted(missing))} section): {hint}give a config of regime {name} "
        f"(e.g. --config={name}:tiny)"
    )
