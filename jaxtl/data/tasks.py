"""Tasks: what a dataset is (kind, labels, metrics) and how to read each of its splits.

A :class:`Task` is a frozen description plus a loader; ``task.load(split)`` returns the split's
:class:`Example` list. Every reader names the file and line of anything it rejects: bad input is a
:class:`DataError` ("<file>:<line>: <reason>") unless the task was built with
``on_bad_row="skip"``, in which case the row (or CoNLL sentence) is dropped, the skip is logged and
counted on the returned :class:`Loaded` list (``.skipped`` and ``.skip_reasons``). A missing split
and an empty file are always errors: skipping cannot repair them.

>>> from jaxtl.data import get_task
>>> task = get_task("builtin/sentiment")
>>> examples = task.load("dev")
>>> task.kind, task.label_names, examples[0].label in (0, 1)
('classification', ('negative', 'positive'), True)

Names: ``builtin/<name>`` (jaxtl.data.builtin, no files needed), GLUE ``sst2 cola mrpc rte stsb
qnli mnli``, ``conll2003``, ``ud_pos``, ``wikitext``/``text``, ``multi30k``/``parallel``,
``file`` (generic TSV/CSV/JSONL, see jaxtl.data.readers.file_task), ``conll`` (generic column
files) and ``tfds:<name>`` (jaxtl.data.tfds_source).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

log = logging.getLogger(__name__)

Kind = Literal["classification", "regression", "tagging", "lm", "translation"]
KINDS = ("classification", "regression", "tagging", "lm", "translation")
SPLITS = ("train", "dev", "test")


class DataError(ValueError):
    """Bad input data; the message starts with the file (and line) at fault."""


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    """One input. ``label`` is a class id (classification), a float (regression), a tuple of
    IOB2/tag strings aligned with ``words`` (tagging) or None (lm, translation)."""

    text: str
    text_pair: str | None = None
    label: int | float | tuple[str, ...] | None = None
    words: tuple[str, ...] | None = None
    target: str | None = None
    source: str = ""


class Loaded(list):
    """A split's examples, plus what was skipped while reading them (``on_bad_row="skip"``)."""

    def __init__(self, examples: Iterable[Example] = (), skip_reasons: Sequence[str] = ()):
        super().__init__(examples)
        self.skip_reasons: list[str] = list(skip_reasons)

    @property
    def skipped(self) -> int:
        return len(self.skip_reasons)


class BadRows:
    """Collects the decision for rows that cannot be read: raise, or skip and remember why."""

    def __init__(self, on_bad_row: str = "error"):
        if on_bad_row not in ("error", "skip"):
            raise ValueError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
        self.skip = on_bad_row == "skip"
        self.reasons: list[str] = []

    def __call__(self, where: str, reason: str) -> None:
        message = f"{where}: {reason}"
        if not self.skip:
            raise DataError(message)
        self.reasons.append(message)

    def result(self, examples: Iterable[Example], what: str) -> Loaded:
        out = Loaded(examples, self.reasons)
        if out.skipped:
            log.warning(
                "%s: skipped %d bad rows (first: %s)", what, out.skipped, out.skip_reasons[0]
            )
        return out


@dataclasses.dataclass(frozen=True)
class Task:
    """A dataset and its evaluation.

    ``loader(split)`` does the reading; ``splits`` lists the splits that exist, so asking for
    another one fails with the list. ``text_fields`` names the input fields (one: single
    sentence; two: sentence pair) for documentation and for generic readers.
    """

    name: str
    kind: Kind
    loader: Callable[[str], Loaded] = dataclasses.field(repr=False, compare=False)
    splits: tuple[str, ...] = SPLITS
    label_names: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ("text",)
    metrics: tuple[str, ...] = ()
    main_metric: str = ""
    # IOB2 span tags (scored with seqeval) vs plain tags such as POS (token accuracy).
    iob: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("classification", "tagging") and not self.label_names:
            raise ValueError(f"task {self.name!r}: a {self.kind} task needs label_names")
        if self.main_metric and self.main_metric not in self.metrics:
            raise ValueError(f"task {self.name!r}: main_metric {self.main_metric!r} not in metrics")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def load(self, split: str) -> Loaded:
        if split not in self.splits:
            raise DataError(
                f"task {self.name!r} has no split {split!r}; splits that exist: {list(self.splits)}"
            )
        return self.loader(split)


_REGISTRY: dict[str, Callable[..., Task]] = {}


def register(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Register ``factory(data_dir, **options) -> Task`` under ``name`` (lower case)."""

    def deco(factory: Callable[..., Task]) -> Callable[..., Task]:
        _REGISTRY[name.lower()] = factory
        return factory

    return deco


def task_names() -> list[str]:
    _import_readers()
    return sorted(_REGISTRY)


def get_task(name: str, data_dir: str | None = None, **options: Any) -> Task:
    """Build the task called ``name``; ``options`` go to its factory (e.g. ``on_bad_row="skip"``).

    ``tfds:<dataset>`` names read TFDS array_record data; ``builtin/<x>`` need no ``data_dir``.
    """
    _import_readers()
    key = name.lower()
    if key.startswith("tfds:"):
        from jaxtl.data import tfds_source

        return tfds_source.tfds_task(name[len("tfds:") :], data_dir, **options)
    if key not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; known: {sorted(_REGISTRY)} and 'tfds:<name>'")
    return _REGISTRY[key](data_dir, **options)


def _import_readers() -> None:
    # Reader modules register their tasks on import; importing here avoids a cycle.
    from jaxtl.data import builtin, conll, readers, text  # noqa: F401
