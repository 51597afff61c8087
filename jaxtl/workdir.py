"""A workdir belongs to one run: a lock against a second live run, and no silent config drift.

- :class:`Lock`: ``<workdir>/.jaxtl.lock`` holds the owner's host and pid. A second run on a
  live workdir stops with a message naming them; a lock whose process is gone (a kill -9, a
  preempted VM) is taken over, so a dead owner never leaves the workdir stuck.
- :func:`check_resume`: a run resuming a workdir (it has checkpoints) must have the config the
  workdir's ``config.json`` records, except for keys that do not change the experiment (more or
  fewer steps, logging, checkpointing cadence, the mesh and CPU kernels, paths). Other differences are refused
  with the list of keys, old and new values, unless ``allow_config_change=True``.
- :func:`remove_unstarted`: a workdir a command made, left by a user error with only the files
  set-up writes (nothing trained), goes again, so mistyped commands leave no folders behind.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Collection, Sequence
from typing import Any

from etils import epath

from jaxtl.config import LOCAL_PATH_KEYS
from jaxtl.data.io import SAVE_AS_CSV, SPREADSHEETS

log = logging.getLogger(__name__)

# Keys (or key prefixes ending in ".") that may differ when resuming.
RESUMABLE_CHANGES = (
    "train.steps",
    "train.epochs",  # like train.steps: how long, not what
    "train.progress",
    "train.log_every",
    "train.eval_batch_size",
    "checkpoint.",
    "mesh.",
    "distributed.",
    # Which CPU kernels XLA compiles: like the mesh, it moves numbers only at rounding level
    # (tests/test_step.py bounds it at 1e-5) and does not change the experiment.
    "cpu_kernels",
    "export_dir",
    "compile_cache",
    "features.cache",  # where frozen-encoder features are kept changes no number
    "features.dir",
    "data.dir",
    "data.token_cache",  # where tokenised splits are kept, and from what size, changes no number
    "data.token_cache_min_rows",
    "model.allow_pickle",
    "allow_config_change",
)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))  # tuples -> lists, as config.json has them


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for every key whose value differs and is not a resumable change."""
    a, b = _flat(_norm(old)), _flat(_norm(new))
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") == b.get(key, "<absent>"):
            continue
        if key in LOCAL_PATH_KEYS and _same_local_path(a.get(key), b.get(key)):
            continue  # saved relative (before paths were made absolute), the same folder now
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES):
            continue
        out.append((key, a.get(key, "<absent>"), b.get(key, "<absent>")))
    return out


def _same_local_path(old: Any, new: Any) -> bool:
    return (isinstance(old, str) and isinstance(new, str) and bool(old)
            and not os.path.isabs(old) and os.path.abspath(old) == new)  # fmt: skip


def has_checkpoints(workdir: epath.Path) -> bool:
    ckpt = workdir / "checkpoints"
    return ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir())


def check_resume(config: Any, workdir: epath.Path) -> None:
    """Refuse to resume ``workdir`` with a config that changes the experiment (module doc)."""
    saved = workdir / "config.json"
    if not (saved.exists() and has_checkpoints(workdir)):
        return
    try:
        old = json.loads(saved.read_text())
    except json.JSONDecodeError:
        log.warning("%s is torn; resuming without the config check", saved)
        return
    changes = config_changes(old, config.to_dict())
    if changes and not config.get("allow_config_change", False):
        listed = "; ".join(f"{k}: {o!r} -> {n!r}" for k, o, n in changes)
        raise ValueError(
            f"{workdir} holds a run with another config ({listed}); resuming would mix two "
            "experiments: use a new --workdir, or pass --config.allow_config_change=True"
        )
    for k, o, n in changes:
        log.warning("resuming %s with %s changed: %r -> %r (allow_config_change)", workdir, k, o, n)


