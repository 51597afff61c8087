"""The GLUE tasks (``sst2 cola mrpc rte stsb qnli mnli``, also ``glue/<name>``, ``sst-2``,
``sts-b``), read from the TSV files of the GLUE distribution under ``<data_dir>/<TASK-DIR>/``.

TSV is split on tabs with no quoting (GLUE sentences contain bare quotes). Each row must have the
header's field count and a label of the task's raw spellings (an STS-B score in [0, 5]); any other
row is a bad row (see :mod:`jaxtl.data.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from jaxtl.data.io import column, parse_label, read_table, resolve, split_files
from jaxtl.data.tasks import BadRows, Example, Loaded, Task, register

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


def _glue_factory(key: str) -> Callable[..., Task]:
    spec = GLUE[key]

    def factory(data_dir: str | None = None, *, on_bad_row: str = "error") -> Task:
        folder = resolve(data_dir, spec["dir"], key)
        files = spec.get("files", {"train": "train.tsv", "dev": "dev.tsv"})
        path_for = split_files(folder, files, key)
        kind = spec.get("kind", "classification")
        raw = spec.get("raw", ())
        label_map = {r: i for i, r in enumerate(raw)}

        def rows(path: str, bad: BadRows) -> Iterator[Example]:
            header = spec.get("header", True)
            names, table = read_table(path, bad, header=header)
            cols = [column(names, c, path) for c in spec["text"]]
            lcol = column(names, spec["label"], path)
            width = len(names) if names else spec["width"]
            for i, fields in table:
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
                yield Example(fields[cols[0]].strip(), pair, label, source=where)

        def load(split: str) -> Loaded:
            path, bad = path_for(split), BadRows(on_bad_row)
            return bad.result(rows(path, bad), path)

        def stream(split: str) -> Iterator[Example]:
            path, bad = path_for(split), BadRows(on_bad_row)
            yield from rows(path, bad)
            bad.result((), path)  # logs the skipped rows, as load does

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
            files=lambda split: (path_for(split),),
            stream=stream,
        )

    return factory


for _key in GLUE:
    register(_key)(_glue_factory(_key))
for _alias, _key in {"sst-2": "sst2", "sts-b": "stsb", "glue/sst2": "sst2", "glue/cola": "cola",
                     "glue/mrpc": "mrpc", "glue/rte": "rte", "glue/qnli": "qnli",
                     "glue/stsb": "stsb", "glue/mnli": "mnli"}.items():  # fmt: skip
    register(_alias)(_glue_factory(_key))
