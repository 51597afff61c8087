"""Orbax checkpoints: the whole train state for resuming, params-only for transfer.

A checkpoint is one orbax step directory with two items:

- ``state``: ``{"step", "params", "opt_state", "rng"}`` — arrays, restored onto whatever mesh the
  restoring run has (the abstract target carries the new shardings, so 8 → 1 devices works);
- ``meta``: JSON — stage index, phase, data-iterator state, and anything the loop needs to continue
  bit-identically.

Orbax writes into a temporary directory and renames it when complete (on GCS: writes a commit
file last), so a run killed mid-save leaves the previous checkpoint as the latest good one. Once
orbax has finished, ``<step>/jaxtl_checksums.json`` records a SHA-256 of every saved array and of
the metadata (written atomically); a resume recomputes them from what it reads back, so a flipped
bit that still decodes (orbax's zstd chunks carry no checksum of their own) is caught like a torn
file.

``Checkpointer(async_save=True)`` (the loop's default, ``checkpoint.async_save``) returns from
``save`` once orbax has the arrays on the host and writes them, and then the checksums, in the
background while training goes on; one save is in flight at a time, and the next save, a restore,
``wait_until_finished`` and ``close`` wait for it (and raise what it failed with).
``ParamsWriter`` can do the same for the best params an evaluation sets (``save_params``;
``checkpoint.async_best``, off by default).

``load_params`` is the transfer path: it restores only parameters, into a model whose structure may
differ from the one saved (a new head, one more layer), and reports which parameters were loaded,
which are new, and which had a different shape.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxtl import fileio, paths
from jaxtl.step import TrainState

log = logging.getLogger(__name__)


def _state_dict(state: TrainState) -> dict[str, Any]:
    return {
        "step": state.step,
        "params": state.params,
        "opt_state": state.opt_state,
        "rng": state.rng,
    }


CHECKSUMS = "jaxtl_checksums.json"


def _key_name(k: Any) -> str:
    """One path entry, named the same for the saved tree (dicts, lists, optax NamedTuples) and
    the tree orbax reads back without a target (dicts and lists)."""
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def checksums(state: Any, meta: Any) -> dict[str, str]:
    """SHA-256 of each array of ``state`` (its dtype, shape and bytes), by path, and of ``meta``
    as JSON. Same values whatever the device layout, so a checkpoint saved on 8 devices checks
    on 1."""
    out = {}
    for path, x in jax.tree_util.tree_leaves_with_path(state):
        if x is None:
            continue
        if jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        a = np.ascontiguousarray(np.asarray(jax.device_get(x)))
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8).data)  # the bytes, read in place
        out["/".join(_key_name(k) for k in path)] = h.hexdigest()
    text = json.dumps(json.loads(json.dumps(meta, default=str)), sort_keys=True)
    out["(meta)"] = hashlib.sha256(text.encode()).hexdigest()
    return out


class InFlight:
    """One job run in a background thread at a time: ``wait`` joins it and raises what it
    failed with (once), so a failure in the background is not lost but raised in the loop."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, name: str, job: Callable[..., None], *args: Any) -> None:
        self.wait()

        def run() -> None:
            try:
                job(*args)
            except BaseException as e:  # raised by the next wait, in the loop
                self._failed = e

        self._thread = threading.Thread(target=run, name=name)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed


