"""A tokenised split on disk, written once and reused: corpora larger than memory.

A large training split is tokenised once, streamed in chunks through the tokenizer's batch call
(the Hugging Face fast tokenizer encodes a batch on all cores in Rust, while a reader thread
parses the next chunk), and its token ids are written to flat numpy files (raw arrays that
``np.memmap`` opens) that every later run reads instead of tokenising again:

==================  ==========  ===========================================================
offsets             int64[N+1]  example i's tokens are ``flat[offsets[i]:offsets[i+1]]``
input_ids           int32[T]    token ids of all examples, one after the other
token_type_ids      uint8[T]    segment ids (0/1); not read when all zero
token_labels        int32[T]    per-token targets (tagging), when the kind has them
word_ids            int32[T]    each token's word (tagging)
target_offsets,     int64[N+1], decoder targets (translation)
target_ids          int32[T']
label, score        [N]         class id / regression target per example
label_set           uint8[N*C]  a multilabel example's classes as 0/1, row by row
==================  ==========  ===========================================================

:func:`open_entry` turns an entry into a :class:`jaxtl.data.tokenize.Encoded` whose token fields
are :class:`Ragged` rows read from the files by index, so the batchers (bucketed or packed) build
their plans from ``Encoded.lengths`` (``np.diff(offsets)``) and read only the rows of the batch
at hand: a run holds its corpus's per-example arrays (offsets, lengths, labels: 20 bytes an
example) and its batcher's index arrays, never its tokens.

The entry's key hashes everything that decides its contents: the tokenizer (its serialized
vocabulary, normalizer and templates, minus the per-call truncation state), the target tokenizer,
each data file (absolute path, size, modification time), the task (spec, kind, labels),
``max_length``, the truncation policy and the example limit. Entries are written to a temporary
folder and renamed into place, so a crashed build leaves nothing that looks finished; every
file's size and CRC-32 are checked on open and an entry that fails is rebuilt, never trusted.

Splits under ``min_rows`` examples are tokenised in memory as before (the cache would only add
files); the decision is made while streaming, without counting the file first.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from jaxtl.data import tokenize, tokenize_worker
from jaxtl.data.tasks import Example, Task

log = logging.getLogger(__name__)

VERSION = 1
CHUNK_ROWS = 16384  # examples per tokenizer batch call while building
DEFAULT_MIN_ROWS = 100_000
SAMPLE_ROWS = 256  # rows of the first chunk on which the flat encoder and workers are checked

# field -> dtype on disk; the token fields are read back as int32, the layout's dtype.
DTYPES = {
    "offsets": np.int64, "input_ids": np.int32, "token_type_ids": np.uint8,
    "token_labels": np.int32, "word_ids": np.int32, "target_offsets": np.int64,
    "target_ids": np.int32, "label": np.int32, "score": np.float32, "label_set": np.uint8,
}  # fmt: skip


def cache_root(setting: str) -> str | None:
    """The cache folder for ``data.token_cache`` (``auto`` | ``off`` | a path)."""
    if setting == "off":
        return None
    if setting in ("", "auto"):
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(root, "jaxtl", "tokens")
    return os.path.expanduser(setting)


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """A hash of what a tokenizer does, or None when it cannot be serialized (no cache then).

    The fast tokenizer's JSON holds vocabulary, normalizer, pre-tokenizer, model and
    post-processor; its ``truncation``/``padding`` entries are per-call state that a batch call
    sets, so they are left out, and the Python-side class and special tokens are added."""
    if tokenizer is None:
        return "none"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    extra = [type(tokenizer).__name__, repr(sorted(tokenizer.special_tokens_map.items()))]
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    h.update(json.dumps(extra).encode())
    return h.hexdigest()


def file_identity(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def entry_key(
    task: Task, split: str, tokenizer: Any, *, max_length: int, truncation: str = "longest_first",
    target_tokenizer: Any = None, limit: int = 0, spec: str = "",
) -> tuple[str, dict[str, Any]] | None:  # fmt: skip
    """(hex key, the inputs it hashes), or None when the split cannot be keyed (a task without
    files, a tokenizer that cannot be serialized)."""
    if task.files is None or split not in task.splits:
        return None
    if not all(os.path.isfile(p) for p in task.files(split)):
        return None  # the reader names a missing file better than a cache key can
    tok = tokenizer_fingerprint(tokenizer)
    target = tokenizer_fingerprint(target_tokenizer) if target_tokenizer is not None else "same"
    if tok is None or target is None:
        return None
    inputs = {
        "version": VERSION, "task": spec or task.name, "split": split, "kind": task.kind,
        "labels": list(task.label_names), "text_fields": list(task.text_fields),
        "files": [file_identity(p) for p in task.files(split)], "tokenizer": tok,
        "target_tokenizer": target, "max_length": int(max_length), "truncation": truncation,
        "limit": int(limit),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32], inputs


class Ragged(Sequence[np.ndarray]):
    """Example i's row of a flat token file, as int32, read on demand with ``pread``.

    Rows are read into fresh buffers rather than through a memory map: on kernels that keep
    the page cache in large folios, one random page fault maps up to 2 MB of the file into the
    process, so a shuffled epoch through a mapped file would grow the resident set towards the
    file's size. ``pread`` copies only the row, and the page cache stays the kernel's.
    :meth:`array` gives the whole file as a read-only ``np.memmap`` for sequential use."""

    def __init__(self, path: str | None, dtype: Any, offsets: np.ndarray):
        self.path, self.dtype, self.offsets = path, np.dtype(dtype), offsets
        self._fd = os.open(path, os.O_RDONLY) if path is not None else -1
        self._n = len(offsets) - 1
        self._lengths: np.ndarray | None = None

    def __reduce__(self) -> Any:  # copies and pickles open their own file descriptor
        return (Ragged, (self.path, self.dtype, self.offsets))

    # os.close bound at definition: a Ragged still alive at interpreter exit (a script's global)
    # is collected after module globals such as ``os`` are cleared.
    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        if getattr(self, "_fd", -1) >= 0:
            _close(self._fd)
            self._fd = -1

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        return self.take(np.asarray([int(i)]))[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def take(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows ``index`` one after the other as int32, their lengths): a batch's rows in one
        buffer, one ``pread`` each, one conversion for all."""
        index = np.asarray(index, np.int64)
        if len(index) and not (-self._n <= index.min() and index.max() < self._n):
            raise IndexError(f"row index out of range [0, {self._n})")
        index = index % max(self._n, 1)
        starts, ends = self.offsets[index], self.offsets[index + 1]
        lengths = (ends - starts).astype(np.int64)
        total = int(lengths.sum())
        if self._fd < 0:  # a field that is zero everywhere (single-sentence token types)
            return np.zeros(total, np.int32), lengths
        size, fd = self.dtype.itemsize, self._fd
        buf = b"".join([os.pread(fd, (e - s) * size, s * size)
                        for s, e in zip(starts.tolist(), ends.tolist())])  # fmt: skip
        if len(buf) != total * size:
            raise OSError(f"{self.path}: short read (file changed since it was checked)")
        return np.frombuffer(buf, self.dtype).astype(np.int32), lengths

    def array(self) -> np.ndarray:
        """All rows' tokens, one after the other, memory-mapped read-only."""
        if self.path is None:
            return np.zeros(int(self.offsets[-1]), self.dtype)
        return np.memmap(self.path, self.dtype, "r")

    @property
    def lengths(self) -> np.ndarray:
        """int32[N] tokens per example, from the offsets alone."""
        if self._lengths is None:
            self._lengths = np.diff(self.offsets).astype(np.int32)
        return self._lengths


