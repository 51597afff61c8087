"""The shared step: sharding invariance, FSDP/tensor placement, gradient accumulation, masks."""

import re

import jax
import numpy as np
import optax
import pytest
from conftest import minilm_dir
from flax import nnx

from jaxtl import mesh as mesh_lib
from jaxtl import models, objectives
from jaxtl import step as step_lib
from jaxtl.data import batch as batch_lib
from jaxtl.data.prepare import TaskData


def _batches(n, b, t, vocab, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = batch_lib.empty(b, t)
        lengths = rng.integers(4, t + 1, b)
        for i, n_tok in enumerate(lengths):
            x["input_ids"][i, :n_tok] = rng.integers(1000, vocab, n_tok)
            x["attention_mask"][i, :n_tok] = 1
        x["label"][:] = rng.integers(0, 2, b)
        x["example_weight"][:] = 1.0
        out.append(x)
    return out


class _Task:
    name, kind, num_labels, label_names = "t", "classification", 2, ("a", "b")


def _model_and_loss(name, seed=0):
    pre = models.from_pretrained(name)
    head = models.ClassificationHead(pre.model.hidden_size, 2, rngs=nnx.Rngs(seed))
    model = models.TransferModel(pre.model, {"t": head})
    td = TaskData(_Task(), 0, "t", 0, None, [], "dev")
    return model, objectives.switch_loss([td])


def _run(model, loss_fn, batches, mesh, tx, accum=1, partitionable_rng=True):
    graphdef, st = nnx.split(model, nnx.Param)
    host = jax.tree.map(np.asarray, nnx.to_pure_dict(st))
    psh = mesh_lib.param_shardings(host, mesh_lib.logical_specs(st), mesh)
    params = jax.device_put(host, psh)
    opt = tx.init(params)
    shardings = step_lib.TrainState(
        step=mesh_lib.replicated(mesh),
        params=psh,
        opt_state=mesh_lib.like_params_shardings(opt, params, psh, mesh),
        rng=mesh_lib.replicated(mesh),
    )
    state = jax.device_put(step_lib.init_state(params, tx, seed=0), shardings)
    bsh = {k: mesh_lib.batch_sharding(mesh, v.ndim) for k, v in batches[0].items()}
    f = step_lib.make_train_step(
        graphdef, loss_fn, tx, accum_steps=accum, mesh=mesh, state_shardings=shardings,
        batch_shardings=bsh, partitionable_rng=partitionable_rng,
    )  # fmt: skip
    losses = []
    for b in batches:
        state, m = f(state, mesh_lib.shard_batch(b, mesh))
        losses.append(float(m["loss"]))
    return np.array(losses), state


def _minilm_trajectory(mesh):
    """20 fine-tuning steps of the packaged MiniLM on ``mesh``: (losses, final state)."""
    minilm_dir()
    model, loss_fn = _model_and_loss("minilm")
    return _run(model, loss_fn, _batches(20, 8, 32, 30522), mesh, optax.adamw(5e-5))


@pytest.fixture(scope="module")
def minilm_one_device_losses():
    """The one-device reference trajectory of the test below, computed once for both meshes."""
    return _minilm_trajectory(mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1]))[0]


# (2, 2, 2) shards over data, fsdp and tensor at once, so the default run keeps it; (4, 2, 1)
# (no tensor axis) is slow: ~40 s more on 2 cores, most of it running MiniLM on 8 fake devices.
@pytest.mark.parametrize("shape", [pytest.param((4, 2, 1), marks=pytest.mark.slow), (2, 2, 2)])
def test_minilm_loss_trajectory_same_on_1_and_8_devices(shape, minilm_one_device_losses):
    """20 fine-tuning steps of the packaged MiniLM (dropout on): relative difference <= 1e-5."""
    l1 = minilm_one_device_losses
    l8, s8 = _minilm_trajectory(mesh_lib.make_mesh(*shape))
    assert np.all(np.isfinite(l1))
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    # FSDP really shards: the big kernels and their Adam moments are split over fsdp (and
    # tensor), not replicated.
    k = s8.params["encoder"]["layers"][0]["mlp"]["intermediate"]["kernel"]
    assert "fsdp" in str(k.sharding.spec), k.sharding.spec
    n_shards = shape[1] * shape[2]
    assert k.addressable_shards[0].data.size == k.size // n_shards
    mu = s8.opt_state[0].mu["encoder"]["layers"][0]["mlp"]["intermediate"]["kernel"]
    assert mu.sharding == k.sharding
    if shape[2] > 1:
        assert "tensor" in str(k.sharding.spec)


