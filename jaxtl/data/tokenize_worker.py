"""Tokenising a large split in several processes: each worker holds its own copy of the fast
tokenizer and turns chunks of texts into flat token arrays.

Why processes: the Rust batch call runs on every core, but reading the file, building each
example and turning each encoding's ids into arrays is Python, and one process runs that on one
core at a time. On 2 cores that Python work cost the 1M-row SST-2 build about a third of its
wall time; on a many-core host it is the whole bottleneck. Workers tokenise single-threaded
(one per core) while the parent reads, labels and writes.

A worker is this file run as a script (``python tokenize_worker.py``), not a module of the
package: it imports only the standard library, numpy and ``tokenizers`` (no JAX; starting one
takes a fraction of a second), and nothing of the parent's ``__main__`` is re-imported, so a
research script without a ``__main__`` guard is safe. Parent and worker talk over the worker's
stdin/stdout in length-prefixed frames of raw arrays (no pickle): the tokenizer's JSON once,
then per chunk the texts (and a pair's second sentences) as UTF-8 with offsets, answered with
lengths, ids and segment ids.

:func:`flat_arrays` is also the in-process flat encoder's core (``jaxtl.data.token_cache``), so
both paths make the same arrays from the same encodings.
"""

from __future__ import annotations

import itertools
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

_FRAME = struct.Struct("<q")  # payload length; 0 = stop


