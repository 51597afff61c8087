"""Encoder mechanics shared by every family: attention path, state, padding, dropout, dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxtl import models, paths
from jaxtl.models import base

BERT = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16)  # fmt: skip
GPT2 = dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16)


def encoders():
    rngs = nnx.Rngs(0)
    yield models.build_encoder("bert", BERT, rngs=rngs)
    yield models.build_encoder("roberta", dict(BERT, pad_token_id=1), rngs=rngs)
    yield models.build_encoder("electra", dict(BERT, embedding_size=8), rngs=rngs)
    yield models.build_encoder("gpt2", GPT2, rngs=rngs)
    yield models.BiLSTMEncoder(
        models.BiLSTMConfig(vocab_size=50, embed_size=8, hidden_size=8), rngs=rngs
    )


def test_fused_attention_matches_explicit_softmax():
    """jax.nn.dot_product_attention with a padding mask == softmax(QK^T/sqrt(d)) V, to 1e-6."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(kk, (2, 6, 3, 8)) for kk in (k1, k2, k3))
    mask = base.padding_mask(jnp.array([[1] * 6, [1, 1, 1, 0, 0, 0]]))
    fused = jax.nn.dot_product_attention(q, k, v, mask=mask)
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k) / np.sqrt(8)
    weights = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
    explicit = jnp.einsum("bnqk,bknd->bqnd", weights, v)
    assert np.abs(np.asarray(fused - explicit)).max() <= 1e-6
    # the training path (explicit, with dropout rate 0 forced through it) agrees too
    train = base.attention(q, k, v, mask, rate=1e-9, deterministic=False, rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(train - explicit)).max() <= 1e-5


@pytest.mark.parametrize("enc", list(encoders()), ids=lambda e: e.family)
def test_encoder_contract(enc):
    """Shared attributes, hidden_states layout, params-only state, named axes, jit + dropout."""
    ids = jnp.array([[3, 4, 5, 6, 7], [3, 4, 5, 1, 1]]) % 50
    mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out = enc(ids, mask)
    assert len(out.hidden_states) == enc.num_layers + 1
    assert all(h.shape == (2, 5, enc.hidden_size) for h in out.hidden_states)
    assert isinstance(enc.layers, nnx.List) and enc.embeddings is not None

    graphdef, params, rest = nnx.split(enc, nnx.Param, ...)
    assert not jax.tree_util.tree_leaves(rest), "encoder state must be parameters only"
    names = list(paths.iter_paths(nnx.to_pure_dict(params)))
    assert all(n.startswith(("embeddings/", "layers/", "final_norm/")) for n in names), names
    specs = paths.flatten(nnx.to_pure_dict(nnx.get_partition_spec(params)))
    for name, spec in specs.items():
        if name.endswith(("kernel", "embedding")):
            assert any(a is not None for a in spec), f"{name} has no logical axis names"

    @jax.jit
    def run(params, key):
        m = nnx.merge(graphdef, params)
        return m(ids, mask, deterministic=False, rngs=nnx.Rngs(dropout=key)).last_hidden_state

    a, b = run(params, jax.random.key(1)), run(params, jax.random.key(2))
    assert np.abs(np.asarray(a - b)).max() > 1e-4, "dropout must act when deterministic=False"
    np.testing.assert_array_equal(run(params, jax.random.key(1)), a)


def test_bilstm_padding_does_not_leak():
    """Right padding: real positions equal the unpadded run in both directions."""
    cfg = models.BiLSTMConfig(vocab_size=50, embed_size=16, hidden_size=8, num_layers=2)
    enc = models.BiLSTMEncoder(cfg, rngs=nnx.Rngs(0))
    ids = jnp.array([[5, 6, 7]])
    padded = jnp.array([[5, 6, 7, 9, 9]])
    a = enc(ids, jnp.ones_like(ids)).last_hidden_state
    b = enc(padded, jnp.array([[1, 1, 1, 0, 0]])).last_hidden_state
    np.testing.assert_allclose(a[0], b[0, :3], atol=1e-6)
    assert enc.hidden_size == 16 and enc.embeddings.project is None


