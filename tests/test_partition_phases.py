"""Multi-phase strategies, discriminative LRs and phase budgets, checked through Plan.to_json()."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from test_partition_optimizer import cfg_for
from test_partition_toy import toy_batch, toy_loss, toy_params

from jaxtl import paths
from jaxtl.partition import phases_from_config
from jaxtl.partition.rules import layer_of

L = 3


def trainable_units(phase) -> set:
    """Units with trainable params in a phase, read from the JSON plan."""
    rows = phase.to_json()["params"]
    units = {layer_of(r["path"], L) for r in rows if r["trainable"]}
    return {"new" if u is None else u for u in units}


def test_chain_thaw_trains_new_then_each_unit_bottom_up_then_all():
    params = toy_params(L, final_norm=True)
    phases = phases_from_config(cfg_for("chain_thaw"), params, num_layers=L, total_steps=63)
    assert [trainable_units(p) for p in phases] == [
        {"new"},
        {-1},
        {0},
        {1},
        {2},
        {"new", -1, 0, 1, 2},
    ]
    assert [p.name for p in phases][0] == "chain_thaw/new"
    assert sum(p.steps for p in phases) == 63
    assert [p.start_step for p in phases] == [0, 10, 20, 30, 40, 50]
    assert phases[-1].steps == 13  # remainder goes to the last phase
    # The final norm trains with the top layer.
    final = {r["path"]: r["trainable"] for r in phases[4].to_json()["params"]}
    assert final["encoder/final_norm/scale"] and not final["encoder/layers/1/norm/scale"]


def test_gradual_unfreezing_adds_one_unit_per_phase_from_the_top():
    params = toy_params(L)
    phases = phases_from_config(cfg_for("gradual_unfreezing"), params, num_layers=L, total_steps=40)
    assert [trainable_units(p) for p in phases] == [
        {"new", 2},
        {"new", 2, 1},
        {"new", 2, 1, 0},
        {"new", 2, 1, 0, -1},
    ]
    counts = [p.plan.trainable_params for p in phases]
    assert counts == sorted(counts) and counts[-1] == sum(
        x.size for x in paths.flatten(params).values()
    )
    assert sum(p.steps for p in phases) == 40


def test_explicit_phase_steps_and_budget_errors():
    params = toy_params(L)
    cfg = cfg_for("gradual_unfreezing", phase_steps=(1, 2, 3, 14))
    phases = phases_from_config(cfg, params, num_layers=L, total_steps=20)
    assert [(p.start_step, p.steps) for p in phases] == [(0, 1), (1, 2), (3, 3), (6, 14)]
    with pytest.raises(ValueError, match="phase_steps.*sum"):
        phases_from_config(cfg, params, num_layers=L, total_steps=21)
    with pytest.raises(ValueError, match="phase_steps has 2 entries"):
        phases_from_config(
            cfg_for("chain_thaw", phase_steps=(5, 5)), params, num_layers=L, total_steps=10
        )
    with pytest.raises(ValueError, match="6 phases"):
        phases_from_config(cfg_for("chain_thaw"), params, num_layers=L, total_steps=5)


@pytest.mark.parametrize("strategy", ["finetune", "top_k"])
def test_discriminative_lr_reaches_each_layer(strategy):
    """With SGD, update = -lr_l * g: measure lr_l per parameter and compare to lr * d^(L-1-l)."""
    d, lr = 1 / 2.6, 0.1
    params = toy_params(L, final_norm=True)
    cfg = cfg_for(strategy, optimizer="sgd", weight_decay=0.0, lr=lr, discriminative=d, top_k=2)
    cfg.clip_norm = 0.0
    (phase,) = phases_from_config(cfg, params, num_layers=L, total_steps=5)
    grad_tree = jax.grad(toy_loss)(params, *toy_batch())
    # The updates themselves: (w + u) - w would lose float32 digits to cancellation.
    updates, _ = phase.tx.update(grad_tree, phase.tx.init(params), params)
    updates, grads = paths.flatten(updates), paths.flatten(grad_tree)
    for p, g in grads.items():
        u = layer_of(p, L)
        if strategy == "top_k" and u is not None and u < L - 2:
            expect = 0.0
        else:
            expect = lr if u is None else lr * d ** (L - 1 - u)
        update = np.asarray(updates[p], np.float64)
        np.testing.assert_allclose(
            update, -expect * np.asarray(g, np.float64), rtol=1e-6, atol=1e-9
        )
        row = next(r for r in phase.to_json()["params"] if r["path"] == p)
        np.testing.assert_allclose(row["lr"], expect, rtol=1e-12)


def test_user_rules_come_first_in_every_phase():
    params = toy_params(L)
    cfg = cfg_for("gradual_unfreezing", rules=((r"^encoder/embeddings", {"frozen": True}),))
    phases = phases_from_config(cfg, params, num_layers=L, total_steps=8)
    assert -1 not in trainable_units(phases[-1])
    assert trainable_units(phases[-1]) == {"new", 0, 1, 2}


def test_l2sp_switches_off_default_decay_of_pretrained_weights():
    params = toy_params(L)
    (phase,) = phases_from_config(
        cfg_for("finetune", l2sp=0.1), params, num_layers=L, total_steps=4
    )
    rows = {r["path"]: r for r in phase.to_json()["params"]}
    assert rows["encoder/layers/0/mlp/output/kernel"]["weight_decay"] == 0.0
    assert rows["heads/cls/kernel"]["weight_decay"] == 0.01


def test_phase_schedule_is_phase_relative_and_follows_the_stage():
    params = toy_params(L)
    cfg = cfg_for("gradual_unfreezing", schedule="linear", warmup=0.0, lr=1.0)
    phases = phases_from_config(cfg, params, num_layers=L, total_steps=40)
    for ph in phases:
        assert float(ph.schedule(0)) == pytest.approx(1.0 - ph.start_step / 40)
        assert float(ph.schedule(3)) == pytest.approx(float(ph.stage_schedule(ph.start_step + 3)))
    # The optimizer itself counts stage steps from the phase's start (its last state leaf).
    last = phases[-1]
    assert int(jax.tree.leaves(last.tx.init(params))[-1]) == last.start_step == 30
