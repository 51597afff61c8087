"""The batchers' make_batch (one read per field, one scatter) equals the row-by-row construction
it replaced, for in-memory rows and for rows read from token-cache files, bucketed and packed."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxtl.data import batch as layout
from jaxtl.data import batching, packing, token_cache
from jaxtl.data.tokenize import Encoded, take


def reference_bucketed(enc, rows, seq_len, batch_size, pad_id):
    """Row by row, as the batcher used to build a bucketed batch."""
    out = layout.empty(batch_size, seq_len, pad_id)
    if enc.target_ids is not None:
        out["target_ids"] = np.full((batch_size, seq_len), pad_id, np.int32)
        out["target_mask"] = np.zeros((batch_size, seq_len), np.int32)
    out["task_id"][:] = enc.task_id
    for r, i in enumerate(rows):
        if i < 0:
            continue
        n = len(enc.input_ids[i])
        out["input_ids"][r, :n] = enc.input_ids[i]
        out["attention_mask"][r, :n] = 1
        out["token_type_ids"][r, :n] = enc.token_type_ids[i]
        if enc.token_labels is not None:
            out["token_labels"][r, :n] = enc.token_labels[i]
        out["label"][r], out["score"][r], out["example_weight"][r] = (
            enc.label[i], enc.score[i], 1.0
        )  # fmt: skip
        if enc.target_ids is not None:
            t = enc.target_ids[i]
            out["target_ids"][r, : len(t)] = t
            out["target_mask"][r, : len(t)] = 1
    return out


def reference_packed(enc, rows, seq_len, num_slots, pad_id):
    """Example by example, as the packer used to build a packed batch."""
    b = len(rows)
    out = layout.empty(b, seq_len, pad_id)
    for k in ("segment_ids", "position_ids"):
        out[k] = np.zeros((b, seq_len), np.int32)
    out["label"] = np.zeros((b, num_slots), np.int32)
    out["score"] = np.zeros((b, num_slots), np.float32)
    out["example_weight"] = np.zeros((b, num_slots), np.float32)
    out["example_index"] = np.full((b, num_slots), -1, np.int32)
    out["task_id"][:] = enc.task_id
    for r, members in enumerate(rows):
        start = 0
        for s, i in enumerate(() if members is None else members):
            n = len(enc.input_ids[i])
            end = start + n
            out["input_ids"][r, start:end] = enc.input_ids[i]
            out["attention_mask"][r, start:end] = 1
            out["token_type_ids"][r, start:end] = enc.token_type_ids[i]
            if enc.token_labels is not None:
                out["token_labels"][r, start:end] = enc.token_labels[i]
            out["segment_ids"][r, start:end] = s + 1
            out["position_ids"][r, start:end] = np.arange(n)
            out["label"][r, s], out["score"][r, s] = enc.label[i], enc.score[i]
            out["example_weight"][r, s], out["example_index"][r, s] = 1.0, i
            start = end
    return out


def random_encoded(n=200, seed=0, *, token_labels=True, targets=False, max_len=30):
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, max_len + 1, n)
    tlens = rng.integers(1, max_len + 1, n)
    ids = [rng.integers(5, 1000, k).astype(np.int32) for k in lens]
    types = [rng.integers(0, 2, k).astype(np.int32) for k in lens]
    labels = [rng.integers(-100, 9, k).astype(np.int32) for k in lens] if token_labels else None
    target = [rng.integers(5, 1000, k).astype(np.int32) for k in tlens] if targets else None
    return Encoded(ids, types, rng.integers(0, 3, n).astype(np.int32),
                   rng.random(n).astype(np.float32), 3, token_labels=labels,
                   target_ids=target)  # fmt: skip


def on_disk(enc: Encoded, folder) -> Encoded:
    """The same examples as token-cache rows read from flat files (Ragged)."""
    lengths = np.asarray([len(x) for x in enc.input_ids], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    def ragged(name, rows, dtype, offs=offsets):
        path = os.path.join(folder, name + ".bin")
        np.concatenate(rows).astype(dtype).tofile(path)
        return token_cache.Ragged(path, dtype, offs)

    labels = None if enc.token_labels is None else ragged("tl", enc.token_labels, np.int32)
    return Encoded(ragged("ids", enc.input_ids, np.int32),
                   ragged("types", enc.token_type_ids, np.uint8), enc.label, enc.score,
                   enc.task_id, token_labels=labels)  # fmt: skip


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("source", ["memory", "files"])
def test_bucketed_batch_equals_row_by_row(source, tmp_path):
    enc = random_encoded(token_labels=source == "memory")
    if source == "files":
        enc = on_disk(enc, tmp_path)
    rng = np.random.default_rng(1)
    for _ in range(20):
        rows = rng.permutation(len(enc))[:16]
        rows[rng.random(16) < 0.25] = -1  # padding rows anywhere
        assert_same(batching.make_batch(enc, rows, 32, 16, pad_id=7),
                    reference_bucketed(enc, rows, 32, 16, 7))  # fmt: skip
    every_row_padding = np.full(16, -1)
    assert_same(batching.make_batch(enc, every_row_padding, 32, 16, 0),
                reference_bucketed(enc, every_row_padding, 32, 16, 0))  # fmt: skip


def test_bucketed_batch_with_decoder_targets_equals_row_by_row():
    enc = random_encoded(token_labels=False, targets=True)
    rows = np.array([3, -1, 17, 5, -1, 0, 199, 42])
    assert_same(batching.make_batch(enc, rows, 32, 8, 1), reference_bucketed(enc, rows, 32, 8, 1))


@pytest.mark.parametrize("source", ["memory", "files"])
def test_packed_batch_equals_example_by_example(source, tmp_path):
    enc = random_encoded(n=300, seed=2)
    if source == "files":
        enc = on_disk(enc, tmp_path)
    rng = np.random.default_rng(3)
    rows = packing.pack(enc.lengths, rng.permutation(len(enc)), 128, 32)
    for start in range(0, len(rows), 8):
        part = [rows[r] for r in range(start, min(start + 8, len(rows)))] + [None, None]
        assert_same(packing.make_batch(enc, part, 128, 32, 0),
                    reference_packed(enc, part, 128, 32, 0))  # fmt: skip


def test_too_long_rows_are_named():
    enc = random_encoded(n=10, max_len=30)
    i = int(np.argmax(enc.lengths))
    with pytest.raises(ValueError, match=rf"example {i} has {enc.lengths[i]} tokens"):
        batching.make_batch(enc, [i], 8, 1, 0)
    with pytest.raises(ValueError, match="packed row 0 holds"):
        packing.make_batch(enc, [list(range(10))], 16, 10, 0)


def test_take_reads_rows_in_order_from_memory_and_files(tmp_path):
    enc = random_encoded(n=50, seed=4)
    disk = on_disk(enc, tmp_path)
    index = np.array([7, 0, 49, 7, 3])
    want = np.concatenate([enc.input_ids[i] for i in index])
    for rows in (enc.input_ids, disk.input_ids):
        flat, lengths = take(rows, index)
        assert flat.dtype == np.int32
        np.testing.assert_array_equal(flat, want)
        np.testing.assert_array_equal(lengths, [len(enc.input_ids[i]) for i in index])
    with pytest.raises(IndexError):
        disk.input_ids.take(np.array([50]))