class Checkpointer:
    """Keeps the last ``max_to_keep`` checkpoints of a run under ``directory``.

    ``async_save``: ``save`` returns once the arrays are on the host (orbax's blocking part; on
    CPU they are the arrays themselves, held until written) and the files, then the checksums,
    are written in the background. A save that fails there raises at the next save,
    ``wait_until_finished`` or ``close``; until orbax commits it the step's files stay in a
    temporary folder, so the previous checkpoint is the latest good one, as with a kill."""

    def __init__(
        self, directory: str | epath.Path, *, max_to_keep: int = 2, async_save: bool = False
    ):
        self.directory = epath.Path(directory)
        self.async_save = async_save
        self._finishing = InFlight()  # the in-flight save's checksum writer
        self._closed = False
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=True,
                enable_async_checkpointing=async_save,
                # A save cut short (kill -9, full disk) leaves an uncommitted temporary step:
                # never resumed from, and removed when the next run opens the folder.
                cleanup_tmp_directories=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def verify(self, step: int) -> str | None:
        """None when checkpoint ``step`` reads back whole (every array and the metadata, to
        host memory) and, where it has ``jaxtl_checksums.json``, every array and the metadata
        hash as when saved; else what failed. A step without checksums (saved before they
        existed, or killed between orbax's commit and the checksum write) gets the read-back
        check only."""
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(self._host_target(step)),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:  # any read failure means this step cannot be resumed from
            return f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        sums = self.directory / str(step) / CHECKSUMS
        if not sums.exists():
            return None
        try:
            expected = json.loads(sums.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{sums} is damaged"
        got = checksums(out["state"], out["meta"])
        bad = sorted(k for k, v in expected.items() if got.get(k) != v)
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            return (f"checksum mismatch in {bad[0]}{more}: its bytes changed after the "
                    "checkpoint was written")  # fmt: skip
        return None

    def _host_target(self, step: int) -> Any:
        """The saved state's tree with every array as a numpy target of its shape and dtype, so
        :meth:`verify` reads it into host memory whatever devices the checkpoint was saved from:
        without a target orbax places each array as saved, which fails ("Topology mismatch")
        when a run resumes on another number of devices (8 -> 1, a TPU slice -> a CPU), and
        would hold a second copy of the state on the devices. The targets are zero-stride views
        (``np.broadcast_to``): only their shape and dtype are read."""
        tree = saved_tree(self.directory / str(step) / "state")

        def host(m: Any) -> Any:
            if isinstance(m, ocp.metadata.ArrayMetadata):
                return np.broadcast_to(np.zeros((), m.dtype), m.shape)
            return m

        return jax.tree.map(host, tree)

    def latest_good_step(self) -> int | None:
        """The newest checkpoint that reads back whole. Unreadable newer ones (a torn write, a
        damaged disk) are moved aside to ``<workdir>/corrupt_checkpoints/`` — never deleted —
        with a warning naming them and the step the run falls back to."""
        self.wait_until_finished()
        if jax.process_count() > 1:
            return self.latest_step()  # moving files needs all hosts to agree: not attempted
        for step in sorted(self.manager.all_steps(), reverse=True):
            problem = self.verify(step)
            if problem is None:
                return step
            aside = self.directory.parent / "corrupt_checkpoints" / str(step)
            n = 1
            while aside.exists():
                aside = aside.parent / f"{step}.{n}"
                n += 1
            aside.parent.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(aside)
            self.manager.reload()
            log.warning("checkpoint step %d in %s is unreadable or damaged (%s); moved it to %s "
                        "and will resume from the previous good checkpoint, if any", step,
                        self.directory, problem, aside)  # fmt: skip
        return None

    def save(self, step: int, state: TrainState, meta: dict[str, Any]) -> None:
        self.wait_until_finished()  # one save in flight: the previous one is on disk first
        tree = _state_dict(state)
        # The loop goes on changing what meta refers to (the best-so-far record, results) while
        # orbax and the checksums may still be reading it: they get the values of this step.
        meta = copy.deepcopy(meta)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        if jax.process_count() > 1:  # arrays other hosts hold cannot be hashed here
            if not self.async_save:
                self.manager.wait_until_finished()
            return  # async: orbax finishes the save on every host in the background
        if not self.async_save:
            self._write_checksums(step, tree, meta)
            return
        # The checksums are of the values saved: fetched now (on CPU, views of the arrays, which
        # the next step then cannot donate: it writes new buffers), hashed in the background.
        host = jax.device_get(tree)
        self._finishing.start(f"jaxtl-checkpoint-{step}", self._write_checksums, step, host, meta)

    def _write_checksums(self, step: int, tree: Any, meta: dict[str, Any]) -> None:
        sums = checksums(tree, meta)  # hashlib leaves the GIL to the loop on large arrays
        self.manager.wait_until_finished()  # committed: the step folder has its final name
        fileio.write_atomic(
            self.directory / str(step) / CHECKSUMS, json.dumps(sums, indent=0) + "\n"
        )

    def wait_until_finished(self) -> None:
        """Returns once the save in flight (if any) is on disk with its checksums; raises what
        it failed with."""
        if self._closed:
            return
        if not self._finishing.running:
            self.manager.wait_until_finished()
        self._finishing.wait()

    def restore(self, step: int, target: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """Restore onto ``target``'s structure and shardings (arrays or ShapeDtypeStructs)."""
        self.wait_until_finished()
        abstract = jax.tree.map(_abstract, _state_dict(target))
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        s = out["state"]
        state = TrainState(
            step=s["step"], params=s["params"], opt_state=s["opt_state"], rng=s["rng"]
        )
        return state, dict(out["meta"])

    def close(self) -> None:
        """Waits for the save in flight (raising what it failed with), then closes orbax."""
        try:
            self.wait_until_finished()
        finally:
            if not self._closed:
                self._closed = True
                self.manager.close()


def saved_tree(state_dir: epath.Path) -> Any:
    """The saved state's tree of array metadata (shape, dtype, sharding), read from the handler,
    not the checkpointer: the checkpointer also looks for a step-level _CHECKPOINT_METADATA
    inside state/ (it lives one folder up) and logs a warning that it "does not exist" on every
    read (jaxtl.load, model.init_from, a resume's check)."""
    meta = ocp.PyTreeCheckpointHandler().metadata(state_dir)
    tree = getattr(meta, "item_metadata", meta)
    return getattr(tree, "tree", tree)


def _abstract(x: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)


@dataclasses.dataclass
class TransferReport:
    """What a params-only initialisation did, parameter by parameter (readable paths)."""

    loaded: list[str]
    new: list[str]  # in the target model, not in the checkpoint: freshly initialised
    mismatched: list[tuple[str, tuple, tuple]]  # (path, checkpoint shape, target shape): kept new
    unused: list[str]  # in the checkpoint, not in the target (e.g. a discarded head)
    # in both, left freshly initialised on request (``model.init_from_skip``)
    skipped: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)}, new {len(self.new)}, "
            f"shape-mismatched {len(self.mismatched)}, unused {len(self.unused)}"
            + (f", skipped {len(self.skipped)}" if self.skipped else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "new": self.new,
            "mismatched": [
                {"path": p, "checkpoint": list(a), "target": list(b)} for p, a, b in self.mismatched
            ],
            "unused": self.unused,
            "skipped": self.skipped,
        }