def test_classic_dropout_bits_differ_but_stay_sharding_invariant(tiny_bert_dir):
    """partitionable_rng=False (prng_partitionable on one device) draws other dropout bits than
    the partitionable generator — the flag reaches the step — yet the same bits on 1 and 8
    devices (tolerance 1e-5), so the choice is about cost, not results."""
    tx = optax.adamw(1e-3)
    batches = _batches(4, 8, 16, 30522, seed=2)
    one = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    runs = {}
    for name, mesh, flag in (("classic-1", one, False), ("partitionable-1", one, True),
                             ("classic-8", mesh_lib.make_mesh(2, 2, 2), False)):  # fmt: skip
        model, loss_fn = _model_and_loss(str(tiny_bert_dir))
        runs[name], _ = _run(model, loss_fn, batches, mesh, tx, partitionable_rng=flag)
    assert np.all(np.isfinite(runs["classic-1"]))
    np.testing.assert_allclose(runs["classic-8"], runs["classic-1"], rtol=1e-5)
    assert np.abs(runs["classic-1"] - runs["partitionable-1"]).max() > 1e-4


def test_prng_partitionable_setting():
    from jaxtl import runtime

    assert runtime.partitionable_rng("auto") == (jax.device_count() > 1)
    assert runtime.partitionable_rng("FALSE") is False and runtime.partitionable_rng("true")
    with pytest.raises(ValueError, match="prng_partitionable='maybe': choose one of"):
        runtime.partitionable_rng("maybe")


def test_gradient_accumulation_4x8_equals_32(tiny_bert_dir):
    """Same update from 4 micro-batches of 8 as from one batch of 32 (tolerance 1e-5)."""
    tx = optax.sgd(0.5)
    batches = _batches(3, 32, 16, 30522, seed=1)

    def deterministic(loss_fn):  # dropout keys differ per micro-batch; compare the maths only
        return lambda model, batch, rngs, train: loss_fn(model, batch, rngs, False)

    one = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    l_full, s_full = _run(model, deterministic(loss_fn), batches, one, tx)
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    l_acc, s_acc = _run(model, deterministic(loss_fn), batches, one, tx, accum=4)
    np.testing.assert_allclose(l_acc, l_full, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s_acc.params), jax.tree.leaves(s_full.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_nonfinite_step_leaves_state_unchanged(tiny_bert_dir):
    tx = optax.adamw(1e-3)
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))

    def bad_loss(model, batch, rngs, train):
        total, m = loss_fn(model, batch, rngs, train)
        return total * np.nan, m

    one = mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    graphdef, st = nnx.split(model, nnx.Param)
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(st))
    state = step_lib.init_state(jax.tree.map(jax.numpy.asarray, params), tx, 0)
    # A good step first, so the moments are non-zero and a skipped update would show.
    good = step_lib.make_train_step(graphdef, loss_fn, tx, mesh=one)
    state, _ = good(state, _batches(1, 4, 16, 30522)[0])
    params = jax.tree.map(np.asarray, state.params)
    opt = jax.tree.map(np.asarray, state.opt_state)
    f = step_lib.make_train_step(graphdef, bad_loss, tx, mesh=one)
    state, m = f(state, _batches(1, 4, 16, 30522, seed=1)[0])
    assert float(m["finite"]) == 0.0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        assert np.array_equal(np.asarray(a), b)
    for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(opt), strict=True):
        assert np.array_equal(np.asarray(a), b)


