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


def map_param_values(tree: Any, params: Any, values: Any, default: Any) -> Any:
    """For a tree that mirrors ``params`` somewhere inside (optimizer state, EMA ...), give each
    leaf the entry of ``values`` (a tree shaped like params) of the parameter it mirrors.

    A leaf mirrors a parameter when its path ends with that parameter's path and it has the
    parameter's shape; other leaves (step counters, scalars, empty states) get ``default``.
    """
    flat_params = flatten(params)
    flat_values = flatten(values)

    def pick(path: str, x: Any) -> Any:
        shape = tuple(getattr(x, "shape", ()))
        parts = path.split("/")
        for i in range(len(parts)):
            suffix = "/".join(parts[i:])
            if suffix in flat_params and tuple(flat_params[suffix].shape) == shape:
                return flat_values[suffix]
        return default

    return map_with_path(pick, tree)
