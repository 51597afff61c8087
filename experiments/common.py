"""What every experiment script shares: running ``launch.py`` once per setting and seed (finished
runs are kept, so an interrupted experiment resumes where it stopped), summarising seeds as
mean ± sample std, significance tests, and writing its table into EXPERIMENTS.md between markers
and its raw numbers into ``experiments/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
DOC = REPO / "EXPERIMENTS.md"


def launch(
    regime: str, config: str, workdir: pathlib.Path, overrides: Sequence[str], *,
    keep_checkpoints: bool = False,
) -> dict:  # fmt: skip
    """``results.json`` of one ``launch.py`` run (run unless it already finished).
    ``keep_checkpoints``: a run that later runs start from (``model.init_from``)."""
    results = workdir / "results.json"
    if not results.exists():
        cmd = [sys.executable, str(REPO / "launch.py"), f"--regime={regime}",
               "--config=" + str(REPO / "configs" / config), f"--workdir={workdir}",
               "--config.train.progress=False", *overrides]  # fmt: skip
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        # Only metrics and predictions matter here; a MiniLM checkpoint with Adam moments is
        # ~270 MB and dozens of runs would fill the disk.
        for ckpt in [] if keep_checkpoints else workdir.rglob("checkpoints"):
            shutil.rmtree(ckpt, ignore_errors=True)
        shutil.rmtree(workdir / "best", ignore_errors=True)
    return json.loads(results.read_text())


def add_tasks_argument(ap: argparse.ArgumentParser, tasks: Sequence[str]) -> None:
    """``--tasks``: which of a script's tasks to run (all by default); a script whose table has
    columns per task runs one task at a time where all at once would not fit an hour."""
    ap.add_argument(
        "--tasks",
        nargs="+",
        choices=list(tasks),
        default=list(tasks),
        help="which tasks to run (the table has columns per task run)",
    )


def parse(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """The script's arguments plus the ones every experiment takes: ``--model`` (a local model
    directory instead of the packaged MiniLM), ``--max-train-examples`` / ``--max-eval-examples``
    and ``--report-dir``
    (where EXPERIMENTS.md and results/ are written: the repository by default; tests run a
    script end to end on a tiny model into a temporary folder)."""
    global DOC, RESULTS
    ap.add_argument("--model", default="minilm", help="model.name of every run")
    ap.add_argument(
        "--max-train-examples",
        type=int,
        default=0,
        help="0 = all (a script's own label budget, e.g. SST-2 1k, still applies)",
    )
    ap.add_argument("--max-eval-examples", type=int, default=0, help="0 = whole dev sets")
    ap.add_argument("--report-dir", default=str(REPO), help="EXPERIMENTS.md + results/ here")
    args = ap.parse_args()
    if pathlib.Path(args.report_dir).resolve() != REPO:
        DOC = pathlib.Path(args.report_dir) / "EXPERIMENTS.md"
        RESULTS = pathlib.Path(args.report_dir) / "results"
    return args


def run_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides every experiment run shares: model, data, shapes, and no selection —
    evaluation only at the end of each stage and no best-params copy, so the last step is what
    is scored (dev is never used to choose), and no periodic checkpoints (the runs are short)."""
    length = args.max_length
    buckets = (length // 2, length) if length > 32 else (length,)
    return [
        f"--config.model.name={args.model}",
        f"--config.data.dir={os.path.abspath(args.data_dir)}",
        f"--config.data.max_train_examples={args.max_train_examples}",
        f"--config.data.max_eval_examples={args.max_eval_examples}",
        f"--config.train.batch_size={args.batch_size}",
        f"--config.data.max_length={length}",
        f"--config.data.buckets={buckets}",
        "--config.train.eval_every=0",
        "--config.checkpoint.every_steps=0",
        "--config.train.save_best=False",
    ]


def predictions(workdir: pathlib.Path, task: str, split: str = "dev") -> list[dict]:
    path = workdir / "predictions" / task / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def correct(workdir: pathlib.Path, task: str, split: str = "dev") -> np.ndarray:
    """Per-example 0/1 correctness of a classification run's predictions (in dev order)."""
    rows = sorted(predictions(workdir, task, split), key=lambda r: r["id"])
    return np.asarray([float(r["label"] == r["gold"]) for r in rows])


def mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    v = np.asarray(values, dtype=float) * scale
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.1f} ± {std:.1f}"


def welch(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) between two sets of seeds."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, samples: int = 10_000, seed: int = 0
) -> float:
    """One-sided p-value that system ``a`` is not better than ``b`` on the same examples:
    the share of bootstrap resamples of the examples where mean(a) - mean(b) <= 0 (Koehn 2004;
    Berg-Kirkpatrick et al. 2012). ``a`` and ``b`` are per-example scores, e.g. 0/1 correctness,
    already averaged over seeds if there are several."""
    rng = np.random.default_rng(seed)
    n = len(a)
    idx = rng.integers(0, n, size=(samples, n))
    diff = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    return float((diff <= 0).mean())


def machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores (CPU)"


def command(script: str) -> str:
    return f"python experiments/{script} " + " ".join(sys.argv[1:])