def test_adam_moments_are_updated_in_place(tiny_bert_dir):
    """The donated Adam moments are read once, so XLA updates them in place. When the update was
    computed unconditionally and selected with where(finite, ...), the new parameters recomputed
    the new moments from the old ones, and XLA copied every moment at the start of the step to
    keep the old values: 2x the parameters' memory held through the whole backward."""
    tx = optax.adamw(1e-3)
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    graphdef, st = nnx.split(model, nnx.Param)
    state = step_lib.init_state(nnx.to_pure_dict(st), tx, 0)
    f = step_lib.make_train_step(graphdef, loss_fn, tx)
    hlo = f.lower(state, _batches(1, 4, 16, 30522)[0]).compile().as_text()
    moments = re.findall(r"%(\S*_(?:mu|nu)_\S*) = f32\[[^\]]*\]\S* parameter\(", hlo)
    assert len(moments) == 2 * len(jax.tree.leaves(state.params)), moments[:4]
    copied = [m for m in moments if re.search(rf"copy\(%{re.escape(m)}\)", hlo)]
    assert not copied, f"{len(copied)} of {len(moments)} moments copied, e.g. {copied[:2]}"


def test_cpu_kernels_choose_xla_or_ynnpack_and_agree(tiny_bert_dir, monkeypatch):
    """cpu_kernels=xla compiles the train step without YNNPACK's library fusions;
    ynnpack keeps jaxlib's default, which fuses the matmuls through YNNPACK. Only summation order
    differs: the losses agree to rtol 1e-5 and the parameters after one AdamW step (lr 1e-3) to
    atol 1e-5, 1% of the step (Adam divides by the gradient's size, so a gradient near zero
    shows its rounding in the update: 2e-6 was the largest difference seen)."""
    from jaxtl import runtime

    if jax.default_backend() != "cpu" or not runtime._option_known(runtime._YNN_OPTION, ""):
        pytest.skip("needs XLA:CPU with the YNNPACK fusion option")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # a user's own setting would win
    tx = optax.adamw(1e-3)
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    graphdef, st = nnx.split(model, nnx.Param)
    host = jax.tree.map(np.asarray, nnx.to_pure_dict(st))  # each step donates its own copy
    batch = _batches(1, 4, 16, 30522)[0]
    out = {}
    for kernels in ("xla", "ynnpack"):
        monkeypatch.setattr(runtime, "_cpu_kernels", kernels)
        f = step_lib.make_train_step(graphdef, loss_fn, tx)
        state = step_lib.init_state(jax.tree.map(jax.numpy.asarray, host), tx, 0)
        compiled = runtime.compiled_cpu_kernels(f.lower(state, batch).compile())
        out[kernels] = (compiled, *f(state, batch))
    assert (out["xla"][0], out["ynnpack"][0]) == ("xla", "ynnpack")
    (_, s_x, m_x), (_, s_y, m_y) = out["xla"], out["ynnpack"]
    np.testing.assert_allclose(m_x["loss"], m_y["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s_x.params), jax.tree.leaves(s_y.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_cpu_kernels_setting_is_checked():
    from jaxtl import config as config_lib
    from jaxtl import runtime

    with pytest.raises(ValueError, match="cpu_kernels='eigen': choose one of auto, xla, ynnpack"):
        runtime.set_cpu_kernels("eigen")
    c = config_lib.base_config()
    c.cpu_kernels = "eigen"
    with pytest.raises(ValueError, match="cpu_kernels"):
        config_lib.validate(c)


def test_auto_cpu_kernels_take_ynnpack_for_small_train_steps_only(monkeypatch):
    """cpu_kernels=auto (the default): YNNPACK's kernels for a train step (every parameter
    or some) on at most YNNPACK_MAX_TOKENS tokens, XLA's own for larger ones, for steps of
    unknown size and for eval; xla and ynnpack are the same for every program and size."""
    from jaxtl import config as config_lib
    from jaxtl import runtime

    assert config_lib.base_config().cpu_kernels == "auto"
    monkeypatch.setattr(runtime, "_cpu_kernels", "auto")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # a user's own setting would win
    limit = runtime.YNNPACK_MAX_TOKENS
    assert limit == 32 * 64  # the measured sizes (BENCHMARKS.md, Findings) stop here
    for train in ("full_train", "train"):
        assert runtime.cpu_kernels_for(train, 3 * 128) == "ynnpack"
        assert runtime.cpu_kernels_for(train, limit) == "ynnpack"
        assert runtime.cpu_kernels_for(train, limit + 1) == "xla"
        assert runtime.cpu_kernels_for(train) == "xla"  # size unknown
    assert runtime.cpu_kernels_for("other", 8) == runtime.cpu_kernels_for("other") == "xla"
    if jax.default_backend() == "cpu" and runtime._option_known(runtime._YNN_OPTION, ""):
        assert runtime.compiler_options("full_train", 384) == {}
        assert runtime.compiler_options("train", 384) == {}
        assert runtime.compiler_options("full_train", 32 * 128) == {runtime._YNN_OPTION: ""}
        assert runtime.compiler_options("train", 32 * 128) == {runtime._YNN_OPTION: ""}
        assert runtime.compiler_options("other", 384) == {runtime._YNN_OPTION: ""}
    for fixed in ("xla", "ynnpack"):
        monkeypatch.setattr(runtime, "_cpu_kernels", fixed)
        kinds = {runtime.cpu_kernels_for(p, n) for p in runtime.PROGRAMS for n in (8, 10**6)}
        assert kinds == {fixed}
    with pytest.raises(ValueError, match="program='predict'"):
        runtime.cpu_kernels_for("predict")


def test_train_step_names_its_program_and_tokens_to_the_compiler(tiny_bert_dir, monkeypatch):
    """make_train_step asks for full_train options when every parameter trains (no mask, or an
    all-True one) and for train options when any is frozen, with the tokens of one micro-batch;
    a new set of options gets its own jit, the same set shares one; eval steps ask for other."""
    from jaxtl import runtime

    asked = []

    def options(program="other", tokens=None):
        asked.append((program, tokens))
        return {} if tokens is None or tokens <= 16 else {"xla_cpu_enable_fast_math": False}

    monkeypatch.setattr(runtime, "compiler_options", options)
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    graphdef, st = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(st)
    tx = optax.sgd(1e-3)
    all_true = jax.tree.map(lambda _: True, params)
    one_frozen = jax.tree.map(lambda _: True, params)
    leaf_path = jax.tree_util.tree_leaves_with_path(one_frozen)[0][0]
    one_frozen = jax.tree_util.tree_map_with_path(lambda p, v: v and p != leaf_path, one_frozen)
    small = {"input_ids": np.zeros((2, 8), np.int32), "label": np.zeros((2,), np.int32)}
    large = {"input_ids": np.zeros((4, 8), np.int32), "label": np.zeros((4,), np.int32)}
    steps = [step_lib.make_train_step(graphdef, loss_fn, tx, trainable_mask=m)
             for m in (None, all_true, one_frozen)]  # fmt: skip
    assert asked == []  # options are chosen per batch shape, when a step first meets one
    for step in steps:
        step.jitted_for(small)
    step_lib.make_eval_step(graphdef, lambda m, b: m.encoder(b["input_ids"]).last_hidden_state)
    assert asked == [("full_train", 16), ("full_train", 16), ("train", 16), ("other", None)]
    assert steps[0].jitted_for(large) is not steps[0].jitted_for(small)
    assert steps[0].jitted_for(dict(small, input_ids=np.zeros((1, 16), np.int32))) is (
        steps[0].jitted_for(small)
    )
    accum = step_lib.make_train_step(graphdef, loss_fn, tx, accum_steps=2)
    asked.clear()
    accum.jitted_for(large)
    assert asked == [("full_train", 16)]  # each of the 2 micro-batches holds 2 x 8 tokens


def test_compiles_once_per_shape(tiny_bert_dir):
    tx = optax.adamw(1e-3)
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    graphdef, st = nnx.split(model, nnx.Param)
    state = step_lib.init_state(nnx.to_pure_dict(st), tx, 0)
    counter = step_lib.CompileCounter()
    f = step_lib.make_train_step(graphdef, loss_fn, tx, counter=counter)
    for b in _batches(3, 4, 16, 30522) + _batches(3, 4, 32, 30522):
        state, _ = f(state, b)
    assert counter.count == 2  # one per bucket length, none per step


def test_bf16_compute_keeps_f32_params_and_optimizer(tiny_bert_dir):
    """The precision policy: bf16 matmuls, f32 parameters and Adam moments."""
    import jax.numpy as jnp

    pre = models.from_pretrained(str(tiny_bert_dir), dtype=jnp.bfloat16)
    head = models.ClassificationHead(pre.model.hidden_size, 2, rngs=nnx.Rngs(0))
    model = models.TransferModel(pre.model, {"t": head})
    td = TaskData(_Task(), 0, "t", 0, None, [], "dev")
    tx = optax.adamw(1e-3)
    graphdef, st = nnx.split(model, nnx.Param)
    state = step_lib.init_state(nnx.to_pure_dict(st), tx, 0)
    f = step_lib.make_train_step(graphdef, objectives.switch_loss([td]), tx)
    feats = jax.eval_shape(
        lambda p, b: nnx.merge(graphdef, p).features(b["input_ids"], b["attention_mask"])[1],
        state.params,
        _batches(1, 4, 16, 30522)[0],
    )
    assert feats.dtype == jnp.bfloat16
    for b in _batches(2, 4, 16, 30522):
        state, m = f(state, b)
        assert np.isfinite(float(m["loss"]))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state[0].mu)} == {jnp.dtype("float32")}


