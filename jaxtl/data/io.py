"""Shared file reading for the readers: paths, lines, JSON lines, delimited tables, columns,
labels, and the checks of a question-answering row (the file and hf readers both make them).

Every file reader goes through :func:`read_lines`, which decodes line by line so that invalid
UTF-8 is reported (or skipped) with its file and line, and refuses missing and empty files.

This module sits below the readers (glue, files, conll, text, qa, hf_datasets, tfds_source) and
imports only :mod:`jaxtl.data.tasks`; whatever more than one reader needs belongs here, so that
no reader has to import another one.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import difflib
import gzip
import itertools
import json
import logging
import lzma
import math
import os
import re
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeGuard

from etils import epath

from jaxtl.data.tasks import SPLITS, BadRows, DataError, Example, Loaded, Task

log = logging.getLogger(__name__)

# Metrics (and the main one) of a task whose reader is told only its kind (file, tfds).
DEFAULT_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "classification": (("accuracy", "macro_f1"), "accuracy"),
    # as transformers' run_classification scores a multi-label task: F1 over (example, class)
    # decisions; subset accuracy: the share of examples whose whole label set is right
    "multilabel": (("micro_f1", "macro_f1", "subset_accuracy"), "micro_f1"),
    "regression": (("pearson", "spearman"), "pearson"),
    "tagging": (("span_f1", "token_accuracy"), "span_f1"),
    "lm": (("perplexity",), "perplexity"),
    "translation": (("bleu",), "bleu"),
    # SQuAD's: the share of answers equal to a gold one, and the mean best token F1 over them
    "qa": (("exact_match", "f1"), "f1"),
}


def chosen_metrics(kind: str, metrics: Sequence[str] | None, main_metric: str | None,
                   defaults: Sequence[str] | None = None) -> tuple[tuple[str, ...], str]:  # fmt: skip
    """A reader's ``(metrics, main metric)``: the spec's ``metrics``, else ``defaults`` (else
    the kind's :data:`DEFAULT_METRICS`); the spec's ``main_metric``, else the kind's main one
    where it is among them, else the first."""
    default_metrics, default_main = DEFAULT_METRICS[kind]
    mets = tuple(metrics or defaults or default_metrics)
    return mets, main_metric or (default_main if default_main in mets else mets[0])


def resolve(data_dir: str | os.PathLike | None, path: str | os.PathLike, task: str) -> str:
    """``path`` under ``data_dir`` (or as is when absolute); a clear error when no dir given."""
    path = os.fspath(path)
    if os.path.isabs(path):
        return path
    if data_dir is None:
        raise DataError(  # the command line's key and the Python argument: either may be in use
            f"task {task!r} reads files: set --config.data.dir=DIR (data_dir=DIR from Python), "
            f"the folder holding {path!r}"
        )
    return os.path.join(os.fspath(data_dir), path)


def user_path(data_dir: str | os.PathLike | None, path: str) -> str:
    """A spec task's file (``file:...,path=P``): under ``data_dir`` when one is set and ``P`` is
    relative; otherwise ``P`` as written, relative to the current directory like any
    command-line path (made absolute so errors name the real place)."""
    if data_dir is None or os.path.isabs(path):
        return os.path.abspath(path)
    return os.path.join(os.fspath(data_dir), path)


# Other names of the three splits (Hugging Face's validation, and the usual abbreviations).
SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev", "eval": "dev",
                 "development": "dev", "training": "train", "testing": "test"}  # fmt: skip


def split_name(name: str) -> str:
    """jaxtl's name of a split (``validation`` → ``dev``); other names as they are."""
    return SPLIT_ALIASES.get(name.lower(), name.lower())


def names_of_split(ours: str) -> list[str]:
    """The names a split's file may have, jaxtl's first (``dev``, ``validation``, …)."""
    return [ours, *(a for a, o in SPLIT_ALIASES.items() if o == ours)]


def spec_split_paths(
    data_dir: str | os.PathLike | None,
    path: str | None,
    paths: Mapping[str, str] | None,
    reader: str,
) -> dict[str, str]:
    """A spec task's file per split: ``path`` with a ``{split}`` placeholder (the splits among
    train, dev and test whose files exist, dev also as ``validation``, ``valid``, ``val``…; all
    three when none does, so that reading names the missing file) or ``paths``, a file per
    split (``{"test": "new.conll"}``; ``validation`` and the other :data:`SPLIT_ALIASES` name
    dev, any other name is refused)."""
    if (path is None) == (paths is None):
        raise ValueError(f"{reader} task: give exactly one of path='x/{{split}}.ext' or "
                         "paths={split: file}")  # fmt: skip
    if paths is not None:
        named: dict[str, str] = {}
        for s, p in paths.items():
            ours = split_name(s)
            if ours not in SPLITS:
                raise ValueError(f"{reader} task: paths= names a split {s!r}; the splits are "
                                 "train, dev (or validation, valid, val, eval) and test")  # fmt: skip
            if ours in named:
                raise ValueError(f"{reader} task: paths= names the {ours} split twice")
            named[ours] = user_path(data_dir, p)
        return named
    assert path is not None
    if "{split}" not in path:
        raise ValueError(f"{reader} task: path {path!r} needs a '{{split}}' placeholder or use "
                         "paths=")  # fmt: skip
    every = {}
    for ours in SPLITS:
        candidates = [user_path(data_dir, path.format(split=n)) for n in names_of_split(ours)]
        every[ours] = next((c for c in candidates if os.path.isfile(c)), candidates[0])
    return {s: p for s, p in every.items() if os.path.isfile(p)} or every


# The placeholder of parallel text files' names that the source and target languages fill
# (``mt/{split}.{lang}``: jaxtl.data.text.parallel).
LANG = "{lang}"

# The table format each file extension names (a compression suffix is looked through).
# Files a spreadsheet program writes, which jaxtl reads only once saved as CSV.
SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods")
SAVE_AS_CSV = "save it as CSV (pandas: pd.read_excel(path).to_csv(out, index=False))"

TABLE_EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


# Compressed files are read through, each suffix by its standard-library codec.
COMPRESSION: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def uncompressed(path: str) -> str:
    """``path`` without its compression suffix (``train.ft.txt.bz2`` → ``train.ft.txt``): the
    name whose extension says the format."""
    for suffix in COMPRESSION:
        if path.lower().endswith(suffix):
            return path[: -len(suffix)]
    return path


def _codec(path: str) -> Callable[..., Any] | None:
    """The opener of a compressed file's suffix (``gzip.open`` for ``.gz``), else None."""
    return COMPRESSION.get(path[len(uncompressed(path)) :].lower())


def extension(path: str) -> str:
    """``path``'s extension, lower case, looking through a compression suffix."""
    return os.path.splitext(uncompressed(path))[1].lower()


def table_format(path: str) -> str | None:
    """``tsv``, ``csv`` or ``jsonl`` as ``path``'s extension names it, else None."""
    return TABLE_EXTENSIONS.get(extension(path))


def read_lines(path: str, bad: BadRows, encoding: str | None = None
               ) -> Generator[tuple[int, str], None, None]:  # fmt: skip
    """(1-based line number, text without the newline) for each line of a UTF-8 file, or of
    ``encoding`` (:func:`check_encoding`), read through ``.gz``, ``.bz2`` and ``.xz``
    compression.

    A line that does not decode goes to ``bad`` naming its line and byte (and, for UTF-8, the
    ``encoding=`` that may read it); a file that opens with UTF-8's byte-order mark is UTF-8
    whatever ``encoding`` says (one split saved as "CSV UTF-8", another as plain "CSV"), the
    mark dropped; a UTF-16 file, and a missing or empty one, is an error whatever ``bad``
    says.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with _open_bytes(path) as f:
        # Streamed line by line (a corpus may be larger than memory); the blank lines before the
        # first text are held back so that an empty (or all-blank) file fails before any line.
        lead: list[bytes] = []
        for raw in f:
            lead.append(raw)
            if raw.strip():
                break
        else:
            raise DataError(f"{path}: file is empty")
        if lead[0].startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(f"{path}: the file is UTF-16 (as Excel's \"Unicode Text\" saves it); "
                            "save it as UTF-8 (\"CSV UTF-8\") or convert it: iconv -f utf-16 -t "
                            "utf-8")  # fmt: skip
        if lead[0].startswith(codecs.BOM_UTF8):
            encoding = None  # UTF-8's mark: this file is UTF-8 whatever the others are
        yield from _decoded(path, itertools.chain(lead, f), bad, encoding)


# Encodings decoded a line at a time must keep "\n" a byte of its own: not UTF-16/32.
_NOT_BY_LINE = ("utf-16", "utf-32")


def check_encoding(encoding: str | None, reader: str) -> str | None:
    """A reader's ``encoding=`` checked before any file is read: a codec Python knows, that
    keeps a line break a byte of its own (``cp1252``, ``latin-1``, ``shift_jis``, …), or None
    (UTF-8)."""
    if encoding is None:
        return None
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"{reader} task: encoding={encoding!r} is not an encoding Python knows "
                         "(e.g. utf-8, cp1252, latin-1)") from None  # fmt: skip
    if name.startswith(_NOT_BY_LINE):
        raise ValueError(f"{reader} task: encoding={encoding} is not read a line at a time; "
                         f"convert the file to UTF-8 (iconv -f {encoding} -t utf-8)")  # fmt: skip
    return encoding


def not_decoded(e: UnicodeDecodeError, encoding: str | None, where: str, hint: str) -> str:
    """What a line that does not decode says: the byte, and for UTF-8 ``hint`` (how to read a
    file saved in another encoding)."""
    if encoding:
        return f"invalid {encoding} at byte {e.start} of the {where}"
    return f"invalid UTF-8 at byte {e.start} of the {where} ({hint})"


# What to do with a file in another encoding: a reader's option, or a --predict/--embed input's.
ENCODING_HINT = ("not UTF-8: encoding=cp1252 reads a file saved by Excel on Windows, "
                 "encoding=latin-1 one in ISO-8859-1")  # fmt: skip
CONVERT_HINT = "not UTF-8: convert it, e.g. iconv -f cp1252 -t utf-8 IN > OUT"


def text_lines(path: str) -> Iterator[tuple[str, str]]:
    """(line, "path:N") for each non-blank line of the UTF-8 text file ``path`` ("-" = stdin,
    named ``<stdin>``; compressed files read through), without its line ending or a leading
    byte-order mark: what ``--predict`` and ``--embed`` read, a line at a time. A line that is
    not UTF-8 stops, named."""
    name = "<stdin>" if path == "-" else path
    codec = _codec(path)
    # Bytes, decoded here: stdin's own decoding would pass bad bytes on as surrogates.
    stdin = getattr(sys.stdin, "buffer", sys.stdin)
    opened = (contextlib.nullcontext(stdin) if path == "-"
              else codec(path, "rb") if codec
              else epath.Path(path).open("rb"))  # fmt: skip
    with opened as f:
        # a text stream without a buffer (a test's StringIO): its str lines as the bytes they were
        raws = (r.encode("utf-8", "surrogateescape") if isinstance(r, str) else r for r in f)
        for n, line in _decoded(name, raws, BadRows("error"), hint=CONVERT_HINT):
            if line.strip():
                yield line, f"{name}:{n}"


def json_values(path: str) -> Iterator[tuple[Any, str]]:
    """(value, "path:N") for each non-blank line of a JSON-lines file ("-" = stdin), or for
    each element of a local file holding one JSON array: what ``--predict`` and ``--embed``
    read as ``jsonl``, a line (or element) at a time. Broken JSON stops, naming its line."""
    if path != "-" and os.path.isfile(path) and _opens_array(path):
        for i, rec in _json_array(path, BadRows("error")):
            yield rec, f"{path}:{i}"
        return
    for line, where in text_lines(path):
        try:
            yield json.loads(line), where
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON ({e.msg})") from None


def _opens_array(path: str) -> bool:
    """Whether a file's first character after blanks (and a byte-order mark) is ``[``."""
    with _open_bytes(path) as f:
        while chunk := f.read(4096):
            rest = chunk.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
            if rest:
                return rest.startswith(b"[")
    return False


def read_json_objects(path: str, bad: BadRows, encoding: str | None = None
                      ) -> Iterator[tuple[int, dict[str, Any]]]:  # fmt: skip
    """(1-based line number, object) for each non-blank line of a JSON-lines file; a line that
    is not JSON, or not a JSON object, goes to ``bad`` naming its line. A file that opens with
    ``[`` is one JSON array of objects instead (``json.dump`` of a list, pandas'
    ``to_json(orient="records")``), each object numbered by the line it starts on."""
    lines = read_lines(path, bad, encoding)
    first = True
    for i, text in lines:
        if not text.strip():
            continue
        if first and text.lstrip().startswith("["):
            lines.close()
            yield from _json_array(path, bad, encoding)
            return
        first = False
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            if text.lstrip().startswith("{") and _one_object(path, encoding):
                raise DataError(f"{path}: one JSON object spread over lines, not JSON lines (an "
                                "object per line) or an array of objects") from None  # fmt: skip
            bad(f"{path}:{i}", f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(rec, dict):
            bad(f"{path}:{i}", f"expected a JSON object, found {type(rec).__name__}")
            continue
        yield i, rec


def _open_bytes(path: str) -> Any:
    """A file's bytes, decompressed for a ``.gz``, ``.bz2`` or ``.xz`` name."""
    return (_codec(path) or open)(path, "rb")


def _whole_text(path: str, encoding: str | None = None) -> str:
    with _open_bytes(path) as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig" if not encoding or raw.startswith(codecs.BOM_UTF8)
                          else encoding)  # fmt: skip
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        reason = not_decoded(e, encoding, "file", ENCODING_HINT)
        raise DataError(f"{path}:{line}: {reason}") from None


def _one_object(path: str, encoding: str | None = None) -> bool:
    """Whether the whole file is a single JSON object (a pretty-printed document)."""
    try:
        return isinstance(json.loads(_whole_text(path, encoding)), dict)
    except (json.JSONDecodeError, DataError):
        return False


def _json_array(path: str, bad: BadRows, encoding: str | None = None
                ) -> Iterator[tuple[int, dict[str, Any]]]:  # fmt: skip
    """(line, object) for each element of a file holding one JSON array; an element that is not
    an object goes to ``bad``; broken JSON stops at its line (nothing after it can be read)."""
    text = _whole_text(path, encoding)
    decoder = json.JSONDecoder()
    pos, line, counted = text.index("[") + 1, 1, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and text[pos] == "]":
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
                            ) from None  # fmt: skip
        line += text.count("\n", counted, pos)
        counted = pos
        if isinstance(value, dict):
            yield line, value
        else:
            bad(f"{path}:{line}", f"expected a JSON object, found {type(value).__name__}")
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            where = text.count("\n", 0, pos) + 1
            raise DataError(f"{path}:{where}: invalid JSON (expected ',' or ']' in the array)")
    if text[pos + 1 :].strip():
        where = text.count("\n", 0, pos) + 1
        raise DataError(f"{path}:{where}: text after the JSON array's closing ']'")


