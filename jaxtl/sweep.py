"""Seeds and hyperparameter grids from the command line: one run per setting and seed, then
mean ± std over seeds and the setting chosen on dev.

    jaxtl --regime=multitask --config=... --seeds=0,1,2 \\
          --sweep=optim.lr=2e-5|5e-5 --sweep=train.epochs=2|3 --workdir=runs/grid

runs every combination of the ``--sweep`` values (a config key, ``=``, its values separated by
``|``; several ``--sweep`` flags make a grid) under every seed of ``--seeds`` (default: the
config's ``seed`` alone), each as its own ``jaxtl`` run with those ``--config.KEY=VALUE``
overrides in ``<workdir>/<setting>/seed<N>`` (its output in ``<workdir>/logs/``). Runs go one
after the other, each a fresh process (memory is returned between runs), or ``--sweep_jobs=N``
at a time; ``--sweep_devices=0,1,2,3`` gives each running run one accelerator of its own
(``CUDA_VISIBLE_DEVICES``; as many runs at once as devices unless ``--sweep_jobs`` says fewer).
A run that already finished is kept, one that was stopped resumes, so the same command picks an
interrupted sweep up where it stopped. The first run that fails stops the sweep with its error
(runs still going are stopped as a preempted run is: they checkpoint, and resume with the rest).

Each run selects its own params on dev as a single run does. The sweep then reads every run's
``results.json`` (dev) and ``results_test.json`` and writes ``<workdir>/sweep.json``: per setting,
each metric's mean and sample std over seeds, dev and test, and the seeds' runs; the **best
setting** is the one with the highest mean dev score (the average of the tasks' main metrics, as
runs select on), chosen on dev alone — its test numbers are the honest estimate to report.
A table of the settings is printed, the best marked.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

# Flags that only the sweep reads (the rest go to every run).
FLAGS = ("--seeds", "--sweep", "--sweep_jobs", "--sweep_devices")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")


class Stopped(Exception):
    """A run stopped cleanly (preempted: SIGTERM or Ctrl-C) before it finished."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of the grid: its overrides in flag order, and its folder's name."""

    overrides: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        if not self.overrides:
            return "default"
        return ",".join(f"{k}={_UNSAFE.sub('_', v)}" for k, v in self.overrides)


def take_flags(
    args: Sequence[str], valued: Sequence[str], bare: Sequence[str] = ()
) -> tuple[dict[str, list[str]], list[str]]:
    """({flag: its values, in order} for the ``valued`` flags (``--flag=V`` or ``--flag V``)
    and the ``bare`` ones (no value: ``[""]``), every other argument) of a command line."""
    found: dict[str, list[str]] = {}
    rest: list[str] = []
    it = iter(args)
    for a in it:
        flag, eq, value = a.partition("=")
        if flag in bare and not eq:
            found.setdefault(flag, []).append("")
        elif flag in valued:
            found.setdefault(flag, []).append(value if eq else next(it, ""))
        else:
            rest.append(a)
    return found, rest


def split_args(args: Sequence[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """(the ``--sweep`` values, the ``--seeds`` value as given (or None), the ``--workdir``
    value (or None), every other argument) from a command line's arguments."""
    found, rest = take_flags(args, (*FLAGS, "--workdir"))
    last = {k: v[-1] for k, v in found.items()}
    return found.get("--sweep", []), last.get("--seeds"), last.get("--workdir"), rest


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: integers separated by commas (``0,1,2``) or a range ``0-4``."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d+-\d+", text):
            lo, hi = (int(x) for x in text.split("-"))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds={text!r}: give integers separated by commas (0,1,2) or a "
                         "range (0-4)") from None  # fmt: skip
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds={text!r}: give one or more distinct seeds")
    return seeds