@dataclasses.dataclass
class Flat:
    """A chunk of sentence (or sentence-pair) examples tokenised straight into flat arrays."""

    lengths: np.ndarray  # int64[n]
    input_ids: np.ndarray  # int32[sum(lengths)]
    token_type_ids: np.ndarray  # uint8[sum(lengths)]
    label: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)


Texts = tuple[list[str], list[str] | None]  # a chunk's texts and, for sentence pairs, seconds


class FlatEncoder:
    """A faster :func:`jaxtl.data.tokenize.encode` for single sentences and sentence pairs
    (classification, regression, lm) straight into flat arrays: the fast tokenizer's Rust batch
    call, then only the ids (and segment ids) of each encoding are read, with no per-example
    dict of lists. A chunk that mixes singles and pairs raises ``_NotFlat`` (``encode`` then
    names the row). :func:`encode_split` checks it against ``encode`` on the first rows before
    using it, and its worker processes (:mod:`jaxtl.data.tokenize_worker`) against it."""

    def __init__(self, task: Task, tokenizer: Any, backend: Any, max_length: int, truncation: str):
        self.task, self.backend = task, backend
        self.max_length = max_length
        self.truncation = truncation  # pairs' strategy; single sentences are cut at the end
        self.direction = getattr(tokenizer, "truncation_side", "right")

    def texts(self, chunk: list[Example]) -> Texts:
        pairs = [ex.text_pair for ex in chunk]
        n = sum(x is not None for x in pairs)
        if 0 < n < len(chunk):
            raise _NotFlat
        return [ex.text for ex in chunk], (pairs if n else None)  # type: ignore[return-value]

    def configure(self, pairs: bool) -> None:
        """What the tokenizer's own call sets before its batch call: truncation, no padding;
        set only when different, so chunks encoded at the same time never write the
        tokenizer."""
        tokenize_worker.configure(self.backend, self.max_length, self.direction,
                                  self.truncation if pairs else "longest_first")  # fmt: skip

    def __call__(self, chunk: list[Example]) -> Flat:
        texts, pairs = self.texts(chunk)
        self.configure(pairs is not None)
        arrays = tokenize_worker.encode_batch(self.backend, texts, pairs)
        return Flat(*arrays, *tokenize.example_labels(self.task, chunk))


