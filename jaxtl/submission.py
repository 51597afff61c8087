"""GLUE leaderboard submissions from finished runs: ``jaxtl --glue_submission``.

    jaxtl --glue_submission --workdir=W [--workdir=W2 ...] --output=glue.zip [--data_dir=DIR]

gluebenchmark.com scores a zip of TSV files, one per test set, each ``index<TAB>prediction``
with the task's own label spellings (``0``/``1`` for CoLA, SST-2, MRPC, QQP and WNLI;
``entailment``/``not_entailment`` for QNLI and RTE; MNLI's three classes for ``MNLI-m``,
``MNLI-mm`` and the diagnostic ``AX``; an STS-B score rounded to three decimals). Every GLUE task
the runs trained (``glue/sst2``, ``mnli``, …) is predicted on its test files in the GLUE
distribution (:mod:`jaxtl.data.glue`: ``<DIR>/SST-2/test.tsv``, MNLI's matched and mismatched
test files, ``diagnostic/diagnostic.tsv`` for AX) with the run's selected params, as ``--predict``
would, and each row keeps the file's ``index``. One run (MT-DNN) or one run per task: a task
given by two workdirs is refused. Everything is checked — the workdirs, the test files, the
output — before a model loads, and the zip (or folder, for an ``--output`` without ``.zip``)
appears whole at the end.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import zipfile
from collections.abc import Sequence
from typing import Any

from etils import epath

from jaxtl import fileio
from jaxtl import workdir as workdir_lib
from jaxtl.data import glue
from jaxtl.data.catalogue import get_task
from jaxtl.data.tasks import DataError, Task

log = logging.getLogger(__name__)

# The leaderboard's files in its order, and each test set's size (the GLUE distribution's, as
# Hugging Face's `glue` dataset card lists them): a file of another size is not GLUE's test set.
SIZES = {"CoLA.tsv": 1063, "SST-2.tsv": 1821, "MRPC.tsv": 1725, "STS-B.tsv": 1379,
         "QQP.tsv": 390965, "MNLI-m.tsv": 9796, "MNLI-mm.tsv": 9847, "QNLI.tsv": 5463,
         "RTE.tsv": 3000, "WNLI.tsv": 146, "AX.tsv": 1104}  # fmt: skip
HEADER = "index\tprediction\n"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One file of the submission: which run's task predicts which split of its GLUE files."""

    file: str  # "SST-2.tsv"
    workdir: str
    task: str  # the run's task name
    key: str  # the GLUE task: "sst2"
    split: str  # "test", "test_mismatched", "ax"
    reader: Task


@dataclasses.dataclass
class Written:
    entry: Entry
    rows: int


def _manifest(workdir: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    wd = fileio.workdir(workdir)
    config = workdir_lib.read_json(wd / "config.json", "config")
    return config, workdir_lib.read_json(wd / "tasks.json", "tasks")["tasks"]


def plan(workdirs: Sequence[str], data_dir: str | None = None) -> tuple[list[Entry], list[str]]:
    """The submission's files, each from the run that trained its GLUE task, with the test file
    it reads (checked to exist), and the leaderboard files no run gives; reads no model."""
    entries: dict[str, Entry] = {}
    for w in workdirs:
        config, tasks = _manifest(w)
        found = False
        for t in tasks:
            key = glue.glue_key(t["spec"])
            if key is None:
                continue
            found = True
            where = data_dir or config.get("data", {}).get("dir")
            if not where:
                raise ValueError(f"{w}: the run names no data.dir; give --data_dir, the folder "
                                 "that holds the GLUE distribution")  # fmt: skip
            on_bad_row = config.get("data", {}).get("on_bad_row", "error")  # as the run read
            reader = get_task(key, where, on_bad_row=on_bad_row)
            for split, file in glue.GLUE[key]["submission"].items():
                if split not in reader.splits:
                    name = glue.GLUE[key].get("files", {}).get(split, "test.tsv")
                    path = os.path.normpath(os.path.join(where, glue.GLUE[key]["dir"], name))
                    if split == "ax":  # the diagnostic set sits apart; MNLI's own are there
                        log.warning("%s: not found, so the submission has no %s", path, file)
                        continue
                    raise DataError(f"{path}: not found: the GLUE test file {file} is predicted "
                                    f"from (task {t['name']!r} of {w}); give --data_dir, the "
                                    "folder holding the GLUE distribution")  # fmt: skip
                if file in entries:
                    raise ValueError(f"{file}: both {entries[file].workdir} and {w} trained "
                                     f"task {key!r}; give one of them")  # fmt: skip
                entries[file] = Entry(file, w, t["name"], key, split, reader)
        if not found:
            names = [t["name"] for t in tasks]
            raise ValueError(f"{w}: no GLUE task among the run's tasks {names}")
    ordered = [entries[f] for f in SIZES if f in entries]
    return ordered, [f for f in SIZES if f not in entries]


def prediction(record: dict[str, Any], key: str, label_names: Sequence[str]) -> str:
    """A record's prediction as the leaderboard spells it: the task's raw label, or the score."""
    spec = glue.GLUE[key]
    if spec.get("kind") == "regression":
        return f"{record['score']:.3f}"
    return spec["raw"][list(label_names).index(record["label"])]


def write(workdirs: Sequence[str], output: str, data_dir: str | None = None
          ) -> tuple[list[Written], list[str]]:  # fmt: skip
    """Predict every file of :func:`plan` and write them to ``output`` (a ``.zip``, the files at
    its root as the leaderboard takes them, or a folder); returns what was written and the
    leaderboard files missing."""
    from jaxtl.predictor import load

    as_zip = output.lower().endswith(".zip")
    if as_zip and epath.Path(output).is_dir():
        raise ValueError(f"--output={output} is a folder; a .zip output is a file")
    if not as_zip and epath.Path(output).exists() and not epath.Path(output).is_dir():
        raise ValueError(f"--output={output} is a file; name a .zip or a folder")
    for w in workdirs:
        workdir_lib.check_output(w, output, "--output", folder=not as_zip)
    entries, missing = plan(workdirs, data_dir)
    files: dict[str, str] = {}
    written = []
    predictors: dict[str, Any] = {}
    for e in entries:
        if e.workdir not in predictors:
            predictors[e.workdir] = load(e.workdir)
        p = predictors[e.workdir]
        td = p.task(e.task)
        lines = [HEADER]
        for r in p.predict_stream(e.reader.iterate(e.split), td, progress=True):
            lines.append(f"{r['id']}\t{prediction(r, e.key, td.task.label_names)}\n")
        files[e.file] = "".join(lines)
        written.append(Written(e, len(lines) - 1))
    if as_zip:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in files.items():
                z.writestr(name, text)
        fileio.write_atomic(output, buffer.getvalue())
    else:
        for name, text in files.items():
            fileio.write_atomic(epath.Path(output) / name, text)
    return written, missing
