"""Multi-task (MT-DNN) vs single-task fine-tuning on five GLUE tasks, at equal total steps.

For each seed: each task is fine-tuned alone for ``--steps`` steps; then one multitask run trains
all five jointly for ``5 × --steps`` steps (temperature-2 sampling), followed by MT-DNN's
refinement (each task alone for ``--refine`` steps from the joint encoder). Dev metrics per task,
mean ± std over seeds, are written to EXPERIMENTS.md (between markers) and
``experiments/results/multitask_vs_single.json``.

    python experiments/multitask_vs_single.py --data-dir ../shared/data --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import common as common_lib
import numpy as np
from common import REPO, model_label

TASKS = ("glue/sst2", "glue/cola", "glue/mrpc", "glue/rte", "glue/stsb")
MAIN = {"sst2": "accuracy", "cola": "matthews", "mrpc": "f1", "rte": "accuracy", "stsb": "pearson"}


def launch(workdir: pathlib.Path, overrides: list[str]) -> dict:
    return common_lib.launch("multitask", "multitask_glue.py", workdir, overrides)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200, help="steps per task (single-task runs)")
    ap.add_argument("--refine", type=int, default=60, help="refinement steps per task")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-multitask"))
    args = common_lib.parse(ap)
    out = pathlib.Path(args.out)
    common = [
        *common_lib.run_overrides(args),
        f"--config.optim.lr={args.lr}",
    ]
    t0 = time.time()
    rows: dict[str, dict[str, list[float]]] = {
        "single": {},
        "multitask": {},
        "multitask+refine": {},
    }
    for seed in args.seeds:
        for task in TASKS:
            short = task.split("/")[1]
            r = launch(out / f"single-{short}-s{seed}",
                       common + [f"--config.seed={seed}", f"--config.tasks.names=('{task}',)",
                                 f"--config.train.steps={args.steps}"])  # fmt: skip
            rows["single"].setdefault(short, []).append(r[short][MAIN[short]])
        wd = out / f"multi-s{seed}"
        r = launch(wd, common + [f"--config.seed={seed}",
                                 f"--config.train.steps={args.steps * len(TASKS)}",
                                 f"--config.refine.steps={args.refine}",
                                 f"--config.refine.lr={args.lr}"])  # fmt: skip
        refined = json.loads((wd / "results_refined.json").read_text())
        for task in TASKS:
            short = task.split("/")[1]
            rows["multitask"].setdefault(short, []).append(r[short][MAIN[short]])
            rows["multitask+refine"].setdefault(short, []).append(refined[short][MAIN[short]])
    elapsed = time.time() - t0

    shorts = [t.split("/")[1] for t in TASKS]
    lines = [
        "| setting | " + " | ".join(f"{s} ({MAIN[s]})" for s in shorts) + " | average |",
        "|---|" + "---|" * (len(shorts) + 1),
    ]
    summary = {}
    for name, per_task in rows.items():
        cells, means = [], []
        for s in shorts:
            v = np.asarray(per_task[s]) * 100
            cells.append(f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f}")
            means.append(v.mean())
        avg = float(np.mean(means))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {avg:.1f} |")
        summary[name] = {s: per_task[s] for s in shorts}
    details = (
        f"{model_label(args)}, batch {args.batch_size}, max length {args.max_length}, AdamW lr "
        f"{args.lr}, linear schedule with 10% warm-up; single-task: {args.steps} steps per task; "
        f"multitask: {args.steps * len(TASKS)} steps (temperature-2 sampling); refinement: "
        f"{args.refine} steps per task. Seeds {args.seeds}. Dev metrics ×100, mean ± sample std "
        "over seeds."
    )
    common_lib.write(
        "multitask-vs-single",
        [*common_lib.header("multitask_vs_single.py", elapsed, details), "", *lines],
        {"args": vars(args), "elapsed_s": elapsed, "results": summary},
    )


if __name__ == "__main__":
    main()