def parse_sweeps(values: Sequence[str], config: Any) -> list[Setting]:
    """The grid of ``--sweep`` flags (each ``KEY=V1|V2``; ``KEY`` a key of ``config``, with or
    without ``config.``; an empty value is the empty string, ``train.class_weights=|balanced``),
    every combination in flag order; ValueError, one line, on a key the
    config lacks, one swept twice, ``seed`` (that is ``--seeds``) or a flag without values."""
    axes: list[tuple[str, list[str]]] = []
    for raw in values:
        key, eq, vals = raw.partition("=")
        key = key.strip().removeprefix("config.")
        options = [v.strip() for v in vals.split("|")]
        if not eq or not key or not any(options):
            raise ValueError(f"--sweep={raw!r}: write KEY=VALUE|VALUE (e.g. "
                             "--sweep=optim.lr=2e-5|5e-5)")  # fmt: skip
        if key == "seed":
            raise ValueError("--sweep=seed=...: seeds are --seeds=0,1,2")
        if key in (k for k, _ in axes):
            raise ValueError(f"--sweep: {key} is swept twice; give its values in one flag")
        node: Any = config
        for part in key.split("."):
            if not hasattr(node, "keys") or part not in node.keys():
                raise ValueError(f"--sweep={raw!r}: the config has no key {key!r}")
            node = node[part]
        if hasattr(node, "keys"):
            raise ValueError(f"--sweep={raw!r}: {key} is a section of the config, not a value")
        if len(set(options)) != len(options):
            raise ValueError(f"--sweep={raw!r}: a value is given twice")
        axes.append((key, options))
    settings = [Setting(tuple(zip((k for k, _ in axes), combo)))
                for combo in itertools.product(*(v for _, v in axes))]  # fmt: skip
    names = [s.name for s in settings]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash:
        raise ValueError(f"--sweep: two settings share the folder name {clash!r} (values that "
                         "differ only in characters a folder name cannot hold)")  # fmt: skip
    return settings


def _read(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def run_score(workdir: str, file: str = "results.json") -> float | None:
    """A finished run's score in ``file``: the mean of its tasks' main metrics (what runs
    select on, :func:`jaxtl.selection.average`; the main metrics from its ``tasks.json``), or
    None when it has none."""
    import types

    from jaxtl import selection

    results = {k: v for k, v in _read(os.path.join(workdir, file)).items() if k != "average"}
    listed = _read(os.path.join(workdir, "tasks.json")).get("tasks", [])
    tasks = {t["name"]: types.SimpleNamespace(main_metric=t.get("main_metric", ""))
             for t in listed}  # fmt: skip
    value = selection.average(results, tasks) if results else float("nan")
    return None if math.isnan(value) else value


def _summary(values: Sequence[float]) -> dict[str, float]:
    v = [float(x) for x in values]
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(v)}


def aggregate(root: str, settings: Sequence[Setting], seeds: Sequence[int]) -> dict[str, Any]:
    """``sweep.json``'s content from the finished runs under ``root`` (see the module
    docstring)."""
    out: dict[str, Any] = {"seeds": list(seeds), "select_on": "dev score (results.json "
                           "average: the mean of the tasks' main metrics)", "settings": []}  # fmt: skip
    for s in settings:
        runs = {seed: os.path.join(root, s.name, f"seed{seed}") for seed in seeds}
        entry: dict[str, Any] = {"name": s.name, "overrides": dict(s.overrides),
                                 "runs": {str(k): v for k, v in runs.items()}}  # fmt: skip
        for split, file in (("dev", "results.json"), ("test", "results_test.json")):
            per_seed = [_read(os.path.join(wd, file)) for wd in runs.values()]
            if not all(per_seed):
                continue
            metrics: dict[str, dict[str, Any]] = {}
            for task in per_seed[0]:
                for metric in per_seed[0][task]:
                    vals = [r.get(task, {}).get(metric) for r in per_seed]
                    if all(isinstance(x, (int, float)) for x in vals):
                        metrics.setdefault(task, {})[metric] = _summary(vals)  # type: ignore[arg-type]
            entry[split] = metrics
            scores = {str(seed): run_score(wd, file) for seed, wd in runs.items()}
            if all(v is not None for v in scores.values()):
                entry[f"{split}_score"] = _summary(list(scores.values()))  # type: ignore[arg-type]
                entry[f"{split}_score_per_seed"] = scores
        out["settings"].append(entry)
    scored = [e for e in out["settings"] if e.get("dev_score")]
    if scored:
        best = max(scored, key=lambda e: e["dev_score"]["mean"])
        out["best"] = best["name"]
        seed = max(best["dev_score_per_seed"], key=best["dev_score_per_seed"].get)
        out["best_run"] = best["runs"][seed]  # its best seed on dev: a model to predict with
    return out