def _decoded(path: str, raws: Iterator[bytes], bad: BadRows, encoding: str | None = None,
             hint: str = ENCODING_HINT) -> Iterator[tuple[int, str]]:  # fmt: skip
    """(line number, text) of each line of ``raws``, decoded (``encoding``, else UTF-8), without
    its line ending or a leading byte-order mark; a line that does not decode goes to ``bad``
    with ``hint`` (how to read the file otherwise)."""
    for i, raw in enumerate(raws, start=1):
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        try:
            line = raw.decode(encoding or "utf-8")
        except UnicodeDecodeError as e:
            bad(f"{path}:{i}", not_decoded(e, encoding, "line", hint))
            continue
        if i == 1 and line.startswith("\ufeff"):
            line = line[1:]
        yield i, line.rstrip("\r")


def read_table(
    path: str,
    bad: BadRows,
    *,
    delimiter: str = "\t",
    header: bool = True,
    quoting: bool = False,
    encoding: str | None = None,
) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """Header (or None) and the rows of a delimited file, each with the number of the line it
    starts on; rows with a wrong field count go to ``bad``, blank lines are skipped. TSV is
    split on tabs with no quoting (GLUE sentences contain bare quotes); CSV follows the csv
    module's quoting rules strictly, so a quoted field may span lines (a text with line breaks,
    as pandas writes it), and a malformed record (a quoted field never closed, text after a
    closing quote) goes to ``bad`` naming its first line."""
    records = _quoted_records(path, bad, delimiter, encoding) if quoting else (
        (i, text.split(delimiter)) for i, text in read_lines(path, bad, encoding) if text.strip())  # fmt: skip
    names: list[str] | None = None
    if header:
        first = next(records, None)
        if first is None:
            raise DataError(f"{path}: no header line")
        names = [n.strip() for n in first[1]]

    def rows() -> Iterator[tuple[int, list[str]]]:
        width = len(names) if names is not None else None
        for i, fields in records:
            if width is None:
                width = len(fields)
            if len(fields) != width:
                bad(f"{path}:{i}", f"expected {width} fields, found {len(fields)}")
                continue
            yield i, fields

    return names, rows()


