"""The GLUE tasks (``sst2 cola mrpc qqp rte qnli stsb mnli wnli``, also ``glue/<name>``,
``sst-2``, ``sts-b``), read from the TSV files of the GLUE distribution under
``<data_dir>/<TASK-DIR>/`` (the layout of GLUE's ``download_glue_data.py``).

TSV is split on tabs with no quoting (GLUE sentences contain bare quotes). Each row must have the
header's field count and a label of the task's raw spellings (an STS-B score in [0, 5]); any other
row is a bad row (see :mod:`jaxtl.data.tasks`).

A task's ``test`` split exists when its folder holds GLUE's unlabelled ``test.tsv`` (MNLI:
``test_matched.tsv``, and ``test_mismatched.tsv`` as ``test_mismatched``; MNLI's ``ax`` split is
the diagnostic set, ``<data_dir>/diagnostic/diagnostic.tsv``): a run then predicts it, and
:mod:`jaxtl.submission` turns those predictions into the leaderboard's files. A file with GLUE's
``index`` column (QQP: ``id``) gives each example that id. A split other than train may lack the
label column (read unlabelled, as the test files are). ``paths={split: file}`` reads other files
in the task's format instead of the folder's (``--predict`` on a GLUE file).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jaxtl.data.io import (
    NO_ID,
    column,
    parse_label,
    read_lines,
    read_table,
    resolve,
    row_id,
    split_files,
)
from jaxtl.data.tasks import (
    BadRows,
    DataError,
    Example,
    Task,
    register,
    streamed_reader,
)

GLUE: dict[str, dict[str, Any]] = {
    # dir, header?, text columns, label column, label names and their raw spellings, split files,
    # and the leaderboard file each test split's predictions go to
    "sst2": dict(dir="SST-2", text=("sentence",), label="label", raw=("0", "1"),
                 names=("negative", "positive"), metrics=("accuracy",),
                 submission={"test": "SST-2.tsv"}),
    # CoLA's train and dev files have no header (source, label, original label, sentence); its
    # test file has one (index, sentence)
    "cola": dict(dir="CoLA", header=False, width=4, text=(3,), named_text=("sentence",), label=1,
                 raw=("0", "1"), names=("unacceptable", "acceptable"),
                 metrics=("matthews", "accuracy"), submission={"test": "CoLA.tsv"}),
    "mrpc": dict(dir="MRPC", text=("#1 String", "#2 String"), label="Quality", raw=("0", "1"),
                 names=("not_equivalent", "equivalent"), metrics=("f1", "accuracy"),
                 submission={"test": "MRPC.tsv"}),
    "qqp": dict(dir="QQP", text=("question1", "question2"), label="is_duplicate",
                raw=("0", "1"), names=("not_duplicate", "duplicate"), metrics=("f1", "accuracy"),
                submission={"test": "QQP.tsv"}),
    "rte": dict(dir="RTE", text=("sentence1", "sentence2"), label="label",
                raw=("entailment", "not_entailment"), metrics=("accuracy",),
                submission={"test": "RTE.tsv"}),
    "qnli": dict(dir="QNLI", text=("question", "sentence"), label="label",
                 raw=("entailment", "not_entailment"), metrics=("accuracy",),
                 submission={"test": "QNLI.tsv"}),
    "stsb": dict(dir="STS-B", text=("sentence1", "sentence2"), label="score", kind="regression",
                 metrics=("pearson", "spearman"), submission={"test": "STS-B.tsv"}),
    "mnli": dict(dir="MNLI", text=("sentence1", "sentence2"), label="gold_label",
                 raw=("entailment", "neutral", "contradiction"), metrics=("accuracy",),
                 files={"train": "train.tsv", "dev": "dev_matched.tsv",
                        "dev_mismatched": "dev_mismatched.tsv", "test": "test_matched.tsv",
                        "test_mismatched": "test_mismatched.tsv",
                        "ax": os.path.join(os.pardir, "diagnostic", "diagnostic.tsv")},
                 submission={"test": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv",
                             "ax": "AX.tsv"}),
    "wnli": dict(dir="WNLI", text=("sentence1", "sentence2"), label="label", raw=("0", "1"),
                 names=("not_entailment", "entailment"), metrics=("accuracy",),
                 submission={"test": "WNLI.tsv"}),
}  # fmt: skip
# Splits a GLUE folder may lack: the task has them only where their files are there.
OPTIONAL_SPLITS = ("test", "test_mismatched", "ax")
ID_COLUMNS = ("index", "id")  # GLUE's own row ids (QQP's column is "id")
ALIASES = {"sst-2": "sst2", "sts-b": "stsb", **{f"glue/{k}": k for k in GLUE}}


def glue_key(name: str) -> str | None:
    """The GLUE task a registered name reads (``glue/sst2`` and ``sst-2`` → ``sst2``), or None."""
    name = name.lower()
    return name if name in GLUE else ALIASES.get(name)


def _has_header(path: str, bad: BadRows) -> bool:
    """Whether a file of a headerless task (CoLA) starts with a header line anyway: GLUE's test
    files do (``index<TAB>sentence``)."""
    first = next(read_lines(path, bad), None)
    return first is not None and first[1].split("\t", 1)[0].strip() in ID_COLUMNS


def _glue_factory(key: str) -> Callable[..., Task]:
    spec = GLUE[key]

    def factory(
        data_dir: str | None = None,
        *,
        paths: Mapping[str, str] | None = None,
        on_bad_row: str = "error",
    ) -> Task:
        if paths is not None:  # other files in the task's format, by split
            files = {s: os.path.abspath(p) for s, p in paths.items()}
            folder = os.path.dirname(next(iter(files.values()), "")) or os.curdir
        else:
            folder = resolve(data_dir, spec["dir"], key)
            files = spec.get("files", {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"})
            files = {s: f for s, f in files.items() if s not in OPTIONAL_SPLITS
                     or os.path.isfile(os.path.join(folder, f))}  # fmt: skip
        path_for = split_files(folder, files, key)
        kind = spec.get("kind", "classification")
        raw = spec.get("raw", ())
        label_map = {r: i for i, r in enumerate(raw)}

        def rows(path: str, split: str, bad: BadRows) -> Iterator[Example]:
            header = spec.get("header", True) or _has_header(path, bad)
            names, table = read_table(path, bad, header=header)
            text = spec["text"] if names is None else spec.get("named_text", spec["text"])
            cols = [column(names, c, path) for c in text]
            labelled = names is None or spec["label"] in names
            if not labelled and split == "train":
                raise DataError(f"{path}: no label column {spec['label']!r} in header {names}; "
                                "only a split other than train may be unlabelled")  # fmt: skip
            lcol = column(names, spec["label"], path) if labelled else -1
            icol = next((c for c in ID_COLUMNS if names and c in names), None)
            ipos = names.index(icol) if names and icol else -1
            width = len(names) if names else spec["width"]
            for i, fields in table:
                where = f"{path}:{i}"
                if len(fields) != width:
                    bad(where, f"expected {width} fields, found {len(fields)}")
                    continue
                rid = None if icol is None else row_id(fields[ipos], where, icol, bad)
                if rid is NO_ID:
                    continue
                label = None
                if labelled:
                    label = parse_label(fields[lcol], kind, label_map, where, bad)
                    if label is None:
                        continue
                    if kind == "regression" and not 0.0 <= label <= 5.0:
                        bad(where, f"similarity score {label} outside [0, 5]")
                        continue
                pair = fields[cols[1]] if len(cols) > 1 else None
                yield Example(fields[cols[0]].strip(), pair, label, source=where, id=rid)

        load, stream = streamed_reader(
            lambda split, bad: rows(path_for(split), split, bad), path_for, on_bad_row
        )

        metrics = spec["metrics"]
        return Task(
            name=key,
            kind=kind,
            loader=load,
            splits=tuple(files),
            label_names=spec.get("names", raw),
            text_fields=tuple(str(c) for c in spec.get("named_text", spec["text"])),
            metrics=metrics,
            main_metric=metrics[0],
            files=lambda split: (path_for(split),),
            stream=stream,
        )

    return factory


for _key in GLUE:
    register(_key)(_glue_factory(_key))
for _alias, _key in ALIASES.items():
    register(_alias)(_glue_factory(_key))
