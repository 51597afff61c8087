"""Self-supervised joint training with little labelled data (CVT, Clark et al. 2018; auxiliary
MLM; UDA-style consistency, Xie et al. 2020): does learning from the unlabelled rest of the
training set help when only a few labels are kept?

- CoNLL-2003 NER with the first 1,000 labelled training sentences; the other ~13,000 training
  sentences, labels dropped, are the unlabelled text. Supervised only vs + CVT (the four tagging
  views) vs + auxiliary masked LM.
- SST-2 with the first 200 labelled training sentences; the other ~67,000, labels dropped, are
  the unlabelled text. Supervised only vs + consistency (UDA-style: the prediction on a noised
  copy of an unlabelled sentence is pulled to the prediction on the clean one).

Equal labelled budget: supervised-only runs take ``--steps`` labelled steps (multitask regime, one
task); the joint runs (self_supervised regime, ``unlabelled.ratio`` = 1) take ``2 × --steps``
steps, half of them labelled, so every run sees the same labelled batches' worth of updates and
the joint runs additionally see as many unlabelled batches. No model selection (last step; dev is
held out).

    python experiments/semi_supervised.py --data-dir ../shared/data --seeds 0 1 2

Cost on a 2-core CPU: the 15 runs took 59 min with ``--steps 100`` (the EXPERIMENTS.md table);
the default, 200 labelled steps, doubles every run's training steps.
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import time

from common import REPO, header, launch, mean_std, model_label, parse, run_overrides, welch, write


def conll_unlabelled(data_dir: str, skip: int, out: pathlib.Path) -> str:
    """CoNLL-2003 train sentences after the first ``skip`` (the labelled ones), one per line."""
    if not out.exists():
        sentences, words = [], []
        for line in (pathlib.Path(data_dir) / "conll2003" / "train.txt").read_text().splitlines():
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    sentences.append(" ".join(words))
                words = []
            else:
                words.append(parts[0])
        if words:
            sentences.append(" ".join(words))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(sentences[skip:]) + "\n")
    return str(out)


def sst2_unlabelled(data_dir: str, skip: int, out: pathlib.Path) -> str:
    """SST-2 train sentences after the first ``skip``, one per line (labels dropped)."""
    if not out.exists():
        with open(pathlib.Path(data_dir) / "SST-2" / "train.tsv", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(r[0] for r in rows[skip:]) + "\n")
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200, help="labelled steps per run")
    ap.add_argument("--ner-labels", type=int, default=1000)
    ap.add_argument("--sst2-labels", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-semi"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    data_dir = os.path.abspath(args.data_dir)
    common = [
        *run_overrides(args),
        f"--config.optim.lr={args.lr}",
    ]
    experiments = {  # task -> (metric, labels, unlabelled corpus, {setting: objective or None})
        "conll2003": ("span_f1", args.ner_labels,
                      conll_unlabelled(data_dir, args.ner_labels, out / "conll_unlabelled.txt"),
                      {"supervised only": None, "+ CVT": "cvt", "+ auxiliary MLM": "aux_lm"}),
        "glue/sst2": ("accuracy", args.sst2_labels,
                      sst2_unlabelled(data_dir, args.sst2_labels, out / "sst2_unlabelled.txt"),
                      {"supervised only": None, "+ consistency (UDA-style)": "consistency"}),
    }  # fmt: skip
    t0 = time.time()
    scores: dict[str, dict[str, list[float]]] = {}
    for task, (metric, n_labels, corpus, settings) in experiments.items():
        short = task.split("/")[-1]
        for setting, objective in settings.items():
            for seed in args.seeds:
                wd = out / f"{short}-{objective or 'supervised'}-s{seed}"
                task_args = [
                    f"--config.seed={seed}",
                    f"--config.data.max_train_examples={n_labels}",
                ]
                if objective is None:
                    r = launch("multitask", "multitask.py", wd, common + task_args + [
                        f"--config.tasks.names=('{task}',)", f"--config.train.steps={args.steps}"])  # fmt: skip
                else:
                    config = (
                        "self_supervised_cvt.py" if objective == "cvt" else "self_supervised.py"
                    )
                    r = launch("self_supervised", config, wd, common + task_args + [
                        f"--config.objective={objective}", f"--config.target.tasks=('{task}',)",
                        f"--config.train.steps={2 * args.steps}", "--config.unlabelled.ratio=1.0",
                        f"--config.unlabelled.corpus=file:name={short}_unlabelled,kind=lm,"
                        f"path={corpus}",
                    ])  # fmt: skip
                scores.setdefault(short, {}).setdefault(setting, []).append(r[short][metric])
    elapsed = time.time() - t0

    lines = ["| task (labels) | setting | dev metric | Welch p vs supervised only |",
             "|---|---|---|---|"]  # fmt: skip
    for task, (metric, n_labels, _, settings) in experiments.items():
        short = task.split("/")[-1]
        base = scores[short]["supervised only"]
        for setting in settings:
            v = scores[short][setting]
            p = "—" if setting == "supervised only" else f"{welch(v, base):.3f}"
            lines.append(f"| {short} ({n_labels}) | {setting} | {metric} {mean_std(v)} | {p} |")
    details = (
        f"{model_label(args)}; {args.steps} labelled steps per run (joint runs: {2 * args.steps} "
        f"steps, every other one unlabelled), batch {args.batch_size} rows (data.packing: several examples per row), max length "
        f"{args.max_length}, AdamW lr {args.lr}, linear schedule with 10% warm-up; seeds "
        f"{args.seeds}; last-step params, no selection. Dev metric ×100, mean ± sample std over "
        "seeds; Welch's t-test (two-sided, over seeds) against supervised only."
    )
    write("semi_supervised", [*header("semi_supervised.py", elapsed, details), "", *lines],
          {"args": vars(args), "elapsed_s": elapsed, "scores": scores})  # fmt: skip


if __name__ == "__main__":
    main()