def check_resume_tasks(workdir: epath.Path, tasks: Sequence[Any]) -> None:
    """Refuse to resume ``workdir`` when a task's kind or labels differ from those in its
    ``tasks.json``: the checkpoint's heads give each class id the meaning it had when the run
    started, so a training file that gained a class, or a label set now read in another order,
    would go on training and reporting under the wrong names. ``tasks``: the tasks read now."""
    saved = workdir / "tasks.json"
    if not (saved.exists() and has_checkpoints(workdir)):
        return
    try:
        old = {t["name"]: t for t in json.loads(saved.read_text())["tasks"]}
    except (json.JSONDecodeError, KeyError, TypeError):
        log.warning("%s is torn; resuming without the task check", saved)
        return
    for task in tasks:
        was = old.get(task.name)
        if was is None:
            continue  # a task the config did not have: check_resume names the config change
        for key, now in (("kind", task.kind), ("label_names", list(task.label_names))):
            if was.get(key, now) != now:
                raise ValueError(
                    f"{workdir} holds a run whose task {task.name!r} had {key} {was[key]!r}; "
                    f"its data now gives {now!r}: resuming would give its classes other "
                    "meanings: use a new --workdir"
                )


# What a run writes before its first training step (jaxtl.run.prepare: the config, the task
# manifest, the head and init_from reports) and its lock: a workdir holding only these holds
# nothing trained.
SETUP_FILES = frozenset(
    {".jaxtl.lock", "config.json", "tasks.json", "head_init.json", "transfer_report.json"}
)


def remove_unstarted(workdir: str) -> bool:
    """Remove ``workdir`` if it holds nothing but :data:`SETUP_FILES` (the caller's run stopped
    before training and made the folder itself); True if removed. Anything else — a checkpoint,
    metrics, features, a file of the user's — keeps it whole."""
    path = epath.Path(workdir)
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    if any(p.name not in SETUP_FILES or p.is_dir() for p in entries):
        return False
    for p in entries:
        p.unlink()
    path.rmdir()
    return True


# Everything else a run writes at the top of its workdir (jaxtl.run, jaxtl.report, the loop,
# the regimes): an output path there would overwrite the run's own record.
RUN_FILES = SETUP_FILES | frozenset(
    {"metrics.jsonl", "results.json", "results_test.json", "results_refined.json",
     "selection.json", "plan.json", "task_counts.json", "loss.png", "dev_metrics.png",
     "plan.png"}
)  # fmt: skip
RUN_FOLDERS = frozenset(
    {"checkpoints", "best", "predictions", "tensorboard", "features", "refine",
     "corrupt_checkpoints", "target_tokenizer"}
)  # fmt: skip


def _resolved(path: str | os.PathLike) -> str:
    p = os.fspath(path)
    return os.path.realpath(p) if "://" not in p else p.rstrip("/")


def check_file_command(input_path: str, output: str, workdir: str | os.PathLike | None,
                       command: str) -> None:  # fmt: skip
    """The checks of a command that reads ``--input`` (a file, or "-" for stdin) and writes one
    ``--output`` file ("-" for stdout), made before any model loads: the input exists, the
    output is not a folder, nor one of ``workdir``'s own files (:func:`check_output`)."""
    if input_path != "-" and not epath.Path(input_path).exists():
        raise ValueError(f"--input={input_path}: no such file")
    if os.path.splitext(input_path)[1].lower() in SPREADSHEETS:
        raise ValueError(f"--input={input_path} is a spreadsheet, which {command} does not "
                         f"read; {SAVE_AS_CSV} and give that")  # fmt: skip
    if output != "-":
        if epath.Path(output).is_dir():
            raise ValueError(f"--output={output} is a folder; {command} writes one file")
        if workdir is not None:
            check_output(workdir, output, "--output", folder=False)


