"""A run's tasks, tokenised and batched: what the loss and the loop consume.

:func:`prepare_tasks` turns task names into :class:`TaskData` (a train iterator and evaluation
batches per task); :func:`corpus_blocks` and :func:`corpus_lines` do the same for unlabelled
text, packed into fixed-length LM blocks (masked per batch for MLM) or one example per line
(consistency and cross-view training, whose unlabelled inputs should look like the target's
sentences). Each task's index in the run's list is its ``batch["task_id"]``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxtl.data import batching, tokenize
from jaxtl.data.catalogue import get_task
from jaxtl.data.masking import MaskedBatches, Masking
from jaxtl.data.tasks import Task

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TaskData:
    """One task of a run, tokenised: its train iterator and its evaluation batches."""

    task: Task
    index: int  # position in the run's task list (= batch["task_id"])
    key: str  # head key
    train_size: int
    train_iter: Any  # batching.TrainBatches (or a wrapper with the same state API), or None
    eval_batches: list[dict[str, np.ndarray]]
    eval_split: str


def head_key(task_name: str) -> str:
    """A parameter-path-safe key for a task's head (``glue/sst2`` -> ``glue_sst2``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", task_name)


def limit(examples: Sequence[Any], n: int) -> Sequence[Any]:
    return examples[:n] if n and n > 0 else examples


def report_only(task: Task) -> Task:
    """The task with no main metric: its scores are logged and reported but never drive
    best-checkpoint selection or the run's average (perplexity: lower is better)."""
    return dataclasses.replace(task, main_metric="")


def load_task(name: str, config: ml_collections.ConfigDict) -> Task:
    # Generated tasks have no rows to be bad; file-backed readers take the policy.
    opts = {} if name.startswith("builtin/") else {"on_bad_row": config.data.on_bad_row}
    return get_task(name, config.data.dir or None, **opts)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def train_batches(
    enc: tokenize.Encoded, config: ml_collections.ConfigDict, tokenizer: Any, *,
    buckets: Sequence[int], seed: int,
) -> batching.TrainBatches:  # fmt: skip
    """This process's rows of the shuffled, bucketed training batches."""
    return batching.TrainBatches(
        enc,
        batch_size=config.train.batch_size,
        buckets=tuple(buckets),
        seed=seed,
        pad_id=_pad_id(tokenizer),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )


def eval_batches(
    enc: tokenize.Encoded, config: ml_collections.ConfigDict, tokenizer: Any, *,
    buckets: Sequence[int],
) -> list[dict[str, np.ndarray]]:  # fmt: skip
    return batching.eval_batches(
        enc,
        batch_size=config.train.eval_batch_size,
        buckets=tuple(buckets),
        pad_id=_pad_id(tokenizer),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )


def _need_tokenizer(tokenizer: Any, config: ml_collections.ConfigDict) -> None:
    if tokenizer is None:
        raise ValueError(f"model {config.model.name!r} has no tokenizer files; tasks need one")


def prepare_tasks(
    names: Sequence[str],
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    *,
    train_split: str = "train",
    eval_split: str = "dev",
    with_train: bool = True,
    with_eval: bool = True,
    first_index: int = 0,
) -> list[TaskData]:
    """Labelled tasks ``names`` as TaskData with indices ``first_index``, ``first_index + 1``…"""
    _need_tokenizer(tokenizer, config)
    buckets, max_length = tuple(config.data.buckets), config.data.max_length
    out = []
    for i, name in enumerate(names, start=first_index):
        task = load_task(name, config)
        train_iter, n_train = None, 0
        if with_train:
            ex = limit(task.load(train_split), config.data.max_train_examples)
            enc = tokenize.encode(task, ex, tokenizer, max_length=max_length, task_id=i)
            n_train = len(enc)
            seed = config.seed * 1000 + i
            train_iter = train_batches(enc, config, tokenizer, buckets=buckets, seed=seed)
        ev: list[dict[str, np.ndarray]] = []
        if with_eval and eval_split in task.splits:
            ex = limit(task.load(eval_split), config.data.max_eval_examples)
            enc = tokenize.encode(task, ex, tokenizer, max_length=max_length, task_id=i)
            ev = eval_batches(enc, config, tokenizer, buckets=buckets)
        out.append(TaskData(task, i, head_key(task.name), n_train, train_iter, ev, eval_split))
        log.info("task %s: %d train examples, %d eval batches", task.name, n_train, len(ev))
    return out


def _corpus(name: str, config: ml_collections.ConfigDict) -> Task:
    task = load_task(name, config)
    if task.kind != "lm":
        raise ValueError(f"corpus {name!r} is a {task.kind} task; expected unlabelled text (lm)")
    return task


def corpus_blocks(
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    corpus: str,
    *,
    index: int,
    key: str,
    objective: str,
    block_size: int,
    masking: Masking | None,
    seed: int,
    with_eval: bool = True,
) -> TaskData:
    """A corpus task as packed LM blocks (train iterator masked per batch; fixed-mask dev)."""
    _need_tokenizer(tokenizer, config)
    if objective == "mlm" and masking is None:
        raise ValueError("objective 'mlm' needs masking settings")
    task = _corpus(corpus, config)
    lines = limit(task.load("train"), config.data.max_train_examples)
    enc = tokenize.pack_corpus(
        lines, tokenizer, block_size=block_size, objective=objective, task_id=index
    )
    if len(enc) == 0:
        raise ValueError(
            f"corpus {corpus!r}: {len(lines)} training lines give no full block of "
            f"{block_size} tokens; lower the block size or use more text"
        )
    it: Any = train_batches(enc, config, tokenizer, buckets=(block_size,), seed=seed)
    if masking is not None:
        it = MaskedBatches(it, masking, seed)
    ev: list[dict[str, np.ndarray]] = []
    if with_eval and "dev" in task.splits:
        dev = limit(task.load("dev"), config.data.max_eval_examples)
        denc = tokenize.pack_corpus(
            dev, tokenizer, block_size=block_size, objective=objective, task_id=index,
            drop_last=False,
        )  # fmt: skip
        ev = eval_batches(denc, config, tokenizer, buckets=(block_size,))
        if masking is not None:
            ev = [
                masking.apply(b, np.random.default_rng([seed, 104729, jax.process_index(), i]))
                for i, b in enumerate(ev)
            ]
    log.info("corpus %s: %d train blocks of %d tokens, %d dev batches (%s)",
             corpus, len(enc), block_size, len(ev), objective)  # fmt: skip
    return TaskData(report_only(task), index, key, len(enc), it, ev, "dev")


def corpus_lines(
    config: ml_collections.ConfigDict, tokenizer: Any, corpus: str, *, index: int, key: str,
    seed: int,
) -> TaskData:  # fmt: skip
    """A corpus task as one example per line, bucketed like labelled tasks (no evaluation)."""
    _need_tokenizer(tokenizer, config)
    task = load_task(corpus, config)
    lines = limit(task.load("train"), config.data.max_train_examples)
    enc = tokenize.encode(task, lines, tokenizer, max_length=config.data.max_length, task_id=index)
    it = train_batches(enc, config, tokenizer, buckets=config.data.buckets, seed=seed)
    return TaskData(report_only(task), index, key, len(enc), it, [], "dev")
