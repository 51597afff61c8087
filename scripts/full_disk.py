"""Run a script on a disk that fills up: from the N-th file opened for writing whose path contains
PATTERN on, every file opened for writing through etils ``epath`` (jaxtl's files, orbax's
metadata and commit files) gets half of its first write, then ``OSError(ENOSPC)`` — as a real
full disk does. Array data that orbax writes through tensorstore (C++) is not intercepted: the
failure lands at orbax's next Python-side write of the same checkpoint, which is mid-save.

    python scripts/full_disk.py PATTERN N SCRIPT.py ARGS...

e.g. ``python scripts/full_disk.py checkpoints/8 1 launch.py --regime=multitask ...`` fills the
disk while step 8 is being checkpointed.
"""

from __future__ import annotations

import errno
import os
import runpy
import sys
from typing import Any


def install(pattern: str, nth: int) -> None:
    from etils.epath import gpath

    original = gpath._GPath.open
    seen = {"matches": 0, "full": False}

    class FullFile:
        def __init__(self, f: Any, path: str):
            self._f, self._path = f, path

        def write(self, data: Any) -> int:
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: Any) -> None:
            self._f.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._f, name)

    def open_(self: Any, mode: str = "r", **kwargs: Any) -> Any:
        f = original(self, mode, **kwargs)
        if not any(m in mode for m in "wa"):
            return f
        if pattern in os.fspath(self):
            seen["matches"] += 1
            seen["full"] = seen["full"] or seen["matches"] >= nth
        return FullFile(f, os.fspath(self)) if seen["full"] else f

    gpath._GPath.open = open_


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    script = sys.argv[3]
    sys.argv = sys.argv[3:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
