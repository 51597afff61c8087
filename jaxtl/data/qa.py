"""Extractive question answering (SQuAD): the user's own files, as a ``file:`` spec with ``kind=qa``::

    file:name=myqa,path=qa/{split}.json,kind=qa[,null_answers=1][,question=Q,context=C,...]

Two layouts, told apart by the file itself:

- **SQuAD's own JSON** (``train-v1.1.json``, ``dev-v2.0.json``): one object whose ``data`` list
  holds articles, each with ``paragraphs`` of ``context`` and ``qas`` (``id``, ``question``,
  ``answers`` as ``[{"text", "answer_start"}]``, and in 2.0 ``is_impossible``);
- **JSON lines**, one question per line, as the Hugging Face ``squad`` dataset writes itself
  (``Dataset.to_json``): ``id``, ``question``, ``context``, ``answers`` either
  ``{"text": [...], "answer_start": [...]}`` or a list of ``{"text", "answer_start"}`` objects.
  An answer without ``answer_start`` is looked up: its first occurrence in the context.

Each answer is checked against its context (the text at ``answer_start`` must be the answer),
so an offset that drifted (a context cleaned after it was annotated) is a bad row naming it,
not a silently wrong label. A question without answers is one the context cannot answer
(SQuAD 2.0): allowed with ``null_answers=1``, which also lets the model predict "no answer"
(the empty string); without it, the best span is always the prediction (SQuAD 1.1). A split
whose file has no answers at all (no ``answers`` key anywhere) is unlabelled, for prediction.

Options: ``question`` / ``context`` / ``answers`` / ``id`` name the fields (defaults as above),
``metrics`` / ``main_metric`` (``exact_match``, ``f1``: SQuAD's), ``on_bad_row`` = error | skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jaxtl.data.io import (
    DEFAULT_ID,
    NO_ID,
    did_you_mean,
    qa_example,
    qa_task_of,
    read_json_objects,
    row_id,
    spec_split_paths,
)
from jaxtl.data.tasks import BadRows, DataError, Loaded, Task, register


def _squad_json(path: str) -> dict[str, Any] | None:
    """SQuAD's nested JSON, or None when ``path`` is JSON lines (its first object is not all of
    the file: told from the file's first 64 KiB, so a large JSON-lines file is not read whole
    to find out)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16).decode("utf-8-sig", errors="replace").lstrip()
    if not head.startswith("{"):
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(head)
        if head[end:].strip():
            return None  # a second object follows the first: JSON lines
    except json.JSONDecodeError:
        pass  # the first object runs past the head: one large document, or bad JSON
    try:
        with open(path, encoding="utf-8-sig") as f:
            whole = json.load(f)
    except json.JSONDecodeError:
        return None  # JSON lines: one object per line is not one JSON document
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    if isinstance(whole, dict) and "data" in whole:
        return whole
    return None


def _flatten(path: str, whole: Mapping[str, Any], fields: Mapping[str, str],
             bad: BadRows) -> Iterator[tuple[str, dict[str, Any]]]:  # fmt: skip
    """(where, a flat record) per question of SQuAD's nested JSON; ``where`` names it by its
    article, paragraph and question numbers (the file has no lines to cite)."""
    data = whole["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: 'data' is a {type(data).__name__}, not a list of articles")
    for a, article in enumerate(data):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            bad(f"{path}: data[{a}]", "an article needs a 'paragraphs' list")
            continue
        for p, para in enumerate(paragraphs):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                bad(where, "a paragraph needs 'context' and a 'qas' list")
                continue
            for q, qa in enumerate(para["qas"]):
                if not isinstance(qa, dict):
                    bad(f"{where}.qas[{q}]", "a question is not a JSON object")
                    continue
                rec = dict(qa)
                rec[fields["context"]] = para.get("context")
                if qa.get("is_impossible"):
                    rec[fields["answers"]] = []
                yield f"{where}.qas[{q}]", rec


@register("qa")
def qa_task(
    data_dir: str | None = None,
    *,
    path: str | None = None,
    paths: Mapping[str, str] | None = None,
    kind: str = "qa",
    question: str = "question",
    context: str = "context",
    answers: str = "answers",
    id: str | None = DEFAULT_ID,
    null_answers: bool = False,
    name: str = "qa",
    metrics: Sequence[str] | None = None,
    main_metric: str | None = None,
    on_bad_row: str = "error",
) -> Task:
    """An extractive QA task read from SQuAD JSON or JSON lines (see the module docstring)."""
    if kind != "qa":
        raise ValueError(f"qa task: kind must be 'qa', got {kind!r}")
    split_paths = spec_split_paths(data_dir, path, paths, "qa")
    fields = {"question": question, "context": context, "answers": answers}

    def read(split: str) -> Loaded:
        if split not in split_paths:
            raise DataError(f"task {name!r} has no split {split!r}; splits: {list(split_paths)}")
        p = split_paths[split]
        if not os.path.isfile(p):
            found = [s for s, q in split_paths.items() if os.path.isfile(q)]
            raise DataError(f"{p}: file not found for split {split!r}; splits found: {found}")
        bad = BadRows(on_bad_row)
        whole = _squad_json(p)
        records = list(
            _flatten(p, whole, fields, bad)
            if whole is not None
            else ((f"{p}:{i}", rec) for i, rec in read_json_objects(p, bad))
        )
        if not records:
            raise DataError(f"{p}: no questions" + (f" (first bad: {bad.reasons[0]})"
                                                    if bad.reasons else ""))  # fmt: skip
        labelled = any(answers in rec for _, rec in records)
        if not labelled and split == "train":
            keys = sorted(records[0][1])
            raise DataError(f"{p}: no {answers!r} field{did_you_mean(answers, keys)} in any "
                            f"question (keys: {keys}); the train split needs answers")  # fmt: skip
        out = []
        for where, rec in records:
            missing = [f for f in (question, context) if f not in rec]
            if missing:
                bad(where, f"missing field {missing[0]!r}{did_you_mean(missing[0], list(rec))}")
                continue
            if labelled and answers not in rec:
                bad(where, f"missing field {answers!r} (other questions of the file have it)")
                continue
            rid = None
            if id is not None and id in rec:
                rid = row_id(rec[id], where, id, bad)
                if rid is NO_ID:
                    continue
            ex = qa_example(where, rec[question], rec[context], rec.get(answers), labelled,
                            null_answers, bad, rid, (question, context))  # fmt: skip
            if ex is not None:
                out.append(ex)
        if not out:
            raise DataError(f"{p}: no examples: all {len(bad.reasons)} questions are bad "
                            f"(first: {bad.reasons[0] if bad.reasons else '?'})")  # fmt: skip
        return bad.result(out, p)

    return qa_task_of(name, read, tuple(split_paths), (question, context), null_answers,
                      metrics, main_metric, files=lambda split: (split_paths[split],))  # fmt: skip
