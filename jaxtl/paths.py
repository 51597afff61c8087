"""Readable parameter paths shared by partitions, checkpoints and reports.

A parameter is named by the keys leading to it in the model's pure-dict state, joined by "/":
``encoder/layers/3/attention/query/kernel``, ``heads/sst2/classifier/kernel``. Every encoder keeps
its transformer (or LSTM) blocks under ``layers/<i>`` and its input embeddings under
``embeddings``, so rules such as "layers >= 4" or "embeddings" are written once for every family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax


def key_str(key: Any) -> str:
    """One path element as text (dict keys, list indices and jax key objects alike)."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(path: tuple) -> str:
    return "/".join(key_str(k) for k in path)


def flatten(tree: Any) -> dict[str, Any]:
    """{path string: leaf} in tree order."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_str(p): v for p, v in leaves}


def iter_paths(tree: Any) -> Iterator[str]:
    yield from flatten(tree).keys()


def map_with_path(fn: Callable[[str, Any], Any], tree: Any) -> Any:
    """tree_map whose function receives the readable path string as first argument."""
    return jax.tree_util.tree_map_with_path(lambda p, v: fn(path_str(p), v), tree)


def unflatten(flat: Mapping[str, Any], like: Any) -> Any:
    """Rebuild a tree shaped like ``like`` from a {path: leaf} mapping (every path required)."""
    return map_with_path(lambda p, _: flat[p], like)
