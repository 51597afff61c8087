"""Feature-based vs fine-tuning (BERT, Devlin et al. 2019, Table 7) on CoNLL-2003 NER.

The frozen MiniLM feeds a BiLSTM tagger (``model.tagger_bilstm``) from one of six
representations — the embedding layer, the last layer, the second-to-last, the sum of the last
four, their concatenation, or ELMo's scalar mix of all layers (with γ) — against full fine-tuning
with a linear tagging head. The frozen runs compute the encoder's features once per
representation (``features.cache``, shared across seeds through ``features.dir``) and train the
tagger on the cache. Paper order (BERT-base dev F1): fine-tune 96.4 > concat-4 96.1 > sum-4 95.9 >
second-to-last 95.6 > last 94.9 > embeddings 91.0. No model selection (the last step is
evaluated; dev is held out).

    python experiments/feature_based.py --data-dir ../shared/data --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import pathlib

from common import (
    REPO,
    header,
    launch,
    mean_std,
    model_label,
    parse,
    run_overrides,
    run_seconds,
    test_results,
    write,
)

SETTINGS = {  # name -> representation (None: fine-tuning)
    "fine-tune (linear head)": None,
    "concat last four": "concat_last_four",
    "sum last four": "sum_last_four",
    "second-to-last": "second_to_last",
    "last": "last",
    "scalar mix (all layers)": "scalar_mix",
    "embeddings": "embeddings",
}
PAPER = {"fine-tune (linear head)": 96.4, "concat last four": 96.1, "sum last four": 95.9,
         "second-to-last": 95.6, "last": 94.9, "embeddings": 91.0}  # fmt: skip


def words_per_step(workdir: pathlib.Path) -> float:
    """Mean labelled words per train step of a finished run (its metrics' ``denominator``)."""
    from etils import epath

    from jaxtl.report import read_jsonl_repairing

    path = epath.Path(workdir) / "metrics.jsonl"
    if not path.exists():  # the setting was not run (--only)
        return float("nan")
    rows = read_jsonl_repairing(path)
    counts = [r["denominator"] for r in rows if r.get("split") == "train" and "denominator" in r]
    return sum(counts) / len(counts) if counts else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1500, help="tagger steps (feature-based)")
    ap.add_argument("--finetune-steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--bilstm", type=int, default=128, help="BiLSTM hidden size per direction")
    ap.add_argument("--lr", type=float, default=1e-3, help="tagger LR (feature-based)")
    ap.add_argument("--finetune-lr", type=float, default=5e-5)
    ap.add_argument("--only", default="", help="comma-separated representations to run "
                    "(finetune for fine-tuning); default all")  # fmt: skip
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-feature-based"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    common = [
        *run_overrides(args),
        "--config.tasks.names=('conll2003',)",
    ]
    f1: dict[str, list[float]] = {}
    f1_test: dict[str, list[float]] = {}
    runs: list[pathlib.Path] = []
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    settings = {n: r for n, r in SETTINGS.items() if not only or (r or "finetune") in only}
    for name, rep in settings.items():
        if rep is None:
            setting = [f"--config.train.steps={args.finetune_steps}",
                       f"--config.optim.lr={args.finetune_lr}"]  # fmt: skip
        else:
            setting = [f"--config.train.steps={args.steps}", f"--config.optim.lr={args.lr}",
                       "--config.optim.strategy=feature_extraction",
                       f"--config.model.representation={rep}",
                       f"--config.model.tagger_bilstm={args.bilstm}",
                       "--config.model.head=linear",
                       f"--config.features.dir={out / 'features'}"]  # fmt: skip
        for seed in args.seeds:
            wd = out / f"{rep or 'finetune'}-s{seed}"
            runs.append(wd)
            r = launch(
                "multitask", "multitask.py", wd, common + setting + [f"--config.seed={seed}"]
            )
            f1.setdefault(name, []).append(r["conll2003"]["span_f1"])
            test = test_results(wd).get("conll2003", {})
            if "span_f1" in test:
                f1_test.setdefault(name, []).append(test["span_f1"])
    # The script resumes finished runs, so its own elapsed time can be any fraction of the work:
    # report the runs' own wall times, summed (each from its config.json to its results.json).
    elapsed = sum(run_seconds(wd) for wd in runs)

    lines = ["| setting | dev span F1 (ours) | test span F1 (ours) | BERT-base dev F1 (paper) |",
             "|---|---|---|---|"]  # fmt: skip
    for name in settings:
        paper = PAPER.get(name)
        test = mean_std(f1_test[name]) if name in f1_test else "—"
        lines.append(f"| {name} | {mean_std(f1[name])} | {test} | {paper if paper else '—'} |")
    # labelled words per train step at the first seed: what "equal steps" means in data
    tagger = next((r for r in settings.values() if r), "last")
    words = {kind: words_per_step(out / f"{rep}-s{args.seeds[0]}")
             for kind, rep in (("finetune", "finetune"), ("tagger", tagger))}  # fmt: skip
    details = (
        f"{model_label(args)}. Feature-based: frozen encoder, features cached once per "
        f"representation, BiLSTM tagger ({args.bilstm} per direction) + linear layer, "
        f"{args.steps} steps, lr {args.lr}. Fine-tuning: linear tagging head, "
        f"{args.finetune_steps} steps, lr {args.finetune_lr}. Batch {args.batch_size} rows: "
        f"packed for fine-tuning (several sentences per row: {words['finetune']:,.0f} labelled "
        "words per step on average), one sentence per row for the tagger (a BiLSTM reads across "
        f"a row, so it turns packing off: {words['tagger']:,.0f} words per step). Max length "
        f"{args.max_length}, AdamW, linear schedule with 10% warm-up; seeds {args.seeds}; "
        "last-step params, no selection. Dev span F1 ×100 (seqeval), mean ± sample std over seeds."
    )
    write("feature-based", [*header("feature_based.py", elapsed, details), "", *lines],
          {"args": vars(args), "elapsed_s": elapsed, "span_f1": f1, "test_span_f1": f1_test})  # fmt: skip


if __name__ == "__main__":
    main()
