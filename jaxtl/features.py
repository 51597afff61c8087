"""Feature extraction for real: a frozen encoder's features computed once, head epochs on them.

When a stage's strategy freezes every ``encoder/`` parameter in every phase
(``optim.strategy=feature_extraction``; checked on the resolved plan, so user rules that thaw
something turn this off), the encoder is a fixed function of its input:

- it runs deterministically (no dropout: ``features.encoder_dropout=False``, the default), and
- :class:`FeatureCache` runs it once per distinct input of the stage's tasks (train, dev and test
  splits) when the stage starts, and the train and eval steps then look the features up instead of
  running the encoder (:func:`jaxtl.objectives.supervised` takes ``batch["features"]``).

What is stored is only what the heads need (:meth:`jaxtl.models.TransferModel.cache_layers`): the
representation itself when it has no parameters (one layer, the sum or the concatenation of the
last four), every hidden state for ``scalar_mix`` (its weights and gamma keep training); and for
a sentence head only the pooled position (its [CLS] vector, the mean of the real tokens or the
last real token: pooling commutes with every representation, all linear in the hidden states),
so SST-2 stores one vector per example. A tagging head (with the BiLSTM tagger too) gets every
real token. Values keep the compute dtype.

``features.cache``: ``auto`` (default) = on disk for every stage whose encoder is frozen, off
where a stage cannot use it (an objective or LM stream, ``features.encoder_dropout``, several
processes); ``disk`` / ``memory`` = the same, but a frozen stage that cannot use a cache is an
error; ``off`` = the encoder runs every step. On disk the cache sits in ``features.dir``
(default ``<workdir>/features``) as ``<task>/<key>/shard_*.npy`` + ``manifest.json``; the key is a
hash of the model name, the encoder's weights (as the stage starts: a fine-tuned source stage's
encoder counts), the tokenised inputs (so the data files, the tokenizer and ``data.max_length``),
the representation and what is stored. A different key is a different folder: a stale cache is
never read, it is rebuilt. Shards are written atomically (temporary file, then rename) and the
manifest last, so a killed build resumes from its finished shards.

Batches are matched to stored examples by content (the row's real token ids and segment ids),
so the data pipeline needs no change: any batch of the stage's tasks, from training, evaluation
or prediction, in any order, finds its examples. A batch packed with several examples per row
(:mod:`jaxtl.data.packing`) gets one slot per example. The encoder pass that fills the cache packs
its inputs too (block-diagonal attention, positions restarting per input) wherever the encoder
runs packed rows exactly, also when the task's own batches are one example per row (the BiLSTM
tagger's), so the pass computes little padding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from jaxtl import fileio, paths
from jaxtl import step as step_lib
from jaxtl.data.batch import IGNORE
from jaxtl.data.prepare import TaskData
from jaxtl.models.base import supports_packing
from jaxtl.models.heads import ClassificationHead, TaggingHead
from jaxtl.strategy import Strategy

log = logging.getLogger(__name__)

MODES = ("auto", "memory", "disk", "off")
KINDS = ("classification", "multilabel", "regression", "tagging", "qa")  # task kinds a cache serves
FORMAT = 1  # bump when what a shard holds changes: old caches then miss
SHARD_BATCHES = 32  # extraction batches per shard file (the unit a killed build resumes from)
# Inputs per row of the cache's own encoder pass when the task's batches are not packed (the
# BiLSTM tagger turns packing off for its head; the frozen encoder can still run packed rows).
PACK_SLOTS = 16


def validate(c: ml_collections.ConfigDict) -> None:
    """One-line errors for the ``features`` keys (:func:`jaxtl.config.validate` calls it)."""
    f = c.get("features")
    if f is None:
        return
    if f.cache not in MODES:
        raise ValueError(f"features.cache={f.cache!r}: choose one of {', '.join(MODES)}")
    if f.encoder_dropout and f.cache in ("memory", "disk"):
        raise ValueError(
            f"features.encoder_dropout=True with features.cache={f.cache!r}: cached features are "
            "computed once, without dropout; set features.cache=off (or auto)"
        )


# ---------------------------------------------------------------------------- frozen encoders
def encoder_frozen(optim: Any, params: Any, steps: int) -> bool:
    """Whether ``optim`` leaves every ``encoder/`` parameter frozen in every phase of a stage of
    ``steps`` steps (the resolved plan, user rules included)."""
    flat = paths.flatten(params)
    enc = [p for p in flat if p.startswith("encoder/")]
    if not enc:
        return False
    try:
        phases = Strategy.of(optim).phases(params, total_steps=max(int(steps), 1))
    except ValueError:  # a bad plan: the trainer reports it when the stage starts
        return False
    for ph in phases:
        mask = paths.flatten(ph.trainable_mask)
        if any(bool(mask[p]) for p in enc):
            return False
    return True


def encoder_dropout(config: ml_collections.ConfigDict, frozen: bool) -> bool:
    """Whether a stage's encoder runs with dropout in training: not when it is frozen, unless
    ``features.encoder_dropout`` asks for it."""
    f = config.get("features")
    return not frozen or bool(f is not None and f.encoder_dropout)


def stage_cache(
    stage: str,
    tasks: Sequence[TaskData],
    config: ml_collections.ConfigDict,
    *,
    frozen: bool,
    objective: Any = None,
) -> FeatureCache | None:
    """The stage's feature cache, or None (module docstring: ``features.cache``)."""
    f = config.get("features")
    mode = "off" if f is None else str(f.cache)
    if mode == "off" or not frozen:
        return None
    why = []
    if objective is not None:
        why.append(f"its {objective.name} objective runs the encoder itself")
    why += [f"task {td.task.name} is {td.task.kind!r}" for td in tasks if td.task.kind not in KINDS]
    if f.encoder_dropout:
        why.append("features.encoder_dropout=True")
    if jax.process_count() > 1:
        why.append("the cache is built by one process")
    if why:
        if mode == "auto":
            log.info("stage %s: no feature cache (%s)", stage, "; ".join(why))
            return None
        raise ValueError(f"features.cache={mode}: stage {stage!r} cannot use it: {'; '.join(why)}")
    return FeatureCache(stage, tasks, config, storage="memory" if mode == "memory" else "disk")