def test_frozen_parameters_cost_no_backward_flops(tiny_bert_dir):
    """With the phase's trainable mask, a frozen encoder's weight (and activation) gradients
    are never computed: the compiled step has far fewer FLOPs, and frozen grads are zero."""
    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    graphdef, st = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(st)
    tx = optax.adam(1e-3)  # no weight decay: zero gradients leave a parameter exactly as it is
    state = step_lib.init_state(params, tx, 0)
    batch = _batches(1, 32, 128, 30522)[0]
    head_only = jax.tree_util.tree_map_with_path(
        lambda p, _: str(getattr(p[0], "key", p[0])) == "heads", params
    )

    def flops(mask):
        f = step_lib.make_train_step(graphdef, loss_fn, tx, trainable_mask=mask)
        cost = f.lower(state, batch).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return cost["flops"]

    full, frozen = flops(None), flops(head_only)
    # Without the mask the two are equal (ratio 1.0). For MiniLM the frozen step is 0.34x of full
    # (BENCHMARKS.md); this 32-wide model spends relatively more on attention and softmax,
    # whose forward and backward costs are alike, and measured 0.49x here.
    assert frozen < 0.6 * full, (frozen, full)
    f = step_lib.make_train_step(graphdef, loss_fn, tx, trainable_mask=head_only)
    before = jax.tree.map(np.asarray, state.params)
    new, m = f(state, batch)
    enc_new = jax.tree.leaves(new.params["encoder"])
    assert all(
        np.array_equal(np.asarray(a), b)
        for a, b in zip(enc_new, jax.tree.leaves(before["encoder"]))
    )
    assert np.isfinite(float(m["grad_norm"])) and float(m["grad_norm"]) > 0


