"""A stand-in for Google Cloud Storage so a ``gs://`` workdir can be tested without network:
``gs://BUCKET/PATH`` lives in the local folder ``ROOT/BUCKET/PATH``.

Only the storage layer is replaced; everything above it is what a real ``gs://`` run executes:
etils ``epath``'s fsspec backend (the one a ``gs://`` path takes when TensorFlow is absent),
orbax's GCS code path (a commit file instead of an atomic rename, its GCS deleter and step
listing), and every jaxtl call. Replaced:

- the fsspec protocols ``gs``/``gcs`` (gcsfs in a real install) by local files under ROOT;
- tensorstore's ``gcs`` kvstore (orbax's array data) by its ``file`` kvstore at the same place;
- orbax's hierarchical-namespace probe (a GCS API call) by "not enabled".

A local-only call (``open(str(path))``, ``pathlib``, ``os.makedirs``) on a ``gs://B/r`` path
does not reach ROOT: it writes the relative local path ``gs:/B/r/...`` under the current
directory, which the tests check stays absent.

    python tests/fake_gcs.py ROOT SCRIPT.py ARGS...   # run a script with the stand-in installed
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any


def install(root: str) -> None:
    import fsspec
    from fsspec.implementations.local import LocalFileSystem
    from orbax.checkpoint._src.path import gcs_utils

    root = os.path.abspath(root)

    def to_local(path: str) -> str:
        path = os.fspath(path)
        for prefix in ("gs://", "gcs://"):
            if path.startswith(prefix):
                return os.path.join(root, path[len(prefix) :])
        return path

    class FakeGCS(LocalFileSystem):
        protocol = ("gs", "gcs")
        root_marker = ""

        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.pop("finalize_on_close", None)
            super().__init__(auto_mkdir=True)  # GCS has no folders to create first

        @classmethod
        def _strip_protocol(cls, path: Any) -> str:
            return LocalFileSystem._strip_protocol(to_local(os.fspath(path)))

        def glob(self, path: Any, **kwargs: Any) -> Any:  # epath prefixes "gs://" to each hit
            hits = super().glob(path, **kwargs)
            return [h[len(root) + 1 :] if h.startswith(root + "/") else h for h in hits]

    for protocol in ("gs", "gcs"):
        fsspec.register_implementation(protocol, FakeGCS, clobber=True)

    def kvstore(path: str) -> dict[str, Any]:
        return {"driver": "file", "path": to_local(path)}

    gcs_utils.get_kvstore_for_gcs = kvstore
    gcs_utils.is_hierarchical_namespace_enabled = lambda path: False


if __name__ == "__main__":
    install(sys.argv[1])
    script = sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