def flat_encoder(
    task: Task, tokenizer: Any, *, max_length: int, truncation: str = "longest_first"
) -> FlatEncoder | None:
    """A :class:`FlatEncoder`, or None where it does not apply (tagging, translation, no fast
    tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or task.kind not in ("classification", "regression", "lm"):
        return None
    return FlatEncoder(task, tokenizer, backend, max_length, truncation)


class _NotFlat(Exception):
    """A chunk the flat encoder does not handle (single sentences and pairs mixed)."""


class _Writer:
    """Appends chunks of an Encoded to the flat files of a new entry, with running CRCs."""

    def __init__(self, folder: str, fields: Sequence[str]):
        self.folder = folder
        self.files = {f: open(os.path.join(folder, f + ".bin"), "wb") for f in fields}
        self.crc = dict.fromkeys(fields, 0)
        self.zero = dict.fromkeys(fields, True)
        self.count = dict.fromkeys(fields, 0)
        self.tokens = {"offsets": 0, "target_offsets": 0}
        self.rows = 0
        for f in ("offsets", "target_offsets"):
            if f in self.files:
                self._put(f, np.zeros(1, np.int64))

    def _put(self, field: str, arr: np.ndarray) -> None:
        data = np.ascontiguousarray(arr, DTYPES[field]).tobytes()
        self.files[field].write(data)
        self.crc[field] = zlib.crc32(data, self.crc[field])
        self.zero[field] = self.zero[field] and not arr.any()
        self.count[field] += len(arr)

    def _ragged(self, field: str, offsets: str, rows: Sequence[np.ndarray]) -> None:
        lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
        self._put(field, np.concatenate(rows) if len(rows) else np.zeros(0, np.int32))
        if offsets in self.files and field in ("input_ids", "target_ids"):
            self._put(offsets, self.tokens[offsets] + np.cumsum(lengths))
            self.tokens[offsets] += int(lengths.sum())

    def add(self, enc: tokenize.Encoded | Flat) -> None:
        if isinstance(enc, Flat):
            self._put("input_ids", enc.input_ids)
            self._put("token_type_ids", enc.token_type_ids)
            self._put("offsets", self.tokens["offsets"] + np.cumsum(enc.lengths))
            self.tokens["offsets"] += int(enc.lengths.sum())
            self._put("label", enc.label)
            self._put("score", enc.score)
            self.rows += len(enc.lengths)
            return
        self._ragged("input_ids", "offsets", enc.input_ids)
        self._ragged("token_type_ids", "offsets", enc.token_type_ids)
        if enc.token_labels is not None:
            self._ragged("token_labels", "offsets", enc.token_labels)
        if enc.word_ids is not None:
            self._ragged("word_ids", "offsets", enc.word_ids)
        if enc.target_ids is not None:
            self._ragged("target_ids", "target_offsets", enc.target_ids)
        if enc.label_set is not None:
            self._put("label_set", enc.label_set.reshape(-1))
        self._put("label", enc.label)
        self._put("score", enc.score)
        self.rows += len(enc)

    def close(self, inputs: dict[str, Any]) -> None:
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        meta = {
            "version": VERSION, "rows": self.rows, "inputs": inputs,
            "fields": {f: {"dtype": np.dtype(DTYPES[f]).str, "count": self.count[f],
                           "crc32": self.crc[f], "zero": self.zero[f]} for f in self.files},
        }  # fmt: skip
        with open(os.path.join(self.folder, "meta.json"), "w") as fh:
            json.dump(meta, fh, indent=1)


def _crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            crc = zlib.crc32(block, crc)
    return crc


def check_entry(folder: str) -> dict[str, Any] | None:
    """The entry's meta when every file is there with its recorded size and CRC-32, else None
    (with the reason logged): a truncated or altered shard is never read."""
    try:
        with open(os.path.join(folder, "meta.json")) as fh:
            meta = json.load(fh)
        if meta.get("version") != VERSION:
            raise ValueError(f"version {meta.get('version')} != {VERSION}")
        for f, info in meta["fields"].items():
            path = os.path.join(folder, f + ".bin")
            size = int(info["count"]) * np.dtype(info["dtype"]).itemsize
            if os.path.getsize(path) != size:
                raise ValueError(f"{f}.bin has {os.path.getsize(path)} bytes, expected {size}")
            if _crc32(path) != int(info["crc32"]):
                raise ValueError(f"{f}.bin fails its CRC-32")
        return meta
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("token cache %s is not usable (%s): rebuilding it", folder, e)
        return None


def open_entry(folder: str, meta: dict[str, Any], task_id: int = 0) -> tokenize.Encoded:
    """The entry as an Encoded: per-example arrays (offsets, labels, scores: 16 bytes an
    example) in memory, token rows read from their files by index (:class:`Ragged`)."""
    fields = meta["fields"]

    def path(field: str) -> str:
        return os.path.join(folder, field + ".bin")

    def load(field: str) -> np.ndarray:
        return np.fromfile(path(field), fields[field]["dtype"])

    offsets = load("offsets")

    def ragged(field: str, offs: np.ndarray = offsets) -> Ragged | None:
        if field not in fields:
            return None
        zero = bool(fields[field].get("zero", False))
        return Ragged(None if zero else path(field), fields[field]["dtype"], offs)

    ids, types = ragged("input_ids"), ragged("token_type_ids")
    assert ids is not None and types is not None
    target = ragged("target_ids", load("target_offsets")) if "target_ids" in fields else None
    label = load("label")
    label_set = None
    if "label_set" in fields:  # [N, C]: C from the entry's own count
        label_set = load("label_set").reshape(len(label), -1)
    return tokenize.Encoded(
        ids, types, label, load("score"), task_id,
        token_labels=ragged("token_labels"), word_ids=ragged("word_ids"), target_ids=target,
        label_set=label_set,
    )  # fmt: skip


def _chunks(examples: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(examples)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _prefetched(chunks: Iterator[list[Any]], depth: int = 2) -> Generator[list[Any], None, None]:
    """``chunks`` read ahead by a thread: the reader parses the next chunk while the Rust
    tokenizer, which releases the GIL, encodes this one. A reader error is raised here."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def read() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(end)
        except BaseException as e:  # handed to the consumer, which raises it
            q.put(e)

    thread = threading.Thread(target=read, daemon=True, name="token-cache-reader")
    thread.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _encoded(
    chunks: Iterator[list[Any]], encode: Callable[[list[Any]], Any], workers: int,
    offload: Callable[[], tuple[FlatEncoder, tokenize_worker.Workers] | None] | None = None,
) -> Generator[tuple[int, Any], None, None]:  # fmt: skip
    """(rows, encode(chunk)) in order. The first chunk is encoded alone, so whatever ``encode``
    decides on it is settled before two calls run at once. Then, when ``offload()`` gives a
    flat encoder and worker processes, its chunks are tokenised there (see
    :func:`_offloaded`); otherwise with ``workers`` > 1 a thread pool encodes them, so one
    chunk's Python work overlaps the next one's Rust batch call (which releases the GIL)."""
    first = next(chunks, None)
    if first is None:
        return
    yield len(first), encode(first)
    off = offload() if offload is not None else None
    if off is not None:
        flat, procs = off
        with procs:
            yield from _offloaded(chunks, encode, flat, procs)
        return
    if workers <= 1:
        for chunk in chunks:
            yield len(chunk), encode(chunk)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()
        for chunk in chunks:
            pending.append((len(chunk), pool.submit(encode, chunk)))
            if len(pending) > workers:
                n, fut = pending.popleft()
                yield n, fut.result()
        while pending:
            n, fut = pending.popleft()
            yield n, fut.result()