def test_bilstm_config_from_tokenizer():
    tok = models.from_pretrained("minilm").tokenizer
    cfg = models.BiLSTMConfig.for_tokenizer(tok, hidden_size=4)
    assert cfg.vocab_size == len(tok) and cfg.pad_token_id == tok.pad_token_id


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="num_heads=3"):
        models.BertConfig(vocab_size=10, hidden_size=16, num_heads=3)
    with pytest.raises(ValueError, match="hidden_act='mish'"):
        models.BertConfig(vocab_size=10, hidden_act="mish")
    with pytest.raises(ValueError, match="unknown model_type 'bart'"):
        models.build_encoder("bart", {}, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "name,approximate", [("gelu", False), ("gelu_new", True), ("gelu_pytorch_tanh", True)]
)
def test_gelu_keeps_only_its_input_for_backward_and_matches_autodiff(name, approximate, capsys):
    """The encoders' GELU has a hand-written backward (less activation memory); its values and
    gradients must equal jax.nn.gelu's (tolerance 1e-6, f32) and it must save nothing but x."""
    from jax.ad_checkpoint import print_saved_residuals

    act = base.activation(name)
    x = jnp.linspace(-6.0, 6.0, 241, dtype=jnp.float32).reshape(1, -1) * jnp.ones((3, 1))
    ref = lambda y: jax.nn.gelu(y, approximate=approximate)  # noqa: E731
    np.testing.assert_allclose(act(x), ref(x), atol=1e-6, rtol=0)
    weights = jnp.cos(x)  # a non-uniform cotangent
    ours = jax.grad(lambda y: (act(y) * weights).sum())(x)
    theirs = jax.grad(lambda y: (ref(y) * weights).sum())(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    capsys.readouterr()
    print_saved_residuals(lambda y: act(y).sum(), x)
    saved = [line for line in capsys.readouterr().out.splitlines() if "[3,241]" in line]
    assert len(saved) == 1 and "argument" in saved[0], saved


def _f32_layer_norm(x, scale, module):
    """LayerNorm in float32 by its textbook formula, ``module``'s bias (rounded to bf16)."""
    mean = x.mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-12) * scale
    if module.bias is not None:
        y = y + module.bias[...].astype(jnp.bfloat16).astype(jnp.float32)
    return y


@pytest.mark.parametrize("use_bias", [True, False])
def test_layer_norm_matches_nnx_values_and_autodiff_gradients(use_bias, capsys):
    """The encoders' LayerNorm has a hand-written backward (closed form, x-hat recomputed); its
    values must equal nnx.LayerNorm's exactly and its gradients (input, scale, bias) those of
    autodiff through nnx.LayerNorm to 1e-5 (f32), with only the input kept at full size. In
    bfloat16 the values are equal and the input gradient is the f32 one rounded once (within
    one bfloat16 step, 2^-7 relative)."""
    from jax.ad_checkpoint import print_saved_residuals

    keys = jax.random.split(jax.random.key(1), 4)
    x = jax.random.normal(keys[0], (3, 5, 64)) * 3.0 + 1.0
    weights = jax.random.normal(keys[1], (3, 5, 64))  # a non-uniform cotangent

    def pair(dtype):
        kw = dict(epsilon=1e-12, use_bias=use_bias, dtype=dtype, rngs=nnx.Rngs(0))
        ours = base.layer_norm(
            64, 1e-12, use_bias=use_bias, dtype=dtype, pre_norm=True, rngs=nnx.Rngs(0)
        )
        ref = nnx.LayerNorm(64, use_fast_variance=False, **kw)
        for m in (ours, ref):
            m.scale[...] = 1.0 + 0.5 * jax.random.normal(keys[2], (64,))
            if use_bias:
                m.bias[...] = jax.random.normal(keys[3], (64,))
        return ours, ref

    def grads(m, x):
        loss = lambda m, x: (m(x).astype(jnp.float32) * weights).sum()  # noqa: E731
        return nnx.grad(loss, argnums=(0, 1))(m, x)

    ours, ref = pair(jnp.float32)
    assert isinstance(ours, base.LayerNorm)
    np.testing.assert_array_equal(ours(x), ref(x))
    (p_ours, dx_ours), (p_ref, dx_ref) = grads(ours, x), grads(ref, x)
    np.testing.assert_allclose(dx_ours, dx_ref, atol=1e-5, rtol=0)
    for name in ("scale", "bias") if use_bias else ("scale",):
        np.testing.assert_allclose(p_ours[name][...], p_ref[name][...], atol=1e-5, rtol=0)
    capsys.readouterr()
    print_saved_residuals(lambda x: ours(x).sum(), x)
    saved = [line for line in capsys.readouterr().out.splitlines() if "[3,5,64]" in line]
    assert len(saved) == 1 and "argument" in saved[0], saved

    # bfloat16: against the f32 gradient of the same bf16-rounded input, scale and cotangent,
    # ours is within a bfloat16 step of the largest entry and no further off than autodiff's.
    ours16, ref16 = pair(jnp.bfloat16)
    x16 = x.astype(jnp.bfloat16)
    assert ours16(x16).dtype == jnp.bfloat16
    np.testing.assert_array_equal(ours16(x16), ref16(x16))
    w16 = weights.astype(jnp.bfloat16).astype(jnp.float32)
    rounded = lambda m: m.scale[...].astype(jnp.bfloat16).astype(jnp.float32)  # noqa: E731
    exact = jax.grad(lambda y: (_f32_layer_norm(y, rounded(ours16), ours16) * w16).sum())(
        x16.astype(jnp.float32)
    )
    loss16 = lambda m, y: (m(y).astype(jnp.float32) * weights).sum()  # noqa: E731
    err = {
        name: float(jnp.abs(nnx.grad(loss16, argnums=1)(m, x16).astype(jnp.float32) - exact).max())
        for name, m in (("ours", ours16), ("autodiff", ref16))
    }
    assert err["ours"] <= 2.0**-8 * float(jnp.abs(exact).max()), err
    assert err["ours"] <= err["autodiff"], err

    # Normalising over other axes is nnx.LayerNorm's own call.
    wide = base.LayerNorm(5 * 64, reduction_axes=(1, 2), feature_axes=(1, 2), rngs=nnx.Rngs(0))
    ref_wide = nnx.LayerNorm(5 * 64, reduction_axes=(1, 2), feature_axes=(1, 2), rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(wide(x), ref_wide(x))


def test_pre_norm_blocks_take_the_closed_form_layer_norm_and_post_norm_blocks_autodiffs():
    """The hand-written backward is for norms that open a residual branch (GPT-2's and
    ModernBERT's blocks: linear in depth on CPU); BERT's post-norm blocks keep autodiff's,
    which XLA fuses better there (BENCHMARKS.md section 10)."""
    from jaxtl.models import bert, gpt2, modernbert

    def layer(family, hf):
        return models.build_encoder(family, hf, rngs=nnx.Rngs(0)).layers[1]

    small = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32)  # fmt: skip
    g = layer("gpt2", dict(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32))
    m = layer("modernbert", dict(small, max_position_embeddings=32))
    b = layer("bert", dict(small, max_position_embeddings=32))
    assert isinstance(g, gpt2.GPT2Layer) and isinstance(m, modernbert.ModernBertLayer)
    for norm in (g.attention_norm, g.mlp_norm, m.attention_norm, m.mlp_norm):
        assert isinstance(norm, base.LayerNorm)
    assert isinstance(b, bert.BertLayer)
    for norm in (b.attention_norm, b.mlp_norm):
        assert isinstance(norm, nnx.LayerNorm) and not isinstance(norm, base.LayerNorm)


