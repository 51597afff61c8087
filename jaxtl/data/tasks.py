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

Names: ``builtin/<name>`` (jaxtl.data.builtin, no files needed), GLUE ``sst2 cola mrpc qqp rte
stsb qnli mnli wnli`` (jaxtl.data.glue), ``conll2003``, ``ud_pos``, ``conll`` (generic column files;
jaxtl.data.conll), ``wikitext``/``text``, ``multi30k``/``parallel`` (jaxtl.data.text), ``file``
(generic TSV/CSV/JSONL, jaxtl.data.files) and ``tfds:<name>`` (jaxtl.data.tfds_source).

Imports run one way, so a reader can never be half-initialised when another needs it. This
module holds only the types and the registry and imports no other jaxtl.data module; jaxtl.data.io
(shared file reading) imports only this one; each reader module imports only these two and
registers its tasks with :func:`register` when imported; jaxtl.data.catalogue imports every
reader and defines ``get_task`` / ``task_names``. A new reader goes in its own module, is added
to the catalogue's imports, and never imports the catalogue or another reader
(``scripts/check_imports.py --package jaxtl/data`` fails on a cycle).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

log = logging.getLogger(__name__)

Kind = Literal["classification", "multilabel", "regression", "tagging", "lm", "translation", "qa"]
# qa: extractive question answering, an answer span of the context (SQuAD; jaxtl.data.qa)
# The schemes a span tagger's files may write tags in (Task.tag_scheme; jaxtl.data.io).
TAG_SCHEMES = ("iob2", "bioes", "bilou")
KINDS = ("classification", "multilabel", "regression", "tagging", "lm", "translation", "qa")
# Kinds with one prediction per example (a sentence or a pair), pooled from the encoder.
SENTENCE_KINDS = ("classification", "multilabel", "regression")
SPLITS = ("train", "dev", "test")


class DataError(ValueError):
    """Bad input data; the message starts with the file (and line) at fault."""


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    """One input. ``label`` is a class id (classification), a tuple of class ids, sorted,
    possibly empty (multilabel: every class that applies), a float (regression), a tuple of
    IOB2/tag strings aligned with ``words`` (tagging), a tuple of ``(answer_start, answer_text)``
    pairs, character offsets into ``text_pair`` (qa: ``text`` is the question, ``text_pair`` the
    context; empty when the context holds no answer) or None (lm, translation). ``id``: the
    row's own id (its file's ``id`` column), which prediction records carry instead of the
    row's index; None where the input has none."""

    text: str
    text_pair: str | None = None
    label: int | float | tuple[Any, ...] | None = None  # tuple: ids (multilabel) or tags
    words: tuple[str, ...] | None = None
    target: str | None = None
    source: str = ""
    id: str | int | None = None


def limit(examples: Sequence[Any], n: int) -> Sequence[Any]:
    """The first ``n`` of ``examples`` (all of them when ``n`` is 0 or less)."""
    return examples[:n] if n and n > 0 else examples


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


def streamed_reader(
    rows: Callable[[str, BadRows], Iterable[Example]], what: Callable[[str], str], on_bad_row: str
) -> tuple[Callable[[str], Loaded], Callable[[str], Iterator[Example]]]:
    """A reader's ``load`` and ``stream`` from one generator of a split's examples,
    ``rows(split, bad)``: ``load`` lists them, ``stream`` yields them one at a time; both report
    the rows ``on_bad_row="skip"`` skipped at ``what(split)`` (the file it read) once done."""

    def load(split: str) -> Loaded:
        bad = BadRows(on_bad_row)
        return bad.result(list(rows(split, bad)), what(split))

    def stream(split: str) -> Iterator[Example]:
        bad = BadRows(on_bad_row)
        yield from rows(split, bad)
        bad.result((), what(split))

    return load, stream


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
    # The scheme a span tagger's files wrote its tags in (TAG_SCHEMES): read as
    # IOB2, trained and scored so, its prediction records written back in it (bioes, bilou).
    tag_scheme: str = "iob2"
    # multilabel: a class applies where its probability exceeds this (train.multilabel_threshold),
    # or its own entry, one per class (train.tune_thresholds: jaxtl.thresholds)
    threshold: float | tuple[float, ...] = 0.5
    # qa: whether "no answer" is a prediction (SQuAD 2.0), chosen where its score beats the best
    # span's by more than null_threshold (data.null_score_threshold); else the best span is
    # always given; an answer's most tokens (data.max_answer_length)
    null_answers: bool = False
    null_threshold: float = 0.0
    max_answer_tokens: int = 30
    # ``files(split)``: the files a split is read from, so a cache of its tokens can be keyed by
    # them (jaxtl.data.token_cache); ``stream(split)``: its examples one at a time, the same as
    # ``load`` without holding them all (a corpus larger than memory). None: not known / load().
    files: Callable[[str], tuple[str, ...]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    stream: Callable[[str], Iterator[Example]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    # ``make_first(split, n)``: the split's first ``n`` examples made without the rest (a
    # generated task), exactly what ``load(split)[:n]`` holds. None: :meth:`head` loads it all.
    make_first: Callable[[str, int], Loaded] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("classification", "multilabel", "tagging") and not self.label_names:
            raise ValueError(f"task {self.name!r}: a {self.kind} task needs label_names")
        if self.tag_scheme not in TAG_SCHEMES:
            raise ValueError(f"task {self.name!r}: tag_scheme must be one of {TAG_SCHEMES}, "
                             f"got {self.tag_scheme!r}")  # fmt: skip
        if self.main_metric and self.main_metric not in self.metrics:
            raise ValueError(f"task {self.name!r}: main_metric {self.main_metric!r} not in metrics")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def load(self, split: str) -> Loaded:
        self._check_split(split)
        return self.loader(split)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DataError(
                f"task {self.name!r} has no split {split!r}; splits that exist: {list(self.splits)}"
            )

    def head(self, split: str, n: int) -> Sequence[Example]:
        """The split's first ``n`` examples (all of them when ``n`` is 0 or less): what a run
        capped by ``data.max_train_examples`` / ``max_eval_examples`` reads. A file is read
        whole, so its bad rows stop the run wherever they are."""
        if n and n > 0 and self.make_first is not None:
            self._check_split(split)
            return self.make_first(split, n)
        return limit(self.load(split), n)

    def iterate(self, split: str) -> Iterator[Example]:
        """The split's examples as :meth:`load` gives them, streamed when the reader can."""
        if self.stream is None or split not in self.splits:
            return iter(self.load(split))
        return self.stream(split)


# Name -> factory(data_dir, **options). Filled by the reader modules as they are imported; read
# through jaxtl.data.catalogue, which imports them all first.
REGISTRY: dict[str, Callable[..., Task]] = {}


def register(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Register ``factory(data_dir, **options) -> Task`` under ``name`` (lower case)."""

    def deco(factory: Callable[..., Task]) -> Callable[..., Task]:
        REGISTRY[name.lower()] = factory
        return factory

    return deco
