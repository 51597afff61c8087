"""The generic ``file`` task: the user's own TSV / CSV / JSONL files, columns mapped by options::

    get_task("file", "/data", path="reviews/{split}.tsv", format="tsv",
             text="sentence", label="label", kind="classification")

or, as one task name (a spec string, :mod:`jaxtl.data.spec`)::

    get_task("file:name=reviews,path=reviews/{split}.tsv,text=sentence,label=label", "/data")

- ``path``: file name, relative to ``data_dir`` unless absolute, with ``{split}`` standing for
  the split name; or ``paths={"train": "a.csv", "dev": "b.csv"}`` to name each file.
- ``format``: ``tsv`` | ``csv`` | ``jsonl`` | ``fasttext``; unset, each file's extension names
  its own (``.json`` is JSON lines; any other extension: tsv), so ``train.csv`` and ``dev.tsv``
  may serve one task. ``fasttext`` is fastText's line format, a text a line with its labels
  as words marked by ``label_prefix`` (``__label__positive a gripping film``; several make a
  ``multilabel`` example, else one is its class), or, with ``label_prefix`` empty, the first
  word the label (``1 a gripping film``, as Kim (2014)'s SST files have it); no columns to
  name, and a file whose lines carry no label is unlabelled. Files may be compressed
  (``.gz``, ``.bz2``, ``.xz``). ``encoding`` (default UTF-8, a leading BOM dropped): another
  text encoding, ``cp1252`` for a CSV that Excel on Windows saved as plain "CSV", ``latin-1``;
  a file that is not UTF-8 is named at its first such line with these options. ``header``
  (default True) says whether the first line of a TSV/CSV file names the columns; without
  one, columns are given as 0-based integers.
  ``delimiter`` (one character: ``;`` for a spreadsheet's semicolon CSV) splits a TSV/CSV
  file's fields instead of the tab or comma. A JSON file holds one object per line, or one
  array of objects (``[{...}, ...]``, as ``json.dump`` of a list writes it).
- ``text`` (required), ``text_pair`` (optional second segment), ``label`` (the target column;
  absent for ``kind="lm"``), ``target`` (translation).
- ``kind``: ``classification`` (the default; ``regression`` instead when every training label is
  a number and not all are whole, ``0.0``-``5.0`` scores: :func:`are_scores`) | ``multilabel``
  (every class that applies: a TSV/CSV cell holds them separated by ``label_sep``, default
  ``,``, as ``joy,surprise``; a JSONL value is a list
  or such a string, or a 0/1 vector of floats/booleans when ``label_names`` names its classes;
  an empty cell or list is an example with no class) | ``regression`` |
  ``tagging`` (JSONL: ``text`` holds a list of words and ``label`` a list of tags; TSV/CSV:
  each cell holds them space-separated) | ``lm`` | ``translation``.
- ``label_columns`` (multilabel, instead of ``label``; ``kind`` may be left out): one column
  per class holding 0 or 1 (``1``/``0``, ``true``/``false``, a JSON number or boolean), as
  Kaggle's Jigsaw toxic-comment files have (``label_columns=toxic|obscene|insult``); the
  classes are those columns, in that order.
- ``label_names``: the label set, as the strings found in the file (a JSONL number 1 is "1").
  When omitted for classification / multilabel / tagging it is read from the train split
  (sorted; whole numbers by value, ``2`` before ``10``). Classification labels and tags written
  as class ids (``1``, ``[3, 0, 7]``: a ``ClassLabel``'s integers, as Hugging Face's
  ``to_json`` writes them) are ``label_names[id]`` when no name is itself a number; tags that
  are all integers need ``label_names``.
- ``id`` (default ``id``): the column holding each row's own id (a non-empty string, or a JSON
  integer), which its prediction records carry as ``id`` in place of the row's index, so a
  test file's predictions keep its ids (a submission file, a join back to the source). A file
  without the column numbers its rows; ``id=`` (empty) always numbers them.
- ``name``, ``metrics``, ``main_metric`` (defaults by kind), ``on_bad_row`` = error | skip.

A split whose file has no ``label`` column at all (a TSV/CSV header without it, or no JSONL
object with the key: typically an unlabelled test set; for tagging, words alone) is read with
``label=None`` for every example, for prediction; the split that gives the label set (train)
must have labels. A row without the label in a labelled file is still a bad row.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from jaxtl.data.io import (
    CLASS_ID,
    DEFAULT_ID,
    NO_ID,
    IOBError,
    check_encoding,
    chosen_metrics,
    column,
    did_you_mean,
    has_id_column,
    id_column,
    iob2_tag_set,
    is_blank,
    is_iob_set,
    is_multi_hot,
    label_order,
    multilabel_ids,
    names_by_id,
    one_class,
    parse_label,
    read_json_objects,
    read_lines,
    read_table,
    row_id,
    scheme_of,
    separator_hint,
    spec_split_paths,
    table_format,
    to_iob2,
    unknown_class,
    unnamed_columns_hint,
    whole_scores,
)
from jaxtl.data.tasks import (
    BadRows,
    DataError,
    Example,
    Task,
    register,
    streamed_reader,
)

log = logging.getLogger(__name__)


# fastText's mark of a label: a word that starts with it (``__label__positive``).
FASTTEXT_PREFIX = "__label__"


def fasttext_record(line: str, prefix: str | None) -> dict[str, Any]:
    """A fastText line as a record: ``{"text": …, "label": [labels]}``. With a ``prefix``
    every word that starts with it is a label (fastText's rule, wherever the word stands) and
    the other words are the text; with none (empty) the first word is the label, the rest the
    text (``1 a gripping film``). A line without a label has no ``label`` key."""
    words = line.split()
    if prefix:
        labels = [w[len(prefix) :] for w in words if w.startswith(prefix) and len(w) > len(prefix)]
        words = [w for w in words if not (w.startswith(prefix) and len(w) > len(prefix))]
    else:
        labels, words = words[:1], words[1:]
    return {"text": " ".join(words)} | ({"label": labels} if labels else {})


def _records(path: str, fmt: str, header: bool, bad: BadRows, delimiter: str | None = None,
             label_prefix: str | None = FASTTEXT_PREFIX, encoding: str | None = None,
             ) -> Iterator[tuple[int, Any, Any]]:  # fmt: skip
    """(line, names or None, record) where record is a list (tsv/csv) or a dict (jsonl,
    fasttext: :func:`fasttext_record`); ``delimiter`` splits a table's fields instead of tsv's
    tab or csv's comma."""
    if fmt == "jsonl":
        for i, rec in read_json_objects(path, bad, encoding):
            yield i, None, rec
        return
    if fmt == "fasttext":
        for i, line in read_lines(path, bad, encoding):
            if line.strip():
                yield i, None, fasttext_record(line, label_prefix)
        return
    if fmt not in ("tsv", "csv"):
        raise DataError(f"{path}: format must be tsv, csv, jsonl or fasttext, got {fmt!r}")
    delimiter = delimiter or ("\t" if fmt == "tsv" else ",")
    names, rows = read_table(path, bad, delimiter=delimiter, header=header, quoting=fmt == "csv",
                             encoding=encoding)  # fmt: skip
    for i, fields in rows:
        yield i, names, fields


class _Deferred(BadRows):
    """Appends ``(None, where, reason)`` to ``events`` instead of deciding: replayed in order."""

    def __init__(self, events: list[tuple[Any, Any, Any]]):
        super().__init__("skip")
        self.events = events

    def __call__(self, where: str, reason: str) -> None:
        self.events.append((None, where, reason))


@dataclasses.dataclass
class _Scan:
    """What reading a file needs to know before its first example, from one pass over its
    records (streamed: nothing kept but the first record): whether it has labels at all, and
    whether it has the label and id columns."""

    events: int = 0  # records and rejected lines
    records: int = 0
    names: list[str] | None = None  # the first record's header (TSV/CSV)
    first: Any = None  # the first record
    label_at: int | None = None  # a table's label column, as an index
    label_seen: bool = False  # a record with a non-blank label
    id_column: str | int | None = None
    keys: set[Any] = dataclasses.field(default_factory=set)  # label, id: keys some object has

    def add(self, names: Sequence[str] | None, rec: Any, label: str | int | None,
            id_option: str | int | None) -> None:  # fmt: skip
        if self.records == 0:
            self.names, self.first = (list(names) if names is not None else None), rec
            self.id_column = id_column(rec.keys() if isinstance(rec, dict) else names, id_option)
            if isinstance(label, int):
                self.label_at = label
            elif isinstance(label, str) and names is not None and label in names:
                self.label_at = list(names).index(label)
        self.records += 1
        if isinstance(rec, dict):
            self.keys.update(k for k in (label, self.id_column) if k is not None and k in rec)
        if label is None:
            return
        if isinstance(rec, dict):
            self.label_seen = self.label_seen or not is_blank(rec.get(label))
        elif self.label_at is not None and self.label_at < len(rec):
            self.label_seen = self.label_seen or not is_blank(rec[self.label_at])

    def settled(self, label: str | int | None) -> bool:
        """Whether the rest of the file can change nothing here: a table's columns are its
        first row's; a JSON file's keys may first appear on any line."""
        if not self.records:
            return False
        labels = self.label_seen or label is None
        if isinstance(self.first, dict):
            return labels and (self.id_column is None or self.id_column in self.keys)
        return labels

    def lacks_label(self, label: str | int | None) -> bool:
        """Whether the file has no ``label`` column: a header without it (TSV/CSV), no JSON
        object with the key, or the column blank in every row (a test set written by pandas
        with its label column empty). Such a split is read unlabelled (``label=None``)."""
        if label is None or not self.records:
            return False
        if not isinstance(self.first, dict) and isinstance(label, str) and self.label_at is None:
            return self.names is not None
        return not self.label_seen

    def has_column(self, col: str | int | None) -> bool:
        """Whether the file has column ``col`` (its header names it, a headerless row is wide
        enough for an integer column, or a JSON object holds the key)."""
        if col is None or not self.records:
            return False
        if isinstance(self.first, dict):
            return col in self.keys
        if isinstance(col, int):
            return col < len(self.first)
        return self.names is not None and col in self.names


def _field(names: Sequence[str] | None, rec: Any, col: str | int | None, path: str) -> Any:
    if col is None:
        return None
    if isinstance(rec, dict):
        if col not in rec:
            raise KeyError(col)
        return rec[col]
    return rec[column(names, col, path)]


def _label_set(value: Any, sep: str) -> list[str] | None:
    """A multilabel cell's class names: a JSON list as it is, a string split at ``sep`` (blank
    pieces dropped: ``""`` is no class); None for anything else."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        return [v.strip() for v in (value.split() if sep == " " else value.split(sep)) if v.strip()]
    return None


def _tokens(value: Any) -> Any:
    """A tagging cell as a list: a JSON list as it is, a table's string split on whitespace."""
    return value.split() if isinstance(value, str) else value


_WHOLE = re.compile(r"[+-]?\d+")


# How a table without a header line is read, for the hint on a header of none of the columns.
HEADERLESS = "; a file without a header line: header=0 and the columns by number, text=0,label=1"


def are_scores(labels: Iterable[Any]) -> bool:
    """Whether a column's labels are scores rather than class names: every one a finite number
    and not every one a whole number written as such (``0``/``1`` and ``1``-``5`` stay classes,
    ``0.0``-``5.0`` are scores), as transformers' ``run_classification`` takes a float column
    for regression."""
    labels = [str(x).strip() for x in labels]
    if not labels or all(_WHOLE.fullmatch(x) for x in labels):
        return False
    try:
        return all(math.isfinite(float(x)) for x in labels)
    except ValueError:
        return False


def _warn_unsplit_classes(name: str, path: str, several: bool, names: Sequence[str],
                          sep: str) -> None:  # fmt: skip
    """Warn when a multilabel file's cells look split at the wrong separator: every text has
    one class (not ``several``: no text has more than one) and some class names hold another
    separator (``sport;money`` under the default ``,``), so each combination would train as a
    class of its own."""
    if several:
        return
    for other in (";", "|", ",", "/"):
        joined = [n for n in names if other != sep and other in n]
        if joined:
            shown = "space" if sep == " " else sep
            log.warning("task %r: every text in %s has one class, and %d class names hold %r "
                        "(%r): if a cell lists several classes, label_sep=%s splits them (now "
                        "%r)", name, path, len(joined), other, joined[0],
                        {"|": "\\|", ",": "comma"}.get(other, other), shown)  # fmt: skip
            return


@register("file")
def file_task(
    data_dir: str | None = None,
    *,
    path: str | None = None,
    paths: Mapping[str, str] | None = None,
    format: str | None = None,
    header: bool = True,
    delimiter: str | None = None,
    text: str | int = "text",
    text_pair: str | int | None = None,
    label: str | int | None = "label",
    target: str | int | None = None,
    kind: str | None = None,
    label_names: Sequence[str] | None = None,
    label_sep: str = ",",
    label_columns: Sequence[str] | None = None,
    label_prefix: str | None = FASTTEXT_PREFIX,
    encoding: str | None = None,
    id: str | int | None = DEFAULT_ID,
    name: str = "file",
    metrics: Sequence[str] | None = None,
    main_metric: str | None = None,
    on_bad_row: str = "error",
) -> Task:
    """A task read from the user's own TSV/CSV/JSONL/fastText files (options: see the module
    docstring)."""
    split_paths = spec_split_paths(data_dir, path, paths, "file")
    encoding = check_encoding(encoding, "file")
    if format == "fasttext":
        named = [f"{k}={v}" for k, v in (("text", text), ("label", label)) if v != k] + [
            f"{k}=" for k, v in (("text_pair", text_pair), ("target", target),
                                 ("label_columns", label_columns)) if v]  # fmt: skip
        if named:
            raise ValueError(f"file task: format=fasttext lines have no columns (labels are "
                             f"their {label_prefix or 'first'} words, the text the rest); "
                             f"leave out {', '.join(named)}")  # fmt: skip
        if kind not in (None, "classification", "multilabel", "regression"):
            raise ValueError(f"file task: format=fasttext holds labelled texts, not kind={kind}")
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ValueError(f"file task: delimiter must be one character (not a quote or line "
                         f"break), got {delimiter!r}")  # fmt: skip
    columns = tuple(str(c) for c in label_columns or ())
    # Unset, the kind follows the labels: a 0/1 column per class is multilabel; one label
    # column is classification, or regression when its labels are scores (below).
    inferred = kind is None and not columns
    kind = kind or ("multilabel" if columns else "classification")
    if columns and kind != "multilabel":
        raise ValueError(f"file task: label_columns is for kind=multilabel, not kind={kind!r}")
    if columns and label_names and tuple(label_names) != columns:
        raise ValueError(f"file task: label_names {list(label_names)} differ from label_columns "
                         f"{list(columns)}, which name the classes")  # fmt: skip
    if kind in ("classification", "multilabel", "regression", "tagging") and label is None:
        raise ValueError(f"file task: kind={kind!r} needs a label column")
    # Labels written as class ids (a JSON 1, Hugging Face's ClassLabel integers, as its
    # to_json writes conll2003's ner_tags): id i is label_names[i] -- unless a name is itself a
    # number, when labels match names only.
    by_id = {} if columns else names_by_id(label_names)
    # Tags written BIOES/BILOU are read as IOB2, the same spans (set once the tag set is known).
    convert, written = False, "iob2"  # written: the scheme of the files' tags (io.scheme_of)

    def split_file(split: str) -> tuple[str, str]:
        """The split's file and its format, both checked."""
        if split not in split_paths:
            raise DataError(f"task {name!r} has no split {split!r}; splits: {list(split_paths)}")
        p = split_paths[split]
        if not os.path.isfile(p):
            found = [s for s, q in split_paths.items() if os.path.isfile(q)]
            raise DataError(f"{p}: file not found for split {split!r}; splits found: {found}")
        fmt = format or table_format(p) or "tsv"
        if delimiter is not None and fmt == "jsonl":
            raise DataError(f"{p}: delimiter= is for TSV/CSV files, not JSON lines")
        return p, fmt

    def events(p: str, fmt: str) -> Iterator[tuple[Any, Any, Any]]:
        """The file's records, and in their place the lines _records rejects (``(None,
        where, reason)``), so that bad rows are reported in file order."""
        rejected: list[tuple[Any, Any, Any]] = []
        for record in _records(p, fmt, header, _Deferred(rejected), delimiter, label_prefix,
                               encoding):  # fmt: skip
            yield from rejected
            rejected.clear()
            yield record
        yield from rejected

    first_label = columns[0] if columns else label

    def scan(p: str, fmt: str) -> _Scan:
        found = _Scan()
        for i, names, rec in events(p, fmt):
            found.events += 1
            if i is not None:
                found.add(names, rec, first_label, id)
                if found.settled(first_label):
                    break
        return found

    def examples(split: str, names_map: Mapping[str, int] | None,
                 bad: BadRows) -> Iterator[Example]:  # fmt: skip
        """The split's examples, streamed: one pass over the file to learn whether it has
        labels at all (stopping once its first rows say), then one that reads it."""
        p, fmt = split_file(split)
        found = scan(p, fmt)
        if not found.events:  # a header and nothing else (read_lines refuses a file with no text)
            raise DataError(f"{p}: no rows" + (" after its header line" if header and
                                               fmt != "jsonl" else ""))  # fmt: skip
        labelled = kind in ("lm", "translation") or not found.lacks_label(first_label)
        # An LM corpus or a translation has no label column (a translation's target is `target`).
        reads_label = labelled and kind not in ("lm", "translation")
        # the id column as the file names it ("ID" for the default id too): a table's header,
        # or a JSON file's first object's keys
        rid_column = found.id_column if found.records else id
        has_id = has_id_column(found.has_column(rid_column), rid_column, p)
        if not labelled:
            if split == "train" or names_map is None:
                header_names = found.names
                if found.has_column(first_label):
                    what = f"label column {first_label!r} is blank in every row"
                else:
                    where = f"header {header_names}" if header_names is not None else "any row"
                    hint = (
                        separator_hint(header_names, p)
                        or unnamed_columns_hint(
                            header_names, (text, text_pair, first_label), HEADERLESS
                        )
                        or did_you_mean(first_label, header_names or list(found.first))
                    )
                    what = f"no label column {first_label!r}{hint} in {where}"
                raise DataError(f"{p}: {what}; only a split other than the one that trains or "
                                "gives the label set may be unlabelled")  # fmt: skip
            log.info("%s: no labels in column %r: split %r is unlabelled", p, first_label, split)
        read_any = False
        for i, names, rec in events(p, fmt):
            if i is None:
                bad(names, rec)  # (None, where, reason): a line _records rejected
                continue
            where = f"{p}:{i}"
            try:
                t = _field(names, rec, text, p)
                pair = _field(names, rec, text_pair, p)
                raw = None
                if reads_label:
                    raw = ([_field(names, rec, c, p) for c in columns] if columns
                           else _field(names, rec, label, p))  # fmt: skip
                tgt = _field(names, rec, target, p)
                rid = (row_id(_field(names, rec, rid_column, p), where, rid_column, bad)
                       if has_id else None)  # fmt: skip
            except KeyError as e:
                bad(where, f"missing field {e.args[0]!r}")
                continue
            except IndexError:
                bad(where, "row has fewer columns than the mapping needs")
                continue
            if rid is NO_ID:
                continue
            if kind == "tagging":
                # A table's cells hold the words and the tags space-separated; JSON, lists.
                t, raw = _tokens(t), _tokens(raw)
                if not labelled:  # words alone (a test set to predict)
                    if not (isinstance(t, list) and t):
                        bad(where, f"tagging needs a non-empty list of words in {text!r}")
                        continue
                    words = tuple(str(w) for w in t)
                    read_any = True
                    yield Example(" ".join(words), None, None, words=words, source=where, id=rid)
                    continue
                if not (isinstance(t, list) and isinstance(raw, list) and len(t) == len(raw)):
                    got = (f" (got {len(t)} words, {len(raw)} tags)" if isinstance(t, list)
                           and isinstance(raw, list) else "")  # fmt: skip
                    bad(where, f"tagging needs equal-length lists of words and tags{got}")
                    continue
                tags = tuple(by_id.get(str(x).strip(), str(x)) for x in raw)
                if convert:
                    try:
                        tags = to_iob2(tags)
                    except IOBError as e:
                        bad(where, str(e))
                        continue
                if names_map is not None:
                    unknown = [x for x in tags if x not in names_map]
                    if unknown:
                        bad(where, unknown_class(unknown[0], names_map, "tag"))
                        continue
                words = tuple(str(w) for w in t)
                read_any = True
                yield Example(" ".join(words), None, tags, words=words, source=where, id=rid)
                continue
            if not isinstance(t, str) or not t.strip():
                bad(where, f"text field {text!r} is empty or not a string")
                continue
            value: Any = None
            if kind in ("classification", "regression") and isinstance(raw, list):
                # a list of labels (a fastText line's, a JSON list): one is this kind's label
                if len(raw) != 1:
                    shown = ", ".join(str(x) for x in raw)
                    bad(where, f"{len(raw)} labels ({shown}) for one text; kind=multilabel "
                               "reads several")  # fmt: skip
                    continue
                raw = raw[0]
            if not labelled:
                pass
            elif kind == "classification":
                if is_blank(raw):  # a missing value, not a class named ""
                    bad(where, f"label field {label!r} is empty")
                    continue
                value = str(raw).strip() if names_map is None else None
                if names_map is not None:
                    raw = by_id.get(str(raw).strip(), raw)
                    value = parse_label(str(raw), kind, names_map, where, bad)
                    if value is None:
                        continue
            elif kind == "regression":
                value = parse_label(str(raw), kind, None, where, bad)
                if value is None:
                    continue
            elif kind == "multilabel":
                # the class columns' cells, a 0/1 vector, or class names in a cell or a list
                classes = raw if columns or is_multi_hot(raw) else _label_set(raw, label_sep)
                if not isinstance(classes, list):
                    bad(where, f"labels {raw!r} are not a list or a {label_sep!r}-separated "
                               "string")  # fmt: skip
                    continue
                value = multilabel_ids(classes, names_map, where, bad, columns=columns)
                if value is None:
                    continue
            read_any = True
            yield Example(t.strip(), pair, value, target=tgt, source=where, id=rid)
        if not read_any:  # every row was bad and skipped (on_bad_row=skip)
            raise DataError(f"{p}: no examples: all {len(bad.reasons)} rows are bad (first: "
                            f"{bad.reasons[0] if bad.reasons else '?'})")  # fmt: skip

    def reader(names_map: Mapping[str, int] | None) -> tuple[Callable, Callable]:
        """``load`` and ``stream`` reading labels by ``names_map`` (None: as written)."""
        return streamed_reader(lambda split, bad: examples(split, names_map, bad),
                               split_paths.__getitem__, on_bad_row)  # fmt: skip

    names_tuple: tuple[str, ...] = columns or tuple(str(x) for x in label_names or ())
    if kind in ("classification", "multilabel", "tagging") and not names_tuple:
        # Label set from the training split, sorted so the ids are stable across runs
        # (whole numbers by value: io.label_order).
        source = "train" if "train" in split_paths else next(iter(split_paths))
        values: set[Any] = set()
        several = False  # a multilabel example with more than one class
        for ex in reader(None)[1](source):  # streamed: the examples are not kept
            got: Any = ex.label if kind in ("multilabel", "tagging") else (ex.label,)
            values.update(got)
            several = several or (kind == "multilabel" and len(got) > 1)
        if inferred and label is not None and are_scores(values):
            kind = "regression"  # the reader and the Task below see it: no label set
            log.info("task %r: every label in %s is a number, not all whole: kind=regression "
                     "(kind=classification keeps them as classes)", name,
                     split_paths[source])  # fmt: skip
            if (classes := whole_scores(split_paths[source], values, label)) is not None:
                log.warning("%s", classes)
        else:
            names_tuple = label_order(values)
        if kind == "classification" and len(names_tuple) == 1:
            log.warning("%s", one_class(split_paths[source], names_tuple[0], label))
        if kind == "multilabel" and not columns:
            _warn_unsplit_classes(name, split_paths[source], several, names_tuple, label_sep)
        if kind == "tagging" and names_tuple and all(CLASS_ID.fullmatch(n) for n in names_tuple):
            raise DataError(f"{split_paths[source]}: the tags are class ids ({names_tuple[0]!r}, "
                            "...), not names: name the classes in id order with label_names="
                            "O|B-PER|... (the dataset's ClassLabel names)")  # fmt: skip
    if kind == "tagging" and (iob2 := iob2_tag_set(names_tuple)) is not None:
        log.info("task %r: BIOES/BILOU tags %s read as IOB2 %s (the same spans)", name,
                 names_tuple, iob2)  # fmt: skip
        names_tuple, convert, written = iob2, True, scheme_of(names_tuple)
    label_map = {n: i for i, n in enumerate(names_tuple)}
    load, stream = reader(label_map if kind != "lm" else None)
    mets, main = chosen_metrics(kind, metrics, main_metric)
    return Task(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        loader=load,
        stream=stream,
        splits=tuple(split_paths),
        label_names=names_tuple,
        text_fields=tuple(str(c) for c in (text, text_pair) if c is not None),
        metrics=mets,
        main_metric=main,
        iob=kind == "tagging" and is_iob_set(names_tuple),
        tag_scheme=written,
        files=lambda split: (split_paths[split],),
    )