def test_results(workdir: pathlib.Path) -> dict:
    """``results_test.json`` of a finished run ({} when no task had a test split)."""
    path = workdir / "results_test.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_seconds(workdir: pathlib.Path) -> float:
    """A finished run's wall time: from its config.json (written first) to the last file it
    wrote (results_test.json and predictions come after results.json: scoring a corpus's test
    perplexity takes minutes)."""
    last = max(p.stat().st_mtime for p in workdir.rglob("*") if p.is_file())
    return last - (workdir / "config.json").stat().st_mtime


def model_label(args: argparse.Namespace) -> str:
    """How a table names the encoder its runs started from."""
    return "MiniLM-L6 (packaged)" if args.model == "minilm" else f"model {args.model}"


def seeds_label(raw: dict[str, Any], tasks: Sequence[str], names: dict[str, str]) -> str:
    """The seeds of a table whose tasks may have been run with different ones
    (``keep_earlier_tasks``): "seeds [0, 1, 2]", or per task when they differ."""
    per_task = {t: raw["seeds"][t] for t in tasks}
    if len({tuple(s) for s in per_task.values()}) == 1:
        return f"seeds {per_task[tasks[0]]}"
    return "seeds " + ", ".join(f"{names[t]} {s}" for t, s in per_task.items())


def header(script: str, elapsed_s: float, details: str, commands: Sequence[str] = ()) -> list[str]:
    """The lines above a table: the command(s) that produced it, date, machine and wall time.
    ``commands``: when the table merges tasks run by several commands (``keep_earlier_tasks``)."""
    shown = list(commands) or [command(script).strip()]
    return [
        *(f"Command: `{c}`  " for c in shown),
        f"Date: {datetime.date.today()}, machine: {machine()}, wall time "
        f"{elapsed_s / 60:.0f} min. {details}",
    ]


def keep_earlier_tasks(
    name: str, args: argparse.Namespace, raw: dict[str, Any], per_task: Sequence[str],
    elapsed_s: dict[str, float], order: Sequence[str],
) -> list[str]:  # fmt: skip
    """Tasks a script ran earlier with ``--tasks`` stay in its table when it runs the others.

    A script whose runs do not fit an hour runs one task at a time; each run rewrites
    experiments/results/<name>.json, so without this the second task's table would drop the
    first. When the earlier JSON was made with the same arguments (all but ``--tasks``,
    ``--seeds``, ``--out`` and ``--report-dir``: a noisy task may need more seeds), the tasks it
    has and this run has not are copied into ``raw`` under each key of ``per_task``
    (``{setting: {task: ...}}`` dicts), along with their seeds, wall time and command.
    ``elapsed_s``: this run's wall time per task. ``raw`` gets ``args.tasks`` as the union, and
    ``seeds``, ``elapsed_s`` and ``commands`` per task.
    Returns the table's tasks in ``order``."""
    ran = list(args.tasks)
    raw["seeds"] = {t: list(args.seeds) for t in ran}
    raw["elapsed_s"] = dict(elapsed_s)
    raw["commands"] = {t: command(f"{name}.py").strip() for t in ran}
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    ignore = {"tasks", "seeds", "out", "report_dir"}

    def settings(a: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in a.items() if k not in ignore}

    earlier = [t for t in old.get("args", {}).get("tasks", []) if t not in ran]
    if earlier and settings(old["args"]) != settings(vars(args)):
        print(f"{path}: tasks {earlier} were run with other arguments; this table drops them")
        earlier = []
    if earlier:
        for key in per_task:
            for setting, by_task in old.get(key, {}).items():
                raw[key].setdefault(setting, {}).update(
                    {t: by_task[t] for t in earlier if t in by_task}
                )
        for field in ("seeds", "elapsed_s", "commands"):
            raw[field].update({t: old[field][t] for t in earlier})
    tasks = [t for t in order if t in ran or t in earlier]
    raw["args"] = {**vars(args), "tasks": tasks}
    return tasks


def write_tasks_table(
    name: str, raw: dict[str, Any], tasks: Sequence[str], details: str, lines: Sequence[str]
) -> str:
    """``write`` for a table merged by ``keep_earlier_tasks``: the header shows each task's
    command and the tasks' wall times summed."""
    total = sum(raw["elapsed_s"][t] for t in tasks)
    commands = [raw["commands"][t] for t in tasks]
    return write(name, [*header(f"{name}.py", total, details, commands), "", *lines], raw)


def write(name: str, block_lines: Sequence[str], raw: dict[str, Any]) -> str:
    """Put ``block_lines`` between ``<!-- name:start/end -->`` in EXPERIMENTS.md (appended when
    the markers are absent) and ``raw`` into experiments/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(raw, indent=2, default=float) + "\n")
    block = "\n".join([f"<!-- {name}:start -->", *block_lines, f"<!-- {name}:end -->"])
    text = DOC.read_text() if DOC.exists() else "# Experiments\n"
    pat = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = (
        pat.sub(lambda _: block, text)
        if pat.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(text)
    print(block)
    return block
