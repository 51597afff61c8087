"""Sequence packing: several examples per row instead of one example padded to its bucket.

SST-2 sentences average 13 word pieces; padded to buckets of 32/64/128, 61% of the tokens a step
computes are padding. Packed, a row of 128 holds about nine of them and under 5% is padding.

A packed batch is the layout of :mod:`jaxtl.data.batch` plus two token fields, with the
per-example fields widened from one per row to ``S`` slots per row:

==================  ===========  ===============================================================
segment_ids         int32[B,T]   0 = padding, k = the row's k-th example (1..S)
position_ids        int32[B,T]   index of the token within its own example (restarts at 0)
label, score,       [B,S]        slot s-1 of row r holds example ``segment_ids == s`` of row r;
example_weight                   weight 0 for an empty slot
example_index       int32[B,S]   the example's index in its split (-1: empty slot)
label_set           float32      [B,S,C]: a multilabel task's classes per slot
==================  ===========  ===============================================================

The model keeps examples apart exactly: attention is block-diagonal (a token sees only its own
segment; :func:`jaxtl.models.base.segment_mask`), each encoder turns ``position_ids`` into its
family's positions (RoBERTa adds its ``pad_token_id + 1`` offset), sentence heads pool each
segment ([CLS] = the segment's first token, mean, or last), per-token heads and losses are
unchanged, and a qa window's loss and best span are taken over its own positions
(``jaxtl.losses``). So a packed batch gives each example the logits it gets alone
(tests/test_packing.py, tests/test_qa.py).

Packing is best-fit into rows of the largest bucket length, at most ``S = T // 4`` examples per
row; each row then goes to the smallest bucket that holds its tokens and batches are cut within
buckets, so a run compiles one program per (bucket, S) as before, usually only the largest.
Evaluation moves a bucket's partial last batch into the padding rows of the next larger one
when they have room (:func:`fold_remainders`): SST-2's dev split packs into 64-row batches of
128 tokens only, with no batch or program for the few light rows packing leaves at the end.
Training repacks every epoch from a seeded permutation: the plan is a pure function of
(seed, epoch), and the iterator state is the same ``{"epoch", "position", "seed"}`` as
unpacked batching, so a resumed run replays the identical batches. Evaluation packs longest
first (best-fit decreasing) and ``example_index`` maps every prediction back to its example.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from jaxtl.data import batch as layout
from jaxtl.data.batching import EpochPosition, _local_rows, assign_buckets, epoch_plan
from jaxtl.data.tokenize import Encoded, take

TOKENS_PER_SEGMENT = 4  # S = T // 4: an example has at least [CLS] x [SEP]; S stays small
KINDS = (
    "classification",
    "multilabel",
    "regression",
    "tagging",
    "qa",
)  # the task kinds a packed batch holds (a qa example is one window of its context)


def num_segments(buckets: Sequence[int]) -> int:
    """S, the example slots per row, fixed for the run by the largest bucket."""
    return max(1, max(buckets) // TOKENS_PER_SEGMENT)


def is_packed(batch: dict) -> bool:
    return "segment_ids" in batch


class PackedRows(Sequence[np.ndarray]):
    """Packed rows as two flat arrays (a CSR layout): row ``r`` holds the examples
    ``members[starts[r]:starts[r + 1]]``, in the order they were placed: 4 bytes an example
    and 8 a row. (Lists of Python ints per row cost 382 MiB more peak memory for an epoch of
    ten million examples: BENCHMARKS.md section 11.)"""

    def __init__(self, members: np.ndarray, starts: np.ndarray):
        self.members, self.starts = members, starts

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, r):  # type: ignore[override]
        if not isinstance(r, (int, np.integer)):
            raise TypeError(f"PackedRows takes one row index, got {type(r).__name__}")
        r = int(r) + len(self) if r < 0 else int(r)
        if not 0 <= r < len(self):
            raise IndexError(f"row {r} of {len(self)}")
        return self.members[self.starts[r] : self.starts[r + 1]]

    def fill(self, lengths: np.ndarray) -> np.ndarray:
        """Tokens in each row."""
        if not len(self):
            return np.zeros(0, np.int64)
        return np.add.reduceat(np.asarray(lengths, np.int64)[self.members], self.starts[:-1])


_PACK_CHUNK = 1 << 16  # examples read into Python per step of the placement loop


def pack(lengths: np.ndarray, order: np.ndarray, capacity: int, max_segments: int) -> PackedRows:
    """Rows of example indices: best fit of each example, taken in ``order``, into rows of
    ``capacity`` tokens with at most ``max_segments`` examples each. Deterministic.

    Best fit (the open row whose free space is the smallest that holds the example) keeps rows
    full; open rows are kept by free space, so a placement scans at most ``capacity`` lists.
    The loop keeps only the open rows and each placement's row number (read ``order`` a chunk
    at a time), so memory stays a few bytes per example however large the split.
    """
    if len(lengths) and int(np.max(lengths)) > capacity:
        raise ValueError(f"an example has {int(np.max(lengths))} tokens, more than the row "
                         f"length {capacity}")  # fmt: skip
    order, lengths = np.asarray(order), np.asarray(lengths)
    row_of = np.empty(len(order), np.int32)  # the row of the k-th example placed
    free: list[int] = []
    used: list[int] = []
    by_free: list[list[int]] = [[] for _ in range(capacity + 1)]  # free space -> open rows
    for start in range(0, len(order), _PACK_CHUNK):
        placed = []
        for n in lengths[order[start : start + _PACK_CHUNK]].tolist():
            r = -1
            for c in range(n, capacity + 1):
                if by_free[c]:
                    r = by_free[c].pop()
                    break
            if r < 0:
                r = len(free)
                free.append(capacity)
                used.append(0)
            placed.append(r)
            free[r] -= n
            used[r] += 1
            if used[r] < max_segments and free[r] > 0:
                by_free[free[r]].append(r)
        row_of[start : start + len(placed)] = placed
    # Group by row, keeping the placement order within each row (a stable sort).
    dtype = np.int32 if len(order) < 2**31 else np.int64
    members = order[np.argsort(row_of, kind="stable")].astype(dtype, copy=False)
    starts = np.zeros(len(used) + 1, np.int64)
    np.cumsum(used, out=starts[1:])
    return PackedRows(members, starts)


def make_batch(
    enc: Encoded, rows: Sequence[Sequence[int] | None], seq_len: int, num_slots: int, pad_id: int
) -> dict[str, np.ndarray]:
    """A packed batch of ``len(rows)`` rows of ``seq_len`` tokens; a row is the list of its
    examples (None: a padding row)."""
    if enc.target_ids is not None:
        raise ValueError("packing: decoder targets (translation) are not packed")
    b = len(rows)
    out = layout.empty(b, seq_len, pad_id)
    out["segment_ids"] = np.zeros((b, seq_len), np.int32)
    out["position_ids"] = np.zeros((b, seq_len), np.int32)
    out["label"] = np.zeros((b, num_slots), np.int32)
    out["score"] = np.zeros((b, num_slots), np.float32)
    out["example_weight"] = np.zeros((b, num_slots), np.float32)
    out["example_index"] = np.full((b, num_slots), -1, np.int32)
    if enc.label_set is not None:
        out["label_set"] = np.zeros((b, num_slots, enc.label_set.shape[1]), np.float32)
    out["task_id"][:] = enc.task_id
    # Every example of the batch in row order, with its row and slot; then each field is read
    # in one call and scattered by (row, column) in one assignment (tokenize.take).
    count = np.asarray([0 if m is None else len(m) for m in rows], np.int64)
    held = [np.asarray(m, np.int64) for m in rows if m is not None and len(m)]
    ex = np.concatenate(held) if held else np.zeros(0, np.int64)
    row = np.repeat(np.arange(b), count)
    slot = np.arange(len(ex)) - np.repeat(np.cumsum(count) - count, count)
    ids, n = take(enc.input_ids, ex)
    # Where each example starts in its row (the lengths of the row's earlier examples summed)
    # and where its tokens start in ``ids``.
    first = np.cumsum(n) - n
    row_start = first - first[np.searchsorted(row, row, side="left")]
    if len(ex) and (row_start + n).max() > seq_len:
        r = int(row[np.argmax(row_start + n)])
        raise ValueError(f"packed row {r} holds {int((row_start + n).max())} tokens, more than "
                         f"seq_len {seq_len}")  # fmt: skip
    position = np.arange(len(ids)) - np.repeat(first, n)
    tok_row, tok_col = np.repeat(row, n), np.repeat(row_start, n) + position
    out["input_ids"][tok_row, tok_col] = ids
    out["attention_mask"][tok_row, tok_col] = 1
    out["token_type_ids"][tok_row, tok_col] = take(enc.token_type_ids, ex)[0]
    if enc.token_labels is not None:
        out["token_labels"][tok_row, tok_col] = take(enc.token_labels, ex)[0]
    out["segment_ids"][tok_row, tok_col] = np.repeat(slot + 1, n)
    out["position_ids"][tok_row, tok_col] = position
    out["label"][row, slot] = enc.label[ex]
    out["score"][row, slot] = enc.score[ex]
    if enc.label_set is not None:
        out["label_set"][row, slot] = enc.label_set[ex]
    out["example_weight"][row, slot] = 1.0
    out["example_index"][row, slot] = ex
    return out


def fold_remainders(bucket_of: np.ndarray, num_buckets: int, batch_size: int) -> np.ndarray:
    """Evaluation's bucket of each row, with a bucket's last partial batch moved up into the next
    larger bucket in use when its padding rows have room for them.

    Each bucket's last batch is filled with padding rows, so moving rows into those slots costs
    nothing, while it saves the smaller bucket's padded batch, and its compiled program too when
    that was the bucket's only batch (packed rows are nearly all full: the few light rows
    packing leaves at the end otherwise cost a batch and a compilation of their own). Only
    rows move up, to a bucket at least as long; the number of batches never grows. The last
    rows of a bucket (in ``bucket_of``'s order) are the ones moved."""
    out = np.asarray(bucket_of).copy()
    counts = np.bincount(out, minlength=num_buckets)
    for b in range(num_buckets - 1):
        extra = int(counts[b]) % batch_size
        above = [u for u in range(b + 1, num_buckets) if counts[u]]
        if not extra or not above:
            continue
        u = above[0]
        if extra <= (-int(counts[u])) % batch_size:  # the free rows of u's last batch
            out[np.flatnonzero(out == b)[-extra:]] = u
            counts[b] -= extra
            counts[u] += extra
    return out


def _rows_plan(
    rows: PackedRows, lengths: np.ndarray, buckets: tuple[int, ...], batch_size: int,
    seed: int, epoch: int, *, shuffle: bool, drop_remainder: bool = False,
) -> list[tuple[int, np.ndarray]]:  # fmt: skip
    """Batches of row indices: each row in the smallest bucket holding its tokens, batches cut
    within buckets (shuffled for training; in row order for evaluation, where
    :func:`fold_remainders` first moves partial batches up), the last batch of a bucket filled
    with -1 (padding rows)."""
    fill = rows.fill(lengths)
    bucket_of = assign_buckets(fill, buckets)
    if shuffle:
        return epoch_plan(bucket_of, len(buckets), batch_size, seed, epoch, drop_remainder)
    bucket_of = fold_remainders(bucket_of, len(buckets), batch_size)
    plan = []
    for b in range(len(buckets)):
        members = np.flatnonzero(bucket_of == b)
        for start in range(0, len(members), batch_size):
            part = members[start : start + batch_size]
            plan.append(
                (b, np.concatenate([part, np.full(batch_size - len(part), -1, part.dtype)]))
            )
    return plan


def train_plan(
    lengths: np.ndarray, buckets: Sequence[int], batch_size: int, seed: int, epoch: int,
    drop_remainder: bool = False,
) -> tuple[PackedRows, list[tuple[int, np.ndarray]]]:  # fmt: skip
    """(rows, batches) of one training epoch: a pure function of (lengths, seed, epoch)."""
    buckets = tuple(sorted(buckets))
    perm = np.random.default_rng([seed, epoch, 1]).permutation(len(lengths))
    rows = pack(lengths, perm, buckets[-1], num_segments(buckets))
    return rows, _rows_plan(rows, lengths, buckets, batch_size, seed, epoch, shuffle=True,
                            drop_remainder=drop_remainder)  # fmt: skip


class PackedTrainBatches(EpochPosition):
    """Infinite, deterministic, resumable packed training batches (this process's rows); the
    same constructor and state API as :class:`jaxtl.data.batching.TrainBatches`, and
    ``batch_size`` counts rows, each holding several examples."""

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
            raise ValueError("PackedTrainBatches: no examples")
        self.encoded = encoded
        self.batch_size = batch_size
        self.buckets = tuple(sorted(buckets))
        self.num_segments = num_segments(self.buckets)
        self.seed = seed
        self.pad_id = pad_id
        self.drop_remainder = drop_remainder
        self.rows = _local_rows(batch_size, process_index, process_count)
        self.lengths = encoded.lengths
        assign_buckets(self.lengths, self.buckets)  # the too-long-example error, up front
        self.epoch = 0
        self.position = 0
        self._plan: tuple[int, PackedRows, list] | None = None

    def _epoch_plan(self, epoch: int) -> tuple[PackedRows, list[tuple[int, np.ndarray]]]:
        if self._plan is None or self._plan[0] != epoch:
            rows, plan = train_plan(self.lengths, self.buckets, self.batch_size, self.seed,
                                    epoch, self.drop_remainder)  # fmt: skip
            if not plan:
                raise ValueError("PackedTrainBatches: every bucket is smaller than one batch")
            self._plan = (epoch, rows, plan)
        return self._plan[1], self._plan[2]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rows, plan = self._epoch_plan(self.epoch)
        if self.position >= len(plan):
            self.epoch, self.position = self.epoch + 1, 0
            rows, plan = self._epoch_plan(self.epoch)
        b, batch_rows = plan[self.position]
        self.position += 1
        local = [rows[r] if r >= 0 else None for r in batch_rows[self.rows]]
        return make_batch(self.encoded, local, self.buckets[b], self.num_segments, self.pad_id)

    def batches_per_epoch(self) -> int:
        return len(self._epoch_plan(self.epoch)[1])

    def rows_per_epoch(self) -> int:
        """Packed rows in this epoch (every process's): examples / rows is how many a row holds,
        e.g. to pick a row batch that matches an unpacked batch's examples per step."""
        return len(self._epoch_plan(self.epoch)[0])


def eval_batches(
    encoded: Encoded,
    *,
    batch_size: int,
    buckets: Sequence[int] = (32, 64, 128),
    pad_id: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> list[dict[str, np.ndarray]]:
    """Every example exactly once, packed longest first; ``example_index`` says which."""
    local = _local_rows(batch_size, process_index, process_count)
    buckets = tuple(sorted(buckets))
    lengths = encoded.lengths
    assign_buckets(lengths, buckets)
    order = np.argsort(-lengths, kind="stable")
    rows = pack(lengths, order, buckets[-1], num_segments(buckets))
    plan = _rows_plan(rows, lengths, buckets, batch_size, 0, 0, shuffle=False)
    s = num_segments(buckets)
    return [
        make_batch(
            encoded, [rows[r] if r >= 0 else None for r in part[local]], buckets[b], s, pad_id
        )  # fmt: skip
        for b, part in plan
    ]


def padding_fraction(
    lengths: np.ndarray, *, batch_size: int, buckets: Sequence[int], seed: int = 0
) -> float:
    """Fraction of pad tokens over one packed training epoch (padding rows count as pad);
    compare :func:`jaxtl.data.batching.padding_fraction`."""
    lengths = np.asarray(lengths)
    buckets = tuple(sorted(buckets))
    rows, plan = train_plan(lengths, buckets, batch_size, seed, 0)
    total = sum(buckets[b] * batch_size for b, _ in plan)
    used = np.concatenate([part for _, part in plan]) if plan else np.zeros(0, np.int64)
    real = int(rows.fill(lengths)[used[used >= 0]].sum())
    return 1.0 - real / total if total else 0.0
