"""Every task by name: ``get_task(name, data_dir, **options)`` and ``task_names()``.

The top of the jaxtl.data import graph. Importing the reader modules below registers their tasks
(:func:`jaxtl.data.tasks.register`), so the registry is complete once this module is imported; a
new reader module is added to these imports. ``file:`` / ``hf:`` spec strings are parsed and
routed to the ``file`` / ``conll`` / ``text`` / ``hf`` factories by :mod:`jaxtl.data.spec`,
which reads the registry (it imports only jaxtl.data.tasks). Readers never import this module, and
jaxtl.data.tasks does not either, so the imports run one way (checked by
``scripts/check_imports.py``).
"""

from __future__ import annotations

from typing import Any

# Imported for their @register side effect.
from jaxtl.data import builtin, conll, files, glue, hf_datasets, qa, spec, text, tfds_source  # noqa: F401
from jaxtl.data.tasks import REGISTRY, Task


def task_names() -> list[str]:
    """The registered names (``tfds:<name>`` and ``file:`` / ``hf:`` spec strings are
    open-ended and not listed)."""
    return sorted(REGISTRY)


def get_task(name: str, data_dir: str | None = None, **options: Any) -> Task:
    """Build the task called ``name``; ``options`` go to its factory (e.g. ``on_bad_row="skip"``).

    ``tfds:<dataset>`` names read TFDS array_record data; ``builtin/<x>`` need no ``data_dir``;
    ``file:name=N,path=P,...`` and ``hf:name=N,path=P,...`` are spec strings
    (:mod:`jaxtl.data.spec`): a generic reader and all its options in the name, ``options``
    merged in (the spec's win).
    """
    key = name.lower()
    if key.startswith("tfds:"):
        return tfds_source.tfds_task(name[len("tfds:") :], data_dir, **options)
    if spec.is_spec(name):  # file:... / hf:...
        return spec.get_task(name, data_dir, **options)
    if key not in REGISTRY:
        raise KeyError(
            f"unknown task {name!r}; known: {sorted(REGISTRY)}, 'tfds:<name>' and the spec "
            "strings 'file:name=N,path=P,...' / 'hf:name=N,path=P,...'"
        )
    return REGISTRY[key](data_dir, **options)
