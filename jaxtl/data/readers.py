"""Readers for delimited files: the GLUE tasks and generic user TSV / CSV / JSONL tasks.

Every reader goes through :func:`read_lines`, which decodes line by line so that invalid UTF-8 is
reported (or skipped) with its file and line, and refuses missing and empty files.

Generic tasks (``get_task("file", data_dir, ...)``) take their column mapping as options::

    get_task("file", "/data", path="reviews/{split}.tsv", format="tsv",
             text="sentence", label="label", kind="classification")

- ``path``: file name, relative to ``data_dir`` unless absolute, with ``{split}`` standing for
  the split name; or ``paths={"train": "a.csv", "dev": "b.csv"}`` to name each file.
- ``format``: ``tsv`` | ``csv`` | ``jsonl``. ``header`` (default True) says whether the first
  line of a TSV/CSV file names the columns; without one, columns are given as 0-based integers.
- ``text`` (required), ``text_pair`` (optional second segment), ``label`` (the target column;
  absent for ``kind="lm"``), ``target`` (translation).
- ``kind``: ``classification`` | ``regression`` | ``tagging`` (JSONL only: ``text`` holds a list
  of words and ``label`` a list of tags) | ``lm`` | ``translation``.
- ``label_names``: the label set, as the strings found in the file (a JSONL number 1 is "1").
  When omitted for classification / tagging it is read from the train split (sorted).
- ``name``, ``metrics``, ``main_metric`` (defaults by kind), ``on_bad_row`` = error | skip.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from jaxtl.data.tasks import (
    BadRows,
    DataError,
    Example,
    Loaded,
    Task,
    register,
)

DEFAULT_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "classification": (("accuracy", "macro_f1"), "accuracy"),
    "regression": (("pearson", "spearman"), "pearson"),
    "tagging": (("span_f1", "token_accuracy"), "span_f1"),
    "lm": (("perplexity",), "perplexity"),
    "translation": (("bleu",), "bleu"),
}


def resolve(data_dir: str | os.PathLike | None, path: str | os.PathLike, task: str) -> str:
    """``path`` under ``data_dir`` (or as is when absolute); a clear error when no dir given."""
    path = os.fspath(path)
    if os.path.isabs(path):
        return path
    if data_dir is None:
        raise DataError(f"task {task!r} reads files: pass data_dir (the folder holding {path!r})")
    return os.path.join(os.fspath(data_dir), path)


def read_lines(path: str, bad: BadRows) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the newline) for each line of a UTF-8 (or .gz) file.

    A line that is not valid UTF-8 goes to ``bad`` naming its line and byte; a leading BOM is
    dropped; a missing or empty file is an error whatever ``bad`` says.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if not data.strip():
        raise DataError(f"{path}: file is empty")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad(f"{path}:{i}", f"invalid UTF-8 at byte {e.start} of the line")
            continue
        if i == 1 and line.startswith("\ufeff"):
            line = line[1:]
        yield i, line.rstrip("\r")


def read_table(
    path: str, bad: BadRows, *, delimiter: str = "\t", header: bool = True, quoting: bool = False
) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """Header (or None) and the rows of a delimited file, rows with a wrong field count sent to
    ``bad``. TSV is split on tabs with no quoting (GLUE sentences contain bare quotes); CSV uses
    the csv module's quoting rules, one record per line."""
    lines = read_lines(path, bad)

    def split(text: str) -> list[str]:
        if quoting:
            return next(csv.reader(io.StringIO(text), delimiter=delimiter))
        return text.split(delimiter)

    names: list[str] | None = None
    if header:
        first = next(lines, None)
        if first is None:
            raise DataError(f"{path}: no header line")
        names = [n.strip() for n in split(first[1])]

    def rows() -> Iterator[tuple[int, list[str]]]:
        width = len(names) if names is not None else None
        nonlocal_width = [width]
        for i, text in lines:
            if not text.strip():
                continue
            fields = split(text)
            if nonlocal_width[0] is None:
                nonlocal_width[0] = len(fields)
            if len(fields) != nonlocal_width[0]:
                bad(
                    f"{path}:{i}",
                    f"expected {nonlocal_width[0]} fields, found {len(fields)}",
                )
                continue
            yield i, fields

    return names, rows()