def check_output(workdir: str | os.PathLike, output: str | os.PathLike, flag: str, *,
                 folder: bool, subfolders: Collection[str] = ()) -> None:  # fmt: skip
    """Refuse, before anything heavy, an output that would write over a run's own files:
    ``workdir`` itself, anything under the run's files and folders (``config.json``,
    ``checkpoints/``, ``predictions/``…), a folder above the workdir whose ``subfolders`` (an
    export's ``<task name>/``) would be the workdir or hold it, or another run's workdir
    (``folder``: an export). A new name inside the workdir (``W/export``, ``W/new.jsonl``) is
    fine."""
    wd, out = _resolved(workdir), _resolved(output)
    if out == wd:
        raise ValueError(
            f"{flag}={output} is the run's workdir: writing there would replace the run's own "
            f"files; give a folder of its own, e.g. {flag}={os.fspath(workdir).rstrip('/')}-export"
        )
    if wd.startswith(out.rstrip("/") + "/"):
        first = wd[len(out.rstrip("/")) + 1 :].split("/", 1)[0]
        if first in {s.split("/", 1)[0] for s in subfolders}:
            raise ValueError(
                f"{flag}={output} would get a folder {first}/ for the task of that name, which "
                f"is where the run's workdir ({workdir}) is: give a folder of its own, e.g. "
                f"{flag}={os.fspath(workdir).rstrip('/')}-export"
            )
    elif out.startswith(wd + "/"):
        top = out[len(wd) + 1 :].split("/", 1)[0]
        if top in RUN_FILES or top in RUN_FOLDERS:
            raise ValueError(
                f"{flag}={output} is the run's own {top} in {workdir}: writing there would "
                "replace the run's record; give another name"
            )
    elif folder:
        other = epath.Path(output)
        if (other / "config.json").exists() and (other / "tasks.json").exists():
            raise ValueError(
                f"{flag}={output} is another run's workdir (it holds config.json and "
                "tasks.json): writing there would replace that run's files; give a new folder"
            )


# What each task of an export was written as (jaxtl.export): the mark of an export's folder.
EXPORT_REPORT = "export_report.json"


def check_export_folder(output: str | os.PathLike, flag: str) -> None:
    """An export replaces its folder whole (:func:`jaxtl.fileio.replaced_dir`): refuse a folder
    that holds anything but an earlier export, whose files would be lost."""
    out = epath.Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag}={output} is a file; an export writes a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_REPORT).exists():
        raise ValueError(
            f"{flag}={output} holds files that are not a jaxtl export (no {EXPORT_REPORT}): an "
            "export replaces its folder whole; give a new or empty folder"
        )


class Lock:
    """``<workdir>/.jaxtl.lock`` for the life of a run (see the module docstring)."""

    def __init__(self, workdir: str | epath.Path):
        self.path = epath.Path(workdir) / ".jaxtl.lock"
        self.mine = {"host": socket.gethostname(), "pid": os.getpid()}

    def acquire(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            try:
                owner = json.loads(self.path.read_text())
            except (json.JSONDecodeError, OSError):
                owner = {}
            if owner and owner != self.mine and _alive(owner):
                raise RuntimeError(
                    f"{self.path.parent} is in use by pid {owner.get('pid')} on "
                    f"{owner.get('host')}; wait for that run to end or use another --workdir"
                )
            if owner and owner != self.mine:
                log.warning("%s: taking over the lock of pid %s on %s (no longer running)",
                            self.path.parent, owner.get("pid"), owner.get("host"))  # fmt: skip
        tmp = self.path.parent / f".jaxtl.lock.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.mine))
        tmp.replace(self.path)
        return self

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()) == self.mine:
                self.path.unlink()
        except (FileNotFoundError, json.JSONDecodeError):
            pass


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the lock's owner still runs: on this host, ask the OS; on another host (a shared
    filesystem), assume so."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def read_json(path: epath.Path, what: str) -> Any:
    """A finished run's JSON file (``config.json``, ``tasks.json``); a missing one names the
    file and asks whether its folder is a finished workdir."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; is {path.parent} a finished jaxtl workdir? "
                                f"({what}){_sweep_hint(path.parent)}")  # fmt: skip
    return json.loads(path.read_text())


def _sweep_hint(folder: epath.Path) -> str:
    """For a sweep's folder (``sweep.json``, written by ``--sweep``/``--seeds``) given as a
    workdir: the run it names as its best, which is one."""
    try:
        best = json.loads((folder / "sweep.json").read_text()).get("best_run")
    except (OSError, ValueError, AttributeError):
        return ""
    return (f"; it is a sweep's folder, whose runs are workdirs: its best on dev is "
            f"--workdir={best}") if best else ""  # fmt: skip
