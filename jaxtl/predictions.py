"""Prediction records: what a model says about each input row, in input order.

One JSON object per row: ``id`` (the row's own id where its input has an ``id`` column, as a
``file:``/``hf:`` task reads it; else its index in its split), ``text`` (and ``text_pair``),
then by task kind — classification: ``label`` (the class name) and ``probs`` (class
probabilities, in the order of the task's label names, i.e. ``id2label``); multilabel:
``labels`` (the names of the classes whose probability exceeds the task's threshold,
``train.multilabel_threshold``, 0.5 by default, or its class's own under
``train.tune_thresholds``, in label order) and
``probs`` (each class's own probability); regression: ``score``;
tagging: ``words`` and ``tags`` (one per input word; a text longer than ``data.max_length``
tokens is tagged in overlapping windows, :func:`merge_windows`, so a tag is null only for a word
with no sub-token of its own); translation: ``translation`` (the decoded output, greedy or beam
as the decoder is configured); qa: ``answer`` (the context's text of the best span over the
question's windows, or "" when the task takes ``null_answers`` and "no answer" scores higher:
:func:`qa_answers`), ``answer_start`` (its first character in the context, null for no
answer), ``score`` (the span's start + end logit) and, for a task with ``null_answers``,
``null_score`` ("no answer"'s, the lowest of the question's windows). Rows of a labelled split also carry
``gold`` (for translation, the reference; for qa, the answers' texts). The run writes them to
``<workdir>/predictions/<task>/<split>.jsonl``; ``python launch.py --predict`` writes the same
records for any input file, as JSON lines or, by the output's extension, as one JSON array
(``.json``) or a table (:func:`open_writer`): ``.tsv``/``.csv`` flatten a record to one row — ``probs`` become one
``prob_<label>`` column per class, a multilabel record's ``labels`` (and ``gold``) one
comma-separated cell, a list of words or tags one space-separated cell (a tag
cut off by ``data.max_length`` is ``_``, CoNLL's empty field; a qa record's ``gold`` answers a
JSON list, as they may hold commas), and a tagging row drops ``text``,
which its ``words`` repeat, so a tagger's table reads back as a ``tokens<TAB>tags`` tagging
table; ``.parquet`` keeps each record as it is, lists included. A qa task's answers can also
be written as SQuAD's prediction file (``squad``: one JSON object, question id → answer
text), which the official SQuAD v1.1 / v2.0 evaluation scripts and its leaderboard read, and a
tagger's as CoNLL (``conll``, ``.conll``): a line per word — the word, its gold tag when the
input had one, the predicted tag, as the conlleval script reads them — and a blank line after
each text, so predictions on a tagged file read back as a CoNLL file; a tagger trained on
CoNLL-U files (Universal Dependencies) writes CoNLL-U (``conllu``, ``.conllu``): each text's
``# sent_id`` and ``# text`` comments, then ten tab-separated columns a word, the predicted tag
in the column the task was trained on (UPOS, or XPOS for ``tag_column=4``) and ``_`` in the
columns jaxtl does not predict (lemma, features, head, relation), as a tag-only UDPipe run
writes them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np
from etils import epath

from jaxtl import fileio, thresholds
from jaxtl.data import batching
from jaxtl.data.io import from_iob2
from jaxtl.metrics import real_rows

KINDS = ("classification", "multilabel", "regression", "tagging", "translation", "qa")


def _per_row(batches: Sequence[Mapping], outputs: Sequence[Mapping], key: str) -> list:
    """The output ``key`` of every real row, in batch order (rows of differently bucketed
    batches differ in length, so they are listed, not concatenated)."""
    return [row for arr in real_rows(batches, outputs, key, "out") for row in arr]


def records(
    task: Any,
    examples: Sequence[Any],
    encoded: Any,
    buckets: Sequence[int],
    outputs: Sequence[Mapping],
    batches: Sequence[Mapping],
    *,
    labelled: bool,
    detokenize: Any = None,
) -> list[dict[str, Any]]:
    """The prediction record of every example (see the module docstring), in input order.
    ``detokenize``: decoded token rows -> texts (a translation task's, ``TaskData.detokenize``)."""
    if task.kind not in KINDS:
        raise ValueError(f"task {task.name!r}: no prediction records for kind {task.kind!r}")
    if task.kind == "translation" and detokenize is None:
        raise ValueError(f"task {task.name!r}: translation records need a detokenizer")
    if batches and "example_index" in batches[0]:  # packed: each slot names its example
        order = np.concatenate(real_rows(batches, batches, "example_index", "batch"))
    else:
        order = batching.eval_order(encoded, buckets=buckets)  # example of each output row
    if task.kind == "qa":  # rows are windows of the examples' contexts
        answers = qa_answers(task, examples, encoded, order, batches, outputs)
        return [_head(task, ex, i, labelled) | answers[i] for i, ex in enumerate(examples)]
    if len(order) != len(examples):
        raise ValueError(f"{task.name}: {len(order)} encoded rows for {len(examples)} examples")
    names = list(task.label_names)
    out: list[dict[str, Any]] = [{} for _ in examples]
    if task.kind == "classification":
        probs = _per_row(batches, outputs, "pred_probs")
        for i, p in zip(order, probs):
            p = [float(x) for x in p[: len(names)]]
            out[i] = {"label": names[int(np.argmax(p))], "probs": p}
    elif task.kind == "multilabel":
        cut = thresholds.per_class(task)
        for i, p in zip(order, _per_row(batches, outputs, "pred_probs")):
            p = [float(x) for x in p[: len(names)]]
            out[i] = {"labels": [n for n, x, t in zip(names, p, cut) if x > t], "probs": p}
    elif task.kind == "regression":
        for i, sc in zip(order, _per_row(batches, outputs, "pred_score")):
            out[i] = {"score": float(sc)}
    elif task.kind == "translation":
        hyps = [h for rows in real_rows(batches, outputs, "pred_tokens", "out")
                for h in detokenize(rows)]  # fmt: skip
        for i, hyp in zip(order, hyps):
            out[i] = {"translation": hyp}
    else:
        preds = _per_row(batches, outputs, "pred_tokens")
        for i, pred in zip(order, preds):
            out[i] = {"tags": word_tags(encoded.word_ids[i], pred, names, words_of(examples[i]))}
    return [_head(task, ex, i, labelled) | out[i] for i, ex in enumerate(examples)]


def _head(task: Any, ex: Any, i: int, labelled: bool) -> dict[str, Any]:
    """A record's first fields: ``id``, the input's text(s) and, when labelled, ``gold``."""
    names = list(task.label_names)
    head: dict[str, Any] = {"id": record_id(ex, i), "text": ex.text}
    if ex.text_pair is not None:
        head["text_pair"] = ex.text_pair
    if task.kind == "tagging":
        head["words"] = words_of(ex)
    if labelled and task.kind == "translation" and ex.target is not None:
        head["gold"] = ex.target
    elif labelled and ex.label is not None:
        gold = ex.label
        head["gold"] = (names[gold] if task.kind == "classification" else
                        [names[c] for c in gold] if task.kind == "multilabel" else
                        list(gold) if task.kind == "tagging" else
                        [text for _, text in gold] if task.kind == "qa" else
                        float(gold))  # fmt: skip
    return head


def qa_answers(
    task: Any, examples: Sequence[Any], encoded: Any, order: np.ndarray,
    batches: Sequence[Mapping], outputs: Sequence[Mapping],
) -> list[dict[str, Any]]:  # fmt: skip
    """Each question's answer from its windows' best spans (``pred_span``, scored by
    ``pred_span_score``: :func:`jaxtl.losses.best_spans`): the best-scoring span of any window,
    as transformers' question-answering pipeline and ``run_qa`` decide; with
    ``task.null_answers``, "" when the lowest "no answer" score of its windows beats it by more
    than ``task.null_threshold`` (SQuAD 2.0's rule; ``run_qa``'s ``null_score_diff_threshold``,
    0 by default)."""
    if len(order) != len(encoded):
        raise ValueError(f"{task.name}: {len(order)} output rows for {len(encoded)} windows")
    spans = _per_row(batches, outputs, "pred_span")
    scores = _per_row(batches, outputs, "pred_span_score")
    best: list[tuple[float, int, int, int]] = [(-np.inf, -1, 0, 0)] * len(examples)
    null = [np.inf] * len(examples)
    for f, (s, e), (score, null_score) in zip(order, spans, scores):
        i = int(encoded.example_of[f])
        null[i] = min(null[i], float(null_score))
        if float(score) > best[i][0]:
            best[i] = (float(score), int(f), int(s), int(e))
    out = []
    for i, ex in enumerate(examples):
        score, f, s, e = best[i]
        # "no answer"'s own score, where it is a prediction: what a threshold is tuned on
        extra: dict[str, Any] = {"null_score": float(null[i])} if task.null_answers else {}
        if f < 0 or (task.null_answers and null[i] - score > task.null_threshold):
            out.append({"answer": "", "answer_start": None, "score": float(null[i])} | extra)
            continue
        chars = encoded.char_spans[f]
        start, end = int(chars[s][0]), int(chars[e][1])
        out.append({"answer": (ex.text_pair or "")[start:end], "answer_start": start,
                    "score": score} | extra)  # fmt: skip
    return out


def record_id(ex: Any, i: int) -> Any:
    """A record's ``id``: the example's own (its input's id column), else its row index."""
    return i if ex.id is None else ex.id


def words_of(ex: Any) -> list[str]:
    """A tagging example's words: its own, else its text split on whitespace."""
    return list(ex.words or ex.text.split())


def in_scheme(record: Mapping[str, Any], scheme: str) -> Mapping[str, Any]:
    """A tagger's record with its ``tags`` and ``gold`` in the scheme its task's files wrote
    them in (``Task.tag_scheme``: BIOES, BILOU; :func:`jaxtl.data.io.from_iob2`), as written
    to a file or returned by ``jaxtl.load(W).predict``; scoring reads the IOB2 record."""
    if scheme == "iob2" or "tags" not in record:
        return record
    out = dict(record)
    out["tags"] = from_iob2(record["tags"], scheme)
    if isinstance(record.get("gold"), list):
        out["gold"] = from_iob2(record["gold"], scheme)
    return out


def word_tags(
    word_ids: np.ndarray, pred: np.ndarray, names: Sequence[str], words: Sequence[str]
) -> list[str | None]:
    """One predicted tag per word: the prediction at the word's first sub-token."""
    wid = np.asarray(word_ids)
    tags: list[str | None] = [None] * len(words)
    first = (wid >= 0) & (wid != np.concatenate([[-1], wid[:-1]]))
    for pos in np.flatnonzero(first):
        if pos < len(pred):
            tags[int(wid[pos])] = names[int(np.clip(pred[pos], 0, len(names) - 1))]
    return tags


def long_texts(
    examples: Sequence[Any], lengths: np.ndarray, tokenizer: Any, max_length: int
) -> list[tuple[int, list[tuple[int, int]]]]:
    """The tagging examples longer than ``max_length`` tokens, as (index, word windows from
    :func:`jaxtl.data.tokenize.word_windows`). Only a text whose encoding (``lengths``, with the
    specials) filled ``max_length`` can be, so only those are tokenised again."""
    from jaxtl.data import tokenize

    filled = [int(i) for i in np.flatnonzero(np.asarray(lengths) >= max_length)]
    if not filled:
        return []
    spans = tokenize.word_windows([words_of(examples[i]) for i in filled], tokenizer, max_length)
    return [(i, s) for i, s in zip(filled, spans, strict=True) if len(s) > 1]


def window_parts(examples: Sequence[Any], windows: Sequence[Sequence[tuple[int, int]]]) -> list:
    """One example per word window of each tagging example (``windows`` from
    :func:`jaxtl.data.tokenize.word_windows`), in order: its words, text and (when labelled)
    tags cut to the window, so each part fits ``data.max_length``."""
    parts = []
    for ex, spans in zip(examples, windows, strict=True):
        words = words_of(ex)
        for a, b in spans:
            label = None if ex.label is None else tuple(ex.label)[a:b]
            parts.append(dataclasses.replace(ex, text=" ".join(words[a:b]),
                                             words=tuple(words[a:b]), label=label))  # fmt: skip
    return parts


def retag_long_texts(
    rows: list[dict], examples: Sequence[Any], long: Sequence[tuple[int, Sequence]],
    predict_parts: Any,
) -> None:  # fmt: skip
    """Give each long text of ``long`` (:func:`long_texts`) the tags of its word windows, in
    its record of ``rows`` (tagging records of ``examples``, in place): ``predict_parts`` maps
    the window parts (:func:`window_parts`) to their tagging records."""
    windows = [s for _, s in long]
    part_rows = predict_parts(window_parts([examples[i] for i, _ in long], windows))
    merged = merge_windows(windows, [r["tags"] for r in part_rows])
    for (i, _), tags in zip(long, merged, strict=True):
        rows[i] = rows[i] | {"tags": tags}


def merge_windows(
    windows: Sequence[Sequence[tuple[int, int]]], window_tags: Sequence[Sequence[str | None]]
) -> list[list[str | None]]:
    """One tag per word of each example from its windows' tags (``window_tags`` in the order
    of ``windows``, flattened; see :func:`jaxtl.data.tokenize.word_windows`): each word takes
    the tag of the window where it lies farthest from an edge, so it was read with context on
    both sides."""
    merged, k = [], 0
    for spans in windows:
        n = spans[-1][1] if spans else 0
        tags: list[str | None] = [None] * n
        margin = [-1] * n
        for start, end in spans:
            for w, tag in zip(range(start, end), window_tags[k]):
                m = min(w - start, end - 1 - w)
                if m > margin[w]:
                    tags[w], margin[w] = tag, m
            k += 1
        merged.append(tags)
    return merged


def write_jsonl(path: str | epath.Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One JSON object per line, written whole (:func:`open_writer`)."""
    with open_writer(path, "jsonl") as writer:
        for r in rows:
            writer.write(r)


OUTPUT_FORMATS = ("jsonl", "json", "tsv", "csv", "parquet", "squad", "conll", "conllu")
_BY_EXTENSION = {".tsv": "tsv", ".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl",
                 ".json": "json", ".conll": "conll", ".conllu": "conllu"}  # fmt: skip
# CoNLL-U's ten columns (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC); a tagger's tags go
# in UPOS (3) or XPOS (4).
CONLLU_COLUMNS = 10
CONLLU_TAG_COLUMNS = (3, 4)
# Records per Parquet row group: a stream of any length is written with bounded memory.
_PARQUET_ROWS = 8192


def output_format(dest: str, given: str = "auto") -> str:
    """The format records are written to ``dest`` in: ``given``, or with ``"auto"`` the one its
    extension names (``.tsv``, ``.csv``, ``.parquet``, ``.json`` — one JSON array —,
    ``.conll``, ``.conllu``), else JSON lines (stdout included)."""
    if given != "auto":
        if given not in OUTPUT_FORMATS:
            raise ValueError(
                f"--output_format={given}: expected auto or one of {', '.join(OUTPUT_FORMATS)}"
            )
        if given == "parquet" and dest == "-":
            raise ValueError("--output_format=parquet cannot go to stdout; give --output=FILE")
        return given
    return "jsonl" if dest == "-" else _BY_EXTENSION.get(epath.Path(dest).suffix.lower(), "jsonl")


def table_cells(record: Mapping[str, Any], label_names: Sequence[str]) -> dict[str, Any]:
    """A record as one table row (see the module docstring): ``probs`` spread over
    ``prob_<label>`` columns, lists joined by spaces, a tagging row's ``text`` left out."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key == "text" and "words" in record:
            continue
        if key == "probs":
            row |= {f"prob_{name}": p for name, p in zip(label_names, value)}
        elif isinstance(value, list) and "answer" in record:
            # a qa record's gold answers, which may hold commas and spaces: a JSON list
            row[key] = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, list):
            # a multilabel record's classes as its files give them ("joy,surprise"); words
            # and tags as a tagging table does
            sep = "," if "labels" in record and key in ("labels", "gold") else " "
            row[key] = sep.join("_" if v is None else str(v) for v in value)
        else:
            row[key] = value
    return row


class _TableWriter:
    """Rows of a TSV/CSV file, its header from the first record's columns."""

    def __init__(self, f: IO[str], delimiter: str, label_names: Sequence[str]):
        self.f, self.delimiter, self.label_names = f, delimiter, label_names
        self.writer: csv.DictWriter | None = None

    def write(self, record: Mapping[str, Any]) -> None:
        row = table_cells(record, self.label_names)
        if self.writer is None:
            # A later record's key the first lacked (a gold label on some rows only) has no
            # column; a column a record lacks is left empty.
            self.writer = csv.DictWriter(self.f, fieldnames=list(row), delimiter=self.delimiter,
                                         lineterminator="\n", extrasaction="ignore")  # fmt: skip
            self.writer.writeheader()
        self.writer.writerow(row)

    def close(self) -> None:
        pass


class _JsonlWriter:
    def __init__(self, f: IO[str]):
        self.f = f

    def write(self, record: Mapping[str, Any]) -> None:
        self.f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        pass


class _JsonArrayWriter:
    """Records as one JSON array, an object a line (``.json``: a JSON document, which
    ``json.load`` and ``pandas.read_json`` read, and jaxtl's and ``datasets``' readers too)."""

    def __init__(self, f: IO[str]):
        self.f, self.first = f, True

    def write(self, record: Mapping[str, Any]) -> None:
        self.f.write(("[\n" if self.first else ",\n") + json.dumps(record, ensure_ascii=False))
        self.first = False

    def close(self) -> None:
        self.f.write("[]\n" if self.first else "\n]\n")


class _ParquetWriter:
    """Records as Parquet rows, a row group per :data:`_PARQUET_ROWS`; the schema is the first
    group's (pyarrow's inference), later groups are cast to it."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.rows: list[Mapping[str, Any]] = []
        self.writer: Any = None

    def write(self, record: Mapping[str, Any]) -> None:
        self.rows.append(record)
        if len(self.rows) >= _PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        schema = None if self.writer is None else self.writer.schema
        table = pa.Table.from_pylist(self.rows, schema=schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.f, table.schema)
        self.writer.write_table(table)
        self.rows = []

    def close(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()


class _SquadWriter:
    """SQuAD's prediction file: one JSON object mapping each question's id to its answer
    ("" for no answer, as the v2.0 script reads it), written whole at the end."""

    def __init__(self, f: IO[str]):
        self.f = f
        self.answers: dict[str, str] = {}

    def write(self, record: Mapping[str, Any]) -> None:
        if "answer" not in record:
            raise ValueError("the squad output format holds a qa task's answers; this record "
                             f"has none (keys {sorted(record)})")  # fmt: skip
        rid = str(record["id"])
        if rid in self.answers:
            raise ValueError(f"id {rid!r} appears twice: SQuAD's prediction file maps each "
                             "question id to one answer")  # fmt: skip
        self.answers[rid] = str(record["answer"])

    def close(self) -> None:
        json.dump(self.answers, self.f, ensure_ascii=False, indent=1)
        self.f.write("\n")


class _ConllWriter:
    """A tagger's records as CoNLL lines: ``word [gold] tag`` per word, a blank line after each
    text (a tag cut off by ``data.max_length`` is ``_``)."""

    def __init__(self, f: IO[str]):
        self.f = f

    def write(self, record: Mapping[str, Any]) -> None:
        if "tags" not in record:
            raise ValueError("the conll output format holds a tagging task's tags; this record "
                             f"has none (keys {sorted(record)})")  # fmt: skip
        gold = record.get("gold")
        for k, (word, tag) in enumerate(zip(record["words"], record["tags"])):
            cells = [word, *([gold[k]] if gold is not None else []), "_" if tag is None else tag]
            self.f.write(" ".join(str(c) for c in cells) + "\n")
        self.f.write("\n")

    def close(self) -> None:
        pass


class _ConlluWriter:
    """A tagger's records as CoNLL-U: ``# sent_id``/``# text`` comments, then a line of ten
    tab-separated columns per word, the tag in column ``tag_column`` and ``_`` elsewhere."""

    def __init__(self, f: IO[str], tag_column: int):
        if tag_column not in CONLLU_TAG_COLUMNS:
            raise ValueError(f"CoNLL-U holds a tagger's tags in UPOS (3) or XPOS (4), not "
                             f"column {tag_column}")  # fmt: skip
        self.f, self.tag_column = f, tag_column

    def write(self, record: Mapping[str, Any]) -> None:
        if "tags" not in record:
            raise ValueError("the conllu output format holds a tagging task's tags; this "
                             f"record has none (keys {sorted(record)})")  # fmt: skip
        # A comment's value ends at its line: a line break inside would start a token line.
        self.f.write(f"# sent_id = {' '.join(str(record['id']).split())}\n")
        self.f.write(f"# text = {' '.join(str(record.get('text', '')).split())}\n")
        for k, (word, tag) in enumerate(zip(record["words"], record["tags"]), start=1):
            cells = [str(k), str(word)] + ["_"] * (CONLLU_COLUMNS - 2)
            cells[self.tag_column] = "_" if tag is None else str(tag)
            self.f.write("\t".join(cells) + "\n")
        self.f.write("\n")

    def close(self) -> None:
        pass


def check_format(task: Any, fmt: str, conllu_column: int | None = None) -> None:
    """Refuse, in one line and before any model runs, a format the task's records do not
    fit (SQuAD's prediction file holds answers only, CoNLL a tagger's tags, CoNLL-U the tags
    of a tagger trained on CoNLL-U: ``conllu_column``, its tag column, None for another)."""
    if fmt == "squad" and task.kind != "qa":
        raise ValueError(f"--output_format=squad writes a qa task's answers (SQuAD's prediction "
                         f"file); task {task.name!r} is {task.kind}")  # fmt: skip
    if fmt == "conll" and task.kind != "tagging":
        raise ValueError(f"--output_format=conll writes a tagging task's tags, a word per line; "
                         f"task {task.name!r} is {task.kind}")  # fmt: skip
    if fmt == "conllu" and (task.kind != "tagging" or conllu_column is None):
        what = (f"is {task.kind}" if task.kind != "tagging"
                else "was not trained on CoNLL-U files, so its tags have no CoNLL-U column")  # fmt: skip
        raise ValueError(f"--output_format=conllu writes the tags of a tagger trained on "
                         f"CoNLL-U (UPOS or XPOS); task {task.name!r} {what}; .conll writes "
                         "a tagger's word [gold] tag lines")  # fmt: skip


@contextlib.contextmanager
def open_writer(dest: str | epath.Path, fmt: str, label_names: Sequence[str] = (),
                conllu_column: int = 3) -> Iterator[Any]:  # fmt: skip
    """A writer of prediction records to ``dest`` (``"-"``: stdout) in ``fmt``, one of
    :data:`OUTPUT_FORMATS` (:func:`output_format`): ``writer.write(record)`` per record, in
    order. A file appears whole when the block ends without error, never half-written
    (:func:`jaxtl.fileio.open_atomic`). ``label_names``: a classification task's, naming the
    ``prob_<label>`` columns of a table; ``conllu_column``: the CoNLL-U column a tagger's tags
    go in (3, UPOS; 4, XPOS)."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {OUTPUT_FORMATS}")
    binary = fmt == "parquet"
    if os.fspath(dest) == "-":
        if binary:
            raise ValueError("Parquet output cannot go to stdout; give a file")
        opened: Any = contextlib.nullcontext(sys.stdout)
    else:
        opened = fileio.open_atomic(dest, binary=binary)
    with opened as f:
        writer: Any = (
            _ParquetWriter(f) if binary
            else _JsonlWriter(f) if fmt == "jsonl"
            else _JsonArrayWriter(f) if fmt == "json"
            else _SquadWriter(f) if fmt == "squad"
            else _ConllWriter(f) if fmt == "conll"
            else _ConlluWriter(f, conllu_column) if fmt == "conllu"
            else _TableWriter(f, "\t" if fmt == "tsv" else ",", label_names)
        )  # fmt: skip
        yield writer
        writer.close()