PARQUET_BATCH_ROWS = 4096  # rows of a Parquet table turned into Python values at a time


def table_rows(path: str, fmt: str) -> tuple[list[str], Iterator[tuple[str, list[Any]]]]:
    """A table input's header and rows, each with where it is (``file:line``, or ``file: row
    i`` for Parquet), streamed: ``fmt`` ``tsv`` or ``csv`` a row at a time (:func:`read_table`;
    a bad row stops), ``parquet`` a batch of rows at a time with pyarrow (its values keep their
    types)."""
    if path == "-":
        raise ValueError(f"--input=- is read as lines or JSON lines; a {fmt} table needs a file")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names

        def parquet_rows() -> Iterator[tuple[str, list[Any]]]:
            i = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for r in batch.to_pylist():
                    yield f"{path}: row {i}", list(r.values())
                    i += 1

        return names, parquet_rows()
    header, table = read_table(path, BadRows("error"), delimiter="\t" if fmt == "tsv" else ",",
                               quoting=fmt == "csv")  # fmt: skip
    assert header is not None
    return header, ((f"{path}:{i}", fields) for i, fields in table)


def _quoted_records(path: str, bad: BadRows, delimiter: str, encoding: str | None = None
                    ) -> Iterator[tuple[int, list[str]]]:  # fmt: skip
    """(first line, fields) of each CSV record; the csv reader pulls as many lines as a record's
    quoted fields span, and no more, so the first line pulled for a record is its line."""
    first: list[int | None] = [None]

    def texts() -> Iterator[str]:
        for i, text in read_lines(path, bad, encoding):
            if first[0] is None:
                first[0] = i
            yield text + "\n"

    reader = csv.reader(texts(), delimiter=delimiter, strict=True)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            reason = ("a quoted field opened here is never closed" if "end of data" in str(e)
                      else f"malformed CSV ({e})")  # fmt: skip
            bad(f"{path}:{first[0]}", reason)
            first[0] = None
            continue
        line, first[0] = first[0], None
        if any(x.strip() for x in fields):  # a blank line is no record
            yield line or 0, fields


