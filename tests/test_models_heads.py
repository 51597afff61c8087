"""Representations, heads and TransferModel: shapes, values, dropout, split/merge, axis names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtl import models, paths
from jaxtl.models import (
    BertConfig,
    BertEncoder,
    ClassificationHead,
    MLMHead,
    Representation,
    TaggingHead,
    TransferModel,
)

TINY = BertConfig(vocab_size=50, hidden_size=16, num_layers=4, num_heads=2,
                  intermediate_size=32, max_position_embeddings=16)  # fmt: skip


def states(n_layers=4, b=2, t=5, h=8, seed=0):
    keys = jax.random.split(jax.random.key(seed), n_layers + 1)
    return tuple(jax.random.normal(k, (b, t, h)) for k in keys)


def inputs(b=2, t=6):
    ids = jax.random.randint(jax.random.key(1), (b, t), 1, 50)
    mask = jnp.array([[1] * t, [1] * (t - 2) + [0, 0]])
    return ids, mask


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("embeddings", lambda hs: hs[0]),
        ("last", lambda hs: hs[-1]),
        ("second_to_last", lambda hs: hs[-2]),
        ("sum_last_four", lambda hs: hs[-1] + hs[-2] + hs[-3] + hs[-4]),
        ("concat_last_four", lambda hs: jnp.concatenate(hs[-4:], axis=-1)),
    ],
)
def test_representation_values(kind, expected):
    hs = states()
    rep = Representation(kind, 4, 8, rngs=nnx.Rngs(0))
    out = rep(hs)
    assert out.shape == (2, 5, rep.output_size)
    assert rep.output_size == (32 if kind == "concat_last_four" else 8)
    np.testing.assert_allclose(out, expected(hs), atol=1e-6)


def test_scalar_mix_equal_weights_is_gamma_times_mean():
    hs = states()
    rep = Representation("scalar_mix", 4, 8, rngs=nnx.Rngs(0))
    rep.gamma[...] = jnp.asarray(2.5)
    np.testing.assert_allclose(rep(hs), 2.5 * jnp.mean(jnp.stack(hs), axis=0), atol=1e-6)
    rep.weights[...] = jnp.array([0.0, 0.0, 0.0, 0.0, 30.0])  # softmax ~ one-hot on the last
    np.testing.assert_allclose(rep(hs), 2.5 * hs[-1], atol=1e-5)


def test_representation_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown representation kind 'top'"):
        Representation("top", 4, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="got 3 hidden states"):
        Representation("last", 4, 8, rngs=nnx.Rngs(0))(states(2))


def test_head_shapes_and_pooling():
    feats = jax.random.normal(jax.random.key(0), (2, 6, 16))
    _, mask = inputs()
    for pooling in ("cls", "mean", "last"):
        head = ClassificationHead(16, 3, pooling=pooling, hidden=8, rngs=nnx.Rngs(0))
        assert head(feats, mask).shape == (2, 3)
    assert ClassificationHead(16, 1, rngs=nnx.Rngs(0))(feats, mask).shape == (2, 1)
    mean = models.heads.pool(feats, mask, "mean")
    np.testing.assert_allclose(mean[1], feats[1, :4].mean(0), atol=1e-6)
    last = models.heads.pool(feats, mask, "last")
    np.testing.assert_allclose(last[1], feats[1, 3], atol=0)
    assert TaggingHead(16, 5, rngs=nnx.Rngs(0))(feats, mask).shape == (2, 6, 5)
    # (the BiLSTM tagger's shape is checked through TransferModel below)


def test_mlm_head_uses_the_embedding_passed_in():
    head = MLMHead(16, 16, 50, rngs=nnx.Rngs(0))
    feats = jax.random.normal(jax.random.key(0), (2, 3, 16))
    emb = jax.random.normal(jax.random.key(1), (50, 16))
    logits = head(feats, emb)
    assert logits.shape == (2, 3, 50)
    x = head.norm(jax.nn.gelu(head.transform(feats), approximate=False))
    np.testing.assert_allclose(logits, x @ emb.T, atol=1e-5)


@pytest.mark.parametrize("labels_per_row", [(3, 0, 5, 1), (3, 30, 5, 1)])  # fits / overflows
def test_sparse_mlm_loss_equals_decoding_every_position(labels_per_row):
    """Decoding only the masked positions gives the dense loss, gradients and predictions
    (rtol 1e-5); a row with more labels than slots takes the dense path and still agrees."""
    from jaxtl import losses
    from jaxtl.data.batch import IGNORE
    from jaxtl.objectives.supervised import masked_positions_cap, sparse_lm

    b, t, h, v = len(labels_per_row), 32, 16, 50
    assert masked_positions_cap(t, 0.15) == 16  # the second case's 30 labels overflow it
    rng = np.random.default_rng(0)
    labels = np.full((b, t), IGNORE, np.int32)
    for r, n in enumerate(labels_per_row):
        labels[r, rng.choice(t, n, replace=False)] = rng.integers(0, v, n)
    batch = {"token_labels": jnp.asarray(labels), "example_weight": jnp.asarray([1, 1, 1, 0.0])}
    head = MLMHead(h, h, v, rngs=nnx.Rngs(0))
    last = jax.random.normal(jax.random.key(0), (b, t, h))
    emb = jax.random.normal(jax.random.key(1), (v, h))

    def dense(last, emb):
        total, den = losses.lm(head(last, emb), batch)
        return total, den

    def sparse(last, emb):
        total, den, _ = sparse_lm(head, last, emb, batch, 0.15)
        return total, den

    (d_total, d_den), (s_total, s_den) = dense(last, emb), sparse(last, emb)
    assert float(s_den) == float(d_den) == sum(labels_per_row[:3])  # the last row weighs 0
    np.testing.assert_allclose(s_total, d_total, rtol=1e-5)
    d_grads = jax.grad(lambda *a: dense(*a)[0], argnums=(0, 1))(last, emb)
    s_grads = jax.grad(lambda *a: sparse(*a)[0], argnums=(0, 1))(last, emb)
    for d, s in zip(d_grads, s_grads):
        np.testing.assert_allclose(s, d, rtol=1e-5, atol=1e-6)
    _, _, pred = sparse_lm(head, last, emb, batch, 0.15, with_predictions=True)
    want = np.argmax(np.asarray(head(last, emb)), -1)
    labelled = (labels != IGNORE) & (np.arange(b) < 3)[:, None]
    np.testing.assert_array_equal(np.asarray(pred)[labelled], want[labelled])
    assert not np.asarray(pred)[~labelled].any()


def make_model(kind="concat_last_four"):
    enc = BertEncoder(TINY, rngs=nnx.Rngs(0))
    rep = Representation(kind, enc.num_layers, enc.hidden_size, rngs=nnx.Rngs(1))
    heads = {
        "sst2": ClassificationHead(rep.output_size, 2, hidden=16, rngs=nnx.Rngs(2)),
        "ner": TaggingHead(rep.output_size, 9, bilstm_hidden=4, rngs=nnx.Rngs(3)),
    }
    return TransferModel(enc, heads, rep)


def test_transfer_model_paths_and_features():
    model = make_model()
    state = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    names = list(paths.iter_paths(state))
    assert "encoder/layers/3/attention/query/kernel" in names
    assert "encoder/embeddings/word/embedding" in names
    assert "heads/sst2/classifier/kernel" in names
    assert any(n.startswith("heads/ner/bilstm/1/forward") for n in names)
    ids, mask = inputs()
    out, feats = model.features(ids, mask, None)
    assert len(out.hidden_states) == 5 and feats.shape == (2, 6, 64)
    assert len(model.heads["ner"].bilstm) == 2
    assert model.heads["ner"](feats, mask).shape == (2, 6, 9)


def test_state_is_parameters_only_and_has_axis_names():
    model = make_model("scalar_mix")
    _, params, rest = nnx.split(model, nnx.Param, ...)
    assert not jax.tree_util.tree_leaves(rest), f"non-parameter state: {rest}"
    specs = paths.flatten(nnx.to_pure_dict(nnx.get_partition_spec(params)))
    values = paths.flatten(nnx.to_pure_dict(params))
    for name, value in values.items():
        spec = specs[name]
        assert len(spec) == np.ndim(value), f"{name}: spec {spec} for shape {np.shape(value)}"
    # every kernel / embedding names a real logical axis (not only None)
    for name, spec in specs.items():
        if name.endswith(("kernel", "embedding")):
            assert any(a is not None for a in spec), f"{name} has no logical axis names"


def test_dropout_only_when_not_deterministic():
    model = make_model()
    ids, mask = inputs()

    def run(det, seed):
        _, feats = model.features(ids, mask, None, deterministic=det, rngs=nnx.Rngs(dropout=seed))
        return np.asarray(model.heads["sst2"](feats, mask, deterministic=det,
                                             rngs=nnx.Rngs(dropout=seed + 100)))  # fmt: skip

    np.testing.assert_array_equal(run(True, 0), run(True, 1))
    assert np.abs(run(False, 0) - run(False, 1)).max() > 1e-4
    np.testing.assert_array_equal(run(False, 3), run(False, 3))
    with pytest.raises(ValueError, match="rngs"):
        model.features(ids, mask, None, deterministic=False)


def test_jitted_split_merge_forward_matches_eager():
    enc = BertEncoder(TINY, rngs=nnx.Rngs(0))
    model = TransferModel(enc, {"sst2": ClassificationHead(16, 2, rngs=nnx.Rngs(2))}, None)
    ids, mask = inputs()
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def forward(params, ids, mask):
        m = nnx.merge(graphdef, params)
        _, feats = m.features(ids, mask, None)
        return m.heads["sst2"](feats, mask)

    eager = model.heads["sst2"](model.features(ids, mask, None)[1], mask)
    np.testing.assert_allclose(forward(params, ids, mask), eager, atol=1e-5)


FAMILY_CONFIGS = {
    "bert": dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=16),
    "gpt2": dict(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16),
}  # fmt: skip


@pytest.mark.parametrize(
    "family, pooling, activation, input_dropout, dense, bias",
    [
        ("bert", "cls", "tanh", False, True, True),  # pooler + classifier
        ("roberta", "cls", "tanh", True, True, True),  # classifier.dense + out_proj
        ("electra", "cls", "gelu", True, True, True),
        ("gpt2", "last", "tanh", False, False, False),  # score
    ],
)
def test_make_head_auto_is_the_family_transformers_head(
    family, pooling, activation, input_dropout, dense, bias
):
    from jaxtl import assembly
    from jaxtl import config as config_lib
    from jaxtl.data.tasks import Task
    from jaxtl.models import hf_heads

    enc = models.build_encoder(family, FAMILY_CONFIGS.get(family, FAMILY_CONFIGS["bert"]),
                               rngs=nnx.Rngs(0))  # fmt: skip
    c = config_lib.base_config()
    sent = Task("s", "classification", loader=None, label_names=("a", "b", "c"))
    tags = Task("t", "tagging", loader=None, label_names=("O", "B-X"))
    head = assembly.make_head(sent, 16, c, nnx.Rngs(1), encoder=enc)
    assert isinstance(head, ClassificationHead)
    assert (head.pooling, head.activation, head.input_dropout) == (pooling, activation,
                                                                  input_dropout)  # fmt: skip
    assert (head.dense is not None, head.use_bias) == (dense, bias)
    assert head.dropout == (0.0 if family == "gpt2" else c.model.dropout)
    tagger = assembly.make_head(tags, 16, c, nnx.Rngs(1), encoder=enc)
    assert isinstance(tagger, TaggingHead) and tagger.bilstm is None
    model = TransferModel(enc, {"s": head, "t": tagger})
    assert hf_heads.head_problem(model, "s", "classification") is None
    assert hf_heads.head_problem(model, "t", "tagging") is None
    specs = paths.flatten(nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(model, nnx.Param))))
    assert tuple(specs["heads/s/classifier/kernel"]) == ("embed", "labels")
    if dense:
        assert tuple(specs["heads/s/dense/kernel"]) == ("embed", "mlp")
    ids, mask = inputs()
    _, feats = model.features(ids, mask, None)
    assert head(feats, mask).shape == (2, 3) and tagger(feats, mask).shape == (2, 6, 2)

    # model.head=linear: today's head (pooling / head_hidden), not a transformers head.
    c.model.head, c.model.pooling, c.model.head_hidden = "linear", "mean", 8
    linear = assembly.make_head(sent, 16, c, nnx.Rngs(1), encoder=enc)
    assert (linear.pooling, linear.hidden, linear.input_dropout) == ("mean", 8, False)
    model.heads["s"] = linear
    assert "pooling 'mean'" in hf_heads.head_problem(model, "s", "classification")
    # ...and those keys with model.head=auto are a mistake, said so.
    c.model.head = "auto"
    with pytest.raises(ValueError, match="model.head=linear"):
        assembly.make_head(sent, 16, c, nnx.Rngs(1), encoder=enc)
    # No encoder at hand (CVT's auxiliary heads): the linear head.
    assert assembly.make_head(sent, 16, c, nnx.Rngs(1)).pooling == "mean"