def _offloaded(
    chunks: Iterator[list[Any]], encode: Callable[[list[Any]], Any], flat: FlatEncoder,
    procs: tokenize_worker.Workers,
) -> Iterator[tuple[int, Any]]:  # fmt: skip
    """(rows, Flat) in order, each chunk's texts tokenised by the next worker process while this
    one reads, labels and writes; a chunk that mixes single sentences and pairs goes to
    ``encode`` here (which reports it). Labels are checked when a chunk is handed out, so a bad
    one fails before its tokens."""
    pending: collections.deque = collections.deque()  # (rows, labels, or an encoded chunk)

    def oldest() -> tuple[int, Any]:
        rows, labels, done = pending.popleft()
        if labels is None:
            return rows, done
        lengths, ids, types = procs.result()
        return rows, Flat(lengths, ids, types, *labels)

    for chunk in chunks:
        try:
            texts, pairs = flat.texts(chunk)
        except _NotFlat:
            pending.append((len(chunk), None, encode(chunk)))
        else:
            labels = tokenize.example_labels(flat.task, chunk)
            while procs.busy():
                yield oldest()
            procs.submit(texts, pairs)
            pending.append((len(chunk), labels, None))
        while pending and pending[0][1] is None:  # encoded here: ready
            yield oldest()
    while pending:
        yield oldest()