def table(summary: Mapping[str, Any]) -> str:
    """The settings, their dev and test scores (mean ± std over seeds), the best marked."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"sweep: {len(summary['settings'])} settings x seeds {summary['seeds']}")
    for col in ("setting", "dev score", "test score"):
        t.add_column(col)

    def cell(x: Mapping[str, float] | None) -> str:
        return "-" if not x else f"{x['mean']:.4f} ± {x['std']:.4f}"

    for e in summary["settings"]:
        mark = " *" if e["name"] == summary.get("best") else ""
        t.add_row(e["name"] + mark, cell(e.get("dev_score")), cell(e.get("test_score")))
    console = Console(width=120, record=True, force_terminal=False)
    with console.capture() as cap:
        console.print(t)
    return cap.get()


def run(args: Sequence[str], prog: str = "jaxtl", *, load_config: Any = None) -> dict[str, Any]:
    """Run the sweep a command line describes (``args``: ``sys.argv[1:]``); returns
    ``sweep.json``'s content. ``load_config``: the resolved ``--config`` value -> the config,
    for checking the swept keys before any run starts."""
    from jaxtl import fileio

    parallel, args = take_flags(args, ("--sweep_jobs", "--sweep_devices"))
    jobs, devices = parse_parallel(*(parallel.get(f, [None])[-1]
                                     for f in ("--sweep_jobs", "--sweep_devices")))  # fmt: skip
    sweeps, seeds_text, workdir, rest = split_args(args)
    config = load_config() if load_config is not None else None
    if config is not None and config.get("distributed", {}).get("enabled"):
        raise ValueError("--seeds/--sweep run their runs as processes on this machine; a "
                         "distributed run takes one --workdir at a time")  # fmt: skip
    given = [a for a in rest if a.startswith("--config.seed=")]
    if given and seeds_text is not None:
        raise ValueError("--config.seed with --seeds: give the seeds to --seeds alone")
    if given:  # one seed, --config.seed's, for every setting
        seeds_text = given[-1].split("=", 1)[1]
        rest = [a for a in rest if a not in given]
    default_seed = int(config.seed) if config is not None else 0
    seeds = parse_seeds(seeds_text) if seeds_text is not None else [default_seed]
    settings = parse_sweeps(sweeps, config) if config is not None else [Setting(())]
    regime = next((a.split("=", 1)[1] for a in rest if a.startswith("--regime=")), "run")
    root = os.path.abspath(workdir or os.path.join(
        "runs", f"{regime}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"))  # fmt: skip
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    total = len(settings) * len(seeds)
    at_once = f", {jobs} at a time" if jobs > 1 else ""
    print(f"jaxtl: sweep of {len(settings)} setting(s) x {len(seeds)} seed(s) = {total} runs "
          f"in {root}{at_once}", flush=True)  # fmt: skip
    todo = []
    for n, (s, seed) in enumerate(itertools.product(settings, seeds), start=1):
        wd = os.path.join(root, s.name, f"seed{seed}")
        what = f"{s.name} seed {seed}"
        if os.path.exists(os.path.join(wd, "results.json")):
            print(f"jaxtl: run {n}/{total} {what}: finished earlier, kept", flush=True)
            continue
        overrides = [*(f"--config.{k}={v}" for k, v in s.overrides), f"--config.seed={seed}"]
        todo.append(Job(n, what, wd, os.path.join(root, "logs", f"{s.name}.seed{seed}.log"),
                        overrides))  # fmt: skip
    Pool(rest, jobs, devices, total).run(todo)
    summary = aggregate(root, settings, seeds)
    with fileio.open_atomic(os.path.join(root, "sweep.json")) as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    print(table(summary), end="")
    if "best" in summary:
        best = next(e for e in summary["settings"] if e["name"] == summary["best"])
        d, t = best["dev_score"], best.get("test_score")
        test = f"; its test score {t['mean']:.4f} ± {t['std']:.4f}" if t else ""
        print(f"jaxtl: best on dev: {best['name']} ({d['mean']:.4f} ± {d['std']:.4f} over "
              f"{d['n']} seed(s)){test}; its best seed's run: {summary['best_run']}")  # fmt: skip
    print(f"jaxtl: sweep results in {os.path.join(root, 'sweep.json')}")
    return summary


@dataclasses.dataclass
class Job:
    """One run of the sweep: its number, what it is, its workdir, log and overrides."""

    n: int
    what: str
    workdir: str
    log_path: str
    overrides: list[str]


class Pool:
    """Runs a sweep's jobs, ``jobs`` at a time, each a ``jaxtl`` process with the command line
    ``args`` plus its overrides, its output appended to its log. With ``devices`` each running
    job has one of them to itself (``CUDA_VISIBLE_DEVICES``). The first run that fails or stops
    cleanly ends the sweep: no new run starts, the ones running are stopped as a preempted run is
    (SIGTERM: they checkpoint, and the same command resumes them), then the failure is raised
    (:class:`Stopped` for a clean stop). Ctrl-C reaches every run (one process group): each
    checkpoints; the pool waits for them all before it lets the interrupt through."""

    def __init__(self, args: Sequence[str], jobs: int, devices: Sequence[str], total: int):
        self.args, self.jobs, self.total = list(args), jobs, total
        self.free: list[str | None] = list(devices) or [None] * jobs

    def start(self, job: Job, device: str | None) -> subprocess.Popen:
        env = None if device is None else dict(os.environ, CUDA_VISIBLE_DEVICES=device)
        return _popen(self.args, job.overrides, job.workdir, job.log_path, env)

    def run(self, todo: Sequence[Job]) -> None:
        pending = list(todo)
        running: dict[Any, tuple[Job, str | None, float]] = {}
        error: Exception | None = None
        try:
            while pending or running:
                while pending and error is None and len(running) < self.jobs:
                    job, device = pending.pop(0), self.free.pop(0)
                    if self.jobs > 1:
                        on = f" on device {device}" if device is not None else ""
                        print(f"jaxtl: run {job.n}/{self.total} {job.what}: started{on}",
                              flush=True)  # fmt: skip
                    running[self.start(job, device)] = (job, device, time.time())
                if error is not None:
                    pending = []
                done = [p for p in running if p.poll() is not None] if self.jobs > 1 else [
                    next(iter(running))] if running else []  # fmt: skip
                if not done:
                    time.sleep(0.2)
                    continue
                for proc in done:
                    code = proc.wait()
                    job, device, t0 = running.pop(proc)
                    self.free.append(device)
                    failure = self.finished(job, code, time.time() - t0)
                    if failure is not None and error is None:
                        error = failure
                        for other in running:  # they checkpoint; the same command resumes
                            other.terminate()
        except KeyboardInterrupt:
            # Every run had the same Ctrl-C: each checkpoints and stops; let them finish
            # (killing them would lose that), so the same command resumes them.
            for proc in running:
                proc.wait()
            raise
        if error is not None:
            raise error

    def finished(self, job: Job, code: int, took: float) -> Exception | None:
        """Report a run that ended; the exception that ends the sweep, if it did not finish."""
        results = os.path.join(job.workdir, "results.json")
        where = f"run {job.n}/{self.total} ({job.what})"
        if code == 0 and not os.path.exists(results):
            # a clean stop (SIGTERM, Ctrl-C): the run checkpointed; so does the sweep
            return Stopped(f"{where} stopped after {took:.0f} s: {last_line(job.log_path)}; "
                           "the same command resumes the sweep")  # fmt: skip
        if code != 0 or not os.path.exists(results):
            return RuntimeError(f"{where} failed after {took:.0f} s: {last_line(job.log_path)} "
                                f"(its output: {job.log_path}; the same command resumes the "
                                "sweep)")  # fmt: skip
        score = run_score(job.workdir)
        shown = f"dev score {score:.4f}" if score is not None else "finished"
        print(f"jaxtl: run {job.n}/{self.total} {job.what}: {shown} ({took:.0f} s)", flush=True)
        return None


def _popen(args: Sequence[str], overrides: Sequence[str], workdir: str, log_path: str,
           env: Mapping[str, str] | None = None) -> subprocess.Popen:  # fmt: skip
    """``jaxtl`` with the command line ``args`` plus ``overrides`` in ``workdir``, started in a
    process of its own, its output appended to ``log_path``."""
    cmd = [sys.executable, "-m", "jaxtl", *args, *overrides, f"--workdir={workdir}"]
    with open(log_path, "a") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_one(args: Sequence[str], overrides: Sequence[str], workdir: str,
            log_path: str) -> tuple[int, float]:  # fmt: skip
    """One such run, waited for; (exit code, seconds)."""
    t0 = time.time()
    proc = _popen(args, overrides, workdir, log_path)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # The run had the same Ctrl-C: it checkpoints and stops; let it finish (killing it
        # would lose that), so the same command resumes it.
        proc.wait()
        raise
    return code, time.time() - t0


def parse_parallel(jobs: str | None, devices: str | None) -> tuple[int, list[str]]:
    """``--sweep_jobs`` (runs at once; default one per ``--sweep_devices`` entry, else 1) and
    ``--sweep_devices`` (accelerator ids, ``0,1,2,3``, one per running run)."""
    ids = [d.strip() for d in (devices or "").split(",") if d.strip()]
    if devices is not None and (not ids or len(set(ids)) != len(ids)):
        raise ValueError(f"--sweep_devices={devices!r}: give distinct device ids, e.g. 0,1,2,3")
    try:
        n = int(jobs) if jobs is not None else max(len(ids), 1)
    except ValueError:
        raise ValueError(f"--sweep_jobs={jobs!r}: give a number of runs at once") from None
    if n < 1:
        raise ValueError(f"--sweep_jobs={jobs}: give 1 or more")
    if ids and n > len(ids):
        raise ValueError(f"--sweep_jobs={n} with {len(ids)} --sweep_devices: each running run "
                         "has a device to itself")  # fmt: skip
    return n, ids


def last_line(path: str) -> str:
    """The last non-empty line a failed run wrote (its one-line error)."""
    with open(path, errors="replace") as f:
        lines = [x.strip() for x in f if x.strip()]
    return lines[-1] if lines else "no output"
