"""Path rules: which group (frozen? LR multiplier? weight decay? optimizer?) each parameter joins.

Rules are data: an ordered list of ``(regex, settings)`` pairs. Each parameter's readable path
(``encoder/layers/3/attention/query/kernel``, see :mod:`jaxtl.paths`) is tested against the
rules in order with :func:`re.search` and joins the group of the *first* rule that matches.
``re.search`` (not ``fullmatch``) so that a short rule such as ``"attention/query"`` works
anywhere; the helpers below anchor themselves with ``^`` where position matters.

Two mistakes are errors rather than silent surprises: a parameter that no rule matches (the error
lists the uncovered paths), and a rule whose regex matches no parameter at all (the error names
the regex; mark a rule ``optional`` when it is expected to match nothing on some models). A rule
whose parameters were all claimed by earlier rules is not an error (user rules placed before a
strategy's may shadow some of them); ``Plan.to_json()["rules"]`` shows what each rule won.

Layer units, for every encoder family: the input embeddings (``encoder/embeddings...``, which also
covers projections such as ELECTRA's ``encoder/embeddings_project``) sit below layer 0; blocks are
``encoder/layers/<i>/``; any *other* encoder parameter (GPT-2's ``encoder/final_norm``) belongs
with the top layer, because it sits on the top layer's output. Everything outside ``encoder/``
(``representation/``, ``heads/``) is "new".

Example::

    >>> rules = parse_rules([(EMBEDDINGS, {"frozen": True}), (layers_from(4), {"lr_scale": 0.5}),
    ...                      (".*", {})])
    >>> plan = resolve(rules, params, lr=1e-3, weight_decay=0.01)  # doctest: +SKIP
    >>> print(plan.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jaxtl import paths

# ---------------------------------------------------------------------------------------------
# Regex helpers: rules are easier to read as `layers_from(4)` than as a regex.

ENCODER = r"^encoder/"
EMBEDDINGS = r"^encoder/embeddings"  # also embeddings_project and friends
HEADS = r"^heads/"
REPRESENTATION = r"^representation/"
NEW = r"^(?!encoder/)"  # every parameter that did not come with the pretrained encoder
ALL = r".*"
# Encoder parameters that are neither embeddings nor blocks (final norms): they go with the top.
ENCODER_OTHER = r"^encoder/(?!layers/|embeddings)"
LAYER_INDEX = re.compile(r"^encoder/layers/(\d+)/")


def num_blocks(params: Any) -> int:
    """The layer units strategies count: the distinct encoder blocks ``encoder/layers/<i>/`` in
    ``params`` (a tree or a flat path dict) -- the encoder's layers, or fewer where layers share
    blocks (ALBERT's twelve layers run one)."""
    found = [LAYER_INDEX.search(p) for p in paths.flatten(params)]
    return 1 + max((int(m.group(1)) for m in found if m), default=-1)


def layer(i: int) -> str:
    """Regex for every parameter of encoder block ``i``."""
    return rf"^encoder/layers/{int(i)}/"


def layers_from(i: int) -> str:
    """Regex for encoder blocks with index >= ``i`` (any number of digits)."""
    i = int(i)
    if i < 0:
        raise ValueError(f"layers_from: layer index must be >= 0, got {i}")
    width = len(str(i))
    # Indices with the same number of digits that are >= i, or any index with more digits
    # (indices have no leading zeros).
    same = f"[{i}-9]" if i < 10 else "|".join(str(j) for j in range(i, 10**width))
    return rf"^encoder/layers/(?:{same}|[1-9]\d{{{width},}})/"


def layers_between(lo: int, hi: int) -> str:
    """Regex for encoder blocks lo <= i < hi."""
    idx = "|".join(str(j) for j in range(int(lo), int(hi)))
    if not idx:
        raise ValueError(f"layers_between: empty range [{lo}, {hi})")
    return rf"^encoder/layers/(?:{idx})/"


def top_unit(num_layers: int) -> str:
    """Regex for the top layer *and* the encoder's other params (final norms) that sit on it."""
    return rf"^encoder/(?:layers/{num_layers - 1}/|(?!layers/|embeddings))"


def layer_of(path: str, num_layers: int) -> int | None:
    """The layer unit of a parameter: -1 = embeddings, 0..L-1 = blocks, None = new (not encoder).

    Other encoder parameters (final norms) count as the top layer, ``num_layers - 1``.
    """
    if not path.startswith("encoder/"):
        return None
    if re.search(EMBEDDINGS, path):
        return -1
    m = LAYER_INDEX.search(path)
    return int(m.group(1)) if m else num_layers - 1


# ---------------------------------------------------------------------------------------------
# Groups and rules.

GROUP_KEYS = ("frozen", "lr_scale", "weight_decay", "optimizer")
RULE_KEYS = (*GROUP_KEYS, "optional", "name")


@dataclasses.dataclass(frozen=True)
class Group:
    """How the parameters of one rule train.

    frozen: no update and no optimizer state at all.
    lr_scale: multiplier on the stage's (scheduled) learning rate.
    weight_decay: None = the stage default, applied to kernels/embeddings (ndim >= 2) and not to
      biases or LayerNorm scales/biases (ndim < 2); a float = that rate on *every* parameter of the
      group, whatever its shape (0.0 turns decay off for the group).
    optimizer: None = the stage optimizer; else a name such as "sgd" (see jaxtl.partition.optimizer).
    """

    frozen: bool = False
    lr_scale: float = 1.0
    weight_decay: float | None = None
    optimizer: str | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str
    group: Group = Group()
    optional: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise ValueError(f"rule {self.label!r}: invalid regex {self.pattern!r}: {e}") from e
        if not math.isfinite(self.group.lr_scale) or self.group.lr_scale < 0:
            raise ValueError(
                f"rule {self.label!r}: lr_scale must be >= 0, got {self.group.lr_scale}"
            )

    @property
    def label(self) -> str:
        return self.name or self.pattern


def rule(pattern: str, *, optional: bool = False, name: str | None = None, **settings: Any) -> Rule:
    """Shorthand: ``rule(HEADS, lr_scale=10.0)``."""
    return parse_rule((pattern, {**settings, "optional": optional, "name": name}), where="rule()")


def parse_rule(item: Any, *, where: str = "rules") -> Rule:
    """A Rule from a Rule, or a ``(regex, settings dict)`` pair as written in configs."""
    if isinstance(item, Rule):
        return item
    if not (isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2):
        raise ValueError(f"{where}: each rule must be a (regex, settings dict) pair, got {item!r}")
    pattern, settings = item
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: rule regex must be a string, got {pattern!r}")
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(RULE_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: rule {pattern!r} has unknown setting(s) {unknown}; allowed: {list(RULE_KEYS)}"
        )
    wd = settings.get("weight_decay")
    group = Group(
        frozen=bool(settings.get("frozen", False)),
        lr_scale=float(settings.get("lr_scale", 1.0)),
        weight_decay=None if wd is None else float(wd),
        optimizer=settings.get("optimizer"),
    )
    return Rule(pattern, group, bool(settings.get("optional", False)), settings.get("name"))


def parse_rules(items: Iterable[Any], *, where: str = "rules") -> list[Rule]:
    return [parse_rule(x, where=f"{where}[{i}]") for i, x in enumerate(items)]


# ---------------------------------------------------------------------------------------------
# Resolution: rules x params -> Plan.


@dataclasses.dataclass(frozen=True)
class ParamEntry:
    path: str
    shape: tuple[int, ...]
    size: int
    rule_index: int
    rule: Rule
    weight_decay: float  # effective rate for this parameter (0.0 when frozen or not decayed)
    optimizer: str

    @property
    def frozen(self) -> bool:
        return self.rule.group.frozen

    @property
    def trainable(self) -> bool:
        return not self.rule.group.frozen

    @property
    def lr_scale(self) -> float:
        return 0.0 if self.frozen else self.rule.group.lr_scale

    @property
    def label(self) -> str:
        """The optax.partition label: params sharing optimizer, LR scale and decay share a state."""
        if self.frozen:
            return "frozen"
        return f"{self.optimizer}/lr_scale={self.lr_scale:g}/wd={self.weight_decay:g}"


def _shape(leaf: Any) -> tuple[int, ...]:
    return tuple(getattr(leaf, "shape", np.shape(leaf)))


@dataclasses.dataclass
class Plan:
    """The resolved table: for every parameter, its rule, group, LR (at peak), decay and size."""

    rules: list[Rule]
    entries: dict[str, ParamEntry]  # by path, in tree order
    lr: float  # peak learning rate of the stage; a param's peak LR is lr * lr_scale
    like: Any = dataclasses.field(repr=False, default=None)  # the params tree (for tree outputs)
    hits: list[int] = dataclasses.field(default_factory=list)  # tensors won by each rule

    # -- trees shaped like the params ---------------------------------------------------------
    def map(self, fn: Callable[[ParamEntry], Any], tree: Any | None = None) -> Any:
        """``fn(entry)`` for every parameter, shaped like ``tree`` (default: the planned params).

        Any tree whose readable paths are the planned ones works (pure dicts, ShapeDtypeStructs,
        optax updates), so the optimizer can label whatever tree it is handed.
        """
        return paths.map_with_path(
            lambda p, _: fn(self.entry(p)), self.like if tree is None else tree
        )

    def entry(self, path: str) -> ParamEntry:
        try:
            return self.entries[path]
        except KeyError:
            raise KeyError(
                f"parameter {path!r} is not in this plan (plan covers {len(self.entries)} params)"
            ) from None

    def labels(self, tree: Any | None = None) -> Any:
        """Tree of optax.partition labels."""
        return self.map(lambda e: e.label, tree)

    def trainable_mask(self, tree: Any | None = None) -> Any:
        """Tree of bools: True where the parameter trains."""
        return self.map(lambda e: e.trainable, tree)

    # -- counts -------------------------------------------------------------------------------
    @property
    def trainable_params(self) -> int:
        return sum(e.size for e in self.entries.values() if e.trainable)

    @property
    def frozen_params(self) -> int:
        return sum(e.size for e in self.entries.values() if e.frozen)

    @property
    def trainable_paths(self) -> list[str]:
        return [p for p, e in self.entries.items() if e.trainable]

    # -- reports ------------------------------------------------------------------------------
    def groups(self) -> list[dict[str, Any]]:
        """One row per rule that matched something: counts, LR at peak, decay, optimizer."""
        rows: dict[int, dict[str, Any]] = {}
        for e in self.entries.values():
            g = e.rule.group
            row = rows.setdefault(
                e.rule_index,
                {
                    "rule": e.rule_index,
                    "regex": e.rule.pattern,
                    "name": e.rule.name,
                    "frozen": g.frozen,
                    "lr_scale": e.lr_scale,
                    "lr": self.lr * e.lr_scale,
                    "weight_decay": g.weight_decay,  # None = default (see Group)
                    "optimizer": None if g.frozen else e.optimizer,
                    "num_tensors": 0,
                    "num_params": 0,
                },
            )
            row["num_tensors"] += 1
            row["num_params"] += e.size
        return [rows[i] for i in sorted(rows)]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the trainer writes it to plan.json per stage/phase)."""
        return {
            "lr": self.lr,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "total_params": self.trainable_params + self.frozen_params,
            "rules": [
                {
                    "rule": i,
                    "regex": r.pattern,
                    "name": r.name,
                    "optional": r.optional,
                    "matched_tensors": self.hits[i] if self.hits else None,
                }
                for i, r in enumerate(self.rules)
            ],
            "groups": self.groups(),
            "params": [
                {
                    "path": e.path,
                    "rule": e.rule_index,
                    "regex": e.rule.pattern,
                    "trainable": e.trainable,
                    "lr": self.lr * e.lr_scale,
                    "weight_decay": e.weight_decay,
                    "optimizer": None if e.frozen else e.optimizer,
                    "shape": list(e.shape),
                    "size": e.size,
                }
                for e in self.entries.values()
            ],
        }

    def summary(self) -> str:
        """A compact per-group log summary."""
        total = self.trainable_params + self.frozen_params
        pct = 100.0 * self.trainable_params / max(total, 1)
        lines = [
            f"trainable {self.trainable_params:,} / {total:,} params ({pct:.2f}%), "
            f"frozen {self.frozen_params:,}"
        ]
        for g in self.groups():
            what = "frozen" if g["frozen"] else f"lr {g['lr']:.3g} {g['optimizer']}"
            wd = "default" if g["weight_decay"] is None else f"{g['weight_decay']:g}"
            lines.append(
                f"  [{g['rule']}] {g['name'] or g['regex']}: {g['num_params']:,} params in "
                f"{g['num_tensors']} tensors, {what}" + ("" if g["frozen"] else f", wd {wd}")
            )
        return "\n".join(lines)


def resolve(
    rules: Sequence[Rule | tuple],
    params: Any,
    *,
    lr: float = 1.0,
    weight_decay: float = 0.0,
    optimizer: str = "adamw",
) -> Plan:
    """Match every parameter of ``params`` (pure dict, arrays or ShapeDtypeStructs) to a rule.

    ``weight_decay`` and ``optimizer`` are the stage defaults for groups that leave them None.
    """
    rules = parse_rules(rules)
    compiled = [re.compile(r.pattern) for r in rules]
    flat = paths.flatten(params)
    entries: dict[str, ParamEntry] = {}
    uncovered: list[str] = []
    hits = [0] * len(rules)
    for path, leaf in flat.items():
        idx = next((i for i, rx in enumerate(compiled) if rx.search(path)), None)
        if idx is None:
            uncovered.append(path)
            continue
        hits[idx] += 1
        r = rules[idx]
        shape = _shape(leaf)
        if r.group.frozen:
            wd = 0.0
        elif r.group.weight_decay is None:
            wd = float(weight_decay) if len(shape) >= 2 else 0.0
        else:
            wd = float(r.group.weight_decay)
        entries[path] = ParamEntry(
            path=path,
            shape=shape,
            size=int(np.prod(shape, dtype=np.int64)),
            rule_index=idx,
            rule=r,
            weight_decay=wd,
            optimizer=r.group.optimizer or optimizer,
        )
    if uncovered:
        shown = "\n  ".join(uncovered[:50]) + ("\n  ..." if len(uncovered) > 50 else "")
        raise ValueError(
            f"{len(uncovered)} parameter(s) matched no rule (add a rule or a catch-all '.*'):\n  "
            + shown
        )
    # A regex that matches no parameter at all is a typo (or the wrong model). A rule whose
    # matches were all taken by earlier rules (user rules shadowing a strategy's) is fine.
    unused = [
        f"[{i}] {r.pattern!r}" + (f" ({r.name})" if r.name else "")
        for i, r in enumerate(rules)
        if hits[i] == 0 and not r.optional and not any(compiled[i].search(p) for p in flat)
    ]
    if unused:
        raise ValueError(
            "rule(s) matched no parameter (fix the regex or mark the rule optional): "
            + ", ".join(unused)
        )
    return Plan(rules=list(rules), entries=entries, lr=float(lr), like=params, hits=hits)
