"""Multitask regime: a head learns only from its own task; one compiled step serves all tasks."""

import jax
import numpy as np
import optax
from flax import nnx

from jaxtl import assembly, models, objectives
from jaxtl import step as step_lib
from jaxtl.data import batch as batch_lib
from jaxtl.data import get_task
from jaxtl.data.prepare import TaskData, head_key


def _task_data(names):
    return [TaskData(get_task(n), i, head_key(n), 0, None, [], "dev") for i, n in enumerate(names)]


def _batch(task_id, b=4, t=16, seed=0):
    rng = np.random.default_rng(seed)
    x = batch_lib.empty(b, t)
    x["input_ids"][:, :8] = rng.integers(1000, 30000, (b, 8))
    x["attention_mask"][:, :8] = 1
    x["token_labels"][:, 1:7] = rng.integers(0, 3, (b, 6))
    x["label"][:] = rng.integers(0, 2, b)
    x["score"][:] = rng.uniform(0, 5, b)
    x["example_weight"][:] = 1
    x["task_id"][:] = task_id
    return x


def test_each_head_learns_only_from_its_own_task(tiny_bert_dir):
    names = ["builtin/sentiment", "builtin/similarity", "builtin/ner"]
    tds = _task_data(names)
    enc = models.from_pretrained(str(tiny_bert_dir)).model
    cfg = __import__("jaxtl.configs.multitask", fromlist=["get_config"]).get_config()
    model = assembly.build_model(enc, tds, cfg)
    graphdef, st = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(st)
    loss_fn = objectives.switch_loss(tds)
    tx = optax.adamw(1e-2)
    counter = step_lib.CompileCounter()
    f = step_lib.make_train_step(
        graphdef, loss_fn, tx, active_fn=objectives.heads_active_fn(params, tds), counter=counter
    )
    state = step_lib.init_state(jax.tree.map(jax.numpy.array, params), tx, 0)
    for step, task_id in enumerate([0, 1, 2, 0, 2]):
        before = jax.tree.map(np.asarray, state.params)
        mu_before = jax.tree.map(np.asarray, state.opt_state[0].mu)
        state, m = f(state, _batch(task_id, seed=step))
        assert np.isfinite(float(m["loss"]))
        for td in tds:
            changed = not np.array_equal(
                np.asarray(state.params["heads"][td.key]["classifier"]["kernel"]),
                before["heads"][td.key]["classifier"]["kernel"],
            )
            mu_changed = not np.array_equal(
                np.asarray(state.opt_state[0].mu["heads"][td.key]["classifier"]["kernel"]),
                mu_before["heads"][td.key]["classifier"]["kernel"],
            )
            assert changed == (td.index == task_id), (step, td.key)
            assert mu_changed == (td.index == task_id), (step, td.key)
        # the shared encoder learns from every task
        assert not np.array_equal(
            np.asarray(state.params["encoder"]["layers"][0]["attention"]["query"]["kernel"]),
            before["encoder"]["layers"][0]["attention"]["query"]["kernel"],
        )
    assert counter.count == 1  # one program for three tasks of three kinds


def test_head_gradients_are_zero_for_other_tasks(tiny_bert_dir):
    tds = _task_data(["builtin/sentiment", "builtin/ner"])
    enc = models.from_pretrained(str(tiny_bert_dir)).model
    cfg = __import__("jaxtl.configs.multitask", fromlist=["get_config"]).get_config()
    model = assembly.build_model(enc, tds, cfg)
    graphdef, st = nnx.split(model, nnx.Param)
    loss_fn = objectives.switch_loss(tds)

    def f(p, batch):
        return loss_fn(nnx.merge(graphdef, p), batch, nnx.Rngs(dropout=0), True)[0]

    g = jax.grad(f)(nnx.to_pure_dict(st), _batch(1))
    assert not np.any(np.asarray(g["heads"]["builtin_sentiment"]["classifier"]["kernel"]))
    assert np.any(np.asarray(g["heads"]["builtin_ner"]["classifier"]["kernel"]))


def test_bilstm_tagger_head_inside_the_task_switch(tiny_bert_dir):
    """BERT's feature-based NER setup (a BiLSTM under the tagger) trains in the shared step:
    the head's own nnx.scan must run inside the lax.switch branch."""
    tds = _task_data(["builtin/sentiment", "builtin/ner"])
    enc = models.from_pretrained(str(tiny_bert_dir)).model
    cfg = __import__("jaxtl.configs.multitask", fromlist=["get_config"]).get_config()
    cfg.unlock()
    cfg.model.tagger_bilstm = 8
    model = assembly.build_model(enc, tds, cfg)
    graphdef, st = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(st)
    assert "bilstm" in params["heads"]["builtin_ner"]
    tx = optax.adam(1e-2)
    f = step_lib.make_train_step(graphdef, objectives.switch_loss(tds), tx)
    state = step_lib.init_state(jax.tree.map(jax.numpy.array, params), tx, 0)
    before = np.asarray(
        params["heads"]["builtin_ner"]["bilstm"][0]["forward"]["cell"]["dense_i"]["kernel"]
    )
    state, m = f(state, _batch(1))
    assert np.isfinite(float(m["loss"]))
    after = np.asarray(
        state.params["heads"]["builtin_ner"]["bilstm"][0]["forward"]["cell"]["dense_i"]["kernel"]
    )
    assert not np.array_equal(before, after)
    predict = step_lib.make_eval_step(graphdef, objectives.switch_predict(tds))
    out = predict(state.params, _batch(1))
    assert out["pred_tokens"].shape == (4, 16)
