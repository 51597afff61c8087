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
import time

from common import REPO, header, launch, mean_std, parse, run_overrides, write

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
    t0 = time.time()
    f1: dict[str, list[float]] = {}
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
            r = launch(
                "multitask", "multitask.py", wd, common + setting + [f"--config.seed={seed}"]
            )
            f1.setdefault(name, []).append(r["conll2003"]["span_f1"])
    elapsed = time.time() - t0

    lines = ["| setting | dev span F1 (ours) | BERT-base dev F1 (paper) |", "|---|---|---|"]
    for name in settings:
        paper = PAPER.get(name)
        lines.append(f"| {name} | {mean_std(f1[name])} | {paper if paper else '—'} |")
    details = (
        f"MiniLM-L6 (packaged). Feature-based: frozen encoder, features cached once per "
        f"representation, BiLSTM tagger ({args.bilstm} per direction) + linear layer, "
        f"{args.steps} steps, lr {args.lr}. Fine-tuning: linear tagging head, "
        f"{args.finetune_steps} steps, lr {args.finetune_lr}. Batch {args.batch_size} rows (data.packing: several examples per row), max length "
        f"{args.max_length}, AdamW, linear schedule with 10% warm-up; seeds {args.seeds}; "
        "last-step params, no selection. Dev span F1 ×100 (seqeval), mean ± sample std over seeds."
    )
    write("feature-based", [*header("feature_based.py", elapsed, details), "", *lines],
          {"args": vars(args), "elapsed_s": elapsed, "span_f1": f1})  # fmt: skip


if __name__ == "__main__":
    main()
