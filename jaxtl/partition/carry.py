"""Carry optimizer state across a phase change (a new freezing plan means a new optimizer).

Parameters are identified across the two states by *readable path*. A state leaf's path is its
position in the optax state, e.g. ``3/inner_states/adamw/lr_scale=0.5/wd=0.01/inner_state/0/mu/
encoder/layers/4/attention/query/kernel``; the element after ``inner_states`` is the partition
label, which changes when a parameter's group changes (frozen -> trainable, a new LR scale), so it
is replaced by ``*`` before matching. What remains names the state kind (``.../0/mu``) and the
parameter, and is unique for per-parameter leaves.

- Per-parameter leaves (Adam's ``mu``/``nu``, L2-SP anchors, ...) whose key exists in the old
  state with the same shape and dtype are copied: moments of parameters trainable in both
  phases carry over. Newly thawed parameters keep the fresh (zero) moments of the new state.
- Per-group leaves (a label's Adam ``count``) are shared by several labels under the same key.
  A new label takes the largest value from the old labels that donated any of its parameters
  (the groups that carried moments keep their bias correction); a label whose parameters are
  all newly thawed keeps its fresh count of 0, so their first Adam steps are bias-corrected.
- Leaves outside any partition (the stage's global schedule step) are copied when present.

If the optimizer changes between phases (``adamw`` -> ``sgd``), state kinds differ and nothing but
the global step carries.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import jax
import numpy as np

from jaxtl import paths

_PARTITION_KEY = "inner_states"


def _split(path: tuple) -> tuple[str, str | None]:
    """(key with the partition label replaced by '*', the label or None)."""
    parts = [paths.key_str(k) for k in path]
    label = None
    for i in range(len(parts) - 1):
        if parts[i] == _PARTITION_KEY:
            label = parts[i + 1]
            parts[i + 1] = "*"
    return "/".join(parts), label


def _compatible(a: Any, b: Any) -> bool:
    return np.shape(a) == np.shape(b) and np.dtype(a.dtype) == np.dtype(b.dtype)


def carry_over(old_opt_state: Any, new_opt_state: Any) -> Any:
    """``new_opt_state`` with every leaf that also exists in ``old_opt_state`` copied over.

    See the module docstring for how leaves are matched. Works on concrete arrays (copies keep
    their sharding) outside jit; both states must come from ``phases_from_config`` (or any
    optax.partition-based chain with the same order of pieces).
    """
    old_leaves, _ = jax.tree_util.tree_flatten_with_path(old_opt_state)
    new_leaves, new_def = jax.tree_util.tree_flatten_with_path(new_opt_state)

    old_unique: dict[str, Any] = {}
    old_label_of: dict[str, str | None] = {}
    old_shared: dict[str, dict[str | None, Any]] = defaultdict(dict)
    counts: dict[str, int] = defaultdict(int)
    for p, leaf in old_leaves:
        key, label = _split(p)
        counts[key] += 1
        old_shared[key][label] = leaf
        old_unique[key] = leaf
        old_label_of[key] = label

    new_counts: dict[str, int] = defaultdict(int)
    for p, _ in new_leaves:
        new_counts[_split(p)[0]] += 1

    def is_shared(key: str) -> bool:
        return counts.get(key, 0) > 1 or new_counts[key] > 1

    # Pass 1: per-parameter (unique) leaves; remember which old labels fed each new label.
    out: list[Any] = []
    donors: dict[str | None, set[str | None]] = defaultdict(set)
    for p, leaf in new_leaves:
        key, label = _split(p)
        if not is_shared(key) and key in old_unique and _compatible(old_unique[key], leaf):
            out.append(old_unique[key])
            if label is not None:
                donors[label].add(old_label_of[key])
        else:
            out.append(leaf)

    # Pass 2: per-group (shared) leaves, from the labels that donated parameters.
    for i, (p, leaf) in enumerate(new_leaves):
        key, label = _split(p)
        if not is_shared(key) or key not in old_shared or not donors.get(label):
            continue
        cands = [
            old_shared[key][d]
            for d in sorted(donors[label], key=str)
            if d in old_shared[key] and _compatible(old_shared[key][d], leaf)
        ]
        if not cands:
            continue
        if np.issubdtype(np.dtype(leaf.dtype), np.integer) and np.ndim(leaf) == 0:
            out[i] = max(cands, key=lambda c: int(c))
        else:
            out[i] = cands[0]
    return jax.tree_util.tree_unflatten(new_def, out)