def column(names: Sequence[str] | None, col: str | int, path: str) -> int:
    """Index of column ``col`` (a header name, or a 0-based integer)."""
    if isinstance(col, int):
        return col
    if names is None:
        raise DataError(f"{path}: file has no header, so column {col!r} must be an integer")
    if col not in names:
        raise DataError(f"{path}: no column {col!r} in header {names}")
    return names.index(col)


def parse_label(
    raw: str, kind: str, label_map: Mapping[str, int] | None, where: str, bad: BadRows
) -> int | float | None:
    """A class id (via ``label_map``) or a finite float; None after reporting a bad value."""
    raw = raw.strip()
    if kind == "classification":
        assert label_map is not None
        if raw not in label_map:
            bad(where, f"label {raw!r} is not one of {sorted(label_map)}")
            return None
        return label_map[raw]
    try:
        value = float(raw)
    except ValueError:
        bad(where, f"score {raw!r} is not a number")
        return None
    if not math.isfinite(value):
        bad(where, f"score {raw!r} is not finite")
        return None
    return value


# ---------------------------------------------------------------------------------------------
# GLUE


GLUE: dict[str, dict[str, Any]] = {
    # dir, header?, text columns, label column, label names and their raw spellings, split files
    "sst2": dict(dir="SST-2", text=("sentence",), label="label", raw=("0", "1"),
                 names=("negative", "positive"), metrics=("accuracy",)),
    "cola": dict(dir="CoLA", header=False, width=4, text=(3,), label=1, raw=("0", "1"),
                 names=("unacceptable", "acceptable"), metrics=("matthews", "accuracy")),
    "mrpc": dict(dir="MRPC", text=("#1 String", "#2 String"), label="Quality", raw=("0", "1"),
                 names=("not_equivalent", "equivalent"), metrics=("f1", "accuracy")),
    "rte": dict(dir="RTE", text=("sentence1", "sentence2"), label="label",
                raw=("entailment", "not_entailment"), metrics=("accuracy",)),
    "qnli": dict(dir="QNLI", text=("question", "sentence"), label="label",
                 raw=("entailment", "not_entailment"), metrics=("accuracy",)),
    "stsb": dict(dir="STS-B", text=("sentence1", "sentence2"), label="score", kind="regression",
                 metrics=("pearson", "spearman")),
    "mnli": dict(dir="MNLI", text=("sentence1", "sentence2"), label="gold_label",
                 raw=("entailment", "neutral", "contradiction"), metrics=("accuracy",),
                 files={"train": "train.tsv", "dev": "dev_matched.tsv",
                        "dev_mismatched": "dev_mismatched.tsv"}),
}  # fmt: skip


def _split_files(folder: str, files: Mapping[str, str], task: str) -> Callable[[str], str]:
    def path_for(split: str) -> str:
        path = os.path.join(folder, files[split])
        if not os.path.isfile(path):
            found = [s for s, f in files.items() if os.path.isfile(os.path.join(folder, f))]
            raise DataError(
                f"{path}: file not found for split {split!r} of task {task!r}; "
                f"splits found in {folder}: {found}"
            )
        return path

    return path_for


