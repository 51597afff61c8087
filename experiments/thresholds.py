"""Multilabel thresholds: does a threshold per class, tuned on dev (``train.tune_thresholds``),
beat the usual 0.5 for every class on held-out data?

The task: which entity types (LOC, MISC, ORG, PER) a CoNLL-2003 sentence mentions — a real
multilabel task from real data, with uneven classes (sentences with no entity at all included).
MiniLM is fine-tuned on the first ``--train-sentences`` training sentences and scored at the
last step (no selection). Each run tunes its thresholds on CoNLL dev; the same run's test
predictions (CoNLL test, never used to choose anything) are then scored twice from their
probabilities — at 0.5 for every class and at the tuned thresholds — so each seed gives a paired
comparison on the same model. A third arm tunes the same run's thresholds for the pooled
micro-F1 (``train.threshold_objective=micro_f1``): ``jaxtl.thresholds.tune`` on the run's own dev
probabilities — what the run does with that key, as tuning comes after training and selection.

    python experiments/thresholds.py --data-dir ../shared/data --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
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
    write,
)
from scipy import stats
from sklearn.metrics import f1_score

TYPES = ("LOC", "MISC", "ORG", "PER")


def entity_types_files(data_dir: str, n_train: int, out: pathlib.Path) -> str:
    """``<out>/{train,dev,test}.tsv``: each CoNLL-2003 sentence and the entity types it names
    (the first ``n_train`` training sentences). Returns the task spec."""
    sys.path.insert(0, str(REPO))
    from jaxtl.data import get_task

    out.mkdir(parents=True, exist_ok=True)
    task = get_task("conll2003", data_dir)
    for split in ("train", "dev", "test"):
        examples = task.load(split)[: n_train if split == "train" else None]
        rows = []
        for ex in examples:
            types = sorted({t[2:] for t in ex.label if t != "O"})  # type: ignore[union-attr]
            rows.append(f"{' '.join(ex.words or ())}\t{','.join(types)}\n")
        (out / f"{split}.tsv").write_text("text\ttypes\n" + "".join(rows))
    return (f"file:name=types,path={out}/{{split}}.tsv,text=text,label=types,kind=multilabel,"
            f"label_names={'|'.join(TYPES)}")  # fmt: skip


def scores(records: list[dict], cut: np.ndarray) -> dict[str, float]:
    gold = np.array([[t in r["gold"] for t in TYPES] for r in records], int)
    pred = (np.array([r["probs"] for r in records]) > cut).astype(int)
    per = f1_score(gold, pred, average=None, zero_division=0)
    return {"micro_f1": f1_score(gold, pred, average="micro"),
            "macro_f1": f1_score(gold, pred, average="macro"),
            **{f"f1_{t}": float(f) for t, f in zip(TYPES, per)}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-sentences", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=4, help="packed rows (~9 sentences each)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-thresholds"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    spec = entity_types_files(args.data_dir, args.train_sentences, out / "data")
    common = [*run_overrides(args), f"--config.optim.lr={args.lr}",
              f"--config.tasks.names=({spec!r},)", f"--config.train.steps={args.steps}",
              "--config.train.tune_thresholds=True"]  # fmt: skip
    t0 = time.time()
    from jaxtl import thresholds

    results: dict[str, dict[str, list[float]]] = {"0.5": {}, "tuned": {}, "tuned (micro)": {}}
    dev: dict[str, list[float]] = {"before": [], "after": []}
    cuts, micro_cuts = [], []
    for seed in args.seeds:
        wd = out / f"s{seed}"
        launch("multitask", "multitask.py", wd, [*common, f"--config.seed={seed}"])
        tuned = json.loads((wd / "thresholds.json").read_text())["types"]
        cut = np.array([tuned["thresholds"][t] for t in TYPES])
        cuts.append(cut.tolist())
        dev["before"].append(tuned["dev_before"]["macro_f1"])
        dev["after"].append(tuned["dev_after"]["macro_f1"])
        dev_recs = predictions(wd, "types", "dev")
        micro_cut = np.array(thresholds.tune(
            np.array([[t in r["gold"] for t in TYPES] for r in dev_recs]),
            np.array([r["probs"] for r in dev_recs]), 0.5, "micro_f1"))  # fmt: skip
        micro_cuts.append(micro_cut.tolist())
        test = predictions(wd, "types", "test")
        arms = (("0.5", np.full(len(TYPES), 0.5)), ("tuned", cut), ("tuned (micro)", micro_cut))
        for name, c in arms:
            for k, v in scores(test, c).items():
                results[name].setdefault(k, []).append(v)
    elapsed = time.time() - t0
    keys = ("micro_f1", "macro_f1", *(f"f1_{t}" for t in TYPES))
    lines = ["| thresholds | test micro-F1 | test macro-F1 | " + " | ".join(f"F1 {t}" for t in TYPES)
             + " |", "|---" * (len(keys) + 1) + "|"]  # fmt: skip
    for name in results:
        lines.append(f"| {name} | " + " | ".join(mean_std(results[name][k]) for k in keys) + " |")
    p = {k: float(stats.ttest_rel(results["tuned"][k], results["0.5"][k]).pvalue) for k in keys}
    # the micro-F1 arm against each of the others, on the two pooled scores
    p_micro = {
        f"{k.replace('_', '-')} vs {base}":
            float(stats.ttest_rel(results["tuned (micro)"][k], results[base][k]).pvalue)
        for base in ("0.5", "tuned") for k in ("micro_f1", "macro_f1")
    }  # fmt: skip
    mean_cut = np.mean(cuts, axis=0)
    lines += [
        "",
        "Paired t-test over seeds, tuned vs 0.5 (the same run scored both ways): "
        + ", ".join(f"{k.replace('_', '-')} p = {v:.3g}" for k, v in p.items())
        + ".",
        "Tuned thresholds (mean over seeds): "
        + ", ".join(f"{t} {c:.2f}" for t, c in zip(TYPES, mean_cut))
        + f"; dev macro-F1 {mean_std(dev['before'])} at 0.5 → {mean_std(dev['after'])} tuned "
        "(chosen on dev, so optimistic).",
        "Tuned for micro-F1 (thresholds chosen together, mean over seeds): "
        + ", ".join(f"{t} {c:.2f}" for t, c in zip(TYPES, np.mean(micro_cuts, axis=0)))
        + "; paired t-test over seeds, tuned (micro) vs the others: "
        + ", ".join(f"{k} p = {v:.3g}" for k, v in p_micro.items())
        + ".",
    ]
    details = (
        f"{model_label(args)}; which entity types a CoNLL-2003 sentence names (multilabel: "
        f"{', '.join(TYPES)}), the first {args.train_sentences} training sentences; "
        f"{args.steps} steps of {args.batch_size} packed rows, max length {args.max_length}, "
        f"AdamW lr {args.lr}; thresholds tuned on all of CoNLL dev, scored on all of CoNLL test "
        f"at the last step (no selection). Seeds {args.seeds}. ×100, mean ± sample std."
    )
    write("thresholds", [*header("thresholds.py", elapsed, details), "", *lines],
          {"args": vars(args), "elapsed_s": elapsed, "results": results, "dev_macro_f1": dev,
           "thresholds": cuts, "micro_thresholds": micro_cuts, "paired_p": p,
           "paired_p_micro": p_micro})  # fmt: skip


if __name__ == "__main__":
    main()
