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

from jaxtl.data import batching, packing, token_cache, tokenize
from jaxtl.data.catalogue import get_task
from jaxtl.data.masking import MaskedBatches, Masking
from jaxtl.data.tasks import DataError, Task, limit

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SplitData:
    """One evaluation split, tokenised: its examples (input order), encoding and batches
    (bucket order; :func:`jaxtl.data.batching.eval_order` maps rows back to examples, or, when
    packed, each slot's ``example_index``)."""

    name: str  # "dev", "test", or "train[holdout]" when dev is carved out of train
    examples: Sequence[Any]
    encoded: tokenize.Encoded
    batches: list[dict[str, np.ndarray]]
    labelled: bool  # False: predicted, never scored (e.g. a test split without labels)
    buckets: tuple[int, ...]


@dataclasses.dataclass
class TaskData:
    """One task of a run, tokenised: its train iterator and its evaluation batches."""

    task: Task
    index: int  # position in the run's task list (= batch["task_id"])
    key: str  # head key
    train_size: int
    train_iter: Any  # batching.TrainBatches, packing.PackedTrainBatches (same state API), None
    eval_batches: list[dict[str, np.ndarray]]  # the selection split's batches (dev)
    eval_split: str
    # Every evaluation split by role: "dev" (selection) and, when the task has one, "test".
    splits: dict[str, SplitData] = dataclasses.field(default_factory=dict)
    # translation: token rows -> text (tokenize.detokenizer), for BLEU; set by the run.
    detokenize: Any = None
    # The expected share of a row's tokens that carry a label: below 1 (MLM: the masking
    # probability) the LM loss decodes only the labelled positions (objectives.supervised).
    label_fraction: float = 1.0


def head_key(task_name: str) -> str:
    """A parameter-path-safe key for a task's head (``glue/sst2`` -> ``glue_sst2``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", task_name)


def check_distinct(names: Sequence[str], loaded: Sequence[Task]) -> None:
    """Two tasks of one run may not share a head key (their names, made path-safe): they would
    share one head and one row of results, silently."""
    seen: dict[str, tuple[str, str]] = {}
    for name, task in zip(names, loaded, strict=True):
        key = head_key(task.name)
        if key in seen:
            first, first_task = seen[key]
            alike = (f"both named {task.name!r}" if first_task == task.name else
                     f"named {first_task!r} and {task.name!r}, one head key {key!r}")  # fmt: skip
            raise ValueError(
                f"tasks {first!r} and {name!r} are {alike}: one run keeps one head and one "
                "result per name; give each its own name= (file:name=N,...)"
            )
        seen[key] = (name, task.name)


def report_only(task: Task) -> Task:
    """The task with no main metric: its scores are logged and reported but never drive
    best-checkpoint selection or the run's average (perplexity: lower is better)."""
    return dataclasses.replace(task, main_metric="")


def load_task(name: str, config: ml_collections.ConfigDict) -> Task:
    # Generated tasks have no rows to be bad; file-backed readers take the policy.
    opts = {} if name.startswith("builtin/") else {"on_bad_row": config.data.on_bad_row}
    return configured(get_task(name, config.data.dir or None, **opts), config)


def configured(task: Task, config: ml_collections.ConfigDict) -> Task:
    """``task`` deciding as the config says: a multilabel task's classes at
    ``train.multilabel_threshold``, a qa task's answers of at most ``data.max_answer_length``
    tokens, "no answer" where it beats them by ``data.null_score_threshold``."""
    if task.kind == "multilabel":
        cut = float(config.train.get("multilabel_threshold", 0.5))
        return dataclasses.replace(task, threshold=cut)
    if task.kind == "qa":
        longest = int(config.data.get("max_answer_length", 30))
        if longest < 1:
            raise ValueError(f"data.max_answer_length={longest}: must be 1 or more tokens")
        null = float(config.data.get("null_score_threshold", 0.0))
        return dataclasses.replace(task, max_answer_tokens=longest, null_threshold=null)
    return task


def train_batches(
    enc: tokenize.Encoded, config: ml_collections.ConfigDict, tokenizer: Any, *,
    buckets: Sequence[int], seed: int, packed: bool = False,
) -> batching.TrainBatches | packing.PackedTrainBatches:  # fmt: skip
    """This process's rows of the shuffled, bucketed (``packed``: packed) training batches."""
    make = packing.PackedTrainBatches if packed else batching.TrainBatches
    return make(
        enc,
        batch_size=config.train.batch_size,
        buckets=tuple(buckets),
        seed=seed,
        pad_id=tokenize.pad_id(tokenizer),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )


