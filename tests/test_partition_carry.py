"""Optimizer state across phase changes (carry_over) and L2-SP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from test_partition_optimizer import cfg_for, run_steps
from test_partition_toy import toy_params

from jaxtl import paths
from jaxtl.partition import carry_over, l2sp, l2sp_penalty, phases_from_config

L = 3


def moments(state) -> dict[str, dict[str, np.ndarray]]:
    """{'mu'|'nu': {param path: array}} found anywhere in an optax state, by readable path."""
    out: dict[str, dict[str, np.ndarray]] = {"mu": {}, "nu": {}}
    for p, leaf in paths.flatten(state).items():
        for kind in ("mu", "nu"):
            tag = f"/{kind}/"
            if tag in p:
                out[kind][p.split(tag, 1)[1]] = np.asarray(leaf)
    return out


def counts(state) -> dict[str, int]:
    return {p: int(x) for p, x in paths.flatten(state).items() if p.endswith("/count")}


def test_carry_over_keeps_moments_of_kept_params_and_zeros_for_thawed():
    params = toy_params(L)
    p1, p2 = phases_from_config(
        cfg_for("gradual_unfreezing", discriminative=0.5), params, num_layers=L, total_steps=8
    )[:2]
    params1, state1 = run_steps(p1.tx, params, n=3)
    new = p2.tx.init(params1)
    carried = carry_over(state1, new)
    old_m, new_m = moments(state1), moments(carried)
    trained1 = {p for p, t in paths.flatten(p1.trainable_mask).items() if t}
    trained2 = {p for p, t in paths.flatten(p2.trainable_mask).items() if t}
    thawed = trained2 - trained1
    assert thawed and {p.split("/")[2] for p in thawed} == {"1"}  # layer 1 joins in phase 2
    assert set(new_m["mu"]) == trained2  # state exists exactly for phase-2 trainable params
    for kind in ("mu", "nu"):
        for p in trained1:
            assert np.any(old_m[kind][p]), p  # (sanity: the moments were non-zero)
            np.testing.assert_array_equal(new_m[kind][p], old_m[kind][p])
        for p in thawed:
            assert not np.any(new_m[kind][p]), p
    # Groups that carried moments keep their Adam count; the group of thawed params starts at 0.
    # With d = 0.5, layer 1 (thawed) is alone in the lr_scale=0.5 groups; top + new are at 1.
    c = counts(carried)
    assert c and all(v == (0 if "lr_scale=0.5/" in p else 3) for p, v in c.items()), c
    # The stage's global step carries over too.
    assert int(jax.tree.leaves(carried)[-1]) == 3


def test_carry_over_then_train_continues():
    params = toy_params(L)
    phases = phases_from_config(cfg_for("chain_thaw"), params, num_layers=L, total_steps=12)
    state, prev = None, None
    for ph in phases:
        fresh = ph.tx.init(params)
        state = fresh if prev is None else carry_over(prev, fresh)
        before = params
        step = jax.jit(lambda p, s, tx=ph.tx: _one_step(tx, p, s))
        params, state = step(params, state)
        frozen = [p for p, t in paths.flatten(ph.trainable_mask).items() if not t]
        b, a = paths.flatten(before), paths.flatten(params)
        assert all(np.array_equal(b[p], a[p]) for p in frozen)
        prev = state


def _one_step(tx, params, state):
    from test_partition_toy import toy_batch, toy_loss

    grads = jax.grad(toy_loss)(params, *toy_batch())
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def test_l2sp_pulls_weights_toward_their_start():
    params = {"encoder": {"w": jnp.array([1.0, -2.0])}, "heads": {"k": jnp.array([3.0])}}
    alpha, beta, lr = 0.5, 0.25, 0.1
    tx = optax.chain(l2sp(alpha, beta), optax.sgd(lr))
    state = tx.init(params)
    moved = {"encoder": {"w": jnp.array([2.0, 0.0])}, "heads": {"k": jnp.array([3.0])}}
    zero = jax.tree.map(jnp.zeros_like, moved)  # no task gradient
    updates, state = tx.update(zero, state, moved)
    # encoder: -lr * alpha * (w - w0); heads (new): -lr * beta * w
    np.testing.assert_allclose(updates["encoder"]["w"], [-0.05, -0.1], rtol=1e-6)
    np.testing.assert_allclose(updates["heads"]["k"], [-0.075], rtol=1e-6)
    w = moved
    for _ in range(50):
        u, state = tx.update(zero, state, w)
        w = optax.apply_updates(w, u)
    dist = np.abs(np.asarray(w["encoder"]["w"]) - np.array([1.0, -2.0]))
    assert np.all(dist < 0.2 * np.array([1.0, 2.0]))  # much closer than the 1.0 / 2.0 start
    # The penalty value for logging: alpha/2 ||w - w0||^2 + beta/2 ||k||^2.
    val = l2sp_penalty(moved, state[0].anchor, alpha, beta)
    np.testing.assert_allclose(val, 0.5 * alpha * 5.0 + 0.5 * beta * 9.0, rtol=1e-6)


def test_l2sp_through_config_anchors_only_weights_that_ever_train():
    params = toy_params(L)
    (ph,) = phases_from_config(
        cfg_for("top_k", top_k=1, l2sp=0.1), params, num_layers=L, total_steps=4
    )
    anchors = {
        p.split("/anchor/", 1)[1] for p in paths.flatten(ph.tx.init(params)) if "/anchor/" in p
    }
    assert anchors == {
        p for p, t in paths.flatten(ph.trainable_mask).items() if t and p.startswith("encoder/")
    }
    # With zero task gradient and a moved weight, the step moves it back toward the start.
    moved = jax.tree.map(lambda x: x, params)
    moved["encoder"]["layers"][2]["mlp"]["output"]["kernel"] = (
        params["encoder"]["layers"][2]["mlp"]["output"]["kernel"] + 1.0
    )
    state = ph.tx.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = ph.tx.update(zero, state, moved)
    u = np.asarray(updates["encoder"]["layers"][2]["mlp"]["output"]["kernel"])
    assert np.all(u < 0)  # w - w0 = +1 everywhere, so the update points back down