def _glue_factory(key: str) -> Callable[..., Task]:
    spec = GLUE[key]

    def factory(data_dir: str | None = None, *, on_bad_row: str = "error") -> Task:
        folder = resolve(data_dir, spec["dir"], key)
        files = spec.get("files", {"train": "train.tsv", "dev": "dev.tsv"})
        path_for = _split_files(folder, files, key)
        kind = spec.get("kind", "classification")
        raw = spec.get("raw", ())
        label_map = {r: i for i, r in enumerate(raw)}

        def load(split: str) -> Loaded:
            path = path_for(split)
            bad = BadRows(on_bad_row)
            header = spec.get("header", True)
            names, rows = read_table(path, bad, header=header)
            cols = [column(names, c, path) for c in spec["text"]]
            lcol = column(names, spec["label"], path)
            width = len(names) if names else spec["width"]
            out = []
            for i, fields in rows:
                where = f"{path}:{i}"
                if len(fields) != width:
                    bad(where, f"expected {width} fields, found {len(fields)}")
                    continue
                label = parse_label(fields[lcol], kind, label_map, where, bad)
                if label is None:
                    continue
                if kind == "regression" and not 0.0 <= label <= 5.0:
                    bad(where, f"similarity score {label} outside [0, 5]")
                    continue
                pair = fields[cols[1]] if len(cols) > 1 else None
                out.append(Example(fields[cols[0]].strip(), pair, label, source=where))
            return bad.result(out, path)

        metrics = spec["metrics"]
        return Task(
            name=key,
            kind=kind,
            loader=load,
            splits=tuple(files),
            label_names=spec.get("names", raw),
            text_fields=tuple(str(c) for c in spec["text"]),
            metrics=metrics,
            main_metric=metrics[0],
        )

    return factory


for _key in GLUE:
    register(_key)(_glue_factory(_key))
for _alias, _key in {"sst-2": "sst2", "sts-b": "stsb", "glue/sst2": "sst2", "glue/cola": "cola",
                     "glue/mrpc": "mrpc", "glue/rte": "rte", "glue/qnli": "qnli",
                     "glue/stsb": "stsb", "glue/mnli": "mnli"}.items():  # fmt: skip
    register(_alias)(_glue_factory(_key))


# ---------------------------------------------------------------------------------------------
# Generic user files