def _squares_of_shape(jaxpr, shape) -> int:
    """Squaring ops (x*x, x**2, square) whose result has ``shape``, through every nested jaxpr
    (pjit, cond branches, custom derivatives)."""
    n = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if tuple(getattr(eqn.outvars[0].aval, "shape", ())) == shape:
            if name in ("square", "integer_pow") or (
                name == "mul" and eqn.invars[0] is eqn.invars[1]
            ):
                n += 1
        for v in eqn.params.values():
            for sub in v if isinstance(v, (list, tuple)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _squares_of_shape(inner, shape)
    return n


def test_clip_reuses_the_steps_global_norm(tiny_bert_dir):
    """Gradient clipping adds no pass over the gradients: the step hands the global norm it takes
    for its log to jaxtl's clip. Counted as squaring ops on the word-embedding gradient in the
    step's jaxpr: clipping with a trainable mask adds none; without a mask the clip must take the
    norm itself and adds its squares (what optax's clip always did)."""
    from jaxtl.partition.optimizer import clip_by_global_norm

    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    graphdef, st = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(st)
    shape = tuple(params["encoder"]["embeddings"]["word"]["embedding"].shape)
    mask = jax.tree.map(lambda _: True, params)
    batch = _batches(1, 4, 16, 30522)[0]

    def squares(tx, trainable_mask):
        state = step_lib.init_state(params, tx, 0)
        f = step_lib.make_train_step(graphdef, loss_fn, tx, trainable_mask=trainable_mask)
        return _squares_of_shape(f.trace(state, batch).jaxpr.jaxpr, shape)

    clipped = optax.chain(clip_by_global_norm(1.0), optax.adamw(1e-3))
    assert squares(clipped, mask) == squares(optax.adamw(1e-3), mask)
    assert squares(clipped, None) > squares(optax.adamw(1e-3), None)


def test_clipped_update_matches_optax(tiny_bert_dir):
    """The step's AdamW moments after one clipped step equal optax's reference chain
    (clip_by_global_norm + adamw on gradients of the mean loss, same dropout key) to rtol 1e-5
    (plus 1e-5 of the largest moment, for gradients that cancel to about zero, like the attention
    key biases', which are zero in exact arithmetic),
    with the clip active (limit 1e-3) and inactive (limit 1e6)."""
    from jaxtl.partition.optimizer import clip_by_global_norm

    model, loss_fn = _model_and_loss(str(tiny_bert_dir))
    graphdef, st = nnx.split(model, nnx.Param)
    host = jax.tree.map(np.asarray, nnx.to_pure_dict(st))
    mask = jax.tree.map(lambda _: True, host)
    batch = _batches(1, 4, 16, 30522)[0]
    for limit in (1e-3, 1e6):
        tx = optax.chain(clip_by_global_norm(limit), optax.adamw(1e-3))
        state = step_lib.init_state(jax.tree.map(jax.numpy.asarray, host), tx, 0)
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

        def mean_loss(p, key=key):
            total, m = loss_fn(nnx.merge(graphdef, p), batch, nnx.Rngs(dropout=key), True)
            return total / m["denominator"]

        # jitted, as the step is: run op by op, each small op is a program of its own to compile
        grads = jax.jit(jax.grad(mean_loss))(jax.tree.map(jax.numpy.asarray, host))
        ref = optax.chain(optax.clip_by_global_norm(limit), optax.adamw(1e-3))
        ref_state = jax.jit(lambda g, p, ref=ref: ref.update(g, ref.init(p), p)[1])(grads, host)
        f = step_lib.make_train_step(graphdef, loss_fn, tx, trainable_mask=mask)
        new, m = f(state, batch)
        assert (float(m["grad_norm"]) > limit) == (limit < 1)
        mu, ref_mu = new.opt_state[1][0].mu, ref_state[1][0].mu
        scale = max(float(np.abs(b).max()) for b in jax.tree.leaves(ref_mu))
        for a, b in zip(jax.tree.leaves(mu), jax.tree.leaves(ref_mu), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * scale)