# ---------------------------------------------------------------------------- the cache
def _key(ids: np.ndarray, types: np.ndarray) -> bytes:
    """An input's identity: its token ids and segment ids (same length, so never ambiguous)."""
    return np.asarray(ids, np.int32).tobytes() + np.asarray(types, np.int32).tobytes()


def weights_hash(tree: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in sorted(paths.flatten(tree).items()):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{path}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclasses.dataclass
class _Store:
    """One task's stored features: shard arrays [rows, K, H'] and where each input sits."""

    tokens: bool  # every real token (tagging) or one pooled vector per input
    index: dict[bytes, int]  # input key -> input id
    where: np.ndarray  # int64[U, 3]: shard, first row, rows
    shards: list[np.ndarray]
    dtype: np.dtype

    def rows(self, uid: int) -> np.ndarray:
        s, start, n = self.where[uid]
        return self.shards[s][start : start + n]


def _save_atomic(path: epath.Path, write) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with tmp.open("wb") as fh:  # epath: a gs:// features folder works too
        write(fh)
        if fileio.is_local(path):
            fh.flush()
            os.fsync(fh.fileno())
    tmp.replace(path)


class FeatureCache:
    """The stage's frozen-encoder features (module docstring). The trainer calls
    :meth:`prepare` when the stage starts (after a resume's restore) and :meth:`attach` on
    every batch it feeds the stage's train and eval steps."""

    def __init__(
        self,
        stage: str,
        tasks: Sequence[TaskData],
        config: ml_collections.ConfigDict,
        *,
        storage: str = "disk",
    ):
        self.stage = stage
        self.tasks = list(tasks)
        self.config = config
        self.storage = storage
        self.stores: dict[int, _Store] = {}
        self.ready = False
        self.stats = {"computed_batches": 0, "loaded_shards": 0, "written_shards": 0,
                      "extract_s": 0.0}  # fmt: skip
        self._warned_packed = False

    # ------------------------------------------------------------------ building
    def prepare(self, graphdef: nnx.GraphDef, params: Any, workdir: str | epath.Path) -> None:
        """Load or compute every task's features with ``params``' encoder (once per stage: the
        encoder is frozen in it)."""
        if self.ready:
            return
        t0 = time.perf_counter()
        model = nnx.merge(graphdef, params)
        weights = weights_hash(jax.device_get(params["encoder"]))
        f = self.config.features
        folder = epath.Path(f.dir) if f.dir else epath.Path(workdir) / "features"
        for td in self.tasks:
            self.stores[td.index] = self._task_store(td, model, graphdef, params, weights, folder)
        self.ready = True
        self.stats["extract_s"] = time.perf_counter() - t0
        log.info("stage %s: feature cache ready in %.1f s (%s; %d batches computed, %d shards "
                 "loaded)", self.stage, self.stats["extract_s"], self.storage,
                 self.stats["computed_batches"], self.stats["loaded_shards"])  # fmt: skip

    def _task_store(self, td, model, graphdef, params, weights, folder) -> _Store:
        head = model.heads[td.key]
        if isinstance(head, TaggingHead):
            how = None
        elif isinstance(head, ClassificationHead):
            # One stored vector serves a pooling that gives a single vector back unchanged;
            # concat pooling ([last; max; mean]) gets every token.
            how = head.pooling if head.pooling in ("cls", "mean", "last") else None
        else:
            raise ValueError(f"features.cache: task {td.task.name}'s head "
                             f"{type(head).__name__} is not a sentence or tagging head")  # fmt: skip
        ids, types, index = self._inputs(td)
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        slots = _slots(td, self.config, model.encoder)
        plan = self._plan(lengths, slots)
        h = hashlib.blake2b(digest_size=16)
        for x, y in zip(ids, types):
            h.update(_key(x, y))
            h.update(b";")
        key = {
            "format": FORMAT,
            "model": str(self.config.model.name),
            "weights": weights,
            "inputs": h.hexdigest(),
            "inputs_count": len(ids),
            "representation": str(self.config.model.representation),
            "stored": "tokens" if how is None else f"pooled:{how}",
            "max_length": int(self.config.data.max_length),
            "compute_dtype": str(self.config.model.compute_dtype),
            "plan": hashlib.blake2b(repr(plan).encode(), digest_size=8).hexdigest(),
        }
        digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8)
        where_dir = folder / td.key / digest.hexdigest()
        fn = step_lib.make_eval_step(graphdef, _extractor(how, slots))
        shard_of = [plan[i : i + SHARD_BATCHES] for i in range(0, len(plan), SHARD_BATCHES)]
        shards: list[np.ndarray] = []
        where = np.zeros((len(ids), 3), np.int64)
        disk = self.storage == "disk"
        if disk:
            self._open(where_dir, key, folder / td.key)
        complete = disk and (where_dir / "manifest.json").exists()
        for si, batches in enumerate(shard_of):
            path = where_dir / f"shard_{si:05d}.npy"
            data = self._load(path) if disk else None
            expected = sum(int(lengths[u]) if how is None else 1 for u in _members(batches))
            if data is None or data.shape[0] != expected:
                if complete:
                    log.warning("%s: shard %d unreadable; recomputing it", where_dir, si)
                data = self._compute(fn, params, ids, types, lengths, batches, how, slots)
                if disk:
                    _save_atomic(path, lambda fh, d=data: np.save(fh, _savable(d)))
                    self.stats["written_shards"] += 1
            else:
                self.stats["loaded_shards"] += 1
            start = 0
            for u in _members(batches):
                n = int(lengths[u]) if how is None else 1
                where[u] = (si, start, n)
                start += n
            shards.append(data)
        if disk and not complete:
            manifest = {**key, "shards": len(shard_of), "task": td.task.name}
            _save_atomic(where_dir / "manifest.json",
                         lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))  # fmt: skip
        dt = shards[0].dtype if shards else np.dtype(np.float32)
        return _Store(how is None, index, where, shards, dt)

    def _inputs(self, td: TaskData) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
        """The task's distinct inputs over its train, dev and test splits, first seen first."""
        encs = [getattr(td.train_iter, "encoded", None)]
        encs += [sd.encoded for sd in td.splits.values()]
        index: dict[bytes, int] = {}
        ids: list[np.ndarray] = []
        types: list[np.ndarray] = []
        for enc in encs:
            if enc is None:
                continue
            for x, y in zip(enc.input_ids, enc.token_type_ids):
                k = _key(x, y)
                if k not in index:
                    index[k] = len(ids)
                    ids.append(np.asarray(x, np.int32))
                    types.append(np.asarray(y, np.int32))
        return ids, types, index

    def _plan(self, lengths: np.ndarray, slots: int) -> list[list[list[int]]]:
        """Extraction batches of rows of input ids. Unpacked (``slots`` 0): one input per row,
        by length bucket, then input order. Packed: inputs shortest first, each row filled
        until the next does not fit or it holds ``slots`` (next fit on sorted lengths: rows
        of like lengths, little padding), rows of the largest bucket: one program."""
        size = int(self.config.train.eval_batch_size)
        buckets = np.asarray(sorted(self.config.data.buckets))
        if slots:
            cap = int(buckets[-1])
            rows: list[list[int]] = []
            fill = cap
            for u in np.argsort(lengths, kind="stable").tolist():
                if fill + int(lengths[u]) > cap or len(rows[-1]) >= slots:
                    rows.append([])
                    fill = 0
                rows[-1].append(u)
                fill += int(lengths[u])
            return [rows[i : i + size] for i in range(0, len(rows), size)]
        which = np.minimum(np.searchsorted(buckets, lengths, side="left"), len(buckets) - 1)
        order = np.argsort(which, kind="stable")
        plan = []
        for b in range(len(buckets)):
            members = order[which[order] == b].tolist()
            plan += [[[u] for u in members[i : i + size]] for i in range(0, len(members), size)]
        return plan

    def _compute(self, fn, params, ids, types, lengths, batches, how, slots) -> np.ndarray:
        buckets = sorted(self.config.data.buckets)
        size = int(self.config.train.eval_batch_size)
        out = []
        for rows in batches:
            longest = max(sum(int(lengths[u]) for u in row) for row in rows)
            t = buckets[-1] if slots else next((b for b in buckets if b >= longest), longest)
            batch = {k: np.zeros((size, t), np.int32) for k in
                     ("input_ids", "attention_mask", "token_type_ids", "segment_ids",
                      "position_ids")}  # fmt: skip
            for r, row in enumerate(rows):
                start = 0
                for s, u in enumerate(row):
                    n = int(lengths[u])
                    batch["input_ids"][r, start : start + n] = ids[u]
                    batch["token_type_ids"][r, start : start + n] = types[u]
                    batch["attention_mask"][r, start : start + n] = 1
                    batch["segment_ids"][r, start : start + n] = s + 1
                    batch["position_ids"][r, start : start + n] = np.arange(n)
                    start += n
            if not slots:
                del batch["segment_ids"], batch["position_ids"]
            got = np.asarray(fn(params, batch))
            for r, row in enumerate(rows):
                start = 0
                for s, u in enumerate(row):
                    n = int(lengths[u])
                    if how is None:
                        out.append(got[r, start : start + n])
                    else:  # one pooled vector per row (unpacked) or per slot (packed)
                        out.append(got[r, s : s + 1] if slots else got[r : r + 1])
                    start += n
            self.stats["computed_batches"] += 1
        return np.concatenate(out, axis=0)

    def _open(self, where_dir: epath.Path, key: dict, task_dir: epath.Path) -> None:
        """The cache folder for ``key``: a folder left by another key (a stale plan after a
        format change) is cleared; finished shards of an interrupted build are kept."""
        plan_file = where_dir / "key.json"
        text = json.dumps(key, sort_keys=True)
        if where_dir.exists() and (not plan_file.exists() or plan_file.read_text() != text):
            where_dir.rmtree()
        if not where_dir.exists():
            where_dir.mkdir(parents=True, exist_ok=True)
            _save_atomic(plan_file, lambda fh: fh.write(text.encode()))
        stale = [p.name for p in task_dir.iterdir() if p.is_dir() and p != where_dir]
        if stale:
            log.info("%s: %d other feature caches (other weights, data or representation): %s",
                     task_dir, len(stale), ", ".join(sorted(stale)))  # fmt: skip

    def _load(self, path: epath.Path) -> np.ndarray | None:
        if not path.exists():
            return None
        try:
            if not fileio.is_local(path):  # no memory map over an object store: read it whole
                return _loaded(np.load(io.BytesIO(path.read_bytes())))
            return _loaded(np.load(str(path), mmap_mode="r"))
        except (ValueError, OSError, EOFError):
            return None

    # ------------------------------------------------------------------ lookup
    def attach(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The batch the cached step takes: ``features`` [B,T',K,H'] of its examples, with
        T' = 1 (pooled; token fields cut to one position) or the batch's T (tagging). A batch
        of another task, or before :meth:`prepare`, is returned as it is (the encoder runs)."""
        if not self.ready or "task_id" not in batch:
            return batch
        store = self.stores.get(int(np.asarray(batch["task_id"]).reshape(-1)[0]))
        if store is None:
            return batch
        if "segment_ids" in batch:
            return self._attach_packed(batch, store)
        ids, types = batch["input_ids"], batch["token_type_ids"]
        lengths = np.asarray(batch["attention_mask"]).sum(1)
        b, t = ids.shape
        k, h = store.shards[0].shape[1:] if store.shards else (1, 1)
        feats = np.zeros((b, t if store.tokens else 1, k, h), store.dtype)
        for r in range(b):
            n = int(lengths[r])
            if n == 0:
                continue  # a padding row
            rows = store.rows(self._find(store, ids[r, :n], types[r, :n]))
            if store.tokens:
                feats[r, :n] = rows
            else:
                feats[r, 0] = rows[0]
        if store.tokens:
            return {**batch, "features": feats}
        return _one_position(batch, feats, b, 1)

    def _attach_packed(self, batch: dict, store: _Store) -> dict:
        """A packed batch: pooled features go one per slot (slot s = position s, its own
        segment s + 1, so per-segment pooling picks it); token features fill each segment."""
        ids, types, seg = batch["input_ids"], batch["token_type_ids"], batch["segment_ids"]
        b, t = ids.shape
        slots = batch["label"].shape[1]
        k, h = store.shards[0].shape[1:] if store.shards else (1, 1)
        feats = np.zeros((b, t if store.tokens else slots, k, h), store.dtype)
        filled = np.zeros((b, slots), np.int32)
        for r in range(b):
            for s in range(1, int(seg[r].max(initial=0)) + 1):
                pos = np.flatnonzero(seg[r] == s)
                if not len(pos):
                    continue
                rows = store.rows(self._find(store, ids[r, pos], types[r, pos]))
                if store.tokens:
                    feats[r, pos] = rows
                else:
                    feats[r, s - 1] = rows[0]
                    filled[r, s - 1] = s
        if store.tokens:
            return {**batch, "features": feats}
        out = _one_position(batch, feats, b, slots)
        out["segment_ids"] = filled
        out["position_ids"] = np.zeros((b, slots), np.int32)
        out["attention_mask"] = (filled > 0).astype(np.int32)
        return out

    def _find(self, store: _Store, ids: np.ndarray, types: np.ndarray) -> int:
        uid = store.index.get(_key(ids, types))
        if uid is None:
            raise KeyError(
                f"stage {self.stage!r}: a batch holds an input the feature cache has not seen "
                f"({len(ids)} tokens, ids {ids[:8].tolist()}...): the cache covers the stage's "
                "tasks' train, dev and test splits as they were tokenised"
            )
        return uid


def _one_position(batch: dict, feats: np.ndarray, b: int, t: int) -> dict:
    """A pooled batch: its [B,T] token fields cut to [B,t] (one position per example), so one
    program serves every length bucket; per-example fields stay."""
    out = {k: v for k, v in batch.items() if np.ndim(v) < 2 or k in ("label", "score",
           "label_set", "example_weight", "task_id", "example_index")}  # fmt: skip
    out["input_ids"] = np.zeros((b, t), np.int32)
    out["token_type_ids"] = np.zeros((b, t), np.int32)
    out["attention_mask"] = np.ones((b, t), np.int32)
    out["token_labels"] = np.full((b, t), IGNORE, np.int32)
    out["features"] = feats
    return out


def _extractor(how: str | None, slots: int):
    """The eval-step function computing what a cache stores for a batch: [B,T,K,H'] per token
    (``how`` None) or pooled ``how``: [B,K,H'] per row, or [B,S,K,H'] per slot of a packed row
    (``slots`` S; block-diagonal attention, positions restarting per input)."""
    from jaxtl.models import heads

    def fn(model, batch):
        kw = {}
        if slots:
            kw = {"segment_ids": batch["segment_ids"], "position_ids": batch["position_ids"]}
        out, _ = model.features(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], **kw
        )
        stored = model.cache_layers(out)
        if how is None:
            return stored
        b, t, k, h = stored.shape
        flat = stored.reshape(b, t, k * h)
        if slots:
            pooled = heads.pool_segments(flat, batch["segment_ids"], how, slots)
            return pooled.reshape(b, slots, k, h)
        return heads.pool(flat, batch["attention_mask"], how).reshape(b, k, h)

    return fn


def _members(batches: list[list[list[int]]]) -> list[int]:
    """Input ids in the order a shard stores them: batch, row, slot."""
    return [u for rows in batches for row in rows for u in row]


def _slots(td: TaskData, config: ml_collections.ConfigDict, encoder: Any) -> int:
    """Inputs per row of the cache's encoder pass: the task's own when its batches are packed
    (:mod:`jaxtl.data.packing`), else :data:`PACK_SLOTS` where the encoder runs packed rows
    exactly — a frozen encoder's output for an input does not depend on how its pass is batched,
    even where the head needs one input per row (the BiLSTM tagger) — so the pass computes
    little padding; 0 (one input per row, by length bucket) for an encoder that cannot."""
    for b in list(td.eval_batches[:1]) + [s.batches[0] for s in td.splits.values() if s.batches]:
        if "segment_ids" in b:
            return int(b["label"].shape[1])
    if td.train_iter is not None and hasattr(td.train_iter, "num_segments"):
        return int(td.train_iter.num_segments)
    return PACK_SLOTS if supports_packing(encoder) else 0


def _savable(a: np.ndarray) -> np.ndarray:
    """numpy cannot read back bfloat16 from .npy: such shards hold the raw 16 bits."""
    return a.view(np.uint16) if a.dtype.name == "bfloat16" else a


def _loaded(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        import jax.numpy as jnp  # jnp.bfloat16 is the numpy dtype (ml_dtypes') jax ships

        return a.view(jnp.bfloat16)
    return a
