"""Bucketed batching: layout, determinism, checkpoint/restore, multi-host shards, eval coverage."""

import json

import numpy as np
import pytest

from jaxtl.data import batch as layout
from jaxtl.data.batching import TrainBatches, eval_batches, eval_order, padding_fraction
from jaxtl.data.tokenize import Encoded


def fake_encoded(n=300, seed=0, task_id=2):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 120, n)
    # Token ids encode the example index, so every row can be traced back to its example.
    ids = [np.full(k, 1000 + i, np.int32) for i, k in enumerate(lengths)]
    return Encoded(ids, [np.zeros(k, np.int32) for k in lengths], np.arange(n, dtype=np.int32) % 3,
                   np.arange(n, dtype=np.float32), task_id)  # fmt: skip


def example_of(batch):
    return (batch["input_ids"][:, 0] - 1000)[batch["example_weight"] > 0]


def test_layout_and_buckets():
    enc = fake_encoded()
    it = TrainBatches(enc, batch_size=16, buckets=(32, 64, 128), seed=0, pad_id=0)
    for _ in range(30):
        b = next(it)
        layout.check(b)
        t = b["input_ids"].shape[1]
        assert t in (32, 64, 128) and b["input_ids"].shape[0] == 16
        lens = b["attention_mask"].sum(1)[b["example_weight"] > 0]
        smaller = {32: 0, 64: 32, 128: 64}[t]
        assert (lens <= t).all() and (lens > smaller).all()  # smallest bucket that fits
        real = b["example_weight"] > 0
        assert (b["task_id"] == 2).all() and (b["label"][real] == example_of(b) % 3).all()


def test_epoch_covers_every_example_once_and_is_seeded():
    enc = fake_encoded()
    it = TrainBatches(enc, batch_size=16, seed=3, pad_id=0)
    n = it.batches_per_epoch()
    seen = np.concatenate([example_of(next(it)) for _ in range(n)])
    assert sorted(seen.tolist()) == list(range(len(enc)))
    again = TrainBatches(enc, batch_size=16, seed=3, pad_id=0)
    other = TrainBatches(enc, batch_size=16, seed=4, pad_id=0)
    first = [example_of(next(again)).tolist() for _ in range(n)]
    assert first == [s.tolist() for s in np.split(seen, np.cumsum([len(x) for x in first])[:-1])]
    assert first != [example_of(next(other)).tolist() for _ in range(n)]
    assert [example_of(next(again)).tolist() for _ in range(n)] != first  # epoch 2 reshuffled


def test_state_restore_continues_identically():
    enc = fake_encoded()
    it = TrainBatches(enc, batch_size=16, seed=0, pad_id=0)
    for _ in range(7):
        next(it)
    saved = json.loads(json.dumps(it.state()))
    expected = [next(it) for _ in range(5)]
    fresh = TrainBatches(enc, batch_size=16, seed=0, pad_id=0)
    fresh.restore(saved)
    for a, b in zip(expected, [next(fresh) for _ in range(5)]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # Across an epoch boundary too.
    n = it.batches_per_epoch()
    fresh.restore({"epoch": 0, "position": n - 1, "seed": 0})
    last_two = [example_of(next(fresh)) for _ in range(2)]
    ref = TrainBatches(enc, batch_size=16, seed=0, pad_id=0)
    ref_seq = [example_of(next(ref)) for _ in range(n + 1)]
    np.testing.assert_array_equal(last_two[1], ref_seq[n])
    with pytest.raises(ValueError, match="seed"):
        fresh.restore({"epoch": 0, "position": 0, "seed": 9})


def test_two_processes_disjoint_and_cover_global_batch():
    enc = fake_encoded()
    whole = TrainBatches(enc, batch_size=16, seed=0, pad_id=0)
    p0 = TrainBatches(enc, batch_size=16, seed=0, pad_id=0, process_index=0, process_count=2)
    p1 = TrainBatches(enc, batch_size=16, seed=0, pad_id=0, process_index=1, process_count=2)
    for _ in range(20):
        g, a, b = next(whole), next(p0), next(p1)
        assert a["input_ids"].shape[0] == 8 and a["input_ids"].shape == b["input_ids"].shape
        ea, eb = set(example_of(a).tolist()), set(example_of(b).tolist())
        assert not ea & eb and ea | eb == set(example_of(g).tolist())
        for k in g:
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), g[k])
    with pytest.raises(ValueError, match="divisible"):
        TrainBatches(enc, batch_size=15, seed=0, pad_id=0, process_count=2)


def test_eval_batches_each_example_once_in_order():
    enc = fake_encoded(n=101)
    batches = eval_batches(enc, batch_size=8, buckets=(32, 64, 128), pad_id=0)
    order = np.concatenate([example_of(b) for b in batches])
    assert sorted(order.tolist()) == list(range(101))
    np.testing.assert_array_equal(order, eval_order(enc, buckets=(32, 64, 128)))
    assert all(np.all(np.diff(example_of(b)) > 0) for b in batches)  # in order within a bucket
    pad_rows = sum(int((b["example_weight"] == 0).sum()) for b in batches)
    assert pad_rows == len(batches) * 8 - 101 and pad_rows < 3 * 8
    shards = [eval_batches(enc, batch_size=8, pad_id=0, process_index=p, process_count=2)
              for p in range(2)]  # fmt: skip
    got = sorted(np.concatenate([example_of(b) for s in shards for b in s]).tolist())
    assert got == list(range(101))


def test_too_long_example_is_an_error():
    enc = fake_encoded()
    with pytest.raises(ValueError, match="largest bucket 64"):
        TrainBatches(enc, batch_size=8, buckets=(32, 64), seed=0, pad_id=0)


def test_padding_fraction_bucketed_beats_fixed():
    lengths = fake_encoded(n=1000).lengths
    fixed = padding_fraction(lengths, batch_size=32, buckets=(128,))
    bucketed = padding_fraction(lengths, batch_size=32, buckets=(32, 64, 96, 128))
    # Fixed: 1 - mean length / 128, plus the padding rows of the last batch.
    expected = 1 - lengths.sum() / (32 * 128 * int(np.ceil(1000 / 32)))
    assert abs(fixed - expected) < 1e-9
    assert bucketed < fixed - 0.15
