"""Extractive QA: does fine-tuning beat a frozen encoder's features with a linear span head?

BERT (Devlin et al., 2019) fine-tunes for SQuAD and reports the feature-based approach only for
NER (Table 7); the taxonomy's adaptation question — extract features from chosen layers, or
fine-tune — is asked here of a span task. ../shared/data has no QA set, so the questions are
built from real text: each CoNLL-2003 sentence that names a person, an organisation or a place
becomes a question about one of those types ("Which organisation is named?", the type drawn
with a seeded generator), answered by every entity of that type in the sentence (SQuAD's
several gold answers; training uses the first). Train on the first ``--train-sentences``
training sentences, score the last step (no selection) on CoNLL dev and test with SQuAD's
exact match and F1; arms: ``finetune`` (every weight trains) and ``feature_extraction`` (the
frozen encoder's last layer, cached, under the same linear ``qa_outputs`` head), the latter
also given ``--head-steps`` steps at ``--long-head-lr`` (the head alone is cheap to train
longer: does the budget explain the gap?).

    python experiments/qa_feature_based.py --data-dir ../shared/data --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np
from common import REPO, header, launch, mean_std, model_label, parse, run_overrides, write
from scipy import stats

QUESTIONS = {"PER": "Which person is named?", "ORG": "Which organisation is named?",
             "LOC": "Which place is named?"}  # fmt: skip
ARMS = ("finetune", "feature_extraction", "feature_extraction_long")


def entity_questions(data_dir: str, n_train: int, out: pathlib.Path, seed: int = 0) -> str:
    """``<out>/{train,dev,test}.jsonl`` in SQuAD's JSON-lines layout: one question per CoNLL
    sentence that names a PER, ORG or LOC entity (the first ``n_train`` training sentences).
    Returns the task spec."""
    sys.path.insert(0, str(REPO))
    from jaxtl.data import get_task

    out.mkdir(parents=True, exist_ok=True)
    task = get_task("conll2003", data_dir)
    rng = np.random.default_rng(seed)
    for split in ("train", "dev", "test"):
        examples = task.load(split)[: n_train if split == "train" else None]
        lines = []
        for n, ex in enumerate(examples):
            words, tags = list(ex.words or ()), list(ex.label or ())  # type: ignore[arg-type]
            starts = np.cumsum([0] + [len(w) + 1 for w in words])  # char offset of each word
            spans: dict[str, list[tuple[int, str]]] = {}
            i = 0
            while i < len(words):  # IOB2 entities: B- then its I- continuation
                if tags[i] != "O" and tags[i][2:] in QUESTIONS:
                    kind, j = tags[i][2:], i + 1
                    while j < len(tags) and tags[j] == f"I-{kind}":
                        j += 1
                    spans.setdefault(kind, []).append((int(starts[i]), " ".join(words[i:j])))
                    i = j
                else:
                    i += 1
            if not spans:
                continue
            kind = sorted(spans)[int(rng.integers(len(spans)))]
            answers = spans[kind]
            lines.append(json.dumps({
                "id": f"{split}-{n}-{kind}", "question": QUESTIONS[kind],
                "context": " ".join(words),
                "answers": {"text": [a for _, a in answers],
                            "answer_start": [s for s, _ in answers]},
            }) + "\n")  # fmt: skip
        (out / f"{split}.jsonl").write_text("".join(lines))
    return f"file:name=entq,path={out}/{{split}}.jsonl,kind=qa"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("JAXTL_DATA_DIR", "../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-sentences", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5, help="fine-tuning")
    ap.add_argument("--head-lr", type=float, default=1e-3, help="the frozen encoder's head")
    ap.add_argument("--head-steps", type=int, default=1000, help="feature_extraction_long")
    ap.add_argument("--long-head-lr", type=float, default=1e-2, help="feature_extraction_long")
    ap.add_argument("--out", default=str(REPO / "runs" / "exp-qa-feature-based"))
    args = parse(ap)
    out = pathlib.Path(args.out)
    spec = entity_questions(args.data_dir, args.train_sentences, out / "data")
    counts = {s: sum(1 for _ in (out / "data" / f"{s}.jsonl").open()) for s in ("train", "dev",
                                                                              "test")}  # fmt: skip
    common = [*run_overrides(args), f"--config.tasks.names=({spec!r},)"]
    frozen = "--config.optim.strategy=feature_extraction"
    arm_overrides = {
        "finetune": ["--config.optim.strategy=finetune", f"--config.optim.lr={args.lr}",
                     f"--config.train.steps={args.steps}"],
        "feature_extraction": [frozen, f"--config.optim.lr={args.head_lr}",
                               f"--config.train.steps={args.steps}"],
        "feature_extraction_long": [frozen, f"--config.optim.lr={args.long_head_lr}",
                                    f"--config.train.steps={args.head_steps}"],
    }  # fmt: skip
    t0 = time.time()
    scores: dict[str, dict[str, list[float]]] = {a: {} for a in ARMS}
    for arm in ARMS:
        for seed in args.seeds:
            wd = out / f"{arm}-s{seed}"
            dev = launch("multitask", "multitask.py", wd,
                         [*common, *arm_overrides[arm], f"--config.seed={seed}"])["entq"]  # fmt: skip
            test = json.loads((wd / "results_test.json").read_text())["entq"]
            for split, res in (("dev", dev), ("test", test)):
                for k in ("exact_match", "f1"):
                    scores[arm].setdefault(f"{split}_{k}", []).append(res[k])
    elapsed = time.time() - t0
    keys = ("dev_exact_match", "dev_f1", "test_exact_match", "test_f1")
    lines = ["| arm | dev EM | dev F1 | test EM | test F1 |", "|---|---|---|---|---|"]
    for arm in ARMS:
        lines.append(f"| {arm} | " + " | ".join(mean_std(scores[arm][k]) for k in keys) + " |")
    p = {f"{k.replace('_', ' ')} vs {arm}": float(stats.ttest_ind(
            scores["finetune"][k], scores[arm][k], equal_var=False).pvalue)
         for arm in ARMS[1:] for k in ("test_exact_match", "test_f1")}  # fmt: skip
    lines += ["", "Welch's t-test over seeds, finetune vs each frozen arm: "
              + ", ".join(f"{k} p = {v:.3g}" for k, v in p.items()) + "."]  # fmt: skip
    details = (
        f"{model_label(args)}; questions about the PER / ORG / LOC entities of CoNLL-2003 "
        f"sentences (SQuAD JSON lines; {counts['train']} train questions from the first "
        f"{args.train_sentences} sentences, {counts['dev']} dev, {counts['test']} test); "
        f"batches of {args.batch_size} rows (data.packing: several questions per row), max "
        f"length {args.max_length}; finetune {args.steps} "
        f"steps at AdamW lr {args.lr}; feature_extraction (the frozen last layer, cached) "
        f"{args.steps} steps at lr {args.head_lr}, feature_extraction_long {args.head_steps} at "
        f"{args.long_head_lr}; scored at the last step (no selection). Seeds {args.seeds}. "
        "×100, mean ± sample std."
    )
    write("qa-feature-based", [*header("qa_feature_based.py", elapsed, details), "", *lines],
          {"args": vars(args), "elapsed_s": elapsed, "counts": counts, "scores": scores,
           "welch_p": p})  # fmt: skip


if __name__ == "__main__":
    main()
