"""The on-disk token cache (jaxtl.data.token_cache): same batches as tokenising in memory, hit on
the second run, rebuilt when its inputs change or a shard is damaged, resumable, and read from
memory maps without loading the corpus."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
from conftest import minilm_dir

from jaxtl.data import batching, get_task, packing, token_cache, tokenize
from jaxtl.data.tasks import Example

WORDS = "good bad film plot actors tedious charming slow wonderful dull story script".split()


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


def write_sst2(root: pathlib.Path, rows: int, seed: int = 0) -> pathlib.Path:
    """A GLUE-layout SST-2 folder of synthetic sentences (lengths 1..40 words)."""
    rng = np.random.default_rng(seed)
    lines = ["sentence\tlabel"]
    for _ in range(rows):
        n = int(rng.integers(1, 40))
        lines.append(" ".join(rng.choice(WORDS, n)) + f"\t{int(rng.integers(0, 2))}")
    folder = root / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    (folder / "dev.tsv").write_text("\n".join(lines[:20]) + "\n")
    return root


def cached(task, tok, cache, **kw):
    kw.setdefault("max_length", 64)
    return token_cache.encode_split(task, "train", tok, root=str(cache), min_rows=0,
                                    progress=False, **kw)  # fmt: skip


def entries(cache: pathlib.Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


def same_batches(a, b, n: int) -> None:
    for _ in range(n):
        x, y = next(a), next(b)
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k


def test_cached_batches_equal_uncached(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 128)  # 12 chunks, encoded two at a time
    data = write_sst2(tmp_path / "data", 1500)
    task = get_task("sst2", str(data))
    enc = cached(task, tok, tmp_path / "cache")
    ref = tokenize.encode(task, task.load("train"), tok, max_length=64)
    assert isinstance(enc.input_ids, token_cache.Ragged)
    assert isinstance(enc.input_ids.array(), np.memmap)
    assert np.array_equal(enc.input_ids.array(), np.concatenate(ref.input_ids))
    assert len(enc) == len(ref) == 1500
    assert np.array_equal(enc.lengths, ref.lengths)
    assert all(np.array_equal(enc.input_ids[i], ref.input_ids[i]) for i in range(len(ref)))
    assert np.array_equal(enc.label, ref.label) and np.array_equal(enc.score, ref.score)
    for make in (batching.TrainBatches, packing.PackedTrainBatches):
        kw = dict(batch_size=16, buckets=(16, 32, 64), seed=5, pad_id=0)
        a, b = make(enc, **kw), make(ref, **kw)
        same_batches(a, b, a.batches_per_epoch() + 7)  # into the second epoch
    for ev in (batching.eval_batches, packing.eval_batches):
        for x, y in zip(ev(enc, batch_size=16, buckets=(16, 32, 64)),
                        ev(ref, batch_size=16, buckets=(16, 32, 64)), strict=True):  # fmt: skip
            assert all(np.array_equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("processes", [1, 2])
def test_pairs_through_the_flat_encoder_and_workers_match_encode(
    tmp_path, tok, monkeypatch, processes
):
    """Sentence pairs (RTE layout) take the flat encoder, in this process or in the workers,
    with segment ids and the pair truncation strategy: the same rows as tokenize.encode."""
    from jaxtl.data import tokenize_worker

    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 64)
    submitted = []
    submit = tokenize_worker.Workers.submit
    monkeypatch.setattr(tokenize_worker.Workers, "submit",
                        lambda self, texts, pairs=None: (submitted.append(pairs is not None),
                                                         submit(self, texts, pairs))[1])  # fmt: skip
    flat_calls = []
    call = token_cache.FlatEncoder.__call__
    monkeypatch.setattr(token_cache.FlatEncoder, "__call__",
                        lambda self, chunk: (flat_calls.append(1), call(self, chunk))[1])  # fmt: skip
    long = " ".join(["word"] * 40)  # pairs longer than max_length: truncation decides the rows
    rows = ["index\tsentence1\tsentence2\tlabel"] + [
        f"{i}\tthe film was good number {i} {long if i % 5 == 0 else ''}\t"
        f"it was {'bad' if i % 2 else 'good'} {long if i % 7 == 0 else ''}\t"
        f"{'entailment' if i % 3 else 'not_entailment'}"
        for i in range(300)
    ]
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "RTE" / "dev.tsv").write_text("\n".join(rows[:5]) + "\n")
    task = get_task("rte", str(tmp_path))
    for truncation in ("longest_first", "only_second"):
        enc = cached(task, tok, tmp_path / f"cache-{truncation}", truncation=truncation,
                     processes=processes)  # fmt: skip
        ref = tokenize.encode(task, task.load("train"), tok, max_length=64,
                              truncation=truncation)  # fmt: skip
        assert isinstance(enc.input_ids, token_cache.Ragged)
        assert enc.lengths.max() == 64  # some rows were cut
        for i in range(len(ref)):
            assert np.array_equal(enc.input_ids[i], ref.input_ids[i]), (truncation, i)
            assert np.array_equal(enc.token_type_ids[i], ref.token_type_ids[i])
        assert np.array_equal(enc.label, ref.label)
    assert flat_calls  # the first chunk of each build
    # with workers every later chunk of both builds went to them as pairs (plus each sample)
    assert submitted == ([] if processes == 1 else [True] * 10)


def test_hit_then_rebuilt_when_file_tokenizer_or_length_changes(tmp_path, tok, monkeypatch):
    data = write_sst2(tmp_path / "data", 400)
    cache = tmp_path / "cache"
    task = get_task("sst2", str(data))
    first = cached(task, tok, cache)
    assert len(entries(cache)) == 1

    # Second run: a hit, no tokenisation at all.
    def boom(*a, **k):
        raise AssertionError("tokenised on a cache hit")

    with monkeypatch.context() as m:
        m.setattr(tokenize, "encode", boom)
        m.setattr(token_cache, "flat_encoder", boom)
        again = cached(task, tok, cache)
    assert np.array_equal(again.lengths, first.lengths) and len(entries(cache)) == 1

    # max_length, then the tokenizer (lower-casing off), then the file itself: new entries.
    short = cached(task, tok, cache, max_length=16)
    assert len(entries(cache)) == 2 and short.lengths.max() <= 16 < first.lengths.max()
    from transformers import AutoTokenizer

    cased = AutoTokenizer.from_pretrained(minilm_dir())
    spec = json.loads(cased.backend_tokenizer.to_str())
    spec["normalizer"]["lowercase"] = False
    from tokenizers import Tokenizer

    cased._tokenizer = Tokenizer.from_str(json.dumps(spec))
    assert token_cache.tokenizer_fingerprint(cased) != token_cache.tokenizer_fingerprint(tok)
    cached(task, cased, cache)
    assert len(entries(cache)) == 3
    # The fingerprint ignores the truncation a tokenizer call leaves behind.
    fp = token_cache.tokenizer_fingerprint(tok)
    tok(["a b c"], truncation=True, max_length=7)
    assert token_cache.tokenizer_fingerprint(tok) == fp
    train = data / "SST-2" / "train.tsv"
    train.write_text(train.read_text() + "a new sentence\t1\n")
    grown = cached(task, tok, cache)
    assert len(grown) == 401 and len(entries(cache)) == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_damaged_entry_is_rebuilt(tmp_path, tok, damage, caplog):
    data = write_sst2(tmp_path / "data", 300)
    cache = tmp_path / "cache"
    task = get_task("sst2", str(data))
    good = cached(task, tok, cache)
    ids = [np.array(good.input_ids[i]) for i in range(len(good))]
    (key,) = entries(cache)
    del good
    shard = cache / key / "input_ids.bin"
    raw = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "flip":
        raw[len(raw) // 3] ^= 0xFF
        shard.write_bytes(bytes(raw))
    else:
        (cache / key / "meta.json").write_text("{not json")
    assert token_cache.check_entry(str(cache / key)) is None
    with caplog.at_level("WARNING"):
        again = cached(task, tok, cache)
    assert "rebuilding" in caplog.text
    assert entries(cache) == [key] and token_cache.check_entry(str(cache / key)) is not None
    assert all(np.array_equal(again.input_ids[i], ids[i]) for i in range(len(ids)))


def test_resume_mid_epoch_from_cache_is_bit_identical(tmp_path, tok):
    data = write_sst2(tmp_path / "data", 700)
    task = get_task("sst2", str(data))
    for make in (batching.TrainBatches, packing.PackedTrainBatches):
        kw = dict(batch_size=8, buckets=(16, 32, 64), seed=11, pad_id=0)
        it = make(cached(task, tok, tmp_path / "cache"), **kw)
        for _ in range(it.batches_per_epoch() // 2):
            next(it)
        state = json.loads(json.dumps(it.state()))  # as a checkpoint holds it
        # A new process: the entry opened again from disk, the iterator restored.
        resumed = make(cached(task, tok, tmp_path / "cache"), **kw)
        resumed.restore(state)
        same_batches(it, resumed, it.batches_per_epoch())


def test_small_split_stays_in_memory_and_builtin_is_not_cached(tmp_path, tok):
    data = write_sst2(tmp_path / "data", 50)
    task = get_task("sst2", str(data))
    cache = tmp_path / "cache"
    enc = token_cache.encode_split(task, "train", tok, max_length=64, root=str(cache),
                                   min_rows=100)  # fmt: skip
    assert enc is not None and isinstance(enc.input_ids, list) and len(enc) == 50
    assert not cache.exists() or entries(cache) == []
    builtin = get_task("builtin/sentiment")
    assert token_cache.encode_split(builtin, "train", tok, max_length=64, root=str(cache)) is None
    assert token_cache.encode_split(task, "train", tok, max_length=64, root=None) is None


def test_prepare_tasks_reads_train_from_the_cache(tmp_path, tok, monkeypatch):
    from jaxtl import config as config_lib
    from jaxtl.data import tokenize_worker
    from jaxtl.data.prepare import prepare_tasks
    from jaxtl.regimes import multitask

    asked = []  # data.tokenize_processes reaches the build: 1 = no worker processes
    init = tokenize_worker.Workers.__init__
    monkeypatch.setattr(tokenize_worker.Workers, "__init__",
                        lambda self, *a, **k: (asked.append(k["processes"]), init(self, *a, **k))[1])  # fmt: skip
    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 100)

    data = write_sst2(tmp_path / "data", 600)
    config = config_lib.base_config()
    multitask.add_config(config)
    config.data.dir = str(data)
    config.data.max_length = 64
    config.data.buckets = (16, 32, 64)
    config.train.batch_size = 8
    config.data.token_cache = str(tmp_path / "cache")
    config.data.token_cache_min_rows = 100
    config.data.max_train_examples = 500
    config.data.tokenize_processes = 1
    (one,) = prepare_tasks(["sst2"], config, tok, packed=True)
    assert asked == [] and isinstance(one.train_iter.encoded.input_ids, token_cache.Ragged)
    config.data.token_cache = str(tmp_path / "cache2")
    config.data.tokenize_processes = 3
    (td,) = prepare_tasks(["sst2"], config, tok, packed=True)
    assert asked == [3]
    assert td.train_size == 500 and isinstance(td.train_iter.encoded.input_ids, token_cache.Ragged)
    a, b = one.train_iter.encoded, td.train_iter.encoded
    assert np.array_equal(a.input_ids.array(), b.input_ids.array())
    assert np.array_equal(a.lengths, b.lengths) and np.array_equal(a.label, b.label)
    config.data.token_cache = "off"
    (ref,) = prepare_tasks(["sst2"], config, tok, packed=True)
    assert isinstance(ref.train_iter.encoded.input_ids, list)
    same_batches(td.train_iter, ref.train_iter, 30)


def test_batching_from_memmap_does_not_load_the_corpus(tmp_path):
    """200k rows of 128 tokens (128 MB of ids and types) batched for 3,000 steps: the resident
    set grows by the index arrays and a bounded window of pages, not by the corpus."""
    rows, length = 200_000, 128
    rng = np.random.default_rng(0)
    block = rng.integers(1000, 30000, (4096, length), dtype=np.int32)

    def encode(chunk: list[int]) -> tokenize.Encoded:
        n = len(chunk)
        ids = [block[i % 4096] for i in chunk]
        return tokenize.Encoded(ids, [np.zeros(length, np.int32)] * n, np.zeros(n, np.int32),
                                np.zeros(n, np.float32))  # fmt: skip

    folder = str(tmp_path / "entry")
    token_cache.build_entry(folder, range(rows), encode, {"task": "synthetic"}, progress=False)
    meta = token_cache.check_entry(folder)
    assert meta is not None and meta["rows"] == rows
    data_mib = os.path.getsize(os.path.join(folder, "input_ids.bin")) / 2**20
    assert data_mib > 95

    def rss_mib() -> float:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    base = rss_mib()
    enc = token_cache.open_entry(folder, meta)
    assert isinstance(enc.input_ids.array(), np.memmap)
    it = batching.TrainBatches(enc, batch_size=32, buckets=(128,), seed=0)
    peak = 0.0
    for step in range(3000):  # 96k random rows: through a memory map, most of the file
        batch = next(it)
        if step % 50 == 0:
            peak = max(peak, rss_mib() - base)
    assert batch["input_ids"].shape == (32, 128)
    # Per-example and index arrays of 200k rows (~10 MB) and one batch, not the 98 MB of ids.
    assert peak < 30, f"resident set grew by {peak:.0f} MiB over a {data_mib:.0f} MiB corpus"


def test_streamed_reader_matches_load(tmp_path):
    data = write_sst2(tmp_path, 120)
    task = get_task("sst2", str(data))
    assert list(task.iterate("train")) == list(task.load("train"))
    assert task.files("train") == (str(data / "SST-2" / "train.tsv"),)
    (data / "SST-2" / "dev.tsv").write_text("\n  \n")
    with pytest.raises(ValueError, match="file is empty"):
        next(task.iterate("dev"))
    assert isinstance(next(task.iterate("train")), Example)


def test_ragged_alive_at_interpreter_exit_closes_quietly(tmp_path):
    """A Ragged held in a script's global is collected after module globals are cleared; its
    file must still close without an "Exception ignored in __del__" on stderr."""
    import subprocess
    import sys

    data = tmp_path / "ids.bin"
    np.arange(6, dtype=np.int32).tofile(data)
    script = (
        "import numpy as np\n"
        "from jaxtl.data import token_cache\n"
        f"r = token_cache.Ragged({str(data)!r}, np.int32, np.array([0, 2, 6]))\n"
        "assert list(r[1]) == [2, 3, 4, 5]\n"
    )
    repo = pathlib.Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=repo)
    assert p.returncode == 0, p.stderr
    assert "Exception ignored" not in p.stderr, p.stderr


def _files(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_worker_processes_build_the_same_entry_as_this_process(tmp_path, tok, monkeypatch):
    """Chunks tokenised by two worker processes give the entry (every shard and its metadata)
    that tokenising in this process gives, byte for byte, and the workers really ran."""
    from jaxtl.data import tokenize_worker

    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 100)  # 9 chunks: 1 here, 8 in the workers
    data = write_sst2(tmp_path / "data", 900)
    task = get_task("sst2", str(data))
    handed = []
    submit = tokenize_worker.Workers.submit
    monkeypatch.setattr(tokenize_worker.Workers, "submit",
                        lambda self, texts, pairs=None: (handed.append(len(texts)),
                                                         submit(self, texts, pairs))[1])  # fmt: skip
    here = cached(task, tok, tmp_path / "here", processes=1)
    assert handed == []
    there = cached(task, tok, tmp_path / "there", processes=2)
    # the sample check on the first chunk's first rows, then the 8 later chunks
    assert handed == [100] + [100] * 8
    (a,) = entries(tmp_path / "here")
    (b,) = entries(tmp_path / "there")
    assert a == b and _files(tmp_path / "here" / a) == _files(tmp_path / "there" / b)
    assert np.array_equal(here.lengths, there.lengths)
    ref = tokenize.encode(task, task.load("train"), tok, max_length=64)
    assert np.array_equal(there.input_ids.array(), np.concatenate(ref.input_ids))
    assert np.array_equal(there.label, ref.label)


def test_a_worker_that_dies_fails_the_build_and_leaves_no_entry(tmp_path, tok, monkeypatch):
    """A worker killed mid-build: a one-line error naming the worker, no entry in the cache
    (a later run builds it afresh), and no worker process left behind."""
    from jaxtl.data import tokenize_worker

    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 100)
    data = write_sst2(tmp_path / "data", 600)
    task = get_task("sst2", str(data))
    started = []
    init = tokenize_worker.Workers.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        started.extend(self.procs)

    result = tokenize_worker.Workers.result
    calls = []

    def killing(self):
        calls.append(1)
        if len(calls) == 2:  # after the sample check: the first real chunk's worker dies
            self.procs[self.taken % len(self.procs)].kill()
        return result(self)

    monkeypatch.setattr(tokenize_worker.Workers, "__init__", spy)
    monkeypatch.setattr(tokenize_worker.Workers, "result", killing)
    cache = tmp_path / "cache"
    with pytest.raises(tokenize_worker.WorkerError, match=r"tokenizer worker \d+ stopped"):
        cached(task, tok, cache, processes=2)
    assert entries(cache) == [] and started and all(p.poll() is not None for p in started)
    monkeypatch.undo()
    assert len(cached(task, tok, cache, processes=2)) == 600


def test_workers_that_disagree_with_this_process_are_not_used(tmp_path, tok, monkeypatch, caplog):
    from jaxtl.data import tokenize_worker

    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 100)
    data = write_sst2(tmp_path / "data", 300)
    task = get_task("sst2", str(data))
    result = tokenize_worker.Workers.result

    def off_by_one(self):
        lengths, ids, types = result(self)
        return lengths, ids + 1, types

    monkeypatch.setattr(tokenize_worker.Workers, "result", off_by_one)
    with caplog.at_level("WARNING"):
        enc = cached(task, tok, tmp_path / "cache", processes=2)
    assert "differ from this process" in caplog.text
    ref = tokenize.encode(task, task.load("train"), tok, max_length=64)
    assert np.array_equal(enc.input_ids.array(), np.concatenate(ref.input_ids))


def test_worker_frames_round_trip_any_text_and_segment_ids():
    from jaxtl.data import tokenize_worker as w

    texts = ["", "plain", "tab\tand\nnewline", "ünïcödé ✓ 漢字", "\udcff lone surrogate"]
    assert w.unpack_texts(w.pack_texts(texts)) == (texts, None)
    seconds = texts[::-1]
    assert w.unpack_texts(w.pack_texts(texts, seconds)) == (texts, seconds)
    lengths = np.array([3, 0, 2], np.int64)
    ids = np.array([101, 7, 102, 101, 102], np.int32)
    for types in (np.zeros(5, np.uint8), np.array([0, 0, 0, 1, 1], np.uint8)):
        out = w.unpack_arrays(w.pack_arrays(lengths, ids, types))
        assert all(np.array_equal(x, y) and x.dtype == y.dtype
                   for x, y in zip(out, (lengths, ids, types), strict=True))  # fmt: skip


def test_a_failed_write_stops_the_workers_at_once(tmp_path, tok, monkeypatch):
    """The build fails in this process (as a full disk would) while workers hold chunks: they
    are stopped before the error reaches the caller, and no entry is left."""
    from jaxtl.data import tokenize_worker

    monkeypatch.setattr(token_cache, "CHUNK_ROWS", 100)
    data = write_sst2(tmp_path / "data", 800)
    task = get_task("sst2", str(data))
    started = []
    init = tokenize_worker.Workers.__init__
    monkeypatch.setattr(tokenize_worker.Workers, "__init__",
                        lambda self, *a, **k: (init(self, *a, **k), started.extend(self.procs))[0])  # fmt: skip
    add = token_cache._Writer.add

    def full_disk(self, enc):
        if self.rows >= 300:
            raise OSError(28, "No space left on device")
        add(self, enc)

    monkeypatch.setattr(token_cache._Writer, "add", full_disk)
    with pytest.raises(OSError, match="No space left") as failed:
        cached(task, tok, tmp_path / "cache", processes=2)
    # while the error (and its traceback, which holds the build's frames) is still alive
    assert failed.value.errno == 28
    assert started and all(p.poll() is not None for p in started)
    assert entries(tmp_path / "cache") == []


def test_default_worker_count_is_one_per_core_up_to_eight(monkeypatch):
    from jaxtl.data import tokenize_worker

    for cores, want in ((1, 1), (2, 2), (8, 8), (224, 8)):
        monkeypatch.setattr(tokenize_worker.os, "sched_getaffinity", lambda _, n=cores: set(range(n)),
                            raising=False)  # fmt: skip
        assert tokenize_worker.default_processes() == want