def test_dropout_draws_8_bit_masks_and_keeps_the_expectation():
    """Masks compare 8-bit integers with round(keep * 256): for rate 0.1 the realised keep
    fraction is 230/256 = 0.8984 (not 0.9), and the scale uses it, so E[dropout(x)] = x. On 2^23
    draws the standard error of the fraction is ~1e-4, so 5e-4 separates 0.8984 from 0.9."""
    x = jnp.ones((1 << 23,), jnp.float32)
    y = base.dropout(x, 0.1, deterministic=False, rngs=nnx.Rngs(dropout=0))
    kept = float((y != 0).mean())
    assert abs(kept - 230 / 256) < 5e-4, kept
    assert abs(float(y.mean()) - 1.0) < 5e-4  # inverted dropout: expectation preserved
    np.testing.assert_allclose(float(y.max()), 256 / 230, rtol=1e-6)
    again = base.dropout(x, 0.1, deterministic=False, rngs=nnx.Rngs(dropout=0))
    assert bool((again == y).all())  # a key gives one mask
    tiny = base.dropout(x[:64], 0.001, deterministic=False, rngs=nnx.Rngs(dropout=0))
    assert bool((tiny == 1.0).all())  # below half a level (1/512) nothing is dropped


def test_random_bytes_split_words_and_keep_the_classic_bits():
    """Dropout's bytes come four to a 32-bit word under either threefry: under the classic one
    exactly the bits ``jax.random.bits(..., uint8)`` gives (single-device runs draw the masks
    they always drew); under the partitionable one from words for a last axis a quarter as long
    (not a hash per byte), each byte lane uniform. On 2^20 draws a lane's mean has standard
    error 0.07 and its fraction below 230 one of 3e-4, so 0.5 and 1.5e-3 are five sigma."""
    key = jax.random.key(3)
    for shape in ((3, 5, 16), (2, 7)):  # 7: not a multiple of four, drawn a byte at a time
        with jax.threefry_partitionable(False):
            np.testing.assert_array_equal(
                base.random_bytes(key, shape), jax.random.bits(key, shape, jnp.uint8)
            )
    with jax.threefry_partitionable(True):
        jaxpr = jax.make_jaxpr(lambda k: base.random_bytes(k, (3, 5, 16)))(key)
        draws = [e.params for e in jaxpr.eqns if e.primitive.name == "random_bits"]
        assert [(d["bit_width"], d["shape"]) for d in draws] == [(32, (3, 5, 4))], draws
        lanes = np.asarray(base.random_bytes(key, (1 << 20, 4))).astype(np.float64)
    np.testing.assert_allclose(lanes.mean(axis=0), 127.5, atol=0.5)
    np.testing.assert_allclose((lanes < 230).mean(axis=0), 230 / 256, atol=1.5e-3)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_embedding_lookup_gradient_equals_autodiff_of_take(dtype):
    """base.Embed's hand-written backward (zeros made from the cotangent, so XLA cannot create
    them at the start of the step) gives take's gradient: repeated ids accumulate, others 0."""
    emb = base.embed(50, 8, ("vocab", "embed"), dtype=dtype, rngs=nnx.Rngs(0))
    assert isinstance(emb, base.Embed)
    table = emb.embedding[...]
    ids = jnp.array([[3, 7, 3, 0], [49, 3, 7, 7]], jnp.int32)
    w = jax.random.normal(jax.random.key(1), (2, 4, 8))

    def ours(e):
        return jnp.sum(e(ids).astype(jnp.float32) * w)

    def reference(t):
        return jnp.sum(jnp.take(t.astype(dtype), ids, axis=0).astype(jnp.float32) * w)

    np.testing.assert_array_equal(
        np.asarray(emb(ids)), np.asarray(jnp.take(table, ids, axis=0).astype(dtype))
    )
    (g_ours,) = jax.tree.leaves(nnx.grad(ours)(emb))
    g_ref = jax.grad(reference)(table)
    assert g_ours.dtype == g_ref.dtype == jnp.float32
    # float32: exact; bfloat16: the same bf16 sums, so exact as well (tolerance 0).
    np.testing.assert_array_equal(np.asarray(g_ours), np.asarray(g_ref))
    assert np.count_nonzero(np.abs(np.asarray(g_ours)).sum(-1)) == 4  # ids 0, 3, 7, 49


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("rows", [2, base.FEW_ROWS])
def test_a_few_rows_table_takes_its_gradient_without_a_scatter(dtype, rows):
    """Token types (every token of a single-sentence batch looks up row 0): the gradient is one
    masked float32 sum per row, not a scatter-add (atomics on one row serialise on a GPU). The
    sums are those of take's gradient in float64 to float32 rounding (rtol 1e-5), or to one
    bf16 rounding of the float32 sum (rtol 2^-8) for a bf16 table; ids out of range add
    nothing, as with the scatter."""
    emb = base.embed(rows, 8, (None, "embed"), dtype=dtype, rngs=nnx.Rngs(0))
    ids = jax.random.randint(jax.random.key(2), (6, 40), 0, rows).at[0, :30].set(0)
    ids = ids.at[1, 0].set(rows)  # out of range: its gradient is dropped, as the scatter drops it
    w = jax.random.normal(jax.random.key(3), (6, 40, 8))

    def loss(e):
        return jnp.sum(e(ids).astype(jnp.float32) * w)

    (g,) = jax.tree.leaves(nnx.grad(loss)(emb))
    assert "scatter-add" not in str(jax.make_jaxpr(nnx.grad(loss))(emb))
    w_seen = np.asarray(w.astype(dtype).astype(jnp.float32), np.float64)
    truth = np.zeros((rows, 8))
    flat_ids, flat_w = np.asarray(ids).reshape(-1), w_seen.reshape(-1, 8)
    for r in range(rows):
        truth[r] = flat_w[flat_ids == r].sum(0)
    rtol = 1e-5 if dtype == jnp.float32 else 2.0**-8
    np.testing.assert_allclose(np.asarray(g, np.float64), truth, rtol=rtol, atol=1e-5)


