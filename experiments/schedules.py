"""Which weights train, and when (ULMFiT, Howard & Ruder 2018; chain-thaw, Felbo et al. 2017;
L2-SP, Li et al. 2018): seven adaptation strategies at the same step budget on two small labelled
tasks, with the forgetting each causes.

Tasks: SST-2 with 1,000 training labels (the first 1,000 of train) and MRPC (3,668 pairs).
Strategies (``optim.*`` keys): head only (``feature_extraction``), full fine-tuning,
freeze-all-but-last, chain-thaw, gradual unfreezing, gradual unfreezing + discriminative LRs
(d = 1/2.6) + slanted triangular LRs, and full fine-tuning with L2-SP (α = β = 0.01). Every
strategy gets the same steps, batch and peak LR (the head-only run, which trains only a linear
classifier, gets 1e-3 — the usual head LR; it was not tuned). No model selection: the last step is
evaluated, so dev is held out.

Forgetting: the packaged all-MiniLM-L6-v2 is a sentence-embedding model; its pretrained skill is
semantic similarity. After each run the fine-tuned encoder is exported to transformers and its
mean-pooled embeddings are scored zero-shot on STS-B dev (Spearman of cosine similarity vs gold),
against the same score of the untouched encoder. The drop is how much of the pretrained skill the
strategy destroyed.

    python experiments/schedules.py --data-dir ../shared/data --seeds 0 1 2

``--tasks sst2`` (or ``mrpc``) runs one task: each fine-tuning run of MiniLM is several minutes
on a 2-core CPU, and 42 of them do not fit an hour. The table keeps a task run earlier with the
same arguments (from experiments/results/schedules.json), so running the other task completes it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil

import numpy as np
from common import (
    REPO,
    add_tasks_argument,
    keep_earlier_tasks,
    launch,
    mean_std,
    model_label,
    parse,
    run_overrides,
    run_seconds,
    seeds_label,
    write_tasks_table,
)

STRATEGIES = {
    "head only (feature extraction)": ["--config.optim.strategy=feature_extraction",
                                       "--config.optim.lr=1e-3"],
    "full fine-tuning": ["--config.optim.strategy=finetune"],
    "freeze all but last": ["--config.optim.strategy=freeze_all_but_last"],
    "chain-thaw": ["--config.optim.strategy=chain_thaw"],
    "gradual unfreezing": ["--config.optim.strategy=gradual_unfreezing"],
    "gradual + discr. LR + STLR": ["--config.optim.strategy=gradual_unfreezing",
                                   "--config.optim.discriminative=0.3846",
                                   "--config.optim.schedule=stlr"],
    "L2-SP": ["--config.optim.strategy=finetune", "--config.optim.l2sp=0.01",
              "--config.optim.l2sp_beta=0.01"],
}  # fmt: skip
# short -> (task, training labels kept (0 = all), the table's metric, other metrics shown)
TASKS = {
    "sst2": ("glue/sst2", 1000, "accuracy", ()),
    # F1 alone hides a classifier that says "paraphrase" to everything (dev F1 81.2): accuracy too
    "mrpc": ("glue/mrpc", 0, "f1", ("accuracy",)),
}


def sts_zero_shot(model_dir: str | pathlib.Path, data_dir: str) -> float:
    """Spearman ×1 of cosine similarity of mean-pooled embeddings vs STS-B dev gold scores."""
    import torch
    from scipy.stats import spearmanr
    from transformers import AutoModel, AutoTokenizer

    rows = [line.split("\t") for line in
            (pathlib.Path(data_dir) / "STS-B" / "dev.tsv").read_text().splitlines()[1:]]  # fmt: skip
    a, b, gold = [r[7] for r in rows], [r[8] for r in rows], [float(r[9]) for r in rows]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 128):
                enc = tok(texts[i : i + 128], padding=True, truncation=True, max_length=128,
                          return_tensors="pt")  # fmt: skip
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).float()
                out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(out)

    cos = (embed(a) * embed(b)).sum(-1).numpy()
    return float(spearmanr(cos, np.asarray(gold)).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5)
    add_tasks_argument(ap, TASKS)
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-schedules"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    data_dir = os.path.abspath(args.data_dir)
    common = [
        *run_overrides(args),
        f"--config.optim.lr={args.lr}",
        f"--config.train.steps={args.steps}",
    ]
    from jaxtl.models.hf import resolve

    sts_before = sts_zero_shot(resolve(args.model), data_dir)
    scores: dict[str, dict[str, list[float]]] = {}
    sts: dict[str, dict[str, list[float]]] = {}
    other: dict[str, dict[str, dict[str, list[float]]]] = {}  # strategy -> task -> metric
    elapsed = dict.fromkeys(args.tasks, 0.0)  # the runs' own wall times: finished runs are reused
    for name, overrides in STRATEGIES.items():
        slug = name.split(" (")[0].replace(" ", "_").replace("+", "").replace(".", "")
        for short in args.tasks:
            task, n_train, metric, others = TASKS[short]
            for seed in args.seeds:
                wd = out / f"{slug}-{short}-s{seed}"
                export = wd / "export"
                r = launch("multitask", "multitask_glue.py", wd, common + overrides + [
                    f"--config.seed={seed}", f"--config.tasks.names=('{task}',)",
                    f"--config.data.max_train_examples={n_train}",
                    f"--config.export_dir={export}",
                ])  # fmt: skip
                scores.setdefault(name, {}).setdefault(short, []).append(r[short][metric])
                for m in others:
                    other.setdefault(name, {}).setdefault(short, {}).setdefault(m, []).append(
                        r[short][m])  # fmt: skip
                done = wd / "sts_zero_shot.txt"
                if not done.exists():
                    done.write_text(str(sts_zero_shot(export / short, data_dir)))
                    shutil.rmtree(export, ignore_errors=True)
                sts.setdefault(name, {}).setdefault(short, []).append(float(done.read_text()))
                elapsed[short] += run_seconds(wd)  # the STS scoring included
    raw = {"args": vars(args), "scores": scores, "other_metrics": other, "sts_zero_shot": sts,
           "sts_zero_shot_pretrained": sts_before}  # fmt: skip
    per_task = ("scores", "other_metrics", "sts_zero_shot")
    tasks = keep_earlier_tasks("schedules", args, raw, per_task, elapsed, TASKS)

    name_of = {"sst2": ("SST-2", "SST-2 1k acc"), "mrpc": ("MRPC", "MRPC F1")}
    metric_cols = [(t, None) for t in tasks]
    metric_cols += [(t, m) for t in tasks for m in TASKS[t][3]]
    short_name = {"accuracy": "acc"}
    cols = [name_of[t][1] if m is None else f"{name_of[t][0]} {short_name.get(m, m)}"
            for t, m in metric_cols]  # fmt: skip
    cols += [f"STS-B zero-shot after {name_of[t][0]}" for t in tasks]
    lines = [
        "| strategy | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
        "| (pretrained encoder, untouched) | "
        + " | ".join(["—"] * len(metric_cols))
        + f" | {sts_before * 100:.1f}" * len(tasks)
        + " |",
    ]
    for name in STRATEGIES:
        s, z, o = scores[name], sts[name], raw["other_metrics"].get(name, {})
        cells = [mean_std(s[t]) if m is None else mean_std(o[t][m]) for t, m in metric_cols]
        cells += [mean_std(z[t]) for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seeds = seeds_label(raw, tasks, {t: name_of[t][0] for t in tasks})
    details = (
        f"{model_label(args)}; {args.steps} steps per run, batch {args.batch_size} rows "
        f"(data.packing: several examples per row), max length {args.max_length}, peak LR "
        f"{args.lr} (head only: 1e-3), linear schedule with 10% warm-up unless STLR; {seeds}; "
        "last-step params, no selection. Task columns: dev metric ×100; STS-B columns: zero-shot "
        "Spearman ×100 of the fine-tuned encoder's mean-pooled embeddings on STS-B dev (forgetting "
        "of the pretrained similarity skill); mean ± sample std over seeds. Wall time: the runs' "
        "own durations, summed (finished runs are reused)."
    )
    write_tasks_table("schedules", raw, tasks, details, lines)


if __name__ == "__main__":
    main()
