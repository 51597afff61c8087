"""What a run leaves in its workdir: metrics.jsonl, TensorBoard events, JSON results, PNG plots.

Only process 0 writes. JSON files are written to a temporary name and renamed, so a crash or kill
never leaves a half-written results file; metrics.jsonl is appended line by line and, on resume,
cut back to the restored step so a killed run's unsaved tail does not appear twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
from etils import epath

from jaxtl import fileio

log = logging.getLogger(__name__)


def is_chief() -> bool:
    return jax.process_index() == 0


def write_json(path: str | epath.Path, obj: Any) -> None:
    """Atomic JSON write (temp file + rename)."""
    if not is_chief():
        return
    fileio.write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def _clean(v: Any) -> Any:
    v = _jsonable(v) if not isinstance(v, (int, float, str, bool, type(None))) else v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_jsonl_repairing(path: epath.Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn *last* line (a kill during the append) is
    dropped with a warning and the file rewritten without it. A bad line elsewhere is an error
    naming the file and line: that is not a torn write, and guessing would lose data."""
    lines = path.read_text().splitlines()
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if any(rest.strip() for rest in lines[n:]):
                raise ValueError(
                    f"{path}:{n}: not a JSON object ({e.msg}); fix or remove it"
                ) from None
            log.warning("%s:%d: torn last line (an interrupted write) dropped", path, n)
            fileio.write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


def _summary_writer_class() -> type:
    """tensorboardX's SummaryWriter, imported without importing torch.

    ``tensorboardX.writer`` tries ``import torch`` at import time only to accept torch tensors
    as values (jaxtl logs Python floats), which costs a process that never runs torch about a
    second and ~180 MiB where torch is installed. A ``None`` entry in ``sys.modules`` makes that
    one import fail as if torch were absent (tensorboardX then takes numpy arrays only); it is
    removed again at once, and a process that has already imported torch is left as it is."""
    import sys

    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        from tensorboardX import SummaryWriter
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return SummaryWriter


class MetricsLog:
    """metrics.jsonl + TensorBoard: one JSON object per logged event.

    On a local workdir each event is appended as it comes. Object stores (``gs://``) cannot
    append, so there the file is rewritten whole (atomically) at most every ``SYNC_S`` seconds
    and at every :meth:`flush` — the trainer flushes before each checkpoint, so a resume (which
    cuts the file back to the checkpoint's step) never misses a line. TensorBoard events go to a
    local folder copied to ``<workdir>/tensorboard`` on flush.
    """

    SYNC_S = 30.0

    def __init__(self, workdir: str | epath.Path, *, tensorboard: bool = True):
        self.workdir = epath.Path(workdir)
        self.path = self.workdir / "metrics.jsonl"
        self.records: list[dict[str, Any]] = []
        self._tb = None
        self._local = fileio.is_local(self.workdir)
        self._synced = time.monotonic()
        self._tb_dir: str | None = None
        if not is_chief():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.records = read_jsonl_repairing(self.path)
        if tensorboard:
            try:
                SummaryWriter = _summary_writer_class()
                if self._local:
                    self._tb = SummaryWriter(os.fspath(self.workdir / "tensorboard"))
                else:
                    self._tb_dir = tempfile.mkdtemp(prefix="jaxtl-tb-")
                    self._tb = SummaryWriter(self._tb_dir)
            except Exception as e:  # the run is worth more than its event files
                log.warning("TensorBoard writer unavailable: %s", e)

    def truncate_after(self, step: int) -> None:
        """Drop events newer than ``step`` (used when resuming from a checkpoint at ``step``)."""
        self.drop(lambda r: int(r.get("step", 0)) > step)

    def drop(self, which: Callable[[dict[str, Any]], bool]) -> None:
        """Drop the events ``which`` picks (ones a resumed run is about to write again)."""
        if not is_chief():
            return
        kept = [r for r in self.records if not which(r)]
        if len(kept) != len(self.records):
            self.records = kept
            self._rewrite()

    def _rewrite(self) -> None:
        fileio.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        self._synced = time.monotonic()

    def write(self, step: int, split: str, task: str, values: Mapping[str, Any], **extra) -> None:
        if not is_chief():
            return
        rec = {"step": int(step), "split": split, "task": task}
        rec.update({k: _clean(v) for k, v in extra.items()})
        rec.update({k: _clean(v) for k, v in values.items()})
        self.records.append(rec)
        if self._local:
            with self.path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
        elif time.monotonic() - self._synced > self.SYNC_S:
            self._rewrite()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    self._tb.add_scalar(f"{split}/{task}/{k}", float(v), int(step))

    def flush(self) -> None:
        """Everything logged so far is in the workdir (a no-op for appends to a local file)."""
        if not is_chief():
            return
        if not self._local:
            self._rewrite()
        if self._tb is not None:
            self._tb.flush()
            if self._tb_dir is not None:
                fileio.copy_tree(self._tb_dir, self.workdir / "tensorboard")

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._tb_dir is not None:
            shutil.rmtree(self._tb_dir, ignore_errors=True)
            self._tb_dir = None


def plot_run(workdir: str | epath.Path, records: list[dict], plans: list[dict]) -> list[str]:
    """PNG plots: training loss, dev metrics per task, and the per-stage learning-rate plan."""
    if not is_chief():
        return []
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    warnings.filterwarnings("ignore", message="Tight layout not applied")
    import matplotlib.pyplot as plt

    workdir = epath.Path(workdir)
    written = []
    train = [r for r in records if r["split"] == "train" and "loss" in r]
    if train:
        fig, ax = plt.subplots(figsize=(7, 4))
        for task in sorted({r["task"] for r in train}):
            pts = [(r["step"], r["loss"]) for r in train if r["task"] == task]
            ax.plot(*zip(*pts), label=task, lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        _savefig(fig, workdir / "loss.png")
        plt.close(fig)
        written.append("loss.png")
    dev = [r for r in records if r["split"] == "dev"]
    tasks = sorted({r["task"] for r in dev})
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            rs = [r for r in dev if r["task"] == task]
            keys = sorted(
                {k for r in rs for k, v in r.items() if isinstance(v, float)} - {"step", "loss"}
            )
            for k in keys:
                pts = [(r["step"], r[k]) for r in rs if k in r]
                ax.plot(*zip(*pts), marker="o", ms=3, label=k)
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        fig.tight_layout()
        _savefig(fig, workdir / "dev_metrics.png")
        plt.close(fig)
        written.append("dev_metrics.png")
    if plans:
        fig, ax = plt.subplots(figsize=(8, 0.5 + 0.35 * len(plans)))
        labels = []
        for i, p in enumerate(plans):
            frac = p.get("trainable_params", 0) / max(1, p.get("total_params", 1))
            ax.barh(
                i,
                p.get("steps", 0),
                left=p.get("start_step", 0),
                color=(0.2, 0.4, 0.8, 0.3 + 0.7 * frac),
            )
            labels.append(f"{p.get('stage')}/{p.get('phase')}: {100 * frac:.1f}% trainable")
        ax.set_yticks(range(len(plans)), labels, fontsize=7)
        ax.set_xlabel("step")
        ax.set_title("training plan (colour: trainable fraction)", fontsize=9)
        fig.tight_layout()
        _savefig(fig, workdir / "plan.png")
        plt.close(fig)
        written.append("plan.png")
    return written


def _savefig(fig: Any, path: epath.Path) -> None:
    """matplotlib writes local files only: a local temporary PNG, copied to ``path`` whole."""
    with fileio.local_file_for(path) as local:
        fig.savefig(local, dpi=100, format="png")
