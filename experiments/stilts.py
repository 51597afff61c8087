"""Intermediate tasks (STILTs, Phang et al. 2018): does training on a labelled source task first
help RTE?

RTE (2,490 training pairs) is fine-tuned alone, and after an intermediate stage on MRPC, STS-B,
SST-2, or a multitask mixture of the three (supervised_sequential regime: ``source`` stage, then
``target``; the source heads are frozen and a fresh RTE head is trained on the carried encoder).
Every setting runs with each seed; no model selection (the last step's params are evaluated, so
dev is not used to choose anything and is reported as held out). Significance: Welch's t-test over
seeds and a paired bootstrap over the 277 dev examples (per-example correctness averaged over
seeds) against RTE alone.

    python experiments/stilts.py --data-dir ../shared/data --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy as np
from common import (
    REPO,
    correct,
    header,
    launch,
    mean_std,
    model_label,
    paired_bootstrap,
    parse,
    run_overrides,
    welch,
    write,
)

SOURCES = {
    "none (RTE alone)": (),
    "MRPC": ("glue/mrpc",),
    "STS-B": ("glue/stsb",),
    "SST-2": ("glue/sst2",),
    "MRPC+STS-B+SST-2 (multitask)": ("glue/mrpc", "glue/stsb", "glue/sst2"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--source-steps", type=int, default=200)
    ap.add_argument("--target-steps", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-stilts"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    common = [
        *run_overrides(args),
        f"--config.optim.lr={args.lr}",
        f"--config.source.optim.lr={args.lr}",
        f"--config.train.steps={args.target_steps}",
        "--config.source.eval_every=0",
    ]
    t0 = time.time()
    acc: dict[str, list[float]] = {}
    per_example: dict[str, np.ndarray] = {}
    for name, tasks in SOURCES.items():
        hits = []
        for seed in args.seeds:
            slug = "alone" if not tasks else "-".join(t.split("/")[1] for t in tasks)
            wd = out / f"{slug}-s{seed}"
            steps = args.source_steps if tasks else 0
            r = launch("supervised_sequential", "supervised_sequential_glue.py", wd, common + [
                f"--config.seed={seed}", f"--config.source.steps={steps}",
                "--config.source.tasks=" + repr(tuple(tasks) or ("glue/mrpc",)),
            ])  # fmt: skip
            acc.setdefault(name, []).append(r["rte"]["accuracy"])
            hits.append(correct(wd, "rte"))
        per_example[name] = np.mean(hits, axis=0)
    elapsed = time.time() - t0

    base = "none (RTE alone)"
    lines = [
        "| intermediate task | RTE dev accuracy | Δ vs alone | Welch p | paired bootstrap p |",
        "|---|---|---|---|---|",
    ]
    raw: dict = {"args": vars(args), "elapsed_s": elapsed, "accuracy": acc, "tests": {}}
    for name in SOURCES:
        delta = (np.mean(acc[name]) - np.mean(acc[base])) * 100
        if name == base:
            lines.append(f"| {name} | {mean_std(acc[name])} | — | — | — |")
            continue
        pw = welch(acc[name], acc[base])
        pb = paired_bootstrap(per_example[name], per_example[base])
        raw["tests"][name] = {"delta": delta, "welch_p": pw, "bootstrap_p": pb}
        lines.append(f"| {name} | {mean_std(acc[name])} | {delta:+.1f} | {pw:.3f} | {pb:.3f} |")
    details = (
        f"{model_label(args)}; source stage {args.source_steps} steps, RTE {args.target_steps} "
        f"steps; batch {args.batch_size} rows (data.packing: several examples per row), max length {args.max_length}, AdamW lr {args.lr}, linear "
        f"schedule with 10% warm-up; seeds {args.seeds}; last-step params, no selection. "
        "Dev accuracy ×100, mean ± sample std over seeds; p-values against RTE alone (Welch: "
        "two-sided over seeds; bootstrap: one-sided over dev examples, 10,000 resamples)."
    )
    write("stilts", [*header("stilts.py", elapsed, details), "", *lines], raw)


if __name__ == "__main__":
    main()
