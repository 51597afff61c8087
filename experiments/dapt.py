"""Unsupervised sequential transfer, domain- and task-adaptive (Gururangan et al. 2020; ULMFiT's
target-LM stage): does continuing masked-LM training — on the target task's own training text, or
on general text (WikiText) — before fine-tuning help a small task?

For RTE and MRPC: (a) fine-tune directly; (b) MLM on the task's own train sentences (labels
unused), then fine-tune; (c) MLM on the WikiText-103 subset, then fine-tune — the
unsupervised_sequential regime, ``pretrain`` then ``adapt``, same steps for (b) and (c) and the
same fine-tuning for all three. The packaged all-MiniLM-L6-v2 ships without an MLM head, so (b)
and (c) train a fresh tied head from scratch together with the encoder: part of the MLM budget
goes to the head, a handicap the paper's BERT/RoBERTa did not have. No model selection (the last
step is evaluated; dev is held out).

    python experiments/dapt.py --data-dir ../shared/data --seeds 0 1 2

``--tasks mrpc`` (or ``rte``) runs one task; the table has a column pair per metric of each task,
and keeps a task run earlier with the same arguments but the seeds (from
experiments/results/dapt.json), so RTE can take five seeds after MRPC's three. Cost on a
2-core CPU with ``--tasks mrpc --pretrain-steps 100 --steps 150``: a direct run took 3.3-3.6
min, one with MLM on the task text 6.8-7.3 min, on WikiText 9.3-9.6 min (its test perplexity
is scored too), 60 min for one task's nine runs; RTE's fifteen (five seeds, ``--tasks rte``)
took 131 min on a 2-core Intel Xeon machine (direct 4.9-5.3 min, WikiText about 10.5 min).
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib

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
    welch,
    write_tasks_table,
)

TASKS = {  # short -> (task, GLUE folder, text columns of train.tsv, metrics in the table)
    "rte": ("glue/rte", "RTE", (1, 2), ("accuracy",)),
    # F1 alone hides a classifier that says "paraphrase" to everything (dev F1 81.2): accuracy too
    "mrpc": ("glue/mrpc", "MRPC", (3, 4), ("f1", "accuracy")),
}
METRIC_NAMES = {"accuracy": "acc", "f1": "F1"}
SETTINGS = ("fine-tune directly", "MLM on task text, then fine-tune",
            "MLM on WikiText, then fine-tune")  # fmt: skip


def task_text(data_dir: str, folder: str, cols: tuple[int, ...], out: pathlib.Path) -> str:
    """The task's train sentences, one per line (labels dropped): the TAPT corpus."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(pathlib.Path(data_dir) / folder / "train.tsv", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        out.write_text("\n".join(r[c] for r in rows for c in cols if len(r) > c) + "\n")
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pretrain-steps", type=int, default=200)
    ap.add_argument("--steps", type=int, default=250, help="fine-tuning steps")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--mlm-lr", type=float, default=1e-4)
    add_tasks_argument(ap, TASKS)
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-dapt"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    data_dir = os.path.abspath(args.data_dir)
    common = [
        *run_overrides(args),
        f"--config.train.steps={args.steps}",
        "--config.pretrain.eval_every=0",
        # The fine-tuning recipe of the other experiments, not the config's ULMFiT one.
        "--config.optim.strategy=finetune",
        "--config.optim.schedule=linear",
        "--config.optim.discriminative=1.0",
        f"--config.optim.lr={args.lr}",
        f"--config.pretrain.optim.lr={args.mlm_lr}",
        "--config.pretrain.block_size=128",
        "--config.pretrain.whole_word=True",
    ]
    scores: dict[str, dict[str, dict[str, list[float]]]] = {}  # setting -> task -> metric
    # The script resumes finished runs, so its own elapsed time can be any fraction of the work:
    # report the runs' own wall times, summed.
    elapsed = dict.fromkeys(args.tasks, 0.0)
    for short in args.tasks:
        task, folder, cols, metrics = TASKS[short]
        text = task_text(data_dir, folder, cols, out / f"{short}_train_text.txt")
        corpora = {
            SETTINGS[0]: None,
            SETTINGS[1]: f"file:name={short}_text,kind=lm,path={text}",
            SETTINGS[2]: "wikitext",
        }
        for setting, corpus in corpora.items():
            for seed in args.seeds:
                slug = {None: "direct", "wikitext": "wiki"}.get(corpus, "task")
                pre = ["--config.pretrain.steps=0"] if corpus is None else [
                    f"--config.pretrain.steps={args.pretrain_steps}",
                    f"--config.pretrain.corpus={corpus}"]  # fmt: skip
                wd = out / f"{short}-{slug}-s{seed}"
                r = launch("unsupervised_sequential", "unsupervised_sequential_glue.py", wd,
                           common + pre + [
                               f"--config.seed={seed}", f"--config.target.tasks=('{task}',)"])  # fmt: skip
                elapsed[short] += run_seconds(wd)
                for metric in metrics:
                    scores.setdefault(setting, {}).setdefault(short, {}).setdefault(
                        metric, []).append(r[short][metric])  # fmt: skip
    raw = {"args": vars(args), "scores": scores}
    tasks = keep_earlier_tasks("dapt", args, raw, ("scores",), elapsed, TASKS)

    columns = [(t, m) for t in tasks for m in TASKS[t][3]]
    lines = ["| setting | " + " | ".join(f"{TASKS[t][1]} {METRIC_NAMES[m]} | Welch p vs direct"
                                         for t, m in columns) + " |",
             "|---|" + "---|---|" * len(columns)]  # fmt: skip
    for s in SETTINGS:
        cells = []
        for short, metric in columns:
            v = scores[s][short][metric]
            base = scores[SETTINGS[0]][short][metric]
            cells += [mean_std(v), "—" if s == SETTINGS[0] else f"{welch(v, base):.3f}"]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    seeds = seeds_label(raw, tasks, {t: TASKS[t][1] for t in tasks})
    details = (
        f"{model_label(args)} with a fresh MLM head; MLM: {args.pretrain_steps} steps of 128-token "
        f"blocks, whole-word masking, lr {args.mlm_lr}; fine-tuning: {args.steps} steps, batch "
        f"{args.batch_size}, max length {args.max_length}, AdamW lr {args.lr}, linear schedule with "
        f"10% warm-up; {seeds}; last-step params, no selection. Dev metric ×100, mean ± "
        "sample std over seeds; Welch's t-test (two-sided, over seeds) against direct fine-tuning. "
        "Wall time: the runs' own durations, summed."
    )
    write_tasks_table("dapt", raw, tasks, details, lines)


if __name__ == "__main__":
    main()