def _find_state_dir(path: epath.Path, step: int | None) -> tuple[epath.Path, int]:
    """Accept a workdir, its checkpoints/ folder, or one step folder (a relative local path is
    taken from the current directory: orbax reads only absolute ones)."""
    path = fileio.workdir(path)
    for cand in (path / "checkpoints", path):
        if (cand / "state").exists():
            return cand, -1
        if cand.exists():
            mgr = ocp.CheckpointManager(cand)
            s = step if step is not None else mgr.latest_step()
            mgr.close()
            if s is not None:
                return cand / str(s), s
    raise FileNotFoundError(f"no orbax checkpoint found under {path}")


def load_params(
    path: str | epath.Path, target_params: Any, *, step: int | None = None,
    skip: Sequence[str] = (),
) -> tuple[Any, TransferReport]:  # fmt: skip
    """Initialise ``target_params`` from a checkpoint's params where path and shape agree.

    ``target_params`` is a pure dict of arrays (the freshly initialised model); the result has its
    structure, with every parameter the checkpoint holds in the same shape replaced by the saved one,
    except those whose path matches one of the ``skip`` regular expressions (``re.match``, from the
    start of the path, e.g. ``heads/rte/``): they keep their fresh values. A pattern that matches no
    parameter of either side is a ValueError (a typo would otherwise load everything).
    """
    step_dir, _ = _find_state_dir(epath.Path(path), step)
    handler = ocp.PyTreeCheckpointer()
    tree = saved_tree(step_dir / "state")
    saved = paths.flatten(tree["params"])
    target = paths.flatten(target_params)

    patterns = [re.compile(x) for x in skip]
    for pat in patterns:
        if not any(pat.match(p) for p in (*target, *saved)):
            groups = sorted({"/".join(p.split("/")[:2]) + "/" for p in (*target, *saved)})
            raise ValueError(
                f"model.init_from_skip: {pat.pattern!r} matches no parameter of the model or of "
                f"{path}; its paths start with {', '.join(groups)}"
            )
    loaded, new, mismatched, skipped = [], [], [], []
    wanted: dict[str, Any] = {}
    for p, x in target.items():
        if p in saved and any(pat.match(p) for pat in patterns):
            skipped.append(p)
        elif p not in saved:
            new.append(p)
        elif tuple(saved[p].shape) != tuple(x.shape):
            mismatched.append((p, tuple(saved[p].shape), tuple(x.shape)))
        else:
            loaded.append(p)
            wanted[p] = x
    unused = [p for p in saved if p not in target]

    restored: dict[str, Any] = {}
    if wanted:
        # Restore only the wanted subset: build the saved params tree with the unwanted leaves
        # dropped (orbax partial restore), each wanted leaf placed like its target.
        subset = _subset_tree(tree["params"], wanted)
        out = handler.restore(
            step_dir / "state",
            args=ocp.args.PyTreeRestore(
                item={"params": subset},
                restore_args={"params": jax.tree.map(_restore_arg, subset)},
                partial_restore=True,
            ),
        )
        restored = paths.flatten(out["params"])
    handler.close()

    result = paths.map_with_path(lambda p, x: restored.get(p, x), target_params)
    report = TransferReport(loaded=loaded, new=new, mismatched=mismatched, unused=unused,
                            skipped=skipped)  # fmt: skip
    log.info("params-only init from %s: %s", path, report.summary())
    return result, report


def _subset_tree(saved_tree: Any, wanted: dict[str, Any]) -> Any:
    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                p = f"{prefix}/{k}" if prefix else str(k)
                sub = walk(v, p)
                if sub is not None:
                    out[k] = sub
            return out or None
        if prefix in wanted:
            return _abstract(wanted[prefix])
        return None

    return walk(saved_tree, "") or {}


