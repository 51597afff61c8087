"""Files on any filesystem etils ``epath`` reaches: a local folder or a ``gs://`` URL alike.

Everything a run writes goes through here or through ``epath``/orbax directly, never through
``open``/``os``/``pathlib`` on ``str(path)`` (which turns ``gs://B/r`` into the local folder
``gs:/B/r``). Libraries that can only write a local file (matplotlib, safetensors, tokenizers,
the TensorBoard writer) write into a local temporary file or folder that is then copied to the
destination; contract files are written whole to a temporary name and renamed, so a kill or a
full disk never leaves a half-written one (on GCS, where a rename is a copy, the object appears
whole or not at all).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from etils import epath


def is_local(path: str | os.PathLike) -> bool:
    """Whether ``path`` is on the local filesystem (no ``scheme://``)."""
    return "://" not in os.fspath(path)


def workdir(path: str | os.PathLike) -> epath.Path:
    """A run's folder as an ``epath.Path``; a local one made absolute (orbax refuses relative
    checkpoint paths, and a relative ``--workdir=runs/x`` is what a user types)."""
    return epath.Path(os.path.abspath(path) if is_local(path) else os.fspath(path))


def write_atomic(path: str | epath.Path, data: str | bytes) -> None:
    """Write ``data`` whole to ``path``: a temporary file next to it, then a rename. On any
    failure (ENOSPC included) the temporary file is removed and ``path`` keeps its old content."""
    with _beside(epath.Path(path)) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)


@contextlib.contextmanager
def open_atomic(dest: str | epath.Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A text (``binary``: bytes) file to write ``dest`` through, a piece at a time (a stream
    too large to hold): ``dest`` appears whole when the block ends without error — a temporary
    file beside it, renamed; for a remote ``dest`` a local temporary file, copied up — and is
    never left half-written (on an error or a kill the old ``dest``, if any, stays)."""
    dest = epath.Path(dest)
    how: dict[str, Any] = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8"}
    if not is_local(dest):
        with local_file_for(dest) as local, open(local, **how) as f:
            yield f
        return
    with _beside(dest) as tmp, open(tmp, **how) as f:
        yield f


@contextlib.contextmanager
def _beside(path: epath.Path) -> Iterator[epath.Path]:
    """A temporary name next to ``path``, renamed onto it when the block ends without error.
    On any failure it is removed and ``path`` keeps its old content; an OSError names ``path``,
    not the temporary name, which means nothing to the user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        yield tmp
        tmp.replace(path)
    except OSError as e:
        _discard(tmp)
        if e.errno is None or e.filename != os.fspath(tmp):
            raise
        # OSError with an errno builds the matching subclass (FileNotFoundError...).
        raise OSError(e.errno, e.strerror, os.fspath(path)) from e
    except BaseException:
        _discard(tmp)
        raise


def _discard(path: epath.Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # the original error is the one worth reporting


def copy_file(src: str | os.PathLike, dst: str | epath.Path) -> None:
    """Copy one file between any two filesystems, atomically at ``dst``."""
    write_atomic(dst, epath.Path(src).read_bytes())


def copy_tree(src: str | epath.Path, dst: str | epath.Path) -> None:
    """Copy a folder's files (recursively) between any two filesystems, each file atomically."""
    src, dst = epath.Path(src), epath.Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        if child.is_dir():
            copy_tree(child, dst / child.name)
        else:
            copy_file(child, dst / child.name)


@contextlib.contextmanager
def local_file_for(dest: str | epath.Path) -> Iterator[str]:
    """A local file name for a library that writes only local files; when the block ends
    without error its bytes are written to ``dest`` atomically (for a local ``dest`` too: a
    temporary file and a rename)."""
    dest = epath.Path(dest)
    fd, tmp = tempfile.mkstemp(suffix=dest.suffix, prefix=".jaxtl-")
    os.close(fd)
    try:
        yield tmp
        copy_file(tmp, dest)
    finally:
        os.unlink(tmp)


@contextlib.contextmanager
def local_dir_for(dest: str | epath.Path) -> Iterator[str]:
    """A local folder for a library that writes only local folders: ``dest`` itself when it is
    local, else a temporary folder copied to ``dest`` when the block ends without error."""
    if is_local(dest):
        os.makedirs(dest, exist_ok=True)
        yield os.fspath(dest)
        return
    tmp = tempfile.mkdtemp(prefix="jaxtl-")
    try:
        yield tmp
        copy_tree(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def replaced_dir(dest: str | epath.Path) -> Iterator[str]:
    """A new local folder whose content replaces ``dest`` whole when the block ends without
    error, so nothing of an earlier content is left among the new (a task folder or a PEFT
    adapter of another run) and an interrupted write leaves ``dest`` as it was. Locally the new
    folder is a sibling renamed onto ``dest`` (the old one renamed aside first, then removed);
    elsewhere (``gs://``) it is written locally, ``dest`` removed and the folder copied up."""
    local = is_local(dest)
    if local:
        target = os.path.realpath(os.fspath(dest))  # a link's folder, not the link, is replaced
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-",
                               dir=os.path.dirname(target))  # fmt: skip
    else:
        tmp = tempfile.mkdtemp(prefix="jaxtl-")
    try:
        yield tmp
        if local:
            old = f"{tmp}.old"
            if os.path.lexists(target):
                os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            remote = epath.Path(dest)
            if remote.exists():
                remote.rmtree()
            copy_tree(tmp, remote)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def local_dir_from(src: str | epath.Path) -> Iterator[str]:
    """A local folder holding ``src``'s files, for a library that reads only local folders:
    ``src`` itself when local, else a temporary copy removed when the block ends."""
    if is_local(src):
        yield os.fspath(src)
        return
    tmp = tempfile.mkdtemp(prefix="jaxtl-")
    try:
        copy_tree(src, tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
