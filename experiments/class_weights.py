"""Imbalanced labels: does weighting the loss by inverse class frequency (``train.class_weights=
balanced``, scikit-learn's and PyTorch's standard remedy) recover the minority class?

SST-2's training sentences are subsampled to ``--positives`` positive and ``--negatives``
negative ones (9:1 by default; seeded, the same file for every seed), and MiniLM is fine-tuned on
them with and without balanced class weights (the negative class then weighs
``n / (2 × negatives)`` = 5 and the positive 0.56). Evaluated on SST-2's dev split as it is
(balanced, 428 negative / 444 positive), which no run uses to choose anything (the last step is
scored): accuracy, macro-F1 and the negative class's recall.

    python experiments/class_weights.py --data-dir ../shared/data --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import time

import numpy as np
from common import (
    REPO,
    header,
    launch,
    mean_std,
    model_label,
    parse,
    predictions,
    run_overrides,
    welch,
    write,
)

SETTINGS = {"unweighted": "", "balanced class weights": "balanced"}


def imbalanced_train(data_dir: str, positives: int, negatives: int, out: pathlib.Path) -> str:
    """SST-2 train subsampled to ``positives`` + ``negatives`` sentences (seeded, in a shuffled
    order), as ``<out>/train.tsv``; SST-2 dev as ``<out>/dev.tsv``. Returns the task spec."""
    out.mkdir(parents=True, exist_ok=True)
    src = pathlib.Path(data_dir) / "SST-2"
    with open(src / "train.tsv", newline="") as f:
        rows = [(r["sentence"].strip(), r["label"]) for r in csv.DictReader(f, delimiter="\t",
                                                                             quoting=csv.QUOTE_NONE)]  # fmt: skip
    rng = np.random.default_rng(1234)
    by_label = {y: [r for r in rows if r[1] == y] for y in ("0", "1")}
    keep = [by_label["1"][i] for i in rng.permutation(len(by_label["1"]))[:positives]]
    keep += [by_label["0"][i] for i in rng.permutation(len(by_label["0"]))[:negatives]]
    keep = [keep[i] for i in rng.permutation(len(keep))]
    (out / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in keep))
    (out / "dev.tsv").write_text((src / "dev.tsv").read_text())
    return f"file:name=sst2_imbalanced,path={out}/{{split}}.tsv,text=sentence,label=label"


def negative_recall(workdir: pathlib.Path) -> float:
    rows = [r for r in predictions(workdir, "sst2_imbalanced") if r["gold"] == "0"]
    return float(np.mean([r["label"] == "0" for r in rows]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--positives", type=int, default=1800)
    ap.add_argument("--negatives", type=int, default=200)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--batch-size", type=int, default=4, help="packed rows (~9 sentences each)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-class-weights"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    spec = imbalanced_train(args.data_dir, args.positives, args.negatives, out / "data")
    common = [*run_overrides(args), f"--config.optim.lr={args.lr}",
              f"--config.tasks.names=({spec!r},)", f"--config.train.epochs={args.epochs}"]  # fmt: skip
    t0 = time.time()
    scores: dict[str, dict[str, list[float]]] = {s: {} for s in SETTINGS}
    for seed in args.seeds:
        for setting, value in SETTINGS.items():
            wd = out / f"{value or 'none'}-s{seed}"
            r = launch("multitask", "multitask.py", wd,
                       [*common, f"--config.seed={seed}",
                        f"--config.train.class_weights={value}"])["sst2_imbalanced"]  # fmt: skip
            got = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                   "negative_recall": negative_recall(wd)}  # fmt: skip
            for k, v in got.items():
                scores[setting].setdefault(k, []).append(v)
    elapsed = time.time() - t0
    keys = ("accuracy", "macro_f1", "negative_recall")
    lines = ["| setting | dev accuracy | dev macro-F1 | negative-class recall |",
             "|---|---|---|---|"]  # fmt: skip
    for setting in SETTINGS:
        lines.append(f"| {setting} | " + " | ".join(mean_std(scores[setting][k]) for k in keys)
                     + " |")  # fmt: skip
    a, b = scores["unweighted"], scores["balanced class weights"]
    p = {k: welch(b[k], a[k]) for k in keys}
    lines += ["", "Welch's t-test, balanced vs unweighted: " + ", ".join(
        f"{k.replace('_', '-')} p = {v:.3g}" for k, v in p.items()) + "."]  # fmt: skip
    details = (
        f"{model_label(args)}; SST-2 train subsampled to {args.positives} positive + "
        f"{args.negatives} negative sentences (seeded, one file for all runs); {args.epochs:g} "
        f"epochs of {args.batch_size} packed rows per step, max length {args.max_length}, AdamW lr "
        f"{args.lr}; scored on all of SST-2 dev at the last step (no selection). Seeds "
        f"{args.seeds}. ×100, mean ± sample std over seeds."
    )
    write("class-weights", [*header("class_weights.py", elapsed, details), "", *lines],
          {"args": vars(args), "elapsed_s": elapsed, "results": scores, "welch_p": p})  # fmt: skip


if __name__ == "__main__":
    main()