def test_bert_positions_counted_here_are_one_lookup_for_the_batch():
    """Without ``position_ids`` BERT looks its positions up once, [1,T] (the gradient then sums
    over the batch before the scatter); outputs equal those of the explicit [B,T] ids exactly,
    and the gradients to float32 summation order (rtol 1e-5)."""
    from jaxtl.models import bert

    cfg = models.BertConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                            intermediate_size=32)  # fmt: skip
    enc = models.BertEncoder(cfg, rngs=nnx.Rngs(0))
    ids = jax.random.randint(jax.random.key(0), (3, 7), 1, 50)
    assert bert.table_positions(enc.cfg, ids).shape == (1, 7)
    explicit = jnp.broadcast_to(jnp.arange(7), ids.shape)

    def loss(e, position_ids):
        return jnp.sum(e(ids, position_ids=position_ids).last_hidden_state ** 2)

    np.testing.assert_array_equal(
        np.asarray(enc(ids).last_hidden_state),
        np.asarray(enc(ids, position_ids=explicit).last_hidden_state),
    )
    g_here = nnx.to_pure_dict(nnx.state(nnx.grad(loss)(enc, None)))
    g_explicit = nnx.to_pure_dict(nnx.state(nnx.grad(loss)(enc, explicit)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 g_here, g_explicit)  # fmt: skip
