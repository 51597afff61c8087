"""The config face of jaxtl.partition: ``optim`` config -> phases, each with a ready optimizer.

The trainer calls only this module (and :func:`jaxtl.partition.carry_over`)::

    phases = phases_from_config(cfg.optim, params, num_layers=6, total_steps=1000)
    for ph in phases:                      # ph.start_step .. ph.start_step + ph.steps
        new_state = ph.tx.init(params)     # one recompile per phase
        opt_state = new_state if first else carry_over(opt_state, new_state)
        write_json(ph.plan.to_json()); log(ph.plan.summary())
        log(ph.schedule(step - ph.start_step))  # or ph.stage_schedule(step)

``ph.tx.update(grads, opt_state, params)`` needs ``params`` (weight decay, L2-SP).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import optax

from jaxtl.partition.optimizer import OPTIMIZERS, build_tx
from jaxtl.partition.rules import Plan, Rule, num_blocks, parse_rules, resolve
from jaxtl.partition.schedules import SCHEDULES, make_schedule, shifted
from jaxtl.partition.strategies import STRATEGIES, strategy_phases


def default_optim_config() -> ml_collections.ConfigDict:
    """Every ``optim`` key, with its default. Keys:

    strategy: which weights train, and when: finetune | feature_extraction | top_k |
      freeze_all_but_last | chain_thaw | gradual_unfreezing | lora | adapters
      (see jaxtl.partition.strategies).
    top_k: number of top encoder blocks that train with strategy=top_k.
    lr: peak learning rate (the top block and new params get exactly this; see discriminative).
    schedule: constant | linear | cosine | stlr | range_test (jaxtl.partition.schedules), over
      all phases.
    warmup: linear warm-up, a fraction of the steps if < 1, else a number of steps (not stlr).
    stlr_cut_frac, stlr_ratio: ULMFiT slanted triangular schedule parameters.
    range_start: where schedule=range_test starts (it ends at lr): the LR range test's sweep.
    restart_schedule: False = one schedule over the stage's total steps (ULMFiT); True = the
      schedule restarts at each phase over that phase's steps.
    discriminative: per-layer LR factor d: block l gets lr * d**(L-1-l), embeddings lr * d**L,
      new params lr (ULMFiT uses 1/2.6); 1.0 = off.
    optimizer: adamw | adam | sgd | momentum | adafactor | lion | lamb.
    weight_decay: decoupled decay for kernels/embeddings (not biases, LayerNorms).
    b1, b2, eps: optimizer moments (b1 is the momentum of 'momentum').
    clip_norm: global gradient-norm clipping over trainable params; 0 = off.
    l2sp: L2-SP alpha (pull pretrained weights toward their start); 0 = off. When on, the
      default weight decay of pretrained weights is 0 (L2-SP replaces it).
    l2sp_beta: L2-SP beta, plain L2 on new params (only with l2sp or alone); 0 = off.
    rules: user rules ((regex, settings dict), ...) placed before the strategy's (first match
      wins). Settings: frozen, lr_scale, weight_decay, optimizer, optional, name.
    phase_steps: explicit step budget per phase (must sum to the stage's steps); () = equal
      split, the remainder to the last phase.
    lora_rank, lora_alpha, lora_mlp: LoRA rank, scale numerator, and whether MLP kernels get it.
    adapter_size: bottleneck width of Houlsby adapters.
    """
    c = ml_collections.ConfigDict()
    c.strategy = "finetune"
    c.top_k = 1
    c.lr = 5e-5
    c.schedule = "linear"
    c.warmup = 0.1
    c.stlr_cut_frac = 0.1
    c.stlr_ratio = 32.0
    c.range_start = 1e-7
    c.restart_schedule = False
    c.discriminative = 1.0
    c.optimizer = "adamw"
    c.weight_decay = 0.01
    c.b1 = 0.9
    c.b2 = 0.999
    c.eps = 1e-8
    c.clip_norm = 1.0
    c.l2sp = 0.0
    c.l2sp_beta = 0.0
    c.rules = ()
    c.phase_steps = ()
    c.lora_rank = 8
    c.lora_alpha = 16.0
    c.lora_mlp = False
    c.adapter_size = 64
    return c


OPTIM_KEYS = tuple(default_optim_config().keys())


@dataclasses.dataclass
class Phase:
    """One phase of a stage: a freezing plan, its optimizer and its share of the steps."""

    name: str
    steps: int
    start_step: int
    plan: Plan
    tx: optax.GradientTransformation
    trainable_mask: Any  # tree of bools shaped like params
    # Step *within this phase* (0 .. steps) -> the stage LR at that point (a group's LR is this
    # times its lr_scale). What the trainer logs.
    schedule: Callable[[Any], Any]
    # Step within the stage (0 .. total_steps) -> LR; what the optimizer follows internally.
    stage_schedule: Callable[[Any], Any]
    rules: list[Rule]

    @property
    def end_step(self) -> int:
        return self.start_step + self.steps

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "start_step": self.start_step,
            "steps": self.steps,
            **self.plan.to_json(),
        }


def _get(cfg: Any, key: str) -> Any:
    defaults = default_optim_config()
    return cfg[key] if key in cfg else defaults[key]


def check(cfg: Any) -> None:
    """Unknown optim keys and unknown strategy / schedule / optimizer values fail, naming them."""
    keys = list(cfg.keys()) if hasattr(cfg, "keys") else []
    unknown = sorted(set(keys) - set(OPTIM_KEYS))
    if unknown:
        raise ValueError(f"optim: unknown key(s) {unknown}; allowed: {list(OPTIM_KEYS)}")
    for key, allowed in (
        ("strategy", STRATEGIES),
        ("schedule", SCHEDULES),
        ("optimizer", OPTIMIZERS),
    ):
        if _get(cfg, key) not in allowed:
            raise ValueError(
                f"optim.{key}: unknown value {_get(cfg, key)!r}; allowed: {list(allowed)}"
            )


def _rule_items(raw: Any) -> list[Any]:
    """Config rules may arrive as ConfigDicts / lists from the command line."""
    items: list[Any] = []
    for item in raw or ():
        if isinstance(item, Rule):
            items.append(item)
            continue
        pattern, settings = item
        if hasattr(settings, "to_dict"):
            settings = settings.to_dict()
        items.append((pattern, dict(settings or {})))
    return items


def _budgets(n: int, total_steps: int, explicit: Any, strategy: str) -> list[int]:
    if explicit:
        steps = [int(s) for s in explicit]
        if len(steps) != n:
            raise ValueError(
                f"optim.phase_steps has {len(steps)} entries but strategy {strategy!r} has {n} "
                "phases"
            )
        if sum(steps) != total_steps or min(steps) < 1:
            raise ValueError(
                f"optim.phase_steps {steps} must be >= 1 each and sum to the stage's "
                f"total_steps={total_steps} (sum is {sum(steps)})"
            )
        return steps
    if total_steps < n:
        raise ValueError(
            f"strategy {strategy!r} has {n} phases but the stage has only {total_steps} steps; "
            "raise the steps or set optim.phase_steps"
        )
    base = total_steps // n
    return [base] * (n - 1) + [total_steps - base * (n - 1)]


def phases_from_config(
    optim_cfg: Mapping[str, Any] | ml_collections.ConfigDict,
    params: Any,
    *,
    total_steps: int,
    num_layers: int | None = None,
) -> list[Phase]:
    """Expand ``optim_cfg`` (see :func:`default_optim_config`) into the stage's phases.

    ``params``: the pure-dict params (arrays or ShapeDtypeStructs) as the model starts the stage.
    ``num_layers``: the layer units layer-wise strategies count; by default the distinct
    encoder blocks in ``params`` (:func:`~jaxtl.partition.rules.num_blocks`).
    Phase budgets sum to ``total_steps``; ``Phase.tx`` already includes the schedule, per-group
    LR scales, weight decay, clipping, L2-SP and freezing.
    """
    check(optim_cfg)
    g = lambda k: _get(optim_cfg, k)  # noqa: E731
    l2sp_alpha, l2sp_beta = float(g("l2sp")), float(g("l2sp_beta"))
    specs = strategy_phases(
        g("strategy"),
        num_blocks(params) if num_layers is None else num_layers,
        top_k=int(g("top_k")),
        discriminative=float(g("discriminative")),
        encoder_weight_decay=0.0 if l2sp_alpha else None,
    )
    user_rules = parse_rules(_rule_items(g("rules")), where="optim.rules")
    budgets = _budgets(len(specs), int(total_steps), g("phase_steps"), g("strategy"))

    def schedule_for(steps: int, start: int) -> Callable[[Any], Any]:
        sched = make_schedule(
            g("schedule"),
            lr=float(g("lr")),
            total_steps=steps,
            warmup=float(g("warmup")),
            stlr_cut_frac=float(g("stlr_cut_frac")),
            stlr_ratio=float(g("stlr_ratio")),
            range_start=float(g("range_start")),
        )
        return shifted(sched, start) if start else sched

    whole = schedule_for(int(total_steps), 0)
    plans = []
    for spec in specs:
        rules = user_rules + spec.rules
        plans.append(
            resolve(
                rules,
                params,
                lr=float(g("lr")),
                weight_decay=float(g("weight_decay")),
                optimizer=g("optimizer"),
            )
        )
    # L2-SP anchors only the pretrained weights that train in some phase (the others never move).
    ever_trained = {p for plan in plans for p in plan.trainable_paths if p.startswith("encoder/")}
    anchored = ever_trained.__contains__ if l2sp_alpha else (lambda p: False)

    phases, start = [], 0
    for spec, plan, steps in zip(specs, plans, budgets):
        sched = schedule_for(steps, start) if g("restart_schedule") else whole
        tx = build_tx(
            plan,
            schedule=sched,
            start_step=start,
            b1=float(g("b1")),
            b2=float(g("b2")),
            eps=float(g("eps")),
            clip_norm=float(g("clip_norm")) or None,
            l2sp_alpha=l2sp_alpha,
            l2sp_beta=l2sp_beta,
            l2sp_anchored=anchored,
        )
        phases.append(
            Phase(
                name=spec.name,
                steps=steps,
                start_step=start,
                plan=plan,
                tx=tx,
                trainable_mask=plan.trainable_mask(),
                schedule=shifted(sched, -start) if start else sched,
                stage_schedule=sched,
                rules=user_rules + spec.rules,
            )
        )
        start += steps
    return phases