def build_entry(
    folder: str, examples: Iterable[Any], encode: Callable[[list[Any]], Any],
    inputs: dict[str, Any], *, total: int | None = None, progress: bool | None = None,
    workers: int = 1,
    offload: Callable[[], tuple[FlatEncoder, tokenize_worker.Workers] | None] | None = None,
) -> None:  # fmt: skip
    """Tokenise ``examples`` chunk by chunk into a new entry at ``folder`` (atomically: written
    beside it, then renamed; an existing, unusable entry is replaced)."""
    from tqdm.auto import tqdm

    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        writer: _Writer | None = None
        bar = tqdm(total=total, unit=" examples", desc="tokenising", disable=progress is False,
                   mininterval=2.0, unit_scale=True)  # fmt: skip
        # closing: a failure here (a full disk, say) stops the reader thread and the tokenizer
        # workers at once, not when the traceback that holds this frame is freed
        with bar, contextlib.closing(_prefetched(_chunks(examples, CHUNK_ROWS))) as chunks, \
                contextlib.closing(_encoded(chunks, encode, workers, offload)) as encoded:  # fmt: skip
            for rows, enc in encoded:
                if writer is None:
                    fields = ["offsets", "input_ids", "token_type_ids", "label", "score"]
                    extra = ("token_labels", "word_ids", "target_ids", "label_set")
                    fields += [f for f in extra if getattr(enc, f, None) is not None]
                    if "target_ids" in fields:
                        fields.insert(-1, "target_offsets")
                    writer = _Writer(tmp, fields)
                writer.add(enc)
                bar.update(rows)
        if writer is None:
            raise ValueError(f"token cache: no examples to write for {inputs.get('task')}")
        writer.close(inputs)
        if os.path.isdir(folder) and check_entry(folder) is not None:
            return  # another process (a host of the same run) finished a sound entry first
        if os.path.isdir(folder):  # a stale or corrupt entry: move it away, then replace it
            trash = tempfile.mkdtemp(prefix=".stale-", dir=parent)
            os.rename(folder, os.path.join(trash, "entry"))
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if check_entry(folder) is None:  # another process finished first; keep a good one
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encode_split(
    task: Task, split: str, tokenizer: Any, *, max_length: int, root: str | None,
    task_id: int = 0, truncation: str = "longest_first", target_tokenizer: Any = None,
    limit: int = 0, min_rows: int = DEFAULT_MIN_ROWS, spec: str = "",
    progress: bool | None = None, processes: int = 0,
) -> tokenize.Encoded | None:  # fmt: skip
    """``split`` of ``task`` tokenised like :func:`jaxtl.data.tokenize.encode`, from the cache
    under ``root`` when its entry is there and sound, else streamed from the task's files and
    written there (splits of at least ``min_rows`` examples; smaller ones are encoded in memory).
    None when the split cannot be cached (``root`` None, no files, a tokenizer without JSON):
    the caller tokenises as before. ``processes``: tokenizer worker processes for sentences
    and pairs (:mod:`jaxtl.data.tokenize_worker`); 0 = one per core (at most 8), 1 = none (this
    process tokenises, its Rust batch call still on every core)."""
    if root is None:
        return None
    keyed = entry_key(task, split, tokenizer, max_length=max_length, truncation=truncation,
                      target_tokenizer=target_tokenizer, limit=limit, spec=spec)  # fmt: skip
    if keyed is None:
        return None
    key, inputs = keyed
    folder = os.path.join(root, key)
    if os.path.isdir(folder):
        meta = check_entry(folder)
        if meta is not None:
            log.info("token cache hit: %s split %s, %d examples (%s)", task.name, split,
                     meta["rows"], folder)  # fmt: skip
            return open_entry(folder, meta, task_id)

    def encode(chunk: list[Example]) -> tokenize.Encoded:
        return tokenize.encode(task, chunk, tokenizer, max_length=max_length, task_id=task_id,
                               truncation=truncation, target_tokenizer=target_tokenizer)  # fmt: skip

    flat = flat_encoder(task, tokenizer, max_length=max_length, truncation=truncation)

    stream = task.iterate(split)
    if limit > 0:
        stream = itertools.islice(stream, limit)
    head = list(itertools.islice(stream, min_rows))
    if len(head) < min_rows:
        return encode(head)
    log.info("token cache miss: tokenising %s split %s into %s", task.name, split, folder)
    either = None if flat is None else _Either(flat, encode)
    procs = tokenize_worker.default_processes() if processes <= 0 else processes
    build_entry(folder, itertools.chain(head, stream), either or encode, inputs,
                total=limit or None, progress=progress, workers=1 if flat is None else 2,
                offload=None if either is None else (lambda: either.workers(procs)))  # fmt: skip
    del head
    meta = check_entry(folder)
    if meta is None:
        raise RuntimeError(f"token cache: the entry just written at {folder} does not check")
    return open_entry(folder, meta, task_id)