def did_you_mean(name: object, choices: Sequence[object]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to a misspelt ``name``, else ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_SEPARATORS = {";": "semicolon", "\t": "tab", ",": "comma", "|": "\\|"}


def separator_hint(names: Sequence[str] | None, path: str = "") -> str:
    """For a header read as one field: which ``delimiter=`` would split it when it holds
    another separator (a semicolon-separated CSV, as spreadsheets in many locales write it);
    else, for a file whose extension names no table (read as TSV by default: CoNLL-2003's
    ``train.txt``), which option reads its layout."""
    if names is None or len(names) != 1:
        return ""
    for sep, name in _SEPARATORS.items():
        if sep in names[0]:
            return (f" (the header is one field: is the file separated by {sep!r}? "
                    f"delimiter={name} splits it)")  # fmt: skip
    if path and table_format(path) is None:
        return (
            " (the file was read as TSV, its extension naming no format: CoNLL columns "
            "need kind=tagging or format=conll, one text per line kind=lm)"
        )
    return ""


def unnamed_columns_hint(names: Sequence[str] | None, asked: Sequence[Any],
                         headerless: str = "") -> str:  # fmt: skip
    """For a header holding none of the columns a spec names (``text``, ``label`` by default):
    how to name them — a file with other column names (``review,sentiment``), or one without a
    header line whose first row was read as one (``great film,pos``); ``headerless``: how the
    reader takes such a file."""
    named = [str(c) for c in asked if isinstance(c, str)]
    if not names or len(names) < 2 or not named or any(c in names for c in named):
        return ""
    ends = (names[0], names[-1])  # shown as an example where they read as column names
    example = (f", e.g. text={ends[0]},label={ends[1]}"
               if all(_COLUMN_NAME.fullmatch(n) for n in ends) else "")  # fmt: skip
    return (f" (the header has none of the columns named, {', '.join(named)}: name its "
            f"columns{example}{headerless})")  # fmt: skip


_COLUMN_NAME = re.compile(r"[A-Za-z_][\w.-]*")


def column(names: Sequence[str] | None, col: str | int, path: str) -> int:
    """Index of column ``col`` (a header name, or a 0-based integer)."""
    if isinstance(col, int):
        return col
    if names is None:
        raise DataError(f"{path}: file has no header, so column {col!r} must be an integer")
    if col not in names:
        hint = separator_hint(names, path) or did_you_mean(col, names)
        raise DataError(f"{path}: no column {col!r}{hint} in header {names}")
    if names.count(col) > 1:  # which one the user meant cannot be told
        at = [i for i, n in enumerate(names) if n == col]
        raise DataError(f"{path}: the header names column {col!r} {len(at)} times (columns "
                        f"{', '.join(str(i) for i in at)}, 0-based); rename them apart")  # fmt: skip
    return names.index(col)


# A span tag: O, or IOB's B-/I- (BIOES's and BILOU's S-/E-/U-/L- too) before its type.
SPAN_TAG = re.compile(r"^(O|[BIESUL]-\S+)$")
# BIOES (S-ingle, E-nd) and BILOU (U-nit, L-ast) tags as IOB2: the same spans.
_TO_IOB2 = {"S": "B", "U": "B", "E": "I", "L": "I"}
NOT_IOB = ("is not O, B-<type> or I-<type> (nor BIOES's S-/E- or BILOU's U-/L-); iob=0 reads "
           "plain tags (POS, or entity types without B-/I-)")  # fmt: skip


class IOBError(ValueError):
    """A tag sequence that is not valid IOB; ``index`` is the 0-based token at fault."""

    def __init__(self, index: int, message: str):
        super().__init__(f"token {index}: {message}")
        self.index = index


def to_iob2(tags: Sequence[str], scheme: str = "auto") -> tuple[str, ...]:
    """IOB2 tags from IOB1/IOB2 ``tags`` (and, but for strict ``iob2``, BIOES/BILOU ones: a
    single ``S-X``/``U-X`` opens a span as ``B-X``, an ending ``E-X``/``L-X`` continues it as
    ``I-X``, so the spans are the same); IOBError on a malformed tag or (strict iob2) an
    ``I-X`` that does not continue an X span."""
    if scheme not in ("auto", "iob1", "iob2"):
        raise ValueError(f"scheme must be auto, iob1 or iob2, got {scheme!r}")
    out = []
    prev = "O"
    for i, tag in enumerate(tags):
        if not SPAN_TAG.match(tag) or (scheme == "iob2" and tag[0] in _TO_IOB2):
            raise IOBError(i, f"tag {tag!r} {NOT_IOB if scheme != 'iob2' else 'is not IOB2'}")
        if tag[0] in _TO_IOB2 and tag[1] == "-":
            tag = _TO_IOB2[tag[0]] + tag[1:]
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            if scheme == "iob2":
                raise IOBError(i, f"{tag} follows {prev} (invalid IOB2)")
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return tuple(out)


# The span-tag schemes a tagger's files may be written in (tasks.TAG_SCHEMES): IOB2 is what
# jaxtl trains and scores on (IOB1 files read as it); BIOES's S-/E- and BILOU's U-/L- tags are
# read as IOB2 and its predictions written back in them (from_iob2), as the tools that write
# such files read them.
_SCHEME_OF = {"S": "bioes", "E": "bioes", "U": "bilou", "L": "bilou"}


def scheme_of(tags: Iterable[str]) -> str:
    """The scheme span tags are written in: ``bioes`` where one is ``S-X``/``E-X``, else
    ``bilou`` where one is ``U-X``/``L-X`` (a file mixing the two gives back BIOES), else
    ``iob2``."""
    letters = {t[0] for t in tags if len(t) > 2 and t[1] == "-"}
    return next((_SCHEME_OF[x] for x in "SEUL" if x in letters), "iob2")


def from_iob2(tags: Sequence[str | None], scheme: str) -> list[str | None]:
    """IOB2 tags (a prediction's: an ``I-X`` that does not continue an X span opens one, as
    seqeval reads it) in ``scheme``'s letters: a one-word span ``S-X`` (BILOU ``U-X``), a longer
    one ``B-X … E-X`` (``L-X``); ``iob2`` as they are. None (a word no tag reached) stays."""
    if scheme == "iob2":
        return list(tags)
    single, last = ("S", "E") if scheme == "bioes" else ("U", "L")
    out: list[str | None] = list(tags)
    for i, tag in enumerate(tags):
        if tag is None or tag == "O":
            continue
        prev = tags[i - 1] if i else None
        opens = tag.startswith("B-") or prev is None or prev == "O" or prev[2:] != tag[2:]
        after = tags[i + 1] if i + 1 < len(tags) else None
        closes = not (after is not None and after.startswith("I-") and after[2:] == tag[2:])
        letter = (single if closes else "B") if opens else (last if closes else "I")
        out[i] = f"{letter}-{tag[2:]}"
    return out


def one_class(where: str, name: str, column: Any) -> str:
    """The warning of a classification train split whose every label is ``name``: a
    classifier of one class learns nothing (the label column may be the wrong one)."""
    return (f"{where}: every label (column {column!r}) is {name!r}: a classifier of one class "
            "learns nothing; check label= (or give label_names= with every class)")  # fmt: skip


def is_iob_set(names: Sequence[str]) -> bool:
    """Whether a tag set is IOB spans (``O``, ``B-X``, ``I-X``), scored by span F1, rather than
    plain tags (POS), scored per token."""
    return bool(names) and all(n == "O" or (n[:2] in ("B-", "I-") and len(n) > 2) for n in names)


def iob2_tag_set(names: Sequence[str]) -> tuple[str, ...] | None:
    """For a tag set of spans written BIOES or BILOU (``S-``/``E-``/``U-``/``L-`` tags among
    ``B-``/``I-`` ones), the IOB2 set of the same types (``O``, then ``B-``/``I-`` a type, in
    first-seen order): a reader converts such tags with :func:`to_iob2`. None for any other
    set (IOB2 already, or plain tags)."""
    spans = [n for n in names if n != "O"]
    if not spans or not all(SPAN_TAG.match(n) for n in spans):
        return None
    if not any(n[0] in _TO_IOB2 for n in spans):
        return None
    types = dict.fromkeys(n[2:] for n in spans)
    return ("O", *(f"{p}-{t}" for t in types for p in "BI"))


CLASS_ID = re.compile(r"-?\d+")  # a label written as its class's integer id


def label_order(values: Iterable[Any]) -> tuple[str, ...]:
    """A label set read from its data, in the order of the class ids it gets: whole numbers by
    value (``0, 1, 2, …, 10`` — as transformers' ``run_classification`` sorts an integer
    column — so labels ``0``-``n-1`` keep their own numbers as ids, in ``id2label`` and in the
    probability columns), anything else as sorted strings, so the ids are the same every run."""
    names = {str(v).strip() for v in values}
    if names and all(CLASS_ID.fullmatch(n) for n in names):
        return tuple(sorted(names, key=lambda n: (int(n), n)))
    return tuple(sorted(names))


def whole_scores(where: str, values: Iterable[Any], column: Any) -> str | None:
    """A warning when a column read as regression scores holds only a few whole numbers
    (``0.0``/``1.0``: a class column that pandas wrote as floats, as it does when a cell was
    missing), which would train a regressor on what are likely classes; None otherwise."""
    try:
        numbers = {float(v) for v in values if not is_blank(v)}
    except (TypeError, ValueError):
        return None
    if not numbers or len(numbers) > 10 or not all(x.is_integer() for x in numbers):
        return None
    shown = ", ".join(f"{x:.1f}" for x in sorted(numbers))
    return (f"{where}: every label in column {column!r} is one of {shown}, written as a float, "
            "so the task trains as regression; kind=classification reads them as "
            f"{len(numbers)} classes")  # fmt: skip


def unknown_class(value: Any, names: Iterable[str], what: str = "label") -> str:
    """The bad-row reason of a label (or tag) outside a task's classes, which are those of its
    train split unless ``label_names=`` names them (a class the train split lacks, seen first in
    dev): the ``label_names=`` that takes it too."""
    known = sorted(names)
    every = "|".join(label_order([*known, str(value)]))
    return (f"{what} {value!r} is not one of {known} (the train split's; label_names={every} "
            "names them all)")  # fmt: skip


def is_blank(value: Any) -> bool:
    """A missing cell: None (a JSON null, pandas' None) or only whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())


def names_by_id(label_names: Sequence[Any] | None) -> dict[str, str]:
    """``{"0": name0, "1": name1, ...}`` for labels and tags written as class ids (a JSON 1, a
    ``ClassLabel``'s integers as Hugging Face's ``to_json`` writes them: conll2003's ner_tags)
    when ``label_names`` are given; empty when a name is itself a number (labels then match
    names only) or none are given."""
    given = [str(x).strip() for x in label_names or ()]
    if any(CLASS_ID.fullmatch(n) for n in given):
        return {}
    return {str(i): n for i, n in enumerate(given)}


def parse_label(
    raw: str, kind: str, label_map: Mapping[str, int] | None, where: str, bad: BadRows
) -> int | float | None:
    """A class id (via ``label_map``) or a finite float; None after reporting a bad value."""
    raw = raw.strip()
    if kind == "classification":
        assert label_map is not None
        if raw not in label_map:
            bad(where, unknown_class(raw, label_map))
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


_YES, _NO = ("1", "1.0", "true", "yes"), ("0", "0.0", "false", "no")


def _flag(value: object) -> bool | None:
    """A 0/1 cell of a class column: True, False, or None for anything else (an empty cell
    included: a missing value is not read as "no")."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _YES else False if text in _NO else None


def is_multi_hot(value: object) -> TypeGuard[list]:
    """Whether a multilabel value is a 0/1 vector (a list of floats or booleans, as a one-hot
    encoder writes) rather than a list of class names or ids."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(x, (float, bool)) for x in value))  # fmt: skip


def multilabel_ids(
    raw: list, label_map: Mapping[str, int] | None, where: str, bad: BadRows, *,
    columns: Sequence[str] = (), column: str | None = None,
) -> tuple | None:  # fmt: skip
    """A multilabel row's classes, for the file and hf readers alike; None after reporting a
    bad row. ``raw`` is one of:

    - with ``columns`` (``label_columns``): the row's cells of those class columns, each 0 or 1;
      the ids are the columns holding 1;
    - a 0/1 vector (:func:`is_multi_hot`): the ids are its ones, which needs ``label_map`` for
      its length (without one — the label set being read — a DataError: a vector names no
      classes);
    - the class names: their ids in ``label_map``, each one known; without ``label_map`` (the
      label set being read) the names as given.

    ``column``: the hf reader's label column, named in its messages."""
    lead = f"column {column!r}: " if column else ""
    if columns:
        flags = [_flag(v) for v in raw]
        if None in flags:
            k = flags.index(None)
            bad(where, f"column {columns[k]!r}: {raw[k]!r} is not 0 or 1")
            return None
        return tuple(k for k, f in enumerate(flags) if f)
    if is_multi_hot(raw):
        if label_map is None:
            subject = f"column {column!r}" if column else f"labels {raw!r:.60}"
            raise DataError(f"{where}: {subject} holds a 0/1 vector, which does not name its "
                            "classes: give them with label_names=a|b|c (in the vector's order)")  # fmt: skip
        n = len(label_map)
        if len(raw) != n or any(float(x) not in (0.0, 1.0) for x in raw):
            bad(where, f"{lead}labels {raw!r:.60} are not {n} values of 0 or 1")
            return None
        return tuple(i for i, x in enumerate(raw) if float(x) == 1.0)
    if label_map is None:
        return tuple(raw)
    unknown = [x for x in raw if x not in label_map]
    if unknown:
        bad(where, lead + unknown_class(unknown[0], label_map))
        return None
    return tuple(sorted({label_map[x] for x in raw}))


NO_ID = object()
DEFAULT_ID = "id"  # the id column file: and hf: tasks look for unless told another


def id_column(names: Iterable[str] | None, column: str | int | None) -> str | int | None:
    """The id column a file's header (or first object's keys) gives: ``column``, or for the
    default ``id`` a column of that name in other case (``ID``, ``Id``, as some Kaggle test
    files name it), so its rows keep their ids rather than being numbered."""
    if column != DEFAULT_ID or names is None:
        return column
    names = list(names)
    return column if column in names else next((n for n in names if n.lower() == "id"), column)


def default_id_at(names: Sequence[str]) -> tuple[str | int | None, int | None]:
    """A table input's default id column (:func:`id_column`) and its index in ``names``, or
    (``id``, None) when it has none."""
    found = id_column(names, DEFAULT_ID)
    return found, (names.index(found) if found in names else None)


def has_id_column(present: bool, column: str | int | None, where: str) -> bool:
    """Whether rows read from ``where`` take their ids from ``column`` (``present``: the file
    or split has it). A column named by the user (not the default) that is absent is noted:
    the rows are then numbered, which a misspelt name would otherwise hide."""
    if not present and column not in (None, DEFAULT_ID):
        log.warning("%s: no id column %r: its records are numbered by row", where, column)
    return present and column is not None


def row_id(value: Any, where: str, column: str | int | None, bad: BadRows) -> Any:
    """A row's id from its ``id`` column, for the file and hf readers alike: a non-empty string
    (stripped) or an integer, kept as it is so a prediction table gives back the input's ids;
    :data:`NO_ID` after reporting a bad row (an empty cell, a missing value, a float, a list)."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    bad(where, f"id column {column!r}: {value!r:.80} is not a non-empty string or an integer")
    return NO_ID


def present_splits(
    split_paths: Mapping[str, str], what: str
) -> tuple[dict[str, str], Callable[[str], str]]:
    """The splits of ``split_paths`` whose files exist (a DataError naming ``what`` when none
    does), and a split's file (a DataError naming the splits found, for another split)."""
    present = {s: p for s, p in split_paths.items() if os.path.isfile(p)}
    if not present:
        raise DataError(f"{what}: no file found for any of the splits "
                        f"{', '.join(split_paths)} ({', '.join(split_paths.values())})")  # fmt: skip

    def path_for(split: str) -> str:
        if split not in present:
            where = split_paths.get(split, f"split {split!r}")
            raise DataError(f"{where}: file not found; splits found: {list(present)}")
        return present[split]

    return present, path_for


def split_files(folder: str, files: Mapping[str, str], task: str) -> Callable[[str], str]:
    """``path_for(split)``: the file ``files[split]`` in ``folder``, or a DataError that lists the
    splits whose files do exist there."""

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


def answers_of(value: Any, context: str) -> tuple[tuple[int, str], ...] | str:
    """The ``(answer_start, text)`` pairs of an ``answers`` value (either layout), each checked
    against ``context``; a string saying what is wrong instead."""
    if isinstance(value, dict):  # {"text": [...], "answer_start": [...]}
        texts = value.get("text")
        starts = value.get("answer_start", [None] * len(texts or []))
        if not (isinstance(texts, list) and isinstance(starts, list)) or len(texts) != len(starts):
            return "answers needs equal-length lists 'text' and 'answer_start'"
        pairs = list(zip(starts, texts))
    elif isinstance(value, list):  # [{"text", "answer_start"}]
        if not all(isinstance(a, dict) and "text" in a for a in value):
            return "each answer needs a 'text' (and an 'answer_start')"
        pairs = [(a.get("answer_start"), a["text"]) for a in value]
    else:
        return f"answers {value!r:.80} is not a list or a {{text, answer_start}} object"
    out = []
    for start, text in pairs:
        if not isinstance(text, str) or not text.strip():
            return f"answer {text!r:.60} is empty or not a string"
        if start is None:
            start = context.find(text)
            if start < 0:
                return f"answer {text!r:.60} does not occur in the context"
        if not isinstance(start, int) or isinstance(start, bool):
            return f"answer_start {start!r} is not an integer"
        found = context[start : start + len(text)]
        if found != text:
            return (f"answer {text!r:.60} is not at character {start} of the context "
                    f"(found {found!r:.60})")  # fmt: skip
        out.append((start, text))
    return tuple(out)


def qa_example(
    where: str, question: Any, context: Any, answers: Any, labelled: bool, null_answers: bool,
    bad: BadRows, rid: Any = None, fields: tuple[str, str] = ("question", "context"),
) -> Example | None:  # fmt: skip
    """A qa task's example (``text`` the question, ``text_pair`` the context as it is, so the
    answers' offsets hold; ``label`` their ``(answer_start, text)`` pairs), or None after
    reporting a bad row to ``bad``: an empty question or context, answers that are not where
    they say, or none without ``null_answers`` (the file and hf readers alike)."""
    for value, role, field in zip((question, context), ("question", "context"), fields):
        if not isinstance(value, str) or not value.strip():
            bad(where, f"the {role} ({field!r}) is empty or not a string")
            return None
    gold: Any = None
    if labelled:
        gold = answers_of(answers, context)
        if isinstance(gold, str):
            bad(where, gold)
            return None
        if not gold and not null_answers:
            bad(where, "the question has no answer; set null_answers=1 for questions the "
                       "context cannot answer (SQuAD 2.0)")  # fmt: skip
            return None
    return Example(question.strip(), context, gold, source=where, id=rid)


def qa_task_of(
    name: str, loader: Callable[[str], Loaded], splits: Sequence[str],
    fields: tuple[str, str], null_answers: bool, metrics: Sequence[str] | None,
    main_metric: str | None, files: Callable[[str], tuple[str, ...]] | None = None,
) -> Task:  # fmt: skip
    """The :class:`Task` of a qa reader (file or hf): SQuAD's metrics unless told others, with
    SQuAD 2.0's breakdown by answerability where questions may have no answer."""
    defaults = DEFAULT_METRICS["qa"][0]
    if null_answers:
        defaults += ("has_answer_exact", "has_answer_f1", "no_answer_exact")
    mets, main = chosen_metrics("qa", metrics, main_metric, defaults)
    return Task(
        name=name,
        kind="qa",
        loader=loader,
        splits=tuple(splits),
        text_fields=fields,
        metrics=mets,
        main_metric=main,
        null_answers=bool(null_answers),
        files=files,
    )
