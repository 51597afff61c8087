"""Prediction records: what a model says about each input row, in input order.

One JSON object per row: ``id`` (the row's index in its split), ``text`` (and ``text_pair``),
then by task kind — classification: ``label`` (the class name) and ``probs`` (class
probabilities, in the order of the task's label names, i.e. ``id2label``); regression: ``score``;
tagging: ``words`` and ``tags`` (one per input word; null for a word cut off by
``data.max_length``); translation: ``translation`` (the decoded output, greedy or beam as the
decoder is configured). Rows of a labelled split also carry ``gold`` (for translation, the
reference). The run writes them to
``<workdir>/predictions/<task>/<split>.jsonl``; ``python launch.py --predict`` writes the same
lines for any input file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from jaxtl import fileio
from jaxtl.data import batching
from jaxtl.metrics import real_rows

KINDS = ("classification", "regression", "tagging", "translation")


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
    if len(order) != len(examples):
        raise ValueError(f"{task.name}: {len(order)} encoded rows for {len(examples)} examples")
    names = list(task.label_names)
    out: list[dict[str, Any]] = [{} for _ in examples]
    if task.kind == "classification":
        probs = _per_row(batches, outputs, "pred_probs")
        for i, p in zip(order, probs):
            p = [float(x) for x in p[: len(names)]]
            out[i] = {"label": names[int(np.argmax(p))], "probs": p}
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
            out[i] = {"tags": word_tags(encoded.word_ids[i], pred, names, _words(examples[i]))}
    for i, ex in enumerate(examples):
        head: dict[str, Any] = {"id": i, "text": ex.text}
        if ex.text_pair is not None:
            head["text_pair"] = ex.text_pair
        if task.kind == "tagging":
            head["words"] = _words(ex)
        if labelled and task.kind == "translation" and ex.target is not None:
            head["gold"] = ex.target
        elif labelled and ex.label is not None:
            gold = ex.label
            head["gold"] = (names[gold] if task.kind == "classification" else
                            list(gold) if task.kind == "tagging" else float(gold))  # fmt: skip
        out[i] = head | out[i]
    return out


def _words(ex: Any) -> list[str]:
    return list(ex.words or ex.text.split())


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
    """One JSON object per line, written whole to a temporary file and renamed into place."""
    fileio.write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
