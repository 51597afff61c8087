"""A reference point for ULMFiT's stage 1: how far a plain PyTorch LSTM LM of the same shape gets
on the same WikiText tokens in the same number of steps, and the unigram perplexity a model that
has learnt only word frequencies reaches.

The AWD-LSTM of ``configs/unsupervised_sequential_ulmfit.py`` (200-wide tied embeddings over
MiniLM's WordPiece vocabulary, LSTM layers of 400, 400 and 200 units, blocks of 64 tokens,
batches of 32, Adam with a linearly decaying rate, gradients clipped at norm 1) ends its 300-step
stage 1 at a dev perplexity of about 1,380 (EXPERIMENTS.md, ULMFiT). This script trains
``torch.nn.LSTM`` layers of the same sizes, tied the same way, on the same token stream
(the WikiText-103 subset's train lines tokenised without special tokens, [SEP] between lines;
random blocks of 65 tokens) and prints its dev perplexity every 100 steps, so the two can be read
side by side: if the reference also sits at the unigram level, stage 1's budget — not jaxtl's
LSTM — is what leaves nothing to transfer.

    python experiments/lstm_lm_reference.py --data-dir ../shared/data --steps 300 --lr 1e-3

Needs torch (the ``bench`` extra's CPU build).
"""

from __future__ import annotations

import argparse
import collections
import math
import pathlib
import time

import numpy as np

VOCAB, EMBED, HIDDEN, BLOCK, BATCH = 30522, 200, 400, 64, 32


def token_stream(path: pathlib.Path, tokenizer) -> np.ndarray:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
    return np.array([i for row in ids for i in [*row, tokenizer.sep_token_id]], np.int64)


def unigram_perplexity(train: np.ndarray, dev: np.ndarray, smoothing: float = 0.1) -> float:
    """Dev perplexity of train's add-``smoothing`` word-piece frequencies."""
    counts = collections.Counter(train.tolist())
    denom = len(train) + smoothing * VOCAB
    logp = np.log(np.array([(counts[i] + smoothing) / denom for i in dev.tolist()]))
    return math.exp(-float(logp.mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=pathlib.Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.0, help="on embeddings and each layer")
    ap.add_argument("--dev-blocks", type=int, default=640, help="dev blocks scored (of 65 tokens)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from jaxtl import models

    torch.manual_seed(args.seed)
    _, tokenizer, _, _ = models.from_pretrained("minilm")
    corpus = args.data_dir / "wikitext-103-subset"
    train = token_stream(corpus / "wiki.train.tokens", tokenizer)
    dev = token_stream(corpus / "wiki.valid.tokens", tokenizer)
    dev_blocks = torch.tensor(dev[: args.dev_blocks * (BLOCK + 1)].reshape(-1, BLOCK + 1))
    print(f"train {len(train):,} tokens, dev {dev_blocks.numel():,} scored; unigram dev "
          f"perplexity {unigram_perplexity(train, dev):,.1f}", flush=True)  # fmt: skip

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, EMBED)
            torch.nn.init.normal_(self.embed.weight, std=0.1)  # as jaxtl's AWD-LSTM
            sizes = [EMBED, HIDDEN, HIDDEN, EMBED]
            self.layers = torch.nn.ModuleList(
                torch.nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:])
            )
            self.bias = torch.nn.Parameter(torch.zeros(VOCAB))
            self.drop = torch.nn.Dropout(args.dropout)

        def forward(self, x):
            h = self.drop(self.embed(x))
            for layer in self.layers:
                h = self.drop(layer(h)[0])
            return h @ self.embed.weight.T + self.bias  # tied softmax

    model = LM()
    opt = torch.optim.Adam(model.parameters(), args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / args.steps)
    blocks = train[: len(train) // (BLOCK + 1) * (BLOCK + 1)].reshape(-1, BLOCK + 1)
    rng = np.random.default_rng(args.seed)
    xent = torch.nn.functional.cross_entropy

    def dev_perplexity() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(dev_blocks), 64):
                b = dev_blocks[i : i + 64]
                logits = model(b[:, :-1])
                total += xent(
                    logits.reshape(-1, VOCAB), b[:, 1:].reshape(-1), reduction="sum"
                ).item()
        model.train()
        return math.exp(total / dev_blocks[:, 1:].numel())

    start = time.time()
    for k in range(1, args.steps + 1):
        b = torch.tensor(blocks[rng.integers(0, len(blocks), BATCH)])
        loss = xent(model(b[:, :-1]).reshape(-1, VOCAB), b[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if k % 100 == 0 or k == args.steps:
            print(f"step {k}: train loss {loss.item():.3f}, dev perplexity "
                  f"{dev_perplexity():,.1f} ({time.time() - start:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
