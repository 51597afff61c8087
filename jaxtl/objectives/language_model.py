"""Language modelling on unlabelled text: masked LM (BERT family) or causal LM (GPT-2, Llama).

The pretraining stage of the unsupervised-sequential regime and the ``aux_lm`` objective of the
self-supervised regime are this one objective: packed blocks of a corpus
(:func:`jaxtl.data.prepare.corpus_blocks`; MLM masks drawn per batch, reproducibly), decoded by
the LM head tied to the encoder's embeddings. MLM "perplexity" is exp(mean cross-entropy over the
masked positions) — a pseudo-perplexity, comparable between runs with the same masking rate, not
with a causal LM's perplexity; it is reported, never selected on (lower is better).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flax import nnx

from jaxtl.data.masking import Masking
from jaxtl.data.prepare import TaskData, corpus_blocks
from jaxtl.data.tasks import Example, Loaded, Task
from jaxtl.models.lm import LM_KEY
from jaxtl.objectives.base import Objective
from jaxtl.objectives.supervised import task_branch

KINDS = ("auto", "mlm", "clm", "bilm")
TARGET_TEXT = ""  # corpus name meaning: the target tasks' own input text (ULMFiT's stage 2)


def kind_for(encoder: Any, kind: str) -> str:
    """``auto``: causal LM for a causal encoder (``encoder.causal``: GPT-2, Llama, AWD-LSTM),
    ELMo's bidirectional LM for a biLM (``encoder.bilm``: separate forward and backward stacks),
    masked LM for the BERT family."""
    if kind not in KINDS:
        raise ValueError(f"LM objective must be one of {KINDS}, got {kind!r}")
    causal = bool(getattr(encoder, "causal", False))
    bilm = bool(getattr(encoder, "bilm", False))
    if kind == "auto":
        return "bilm" if bilm else "clm" if causal else "mlm"
    if (kind == "bilm") != bilm:
        raise ValueError(
            f"objective {kind!r} on a {encoder.family!r} encoder that is "
            f"{'' if bilm else 'not '}a bidirectional LM (separate forward and backward stacks): "
            "use auto"
        )
    if kind == "mlm" and causal:
        raise ValueError(
            f"objective 'mlm' needs a bidirectional encoder; {encoder.family!r} is causal: use clm"
        )
    if kind == "clm" and not causal:
        raise ValueError(
            f"objective 'clm' needs a causal encoder; {encoder.family!r} attends both ways "
            "(a next-token loss would be trivial): use mlm"
        )
    return kind


def target_text(targets: Sequence[TaskData]) -> Task:
    """The target tasks' own input text as an unlabelled corpus (ULMFiT's target-domain LM
    fine-tuning, domain-adaptive MLM): one line per example and text field (a pair's two
    sentences are two lines), labels dropped; the splits the tasks have (dev: dev perplexity)."""
    if not targets:
        raise ValueError("the target-text corpus needs at least one target task")
    tasks = [td.task for td in targets]

    def lines(examples: Iterable[Example]) -> list[Example]:
        return [Example(text, source=ex.source) for ex in examples
                for text in (ex.text, ex.text_pair) if text]  # fmt: skip

    def load(split: str) -> Loaded:
        return Loaded(line for t in tasks if split in t.splits for line in lines(t.load(split)))

    def first(split: str, n: int) -> Loaded:
        """``load(split)[:n]``, reading no more of each task than those lines need."""
        out: list[Example] = []
        for t in (t for t in tasks if split in t.splits):
            head = t.head(split, n)
            got = lines(head)
            if len(got) < n and len(head) == n:  # examples without text: read on
                got = lines(t.load(split))
            out += got
            if len(out) >= n:
                break
        return Loaded(out[:n])

    splits = tuple(s for s in ("train", "dev", "test") if any(s in t.splits for t in tasks))
    name = "+".join(t.name for t in tasks) + "/text"
    return Task(name, "lm", load, splits, metrics=("perplexity",), main_metric="perplexity",
                make_first=first)  # fmt: skip


class LanguageModelling(Objective):
    name = "lm"
    needs_lm_head = True
    packs = True  # its branch is the LM task branch: per token, packed or not

    def __init__(
        self,
        corpus: str,
        *,
        kind: str = "auto",
        block_size: int = 128,
        mlm_prob: float = 0.15,
        whole_word: bool = False,
        weight: float = 1.0,
    ):
        self.corpus, self.kind, self.block_size = corpus, kind, int(block_size)
        self.mlm_prob, self.whole_word, self.weight = float(mlm_prob), bool(whole_word), weight
        self.masking: Masking | None = None

    def setup(self, encoder, tokenizer, targets, config) -> None:
        super().setup(encoder, tokenizer, targets, config)
        self.kind = kind_for(encoder, self.kind)
        if self.kind == "mlm":
            self.masking = Masking.for_tokenizer(
                tokenizer, encoder.tied_embedding().shape[0], prob=self.mlm_prob,
                whole_word=self.whole_word,
            )  # fmt: skip

    def stream(self, config, tokenizer, *, index: int, seed: int) -> TaskData:
        # A biLM reads causal blocks: next-token labels; the backward ones come from the ids
        # (jaxtl.losses.previous_token_labels).
        packing = "clm" if self.kind == "bilm" else self.kind
        corpus = self.corpus if self.corpus != TARGET_TEXT else target_text(self.targets)
        self.data = corpus_blocks(
            config, tokenizer, corpus, index=index, key=LM_KEY, objective=packing,
            block_size=self.block_size, masking=self.masking, seed=seed,
        )  # fmt: skip
        return self.data

    def heads(self, lm_head: nnx.Module | None) -> dict[str, nnx.Module]:
        if lm_head is None:
            raise ValueError("the LM objective needs the encoder's LM head")
        return {LM_KEY: lm_head}

    def branch(self, model, batch, out, rngs, *, head_dropout_key, train_mode):
        return task_branch(
            model, self.data, batch, head_dropout_key=head_dropout_key, train_mode=train_mode,
            weight=self.weight,
        )  # fmt: skip