def _records(path: str, fmt: str, header: bool, bad: BadRows) -> Iterator[tuple[int, Any, Any]]:
    """(line, names or None, record) where record is a list (tsv/csv) or a dict (jsonl)."""
    if fmt == "jsonl":
        for i, text in read_lines(path, bad):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                bad(f"{path}:{i}", f"invalid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(rec, dict):
                bad(f"{path}:{i}", f"expected a JSON object, found {type(rec).__name__}")
                continue
            yield i, None, rec
        return
    if fmt not in ("tsv", "csv"):
        raise DataError(f"{path}: format must be tsv, csv or jsonl, got {fmt!r}")
    delimiter = "\t" if fmt == "tsv" else ","
    names, rows = read_table(path, bad, delimiter=delimiter, header=header, quoting=fmt == "csv")
    for i, fields in rows:
        yield i, names, fields


def _field(names: Sequence[str] | None, rec: Any, col: str | int | None, path: str) -> Any:
    if col is None:
        return None
    if isinstance(rec, dict):
        if col not in rec:
            raise KeyError(col)
        return rec[col]
    return rec[column(names, col, path)]


@register("file")
def file_task(
    data_dir: str | None = None,
    *,
    path: str | None = None,
    paths: Mapping[str, str] | None = None,
    format: str = "tsv",
    header: bool = True,
    text: str | int = "text",
    text_pair: str | int | None = None,
    label: str | int | None = "label",
    target: str | int | None = None,
    kind: str = "classification",
    label_names: Sequence[str] | None = None,
    name: str = "file",
    metrics: Sequence[str] | None = None,
    main_metric: str | None = None,
    on_bad_row: str = "error",
) -> Task:
    """A task read from the user's own TSV/CSV/JSONL files (options: see the module docstring)."""
    if (path is None) == (paths is None):
        raise ValueError(
            "file task: give exactly one of path='x/{split}.tsv' or paths={split: file}"
        )
    if paths is None:
        assert path is not None
        if "{split}" not in path:
            raise ValueError(
                f"file task: path {path!r} needs a '{{split}}' placeholder or use paths="
            )
        split_paths = {
            s: resolve(data_dir, path.format(split=s), name) for s in ("train", "dev", "test")
        }
        split_paths = {s: p for s, p in split_paths.items() if os.path.isfile(p)} or split_paths
    else:
        split_paths = {s: resolve(data_dir, p, name) for s, p in paths.items()}
    if kind == "tagging" and format != "jsonl":
        raise ValueError("file task: tagging from a table is read with get_task('conll', ...)")
    if kind in ("classification", "regression", "tagging") and label is None:
        raise ValueError(f"file task: kind={kind!r} needs a label column")

    def read(split: str, names_map: Mapping[str, int] | None) -> Loaded:
        if split not in split_paths:
            raise DataError(f"task {name!r} has no split {split!r}; splits: {list(split_paths)}")
        p = split_paths[split]
        if not os.path.isfile(p):
            found = [s for s, q in split_paths.items() if os.path.isfile(q)]
            raise DataError(f"{p}: file not found for split {split!r}; splits found: {found}")
        bad = BadRows(on_bad_row)
        out = []
        for i, names, rec in _records(p, format, header, bad):
            where = f"{p}:{i}"
            try:
                t = _field(names, rec, text, p)
                pair = _field(names, rec, text_pair, p)
                raw = _field(names, rec, label, p) if kind not in ("lm", "translation") else None
                tgt = _field(names, rec, target, p)
            except KeyError as e:
                bad(where, f"missing field {e.args[0]!r}")
                continue
            except IndexError:
                bad(where, "row has fewer columns than the mapping needs")
                continue
            if kind == "tagging":
                if not (isinstance(t, list) and isinstance(raw, list) and len(t) == len(raw)):
                    bad(where, "tagging needs equal-length lists of words and tags")
                    continue
                tags = tuple(str(x) for x in raw)
                if names_map is not None:
                    unknown = [x for x in tags if x not in names_map]
                    if unknown:
                        bad(where, f"tag {unknown[0]!r} is not one of {sorted(names_map)}")
                        continue
                words = tuple(str(w) for w in t)
                out.append(Example(" ".join(words), None, tags, words=words, source=where))
                continue
            if not isinstance(t, str) or not t.strip():
                bad(where, f"text field {text!r} is empty or not a string")
                continue
            value: Any = None
            if kind == "classification":
                value = str(raw).strip() if names_map is None else None
                if names_map is not None:
                    value = parse_label(str(raw), kind, names_map, where, bad)
                    if value is None:
                        continue
            elif kind == "regression":
                value = parse_label(str(raw), kind, None, where, bad)
                if value is None:
                    continue
            out.append(Example(t.strip(), pair, value, target=tgt, source=where))
        return bad.result(out, p)

    names_tuple: tuple[str, ...] = tuple(str(x) for x in label_names or ())
    if kind in ("classification", "tagging") and not names_tuple:
        # Label set from the training split, sorted so the ids are stable across runs.
        first = read("train" if "train" in split_paths else next(iter(split_paths)), None)
        values = set()
        for ex in first:
            values.update(ex.label if kind == "tagging" else (ex.label,))
        names_tuple = tuple(sorted(values))
    label_map = {n: i for i, n in enumerate(names_tuple)}
    default_metrics, default_main = DEFAULT_METRICS[kind]
    mets = tuple(metrics or default_metrics)
    return Task(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        loader=lambda split: read(split, label_map if kind != "lm" else None),
        splits=tuple(split_paths),
        label_names=names_tuple,
        text_fields=tuple(str(c) for c in (text, text_pair) if c is not None),
        metrics=mets,
        main_metric=main_metric or (default_main if default_main in mets else mets[0]),
        iob=kind == "tagging" and all(n == "O" or n[:2] in ("B-", "I-") for n in names_tuple),
    )