def _restore_arg(x: Any) -> Any:
    sharding = getattr(x, "sharding", None)
    if sharding is None:
        return ocp.RestoreArgs(restore_type=np.ndarray)
    return ocp.ArrayRestoreArgs(sharding=sharding, global_shape=x.shape, dtype=x.dtype)


class ParamsWriter:
    """Writes one evaluation's best params (params-only checkpoints, :func:`save_params`) to the
    folders that evaluation improved — the first written, the others linked to it.

    ``background=True`` (``checkpoint.async_best``; one process only) fetches the params to the
    host in ``write`` (on CPU, views of the arrays, which the next step then cannot donate: it
    writes new buffers) and writes them in a thread while training goes on. One evaluation's
    write is in flight at a time: the next ``write`` and ``wait_until_finished`` wait for it and
    raise what it failed with."""

    def __init__(self, *, background: bool = False):
        # Several processes save collectively, in step: kept in the loop there.
        self.background = background and jax.process_count() == 1
        self._writing = InFlight()
        self._step = -1  # of the write in flight

    def write(self, step: int, params: Any, folders: Sequence[epath.Path]) -> None:
        self.wait_until_finished()
        if not folders:
            return
        if not self.background:
            _write_params(folders, step, params)
            return
        self._step = step
        host = jax.device_get(params)
        self._writing.start(f"jaxtl-best-params-{step}", _write_params, list(folders), step, host)

    def wait_until_finished(self, *, before_step: int | None = None) -> None:
        """Returns once the write in flight is on disk; raises what it failed with.
        ``before_step``: wait only for a write of an earlier step."""
        if before_step is not None and self._writing.running and self._step >= before_step:
            return
        self._writing.wait()


def _write_params(folders: Sequence[epath.Path], step: int, params: Any) -> None:
    for i, where in enumerate(folders):
        save_params(where, step, params, same_as=folders[0] if i else None)


def saved_params_steps(directory: str | epath.Path) -> list[int]:
    """The finished steps a params-only folder holds."""
    d = epath.Path(directory)
    if not d.exists():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and _finished(p))


def _finished(step_dir: epath.Path) -> bool:
    """An orbax step folder that was committed (a local one is renamed from its temporary name
    when whole; on GCS the commit file is written last)."""
    return (step_dir / "commit_success.txt").exists() or (
        step_dir / "_CHECKPOINT_METADATA"
    ).exists()


def save_params(
    directory: str | epath.Path, step: int, params: Any, *, same_as: epath.Path | None = None
) -> None:
    """A params-only checkpoint (best-so-far models): one step kept, atomic like the others.

    ``same_as``: another params-only folder that already holds these very params at ``step`` (a
    multitask run's stage best and the per-task bests one evaluation improved). On a local disk
    its files are hard-linked instead of written again — one copy on disk, no second write;
    elsewhere (gs://, another filesystem, several processes) the params are saved as usual."""
    if same_as is not None and _link_params(epath.Path(same_as), epath.Path(directory), step):
        return
    mgr = ocp.CheckpointManager(
        epath.Path(directory),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, enable_async_checkpointing=False
        ),
    )
    if step in mgr.all_steps():
        # A resumed run re-evaluating the step it stopped at derives the same params again
        # (resume is bit-identical): the saved ones stand, and orbax refuses to overwrite a step.
        mgr.close()
        return
    mgr.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})), force=True
    )
    mgr.wait_until_finished()
    mgr.close()


def _link_params(source: epath.Path, directory: epath.Path, step: int) -> bool:
    """``directory/<step>`` as hard links to ``source/<step>``'s files, the folder's other steps
    then removed; False (nothing changed) where that cannot be done."""
    src = source / str(step)
    if not (fileio.is_local(src) and fileio.is_local(directory)) or jax.process_count() > 1:
        return False
    if not _finished(src):
        return False  # not a finished orbax step
    dst = directory / str(step)
    if dst.exists():
        return True  # a resumed run re-deriving the same best: the saved params stand
    # Built beside its final name and renamed when whole, like orbax's own temporary steps: a
    # kill mid-way leaves a hidden folder no reader takes for a step (and the next link clears).
    tmp = pathlib.Path(directory) / f".{step}.linking"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(pathlib.Path(src), tmp, copy_function=os.link)
    except OSError:  # another filesystem, or one without hard links
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    os.rename(tmp, pathlib.Path(dst))
    for old in pathlib.Path(directory).iterdir():
        if old.name.isdigit() and int(old.name) != step:
            shutil.rmtree(old)  # max_to_keep=1, as save_params' own manager keeps
    return True