def _same(a: Flat | None, encode: Callable, sample: list[Example]) -> bool:
    """Whether ``a``, the flat encoder's output on ``sample``, is ``encode``'s tokens and
    labels; None (singles and pairs mixed) counts as the same: ``encode`` reports the row."""
    if a is None:
        return True
    b = encode(sample)
    same = (
        np.array_equal(a.lengths, b.lengths)
        and np.array_equal(a.input_ids, np.concatenate(b.input_ids))
        and np.array_equal(a.token_type_ids, np.concatenate(b.token_type_ids))
        and np.array_equal(a.label, b.label)
        and np.array_equal(a.score, b.score)
    )
    if not same:
        log.warning("token cache: the flat encoder differs from tokenize.encode for this "
                    "tokenizer; using encode")  # fmt: skip
    return same


class _Either:
    """The flat encoder once it matches ``encode`` on the first chunk's first rows, else
    ``encode``; ``encode`` for any chunk that mixes single sentences and pairs."""

    def __init__(self, flat: FlatEncoder, encode: Callable):
        self.flat, self.encode = flat, encode
        self.use_flat: bool | None = None
        self.sample: list[Example] = []
        self.sample_flat: Flat | None = None  # the flat encoder's output on the sample

    def __call__(self, chunk: list[Example]) -> Any:
        if self.use_flat is None:
            self.sample = chunk[:SAMPLE_ROWS]
            try:
                self.sample_flat = self.flat(self.sample)
            except _NotFlat:
                self.sample_flat = None
            self.use_flat = _same(self.sample_flat, self.encode, self.sample)
        if self.use_flat:
            try:
                return self.flat(chunk)
            except _NotFlat:
                pass
        return self.encode(chunk)

    def workers(self, processes: int) -> tuple[FlatEncoder, tokenize_worker.Workers] | None:
        """Once the first chunk is encoded: ``processes`` tokenizer workers and the flat
        encoder, when the flat encoder is in use, there is more than one process to use, and
        the workers give the flat encoder's arrays on the first chunk's sample; else None (the
        build goes on in this process)."""
        want = self.sample_flat
        if processes <= 1 or not self.use_flat or want is None:
            return None  # (None: singles and pairs mixed, which encode handles and reports)
        texts, pairs = self.flat.texts(self.sample)
        procs = None
        try:
            procs = tokenize_worker.Workers(self.flat.backend, max_length=self.flat.max_length,
                                            direction=self.flat.direction,
                                            pair_truncation=self.flat.truncation,
                                            processes=processes)  # fmt: skip
            procs.submit(texts, pairs)
            got = procs.result()
        except (OSError, tokenize_worker.WorkerError) as e:
            log.warning("token cache: tokenizer worker processes failed (%s); tokenising in "
                        "this process", e)  # fmt: skip
            if procs is not None:
                procs.close()
            return None
        mine = (want.lengths, want.input_ids, want.token_type_ids)
        if not all(np.array_equal(a, b) for a, b in zip(mine, got, strict=True)):
            log.warning("token cache: tokenizer worker processes differ from this process's "
                        "tokenizer; tokenising in this process")  # fmt: skip
            procs.close()
            return None
        return self.flat, procs
