"""Bucketed batching into the jaxtl.data.batch layout, deterministic and resumable.

Each example goes to the smallest bucket length >= its length, so a batch is padded to one of a
few lengths (one compiled step per bucket) instead of to the longest sequence of the dataset.

Why not grain here: the whole plan of an epoch is a pure function of (seed, epoch) — a seeded
permutation, batches cut within buckets, batch order shuffled — so the iterator's state is two
integers ``{"epoch", "position"}`` that any checkpoint can hold as JSON, and a restored iterator
replays the identical sequence without pickling a pipeline. The data is already tokenised in
memory; grain's worker processes would add nothing but start-up time on a 2-core machine.

Multi-host: ``batch_size`` is the GLOBAL batch. All processes compute the same plan and process p
keeps rows ``[p*B/P, (p+1)*B/P)`` of each global batch, so the global batch does not depend on the
process count (feed the local rows to ``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from jaxtl.data import batch as layout
from jaxtl.data.tokenize import Encoded, take


def assign_buckets(lengths: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    """Index of the smallest bucket >= each length; ValueError naming the first too-long example."""
    edges = np.asarray(sorted(buckets))
    which = np.searchsorted(edges, lengths, side="left")
    if len(lengths) and which.max() >= len(edges):
        i = int(np.argmax(which >= len(edges)))
        raise ValueError(
            f"example {i} has {lengths[i]} tokens, more than the largest bucket {edges[-1]}: "
            "encode with max_length <= the largest bucket"
        )
    return which


def make_batch(
    enc: Encoded, rows: Sequence[int] | np.ndarray, seq_len: int, batch_size: int, pad_id: int
) -> dict[str, np.ndarray]:
    """A batch of ``batch_size`` rows padded to ``seq_len``; ``rows`` with -1 are padding rows.

    Each field's examples are read in one call (:func:`jaxtl.data.tokenize.take`) and scattered
    through one mask, rather than row by row: the per-example Python work was most of the cost
    of batching a large corpus (BENCHMARKS.md section 11)."""
    out = layout.empty(batch_size, seq_len, pad_id)
    if enc.target_ids is not None:
        out["target_ids"] = np.full((batch_size, seq_len), pad_id, np.int32)
        out["target_mask"] = np.zeros((batch_size, seq_len), np.int32)
    if enc.label_set is not None:
        out["label_set"] = np.zeros((batch_size, enc.label_set.shape[1]), np.float32)
    out["task_id"][:] = enc.task_id
    rows = np.asarray(rows, np.int64).reshape(-1)
    at = np.flatnonzero(rows >= 0)  # batch rows that hold an example
    ex = rows[at]
    ids, n = take(enc.input_ids, ex)
    if len(n) and n.max() > seq_len:
        r = int(at[np.argmax(n)])
        raise ValueError(
            f"example {rows[r]} has {int(n.max())} tokens, more than seq_len {seq_len}"
        )
    mask = _leading(at, n, batch_size, seq_len)
    out["input_ids"][mask] = ids
    out["attention_mask"][mask] = 1
    out["token_type_ids"][mask] = take(enc.token_type_ids, ex)[0]
    if enc.token_labels is not None:
        out["token_labels"][mask] = take(enc.token_labels, ex)[0]
    out["label"][at] = enc.label[ex]
    out["score"][at] = enc.score[ex]
    if enc.label_set is not None:
        out["label_set"][at] = enc.label_set[ex]
    out["example_weight"][at] = 1.0
    if enc.target_ids is not None:
        targets, tn = take(enc.target_ids, ex)
        tmask = _leading(at, tn, batch_size, seq_len)
        out["target_ids"][tmask] = targets
        out["target_mask"][tmask] = 1
    return out


def _leading(rows: np.ndarray, lengths: np.ndarray, batch_size: int, seq_len: int) -> np.ndarray:
    """bool[batch_size, seq_len]: the first ``lengths[k]`` positions of row ``rows[k]``, in the
    row-major order in which a batch's rows, read one after the other, fill them."""
    per_row = np.zeros(batch_size, np.int64)
    per_row[rows] = lengths
    return np.arange(seq_len) < per_row[:, None]


def _local_rows(batch_size: int, process_index: int, process_count: int) -> slice:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if batch_size % process_count:
        raise ValueError(
            f"global batch_size {batch_size} is not divisible by process_count {process_count}"
        )
    per = batch_size // process_count
    return slice(process_index * per, (process_index + 1) * per)


