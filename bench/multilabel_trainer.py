"""transformers' Trainer on a multi-label TSV task: the reference README's multi-label run is
checked against (the same files, model and recipe; scikit-learn's metrics at p > 0.5).

    python bench/multilabel_trainer.py MODEL_DIR DATA_DIR [--epochs 2] [--lr 5e-5] [--batch 32]

DATA_DIR holds ``{train,dev,test}.tsv`` with a header ``sentence<TAB>types``, the classes
comma-separated (``examples/conll_entity_types.py`` writes them). The model selected on dev
(``load_best_model_at_end``, micro-F1) is scored on dev and test; prints one JSON line each and
the wall time from process start.
"""

import argparse
import json
import time

START = time.time()


def main() -> None:
    import datasets
    import numpy as np
    import transformers
    from sklearn.metrics import accuracy_score, f1_score

    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default="/tmp/multilabel_trainer")
    a = p.parse_args()

    def rows(split: str) -> list[list[str]]:
        with open(f"{a.data}/{split}.tsv", encoding="utf-8") as f:
            return [line.rstrip("\n").split("\t") for line in f][1:]

    names = sorted({c for r in rows("train") for c in r[1].split(",") if c})
    tok = transformers.AutoTokenizer.from_pretrained(a.model)

    def dataset(split: str) -> datasets.Dataset:
        rs = rows(split)
        ds = datasets.Dataset.from_dict({
            "text": [r[0] for r in rs],
            "labels": [[float(n in r[1].split(",")) for n in names] for r in rs],
        })  # fmt: skip
        return ds.map(lambda b: tok(b["text"], truncation=True, max_length=128), batched=True)

    data = {s: dataset(s) for s in ("train", "dev", "test")}
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        a.model, num_labels=len(names), problem_type="multi_label_classification",
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
    )  # fmt: skip

    def scores(pred: transformers.EvalPrediction) -> dict[str, float]:
        guess = (1 / (1 + np.exp(-pred.predictions)) > 0.5).astype(int)
        gold = pred.label_ids.astype(int)
        return {"micro_f1": f1_score(gold, guess, average="micro"),
                "macro_f1": f1_score(gold, guess, average="macro", zero_division=0),
                "subset_accuracy": accuracy_score(gold, guess)}  # fmt: skip

    args = transformers.TrainingArguments(
        a.out, num_train_epochs=a.epochs, learning_rate=a.lr, per_device_train_batch_size=a.batch,
        per_device_eval_batch_size=128, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="micro_f1", save_total_limit=1,
        warmup_steps=0.1, report_to=[], seed=0, logging_steps=50, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data["train"], eval_dataset=data["dev"],
        data_collator=transformers.DataCollatorWithPadding(tok), compute_metrics=scores,
    )  # fmt: skip
    trainer.train()
    for split in ("dev", "test"):
        print(split, json.dumps(trainer.evaluate(data[split])))
    print("wall", round(time.time() - START, 1))


if __name__ == "__main__":
    main()