def eval_batches(
    enc: tokenize.Encoded, config: ml_collections.ConfigDict, tokenizer: Any, *,
    buckets: Sequence[int], packed: bool = False,
) -> list[dict[str, np.ndarray]]:  # fmt: skip
    make = packing.eval_batches if packed else batching.eval_batches
    return make(
        enc,
        batch_size=config.train.eval_batch_size,
        buckets=tuple(buckets),
        pad_id=tokenize.pad_id(tokenizer),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )


def _need_tokenizer(tokenizer: Any, config: ml_collections.ConfigDict) -> None:
    if tokenizer is None:
        raise ValueError(f"model {config.model.name!r} has no tokenizer files; tasks need one")


def _nonempty(examples: Sequence[Any], task: Task, split: str) -> None:
    """A split with no examples stops the run here, named (a reader's file-level message comes
    first where it has one): tokenising nothing fails deep in the tokenizer."""
    if not len(examples):
        raise DataError(f"task {task.name!r}: its {split} split has no examples")


def split_data(
    name: str, task: Task, examples: Sequence[Any], config: ml_collections.ConfigDict,
    tokenizer: Any, *, index: int, packed: bool = False, target_tokenizer: Any = None,
) -> SplitData:  # fmt: skip
    """Tokenise and batch an evaluation split; a split with no labels is marked unlabelled.
    ``target_tokenizer``: a translation task's target side (default: ``tokenizer``)."""
    _nonempty(examples, task, name)
    gold = (lambda ex: ex.target) if task.kind == "translation" else (lambda ex: ex.label)
    labelled = all(gold(ex) is not None for ex in examples)
    enc = tokenize.encode(task, examples, tokenizer, max_length=config.data.max_length,
                          task_id=index, labelled=labelled, target_tokenizer=target_tokenizer,
                          doc_stride=int(config.data.get("doc_stride", 0)))  # fmt: skip
    buckets = tuple(config.data.buckets)
    batches = eval_batches(enc, config, tokenizer, buckets=buckets, packed=packed)
    return SplitData(name, examples, enc, batches, labelled, buckets)


def cached_split(
    task: Task, name: str, split: str, config: ml_collections.ConfigDict, tokenizer: Any, *,
    index: int, target_tokenizer: Any = None,
) -> tokenize.Encoded | None:  # fmt: skip
    """``split`` tokenised through the on-disk token cache (``data.token_cache``): memory-mapped
    when it has ``data.token_cache_min_rows`` examples or more, in memory when fewer; None when
    the cache is off or cannot key the split (then the caller tokenises as before), and for
    a qa task, whose rows are windows cut by ``data.doc_stride`` (tokenised in memory)."""
    if task.kind == "qa":
        return None
    return token_cache.encode_split(
        task, split, tokenizer, max_length=config.data.max_length,
        root=token_cache.cache_root(str(config.data.get("token_cache", "auto"))),
        task_id=index, target_tokenizer=target_tokenizer,
        limit=int(config.data.max_train_examples),
        min_rows=int(config.data.get("token_cache_min_rows", token_cache.DEFAULT_MIN_ROWS)),
        spec=f"{name}|on_bad_row={config.data.on_bad_row}",
        processes=int(config.data.get("tokenize_processes", 0)),
    )  # fmt: skip


def holdout(examples: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, held out): a seeded random ``fraction`` of ``examples`` set aside for selection
    when a task has no dev split (at least one example; the rest keep their order)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"data.holdout_fraction must be in (0, 1), got {fraction}")
    n = len(examples)
    k = min(max(1, round(fraction * n)), n - 1)
    held = set(np.random.default_rng([seed, 7741]).permutation(n)[:k].tolist())
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])  # fmt: skip


# The share of a split's texts cut at data.max_length above which a run warns, not just notes.
CUT_WARNING = 0.05


def report_cut(task: Task, enc: tokenize.Encoded, max_length: int, split: str) -> int:
    """Log how many of a split's examples fill ``data.max_length`` tokens, so that whatever
    they held beyond it was cut (a warning from :data:`CUT_WARNING` of them, a note below;
    qa contexts go in windows and corpora in blocks, which cut nothing). Returns that count."""
    if task.kind in ("qa", "lm") or not len(enc):
        return 0
    full = int(np.count_nonzero(enc.lengths >= max_length))
    if full:
        share = full / len(enc)
        (log.warning if share >= CUT_WARNING else log.info)(
            "task %s: %d of %d %s examples (%.0f%%) fill data.max_length=%d tokens: any more "
            "of their text is cut (a longer --config.data.max_length, with a bucket as long in "
            "--config.data.buckets, raises the limit up to the model's positions)",
            task.name, full, len(enc), split, 100 * share, max_length,
        )  # fmt: skip
    return full


