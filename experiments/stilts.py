"""Intermediate tasks (STILTs, Phang et al. 2018): does training on a labelled source task first
help RTE?

RTE (2,490 training pairs) is fine-tuned alone, and after an intermediate stage on MRPC, STS-B,
SST-2, or a multitask mixture of the three (supervised_sequential regime: ``source`` stage, then
``target``; the source heads are frozen and a fresh RTE head is trained on the carried encoder).
Each source stage runs once (with the first seed) and every seed's RTE run starts from its
end-of-stage checkpoint with an RTE head of its own (``model.init_from`` +
``model.init_from_skip``), so seeds vary the target fine-tuning (head initialisation, dropout,
data order) given one intermediate model, and the sources cost one run each rather than one per
seed; ``--source-per-seed`` trains the source stage again for every seed (seeds then also vary
the source stage, at the cost of a source stage per run). No model selection (the last step's
params are evaluated, so dev is not used to choose anything and is reported as held out). Significance:
Welch's t-test over seeds and a paired bootstrap over the 277 dev examples (per-example
correctness averaged over seeds) against RTE alone.

    python experiments/stilts.py --data-dir ../shared/data --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import pathlib

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
    run_seconds,
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


def source_checkpoint(
    workdir: pathlib.Path, overrides: list[str], args: argparse.Namespace
) -> list[str]:
    """Run one source stage (first seed; one unused RTE step) and return the overrides that
    start an RTE run from its end-of-stage checkpoint with a fresh RTE head."""
    launch("supervised_sequential", "supervised_sequential_glue.py", workdir, overrides + [
        f"--config.seed={args.seeds[0]}", f"--config.source.steps={args.source_steps}",
        "--config.train.steps=1"], keep_checkpoints=True)  # fmt: skip
    ckpt = workdir / "checkpoints" / str(args.source_steps)
    if not (ckpt / "state").exists():
        raise SystemExit(f"stilts: no source-stage checkpoint at {ckpt}")
    # The checkpoint holds the RTE head as the source run's seed initialised it; every seed
    # starts its own.
    return [f"--config.model.init_from={ckpt}", "--config.model.init_from_skip=('heads/rte/',)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--source-steps", type=int, default=200)
    ap.add_argument("--target-steps", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument(
        "--source-per-seed",
        action="store_true",
        help="train each source stage once per seed instead of once per source",
    )
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-stilts"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    common = [
        *run_overrides(args),
        f"--config.optim.lr={args.lr}",
        f"--config.source.optim.lr={args.lr}",
        "--config.source.eval_every=0",
    ]
    target = [f"--config.train.steps={args.target_steps}"]
    runs: list[pathlib.Path] = []
    acc: dict[str, list[float]] = {}
    per_example: dict[str, np.ndarray] = {}
    for name, tasks in SOURCES.items():
        hits = []
        slug = "alone" if not tasks else "-".join(t.split("/")[1] for t in tasks)
        sources = ["--config.source.tasks=" + repr(tuple(tasks) or ("glue/mrpc",))]
        start: list[str] = []
        if tasks and not args.source_per_seed:
            start = source_checkpoint(out / f"{slug}-source", common + sources, args)
            runs.append(out / f"{slug}-source")
        for seed in args.seeds:
            wd = out / f"{slug}-s{seed}"
            runs.append(wd)
            steps = args.source_steps if tasks and not start else 0
            r = launch("supervised_sequential", "supervised_sequential_glue.py", wd, common + target + [
                f"--config.seed={seed}", f"--config.source.steps={steps}", *sources, *start,
            ])  # fmt: skip
            acc.setdefault(name, []).append(r["rte"]["accuracy"])
            hits.append(correct(wd, "rte"))
        per_example[name] = np.mean(hits, axis=0)
    # The runs' own durations, summed: an interrupted command resumes with its finished runs.
    elapsed = sum(run_seconds(wd) for wd in runs)

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
    once = (
        "one per seed"
        if args.source_per_seed
        else (
            f"once per source, seed {args.seeds[0]}; each seed's RTE run starts from it with its own "
            "RTE head"
        )
    )
    details = (
        f"{model_label(args)}; source stage {args.source_steps} steps ({once}), RTE {args.target_steps} steps; batch {args.batch_size} rows (data.packing: several examples per row), max length {args.max_length}, AdamW lr {args.lr}, linear "
        f"schedule with 10% warm-up; seeds {args.seeds}; last-step params, no selection. "
        "Dev accuracy ×100, mean ± sample std over seeds; p-values against RTE alone (Welch: "
        "two-sided over seeds; bootstrap: one-sided over dev examples, 10,000 resamples). Wall time: "
        "the runs' own durations, summed (finished runs are reused)."
    )
    write("stilts", [*header("stilts.py", elapsed, details), "", *lines], raw)


if __name__ == "__main__":
    main()