def flat_arrays(encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 lengths, int32 ids, uint8 segment ids) of a batch of ``tokenizers`` encodings."""
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
    # A single-sentence template gives every text token one type id and each special token its
    # own, in every row: all zero in the sampled rows means all zero everywhere.
    sample = encodings[:64]
    if all(not any(e.type_ids) for e in sample) and any(0 in e.special_tokens_mask for e in sample):
        types = np.zeros(len(flat), np.uint8)
    else:
        types = np.fromiter(
            itertools.chain.from_iterable(e.type_ids for e in encodings), np.uint8, len(flat)
        )
    return lengths, flat, types


def configure(backend: Any, max_length: int, direction: str, strategy: str) -> None:
    """Truncation as a transformers tokenizer call sets it before its batch call (``strategy``:
    ``longest_first`` for single sentences, the run's strategy for pairs), no padding; written
    only when different, so threads encoding at the same time never write the tokenizer."""
    target = {"max_length": max_length, "stride": 0, "strategy": strategy, "direction": direction}
    if backend.truncation != target:
        backend.enable_truncation(max_length, stride=0, strategy=strategy, direction=direction)
    if backend.padding is not None:
        backend.no_padding()


def encode_batch(
    backend: Any, texts: list[str], pairs: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``texts`` (with their ``pairs``' second sentences) through the Rust batch call with
    special tokens, as flat arrays. ``encode_batch_fast`` skips the character offsets, which
    the cache does not keep."""
    call = getattr(backend, "encode_batch_fast", backend.encode_batch)
    inputs: list[Any] = texts if pairs is None else list(zip(texts, pairs, strict=True))
    return flat_arrays(call(inputs, add_special_tokens=True))


# ------------------------------------------------------------------------------------- framing
def _send(out: IO[bytes], *parts: bytes) -> None:
    out.write(_FRAME.pack(sum(len(p) for p in parts)))
    for p in parts:
        out.write(p)
    out.flush()


def _receive(inp: IO[bytes]) -> bytes | None:
    head = inp.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (n,) = _FRAME.unpack(head)
    if n == 0:
        return None
    data = inp.read(n)
    if len(data) < n:
        return None
    return data


def _pack_strings(texts: list[str]) -> bytes:
    blobs = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.zeros(len(blobs) + 1, np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    body = b"".join(blobs)
    return _FRAME.pack(len(blobs)) + offsets.tobytes() + _FRAME.pack(len(body)) + body


def _unpack_strings(data: bytes, at: int) -> tuple[list[str], int]:
    (n,) = _FRAME.unpack_from(data, at)
    offsets = np.frombuffer(data, np.int64, n + 1, at + 8).tolist()
    at += 8 + 8 * (n + 1)
    (size,) = _FRAME.unpack_from(data, at)
    base = at + 8
    texts = [
        data[base + a : base + b].decode("utf-8", "surrogatepass")
        for a, b in zip(offsets, offsets[1:])
    ]
    return texts, base + size


def pack_texts(texts: list[str], pairs: list[str] | None = None) -> bytes:
    """A chunk's texts (and its pairs' second sentences) as one frame's payload."""
    head = bytes([pairs is not None])
    return head + _pack_strings(texts) + (b"" if pairs is None else _pack_strings(pairs))


def unpack_texts(data: bytes) -> tuple[list[str], list[str] | None]:
    texts, at = _unpack_strings(data, 1)
    return texts, (_unpack_strings(data, at)[0] if data[0] == 1 else None)


def pack_arrays(lengths: np.ndarray, ids: np.ndarray, types: np.ndarray) -> bytes:
    zero = not types.any()  # the common case: no segment-id bytes on the wire
    return (
        _FRAME.pack(len(lengths)) + _FRAME.pack(len(ids)) + bytes([zero])
        + lengths.astype(np.int64).tobytes() + ids.astype(np.int32).tobytes()
        + (b"" if zero else types.astype(np.uint8).tobytes())
    )  # fmt: skip


def unpack_arrays(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (n,) = _FRAME.unpack_from(data, 0)
    (t,) = _FRAME.unpack_from(data, 8)
    zero = data[16] == 1
    at = 17
    lengths = np.frombuffer(data, np.int64, n, at).copy()
    at += 8 * n
    ids = np.frombuffer(data, np.int32, t, at).copy()
    at += 4 * t
    types = np.zeros(t, np.uint8) if zero else np.frombuffer(data, np.uint8, t, at).copy()
    return lengths, ids, types


# -------------------------------------------------------------------------------------- worker
def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The worker's loop: the tokenizer's JSON and its truncation, then chunk after chunk."""
    from tokenizers import Tokenizer

    setup = _receive(inp)
    if setup is None:
        return
    max_length, direction, pair_truncation, tokenizer_json = setup.decode("utf-8").split("\n", 3)
    backend = Tokenizer.from_str(tokenizer_json)
    while (data := _receive(inp)) is not None:
        texts, pairs = unpack_texts(data)
        strategy = "longest_first" if pairs is None else pair_truncation
        configure(backend, int(max_length), direction, strategy)
        _send(out, pack_arrays(*encode_batch(backend, texts, pairs)))


# -------------------------------------------------------------------------------------- parent
class WorkerError(RuntimeError):
    """A tokenizer worker process stopped before answering."""


class Workers:
    """``processes`` worker processes, each holding ``backend`` (a ``tokenizers.Tokenizer``)
    truncating at ``max_length`` from ``direction``. :meth:`submit` hands a chunk of texts to
    the next worker in turn and :meth:`result` takes the oldest answer, so answers come back in
    the order the chunks went out; each worker holds at most one chunk, so no pipe can fill up
    while the parent waits on another."""

    def __init__(
        self, backend: Any, *, max_length: int, direction: str, processes: int,
        pair_truncation: str = "longest_first",
    ):  # fmt: skip
        if not sys.executable:  # an embedded interpreter: no Python to start
            raise WorkerError("no Python executable to start tokenizer workers with")
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}  # one core each
        self.procs = [
            # -P: this file's folder is not put on sys.path (its io.py and tokenize.py would
            # shadow the standard library's)
            subprocess.Popen(
                [sys.executable, "-P", "-u", os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )  # fmt: skip
            for _ in range(max(1, processes))
        ]
        setup = f"{max_length}\n{direction}\n{pair_truncation}\n{backend.to_str()}".encode()
        self.sent = self.taken = 0
        try:
            for p in self.procs:
                assert p.stdin is not None
                _send(p.stdin, setup)
        except OSError as e:
            self.close()
            raise WorkerError(f"tokenizer worker did not start: {e}") from e

    def busy(self) -> bool:
        """Whether every worker holds a chunk (take a result before submitting)."""
        return self.sent - self.taken >= len(self.procs)

    def submit(self, texts: list[str], pairs: list[str] | None = None) -> None:
        if self.busy():
            raise RuntimeError("every worker holds a chunk: take a result first")
        p = self.procs[self.sent % len(self.procs)]
        assert p.stdin is not None
        try:
            _send(p.stdin, pack_texts(texts, pairs))
        except OSError as e:
            raise WorkerError(f"tokenizer worker {p.pid} stopped (exit {p.poll()}): {e}") from e
        self.sent += 1

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.procs[self.taken % len(self.procs)]
        assert p.stdout is not None
        data = _receive(p.stdout)
        if data is None:
            raise WorkerError(f"tokenizer worker {p.pid} stopped (exit {p.wait()}) mid-chunk")
        self.taken += 1
        return unpack_arrays(data)

    def close(self) -> None:
        """Stop every worker: its answer pipe is closed first, so one still writing a chunk
        nobody will read ends at once rather than block."""
        for p in self.procs:
            if p.stdout is not None:
                p.stdout.close()
            try:
                if p.stdin is not None:
                    if p.poll() is None:
                        _send(p.stdin, b"")
                    p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# One worker tokenises about 30,000 SST-2 rows a second (one thread on a 2-core AMD EPYC:
# 200,000 in 5.9-7.3 s) and the parent's reading alone runs at about 270,000 (0.73 s per
# 200,000), labels and writes on top: a handful of workers keep the parent busy, and each holds
# its own tokenizer (~35 MiB), so a 200-core host starts 8, not 200.
MAX_DEFAULT_PROCESSES = 8


def default_processes() -> int:
    """One per core this process may use (its CPU affinity where the OS has one), at most
    :data:`MAX_DEFAULT_PROCESSES`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return min(cores, MAX_DEFAULT_PROCESSES)


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the parent handles it and closes the pipes, which
    # ends this loop; a worker of its own would only print a second traceback per worker.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the parent stopped reading (it failed or was interrupted)
        sys.exit(1)