# The share of an evaluation split's examples whose exact input is also a training example from
# which a run warns, not just notes: GLUE's, CoNLL-2003's and UD English-EWT's own splits share
# at most 6% (CoNLL-2003 dev: 193 of 3,250 sentences, short ones such as "SOCCER -"), the
# template-made builtin tasks up to 14% (builtin/ner dev: 55 of 400), a split made from the
# training file itself all of them.
OVERLAP_WARNING = 0.20


def report_overlap(task: Task, train: np.ndarray, split: str, encoded: tokenize.Encoded) -> int:
    """Log how many of an evaluation split's examples are, token for token, a training example
    (``train``: the training rows' :func:`~jaxtl.data.tokenize.input_hashes`; a warning from
    :data:`OVERLAP_WARNING` of them, a note below): their scores show what the model
    remembers, not how it does on new text — a split drawn from the training file, or files
    that repeat their rows. Compared as the model reads them (token ids, after
    ``data.max_length``'s cut); a qa question by its first window. Returns that count."""
    if task.kind == "lm" or not len(train) or not len(encoded):
        return 0
    hashes = tokenize.input_hashes(encoded.input_ids)
    if encoded.example_of is not None:  # qa: one row per window; an example by its first
        hashes = hashes[np.unique(encoded.example_of, return_index=True)[1]]
    shared = int(np.isin(hashes, train).sum())
    if shared:
        share = shared / len(hashes)
        (log.warning if share >= OVERLAP_WARNING else log.info)(
            "task %s: %d of %d %s examples (%.0f%%) are, token for token, training examples: "
            "their scores measure what the model remembers, not how it does on new text (%s)",
            task.name, shared, len(hashes), split, 100 * share,
            "the training file repeats them" if split.startswith("train") else
            f"is the {split} split drawn from the training file, or do the files repeat rows?",
        )  # fmt: skip
    return shared


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
    packed: bool = False,
    target_tokenizer: Any = None,
) -> list[TaskData]:
    """Labelled tasks ``names`` as TaskData with indices ``first_index``, ``first_index + 1``…
    (``target_tokenizer``: a translation task's target side; default ``tokenizer``).

    Selection uses ``eval_split`` (dev); a task without one holds out ``data.holdout_fraction``
    of its training examples (seeded) instead. A ``test`` split, when the task has one, is
    tokenised too (``TaskData.splits["test"]``): the run scores it with the selected params.
    ``packed``: several examples per row (:mod:`jaxtl.data.packing`; the caller checks that the
    model runs them exactly, :func:`jaxtl.assembly.packing`); a run with a task of another kind
    than :data:`jaxtl.data.packing.KINDS` (translation) pads every task, since all batches of a
    run share one layout.
    """
    _need_tokenizer(tokenizer, config)
    buckets, max_length = tuple(config.data.buckets), config.data.max_length
    loaded = [load_task(name, config) for name in names]
    check_distinct(names, loaded)
    other = sorted({t.kind for t in loaded} - set(packing.KINDS))
    if packed and other:
        log.info("data.packing: off (a %s task is not packed); batches are padded", other[0])
        packed = False
    out = []
    for i, (name, task) in enumerate(zip(names, loaded), start=first_index):
        has_dev = eval_split in task.splits
        cached = None
        if with_train and (has_dev or not with_eval):
            cached = cached_split(task, name, train_split, config, tokenizer, index=i,
                                  target_tokenizer=target_tokenizer)  # fmt: skip
        train_ex: Sequence[Any] = []
        if (with_train and cached is None) or (with_eval and not has_dev):
            train_ex = task.head(train_split, config.data.max_train_examples)
        dev_name, dev_ex = eval_split, None
        if with_eval and has_dev:
            dev_ex = task.head(eval_split, config.data.max_eval_examples)
        elif with_eval:
            frac = float(config.data.holdout_fraction)
            train_ex, dev_ex = holdout(train_ex, frac, config.seed * 1000 + i)
            dev_ex = limit(dev_ex, config.data.max_eval_examples)
            dev_name = f"{train_split}[holdout {frac:g}]"
            log.info("task %s has no %s split: %d of its %s examples held out for selection "
                     "(seed %d)", task.name, eval_split, len(dev_ex), train_split,
                     config.seed)  # fmt: skip
        train_iter, n_train = None, 0
        if with_train:
            if cached is not None:
                enc = cached
            else:
                _nonempty(train_ex, task, train_split)
                enc = tokenize.encode(task, train_ex, tokenizer, max_length=max_length, task_id=i,
                                      target_tokenizer=target_tokenizer,
                                      doc_stride=int(config.data.get("doc_stride", 0)))  # fmt: skip
            n_train = len(enc)
            report_cut(task, enc, max_length, train_split)
            seed = config.seed * 1000 + i
            train_iter = train_batches(enc, config, tokenizer, buckets=buckets, seed=seed,
                                       packed=packed)  # fmt: skip
        splits = {}
        if dev_ex is not None:
            splits["dev"] = split_data(dev_name, task, dev_ex, config, tokenizer, index=i,
                                       packed=packed, target_tokenizer=target_tokenizer)  # fmt: skip
        if with_eval and "test" in task.splits and eval_split != "test":
            test_ex = task.head("test", config.data.max_eval_examples)
            splits["test"] = split_data("test", task, test_ex, config, tokenizer, index=i,
                                        packed=packed, target_tokenizer=target_tokenizer)  # fmt: skip
        if with_train and splits and task.kind != "lm":
            seen = tokenize.input_hashes(enc.input_ids)  # once for dev and test
            for split in splits.values():
                report_overlap(task, seen, split.name, split.encoded)
        ev = splits["dev"].batches if "dev" in splits else []
        out.append(TaskData(task, i, head_key(task.name), n_train, train_iter, ev, dev_name,
                            splits))  # fmt: skip
        rows = f"{n_train} train examples"
        if with_train and task.kind == "qa":  # a row is a window of a question's context
            rows = f"{len(train_ex)} train questions in {n_train} windows"
        log.info("task %s: %s, %d eval batches%s", task.name, rows, len(ev),
                 ", a test split" if "test" in splits else "")  # fmt: skip
    return out


