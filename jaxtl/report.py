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
from collections.abc import Mapping
from typing import Any

import jax
from etils import epath

log = logging.getLogger(__name__)


def is_chief() -> bool:
    return jax.process_index() == 0


def write_json(path: str | epath.Path, obj: Any) -> None:
    """Atomic JSON write (temp file + rename)."""
    if not is_chief():
        return
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")
    tmp.replace(path)


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
            tmp = path.parent / f".{path.name}.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
            tmp.replace(path)
    return records


class MetricsLog:
    """metrics.jsonl + TensorBoard: one JSON object per logged event."""

    def __init__(self, workdir: str | epath.Path, *, tensorboard: bool = True):
        self.workdir = epath.Path(workdir)
        self.path = self.workdir / "metrics.jsonl"
        self.records: list[dict[str, Any]] = []
        self._tb = None
        if not is_chief():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.records = read_jsonl_repairing(self.path)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.fspath(self.workdir / "tensorboard"))
            except Exception as e:  # the run is worth more than its event files
                log.warning("TensorBoard writer unavailable: %s", e)

    def truncate_after(self, step: int) -> None:
        """Drop events newer than ``step`` (used when resuming from a checkpoint at ``step``)."""
        if not is_chief():
            return
        kept = [r for r in self.records if int(r.get("step", 0)) <= step]
        if len(kept) != len(self.records):
            self.records = kept
            tmp = self.path.parent / ".metrics.jsonl.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(self.path)

    def write(self, step: int, split: str, task: str, values: Mapping[str, Any], **extra) -> None:
        if not is_chief():
            return
        rec = {"step": int(step), "split": split, "task": task}
        rec.update({k: _clean(v) for k, v in extra.items()})
        rec.update({k: _clean(v) for k, v in values.items()})
        self.records.append(rec)
        with self.path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    self._tb.add_scalar(f"{split}/{task}/{k}", float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


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
        fig.savefig(os.fspath(workdir / "loss.png"), dpi=100)
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
        fig.savefig(os.fspath(workdir / "dev_metrics.png"), dpi=100)
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
        fig.savefig(os.fspath(workdir / "plan.png"), dpi=100)
        plt.close(fig)
        written.append("plan.png")
    return written
