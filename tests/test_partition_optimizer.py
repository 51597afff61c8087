"""Rules -> plan -> optax.partition: frozen params never move and cost no optimizer state."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_partition_toy import toy_batch, toy_loss, toy_params

from jaxtl import paths
from jaxtl.partition import (
    EMBEDDINGS,
    HEADS,
    build_tx,
    default_optim_config,
    layers_from,
    make_schedule,
    phases_from_config,
    resolve,
)

L = 3
# Per-label Adam `count` (int32) and the global schedule step: a few scalars, well under 1 KB.
BOOKKEEPING_BYTES = 1024


def state_bytes(state) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))


def run_steps(tx, params, n=3):
    batch = toy_batch()

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(toy_loss)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = jax.jit(tx.init)(params)
    for _ in range(n):
        params, opt_state = step(params, opt_state)
    return params, opt_state


def cfg_for(strategy_name, **kw):
    c = default_optim_config()
    c.strategy = strategy_name
    c.lr = 1e-2
    c.schedule = "constant"
    c.warmup = 0.0
    c.update(kw)
    return c


EXPECTED_TRAINABLE = {
    # unit of each param: -1 embeddings, 0..L-1 blocks, None new
    "finetune": lambda u: True,
    "feature_extraction": lambda u: u is None,
    "top_k": lambda u: u is None or u >= L - 2,  # top_k = 2 below
    "freeze_all_but_last": lambda u: u is None or u == L - 1,
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED_TRAINABLE))
@pytest.mark.parametrize("final_norm", [False, True])
def test_strategy_freezes_exactly_and_allocates_no_state(strategy, final_norm):
    from jaxtl.partition.rules import layer_of

    params = toy_params(L, final_norm=final_norm)
    (phase,) = phases_from_config(
        cfg_for(strategy, top_k=2, clip_norm=1.0), params, num_layers=L, total_steps=10
    )
    expect = {p: EXPECTED_TRAINABLE[strategy](layer_of(p, L)) for p in paths.iter_paths(params)}
    assert paths.flatten(phase.trainable_mask) == expect

    new_params, opt_state = run_steps(phase.tx, params)
    before, after = paths.flatten(params), paths.flatten(new_params)
    for p, trains in expect.items():
        if trains:
            assert not np.array_equal(before[p], after[p]), f"{p} should have trained"
        else:
            assert np.array_equal(before[p], after[p]), f"{p} is frozen but changed"

    n_train = sum(before[p].size for p, t in expect.items() if t)
    assert phase.plan.trainable_params == n_train
    adam = 2 * 4 * n_train
    assert adam <= state_bytes(opt_state) <= adam + BOOKKEEPING_BYTES


def test_every_param_matched_exactly_one_rule_and_plan_json():
    params = toy_params(L, final_norm=True)
    cfg = cfg_for("top_k", top_k=1, rules=((HEADS, {"lr_scale": 10.0, "name": "heads"}),))
    (phase,) = phases_from_config(cfg, params, num_layers=L, total_steps=10)
    doc = json.loads(json.dumps(phase.to_json()))  # JSON-serialisable
    rows = {r["path"]: r for r in doc["params"]}
    assert list(rows) == list(paths.iter_paths(params))  # one row per param, none twice
    assert rows["heads/cls/kernel"]["rule"] == 0 and rows["heads/cls/kernel"]["lr"] == 0.1
    assert rows["encoder/final_norm/scale"]["trainable"]  # goes with the top layer
    assert not rows["encoder/layers/1/norm/bias"]["trainable"]
    assert rows["encoder/layers/2/norm/bias"]["weight_decay"] == 0.0  # 1-D: no decay
    assert rows["encoder/layers/2/mlp/output/kernel"]["weight_decay"] == 0.01
    assert doc["trainable_params"] + doc["frozen_params"] == doc["total_params"]
    assert sum(g["num_params"] for g in doc["groups"]) == doc["total_params"]
    assert doc["trainable_params"] == sum(r["size"] for r in rows.values() if r["trainable"])
    assert "heads" in phase.plan.summary()


def test_uncovered_path_is_an_error_naming_it():
    params = toy_params(L)
    with pytest.raises(ValueError, match="representation/weights") as e:
        resolve([(r"^encoder/", {}), (HEADS, {})], params)
    assert "heads/cls" not in str(e.value)
    # A wrong layer count leaves the extra block uncovered.
    with pytest.raises(ValueError, match="encoder/layers/2/"):
        phases_from_config(cfg_for("finetune"), params, num_layers=2, total_steps=4)


def test_regex_matching_nothing_is_an_error_unless_optional():
    params = toy_params(L)
    with pytest.raises(ValueError, match=r"\^decoder/"):
        resolve([(r"^decoder/", {"frozen": True}), (".*", {})], params)
    plan = resolve([(r"^decoder/", {"frozen": True, "optional": True}), (".*", {})], params)
    assert plan.frozen_params == 0
    # Too many layers: the rule for the missing block names itself.
    with pytest.raises(ValueError, match="layer_3"):
        phases_from_config(cfg_for("finetune"), params, num_layers=4, total_steps=4)


def test_bad_rule_settings_and_names_are_clear_errors():
    params = toy_params(L)
    with pytest.raises(ValueError, match="lr_scal"):
        resolve([(".*", {"lr_scal": 2.0})], params)
    for key, bad in (("strategy", "freeze"), ("schedule", "step"), ("optimizer", "adamx")):
        with pytest.raises(ValueError, match=rf"optim\.{key}.*allowed"):
            phases_from_config(
                cfg_for("finetune", **{key: bad}), params, num_layers=L, total_steps=4
            )
    with pytest.raises(ValueError, match="top_k"):
        phases_from_config(cfg_for("top_k", top_k=L + 1), params, num_layers=L, total_steps=4)
    with pytest.raises(ValueError, match="unknown key"):
        phases_from_config(
            {"strategy": "finetune", "lrate": 1.0}, params, num_layers=L, total_steps=4
        )


def test_frozen_weight_gradients_are_not_computed():
    """XLA drops the weight-gradient work of frozen params: fewer flops than full fine-tuning."""
    params = toy_params(L)
    flops, batch = {}, toy_batch(batch=32, length=64)
    for strategy in ("finetune", "feature_extraction"):
        (phase,) = phases_from_config(cfg_for(strategy), params, num_layers=L, total_steps=4)
        tx = phase.tx

        def step(params, opt_state, tx=tx, batch=batch):
            grads = jax.grad(toy_loss)(params, *batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        state = jax.eval_shape(tx.init, params)
        cost = jax.jit(step).lower(params, state).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops[strategy] = cost["flops"]
    assert flops["feature_extraction"] < 0.75 * flops["finetune"], flops


def test_per_rule_optimizer_and_weight_decay_override():
    params = toy_params(L)
    plan = resolve(
        [
            (EMBEDDINGS, {"frozen": True}),
            (layers_from(1), {"optimizer": "sgd", "weight_decay": 0.0}),
            (".*", {"weight_decay": 0.5}),
        ],
        params,
        lr=0.1,
        weight_decay=0.01,
    )
    e = plan.entries
    assert e["encoder/layers/2/mlp/output/kernel"].optimizer == "sgd"
    assert e["encoder/layers/0/norm/bias"].weight_decay == 0.5  # explicit rate: every shape
    assert e["encoder/layers/0/norm/bias"].optimizer == "adamw"
    tx = build_tx(plan, schedule=make_schedule("constant", lr=0.1, total_steps=5))
    new_params, _ = run_steps(tx, params, n=1)
    assert np.array_equal(
        new_params["encoder"]["embeddings"]["word"]["embedding"],
        params["encoder"]["embeddings"]["word"]["embedding"],
    )


def test_works_on_abstract_params():
    params = jax.eval_shape(lambda: toy_params(L))
    (phase,) = phases_from_config(cfg_for("top_k", top_k=1), params, num_layers=L, total_steps=4)
    state = jax.eval_shape(phase.tx.init, params)
    assert state_bytes(state) <= 2 * 4 * phase.plan.trainable_params + BOOKKEEPING_BYTES
    assert isinstance(jax.tree.leaves(phase.trainable_mask)[0], bool)
    assert jnp.isfinite(phase.schedule(0))


def test_clip_by_global_norm_matches_optax_and_takes_a_given_norm():
    """jaxtl's clip equals optax's (rtol 1e-6) under and over the limit; a norm passed by the
    caller (the train step's) is used instead of taking it again."""
    from jaxtl.partition.optimizer import clip_by_global_norm

    rng = np.random.default_rng(0)
    tree = {"a": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": jnp.ones(4)}
    norm = float(optax.global_norm(tree))
    for limit in (norm / 3, norm * 3):
        ours, _ = clip_by_global_norm(limit).update(tree, ())
        ref, _ = optax.clip_by_global_norm(limit).update(tree, optax.EmptyState())
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    half, _ = clip_by_global_norm(norm).update(tree, (), global_norm=jnp.asarray(2 * norm))
    np.testing.assert_allclose(np.asarray(half["b"]), 0.5, rtol=1e-6)