def _corpus(name: str, config: ml_collections.ConfigDict) -> Task:
    task = load_task(name, config)
    if task.kind != "lm":
        raise ValueError(f"corpus {name!r} is a {task.kind} task; expected unlabelled text (lm)")
    return task


def corpus_blocks(
    config: ml_collections.ConfigDict,
    tokenizer: Any,
    corpus: str | Task,
    *,
    index: int,
    key: str,
    objective: str,
    block_size: int,
    masking: Masking | None,
    seed: int,
    with_eval: bool = True,
) -> TaskData:
    """A corpus task as packed LM blocks (train iterator masked per batch; fixed-mask dev).
    ``corpus``: a corpus name or spec, or an ``lm``-kind Task built by the caller."""
    _need_tokenizer(tokenizer, config)
    if objective == "mlm" and masking is None:
        raise ValueError("objective 'mlm' needs masking settings")
    task = _corpus(corpus, config) if isinstance(corpus, str) else corpus
    lines = task.head("train", config.data.max_train_examples)
    enc = tokenize.pack_corpus(
        lines, tokenizer, block_size=block_size, objective=objective, task_id=index
    )
    if len(enc) == 0:
        raise ValueError(
            f"corpus {task.name!r}: {len(lines)} training lines give no full block of "
            f"{block_size} tokens; lower the block size or use more text"
        )
    it: Any = train_batches(enc, config, tokenizer, buckets=(block_size,), seed=seed)
    if masking is not None:
        it = MaskedBatches(it, masking, seed)
    splits: dict[str, SplitData] = {}
    for n, split in enumerate(("dev", "test")):
        if not with_eval or split not in task.splits:
            continue
        held = task.head(split, config.data.max_eval_examples)
        henc = tokenize.pack_corpus(
            held, tokenizer, block_size=block_size, objective=objective, task_id=index,
            drop_last=False,
        )  # fmt: skip
        ev = eval_batches(henc, config, tokenizer, buckets=(block_size,))
        if masking is not None:  # one fixed mask per batch, so perplexities stay comparable
            ev = [
                masking.apply(b, np.random.default_rng([seed, 104729, jax.process_index(), i]
                                                       + [n] * n))  # dev: the original key
                for i, b in enumerate(ev)
            ]  # fmt: skip
        splits[split] = SplitData(split, held, henc, ev, True, (block_size,))
    ev = splits["dev"].batches if "dev" in splits else []
    log.info("corpus %s: %d train blocks of %d tokens, %d dev batches (%s)%s",
             task.name, len(enc), block_size, len(ev), objective,
             ", a test split" if "test" in splits else "")  # fmt: skip
    return TaskData(
        report_only(task), index, key, len(enc), it, ev, "dev", splits,
        label_fraction=masking.prob if masking is not None else 1.0,
    )  # fmt: skip


def corpus_lines(
    config: ml_collections.ConfigDict, tokenizer: Any, corpus: str, *, index: int, key: str,
    seed: int,
) -> TaskData:  # fmt: skip
    """A corpus task as one example per line, bucketed like labelled tasks (no evaluation)."""
    _need_tokenizer(tokenizer, config)
    task = load_task(corpus, config)
    lines = task.head("train", config.data.max_train_examples)
    enc = tokenize.encode(task, lines, tokenizer, max_length=config.data.max_length, task_id=index)
    it = train_batches(enc, config, tokenizer, buckets=config.data.buckets, seed=seed)
    return TaskData(report_only(task), index, key, len(enc), it, [], "dev")