def epoch_plan(
    bucket_of: np.ndarray, num_buckets: int, batch_size: int, seed: int, epoch: int,
    drop_remainder: bool = False,
) -> list[tuple[int, np.ndarray]]:  # fmt: skip
    """The batches of one epoch as (bucket index, example rows; -1 = padding row), shuffled.

    The last partial batch of a bucket is filled with padding rows (example_weight 0) unless
    ``drop_remainder``, so small buckets are never starved.
    """
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(bucket_of))
    plan = []
    for b in range(num_buckets):
        members = perm[bucket_of[perm] == b]
        for start in range(0, len(members), batch_size):
            rows = members[start : start + batch_size]
            if len(rows) < batch_size:
                if drop_remainder:
                    continue
                rows = np.concatenate([rows, np.full(batch_size - len(rows), -1, rows.dtype)])
            plan.append((b, rows))
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


class EpochPosition:
    """Where a deterministic training iterator is: (epoch, position) under its seed. Its batches
    are a pure function of (data, seed, epoch), so this is all a checkpoint needs to resume."""

    seed: int
    epoch: int
    position: int

    def state(self) -> dict[str, int]:
        """JSON-able position; the seed and data are the caller's to keep the same."""
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": int(self.seed)}

    def restore(self, state: dict[str, int]) -> None:
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, iterator has {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class TrainBatches(EpochPosition):
    """Infinite, deterministic, resumable bucketed training batches (this process's rows).

    >>> it = TrainBatches(enc, batch_size=32, seed=0, pad_id=0)  # doctest: +SKIP
    >>> batch = next(it); saved = it.state(); ...; it2.restore(saved)  # doctest: +SKIP
    """

    def __init__(
        self,
        encoded: Encoded,
        *,
        batch_size: int,
        buckets: Sequence[int] = (32, 64, 128),
        seed: int = 0,
        pad_id: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        drop_remainder: bool = False,
    ):
        if len(encoded) == 0:
            raise ValueError("TrainBatches: no examples")
        self.encoded = encoded
        self.batch_size = batch_size
        self.buckets = tuple(sorted(buckets))
        self.seed = seed
        self.pad_id = pad_id
        self.drop_remainder = drop_remainder
        self.rows = _local_rows(batch_size, process_index, process_count)
        self.bucket_of = assign_buckets(encoded.lengths, self.buckets)
        self.epoch = 0
        self.position = 0
        self._plan: tuple[int, list] | None = None

    def _epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        if self._plan is None or self._plan[0] != epoch:
            plan = epoch_plan(self.bucket_of, len(self.buckets), self.batch_size, self.seed,
                              epoch, self.drop_remainder)  # fmt: skip
            if not plan:
                raise ValueError("TrainBatches: every bucket is smaller than one batch")
            self._plan = (epoch, plan)
        return self._plan[1]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        plan = self._epoch_plan(self.epoch)
        if self.position >= len(plan):
            self.epoch, self.position = self.epoch + 1, 0
            plan = self._epoch_plan(self.epoch)
        b, rows = plan[self.position]
        self.position += 1
        local = rows[self.rows]
        return make_batch(self.encoded, local, self.buckets[b], len(local), self.pad_id)

    def batches_per_epoch(self) -> int:
        return len(self._epoch_plan(self.epoch))


def eval_batches(
    encoded: Encoded,
    *,
    batch_size: int,
    buckets: Sequence[int] = (32, 64, 128),
    pad_id: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> list[dict[str, np.ndarray]]:
    """Every example exactly once: buckets in increasing length, examples in their original
    order within a bucket, the last batch of each bucket filled with weight-0 padding rows."""
    local = _local_rows(batch_size, process_index, process_count)
    buckets = tuple(sorted(buckets))
    bucket_of = assign_buckets(encoded.lengths, buckets)
    out = []
    for b, seq_len in enumerate(buckets):
        members = np.flatnonzero(bucket_of == b)
        for start in range(0, len(members), batch_size):
            rows = members[start : start + batch_size]
            rows = np.concatenate([rows, np.full(batch_size - len(rows), -1, rows.dtype)])
            out.append(make_batch(encoded, rows[local], seq_len, len(rows[local]), pad_id))
    return out


def eval_order(encoded: Encoded, *, buckets: Sequence[int] = (32, 64, 128)) -> np.ndarray:
    """Example indices in the order :func:`eval_batches` emits their rows (padding excluded)."""
    bucket_of = assign_buckets(encoded.lengths, sorted(buckets))
    return np.argsort(bucket_of, kind="stable")


def padding_fraction(
    lengths: np.ndarray, *, batch_size: int, buckets: Sequence[int], seed: int = 0
) -> float:
    """Fraction of pad tokens over one training epoch with these buckets (padding rows count as
    pad). ``buckets=(max_len,)`` gives the fixed-length baseline."""
    lengths = np.asarray(lengths)
    buckets = tuple(sorted(buckets))
    bucket_of = assign_buckets(lengths, buckets)
    plan = epoch_plan(bucket_of, len(buckets), batch_size, seed, 0)
    total = sum(buckets[b] * batch_size for b, _ in plan)
    real = sum(int(lengths[rows[rows >= 0]].sum()) for _, rows in plan)
    return 1.0 - real / total if total else 0.0
