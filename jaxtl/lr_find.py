"""The learning-rate range test (Smith 2017; fastai's ``lr_find``, which ULMFiT's recipe uses
to pick its learning rates): ``jaxtl ... --lr_find``.

The run the command describes is trained for ``--lr_find_steps`` steps (default 100) with the
learning rate rising exponentially from ``optim.range_start`` (1e-7) to ``--lr_find_end``
(default 10; ``optim.schedule=range_test``), the loss logged at every step, nothing evaluated or
kept but the log, in ``<workdir>/lr_find`` (a process of its own, as a sweep's runs). A rate
high enough makes the loss diverge — the run may stop on a non-finite loss; the steps before
it are what counts. The losses, smoothed as fastai smooths them (an exponential moving average,
beta 0.98, bias-corrected), are cut where they pass 4x their minimum; of what is left two rates
are suggested, as fastai suggests them:

- ``steepest``: where the smoothed loss falls fastest against log(lr);
- ``minimum / 10``: a tenth of the rate at the smoothed loss's minimum.

``<workdir>/lr_find.json`` holds every step's rate and loss and the suggestions,
``<workdir>/lr_find.png`` the curve. The range test covers the stage ``train.steps`` drives
(multitask, target); earlier stages of a regime run as configured, so for a
supervised- or unsupervised-sequential run give them ``steps=0`` and start from their run with
``model.init_from``. A run mixing tasks logs one task's batch a step: give one task for a clean
curve.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

FLAGS = ("--lr_find", "--lr_find_steps", "--lr_find_end")
BETA = 0.98  # fastai's smoothing
DIVERGED = 4.0  # fastai stops once the smoothed loss passes this times its minimum


def split_args(args: Sequence[str]) -> tuple[int, float, str | None, list[str]]:
    """(steps, end rate, ``--workdir`` or None, every other argument)."""
    from jaxtl.sweep import take_flags

    found, rest = take_flags(args, ("--lr_find_steps", "--lr_find_end", "--workdir"),
                             bare=("--lr_find",))  # fmt: skip
    last = {k: v[-1] for k, v in found.items()}

    def number(flag: str, convert: Any, default: Any) -> Any:
        try:
            return convert(last[flag]) if flag in last else default
        except ValueError:
            raise ValueError(f"{flag}={last[flag]!r} is not a number") from None

    steps: int = number("--lr_find_steps", int, 100)
    end: float = number("--lr_find_end", float, 10.0)
    workdir = last.get("--workdir")
    if steps < 10:
        raise ValueError(f"--lr_find_steps={steps}: the range test needs 10 steps or more")
    if not (math.isfinite(end) and end > 0):
        raise ValueError(f"--lr_find_end={end}: must be a positive number")
    return steps, end, workdir, rest


def suggest(lrs: Sequence[float], losses: Sequence[float]) -> dict[str, Any]:
    """The smoothed curve, cut where it diverges, and the two suggested rates (see the module
    docstring). ``losses`` may end early (a diverged run) or hold non-finite values (cut)."""
    lr = np.asarray(lrs, np.float64)
    raw = np.asarray(losses, np.float64)
    finite = np.isfinite(raw)
    n = int(np.argmin(finite)) if not finite.all() else len(raw)  # up to the first non-finite
    if n < 3:
        raise ValueError(f"the range test logged {n} finite losses: too few to read a curve")
    avg, smooth = 0.0, []
    for i, x in enumerate(raw[:n], start=1):
        avg = BETA * avg + (1 - BETA) * x
        smooth.append(avg / (1 - BETA**i))
    s = np.asarray(smooth)
    best = np.minimum.accumulate(s)
    over = np.flatnonzero(s > DIVERGED * best)
    end = int(over[0]) if len(over) else n  # the first step past 4x the minimum so far
    end = max(end, 3)
    s, x = s[:end], lr[:end]
    slope = np.gradient(s, np.log10(x))
    steepest = int(np.argmin(slope[1:-1])) + 1 if end > 3 else int(np.argmin(slope))
    low = int(np.argmin(s))
    return {
        "lr": lr[:n].tolist(),
        "loss": raw[:n].tolist(),
        "smoothed": smooth,
        "used_steps": end,
        "steepest": float(x[steepest]),
        "minimum": float(x[low]),
        "minimum_div_10": float(x[low] / 10),
    }


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    n = result["used_steps"]
    ax.plot(result["lr"][:n], result["smoothed"][:n], label="loss (smoothed)")
    ax.plot(result["lr"][:n], result["loss"][:n], alpha=0.3, label="loss")
    for key, style in (("steepest", "--"), ("minimum_div_10", ":")):
        ax.axvline(result[key], linestyle=style, color="k",
                   label=f"{key.replace('_div_10', ' / 10')} {result[key]:.2e}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: Sequence[str], prog: str = "jaxtl") -> dict[str, Any]:
    """The range test a command line describes (``args``: ``sys.argv[1:]`` with
    ``--lr_find``); returns ``lr_find.json``'s content."""
    from jaxtl import fileio
    from jaxtl.sweep import last_line, run_one

    steps, end, workdir, rest = split_args(args)
    for a in rest:
        key = a.split("=", 1)[0]
        if key in ("--seeds", "--sweep", "--config.optim.schedule", "--config.optim.lr"):
            raise ValueError(f"{key} with --lr_find: the range test sets the learning rate "
                             "itself (--lr_find_end, --config.optim.range_start)")  # fmt: skip
    regime = next((a.split("=", 1)[1] for a in rest if a.startswith("--regime=")), "run")
    root = os.path.abspath(workdir or os.path.join(
        "runs", f"{regime}-lr_find-{time.strftime('%Y%m%d-%H%M%S')}"))  # fmt: skip
    wd = os.path.join(root, "lr_find")
    if os.path.exists(wd):
        raise ValueError(f"{wd} exists: a range test starts afresh; give another --workdir")
    os.makedirs(root, exist_ok=True)
    log_path = os.path.join(root, "lr_find.log")
    overrides = ["--config.optim.schedule=range_test", f"--config.optim.lr={end}",
                 f"--config.train.steps={steps}", "--config.train.epochs=0",
                 "--config.train.eval_per_epoch=False", "--config.train.log_every=1",
                 "--config.train.eval_every=0", "--config.train.save_best=False",
                 "--config.checkpoint.every_steps=0", "--config.train.early_stop_patience=0",
                 "--config.train.progress=False",
                 "--config.data.max_eval_examples=1"]  # its evaluation means nothing here  # fmt: skip
    print(f"jaxtl: learning-rate range test, {steps} steps from optim.range_start to {end:g}, "
          f"in {wd}", flush=True)  # fmt: skip
    code, took = run_one(rest, overrides, wd, log_path)
    shutil.rmtree(os.path.join(wd, "checkpoints"), ignore_errors=True)  # only the log counts
    metrics = os.path.join(wd, "metrics.jsonl")
    rows = []
    if os.path.exists(metrics):
        with open(metrics) as f:
            rows = [json.loads(x) for x in f if x.strip()]
    train = [r for r in rows if r.get("split") == "train" and "loss" in r and "lr" in r]
    if not train:
        raise RuntimeError(f"the range test logged no training step ({last_line(log_path)}; "
                           f"its output: {log_path})")  # fmt: skip
    stopped = (
        ""
        if code == 0
        else f"; the run stopped at step {train[-1]['step']} ({last_line(log_path)})"
    )
    result = suggest([r["lr"] for r in train], [r["loss"] for r in train])
    result |= {"steps": steps, "end": end, "workdir": wd, "seconds": took}
    with fileio.open_atomic(os.path.join(root, "lr_find.json")) as f:
        f.write(json.dumps(result, indent=2) + "\n")
    plot(result, os.path.join(root, "lr_find.png"))
    print(f"jaxtl: {len(train)} steps in {took:.0f} s{stopped}; the smoothed loss is read up to "
          f"step {result['used_steps']} (lr {result['lr'][result['used_steps'] - 1]:.2e})")  # fmt: skip
    print(f"jaxtl: suggested learning rates: steepest {result['steepest']:.2e}, minimum / 10 "
          f"{result['minimum_div_10']:.2e} (--config.optim.lr=...); curve in "
          f"{os.path.join(root, 'lr_find.png')}")  # fmt: skip
    return result
