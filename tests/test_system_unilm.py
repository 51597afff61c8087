"""UNILM: the four attention masks against the paper's figure, written out by hand; the mixture
of kinds; consecutive-sentence pair rows; resumable batches; the masks' effect on the encoder
(perturbation); the loss falls; and configs/unsupervised_sequential_unilm.py:tiny end to end
through launch.py, its adapt stage starting from the pretrained encoder."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import kill_after_checkpoint, minilm_dir, xla_flags
from flax import nnx

from jaxtl import assembly, models, objectives, paths
from jaxtl import checkpoint as ckpt_lib
from jaxtl.configs import unsupervised_sequential_unilm as unilm_config
from jaxtl.data.batch import IGNORE
from jaxtl.data.masking import Masking
from jaxtl.data.prepare import prepare_tasks
from jaxtl.models import LM_KEY
from jaxtl.models import bert as bert_lib
from jaxtl.models.hf import load_tokenizer
from jaxtl.objectives import unilm

REPO = pathlib.Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- masks (the paper's Figure 1)
# Six tokens: source [CLS] s1 [SEP] (segment 0), target t1 t2 [SEP] (segment 1). Row = query,
# column = key, 1 = may attend.
AM = np.array([[1, 1, 1, 1, 1, 1]])
SEG = np.array([[0, 0, 0, 1, 1, 1]])
FULL = {
    "bidirectional": [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
    ],
    "seq2seq": [
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1],
    ],
    "left_to_right": [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1],
    ],
    "right_to_left": [
        [1, 1, 1, 1, 1, 1],
        [0, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 1],
    ],
}
# Padded: source [CLS] s1 [SEP], target t1 [SEP], one padding token (segment id 0, as batches
# pad token types). No real query sees the padding; the padding query sees only itself.
AM_PAD = np.array([[1, 1, 1, 1, 1, 0]])
SEG_PAD = np.array([[0, 0, 0, 1, 1, 0]])
PADDED = {
    "bidirectional": [
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ],
    "seq2seq": [
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ],
    "left_to_right": [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ],
    "right_to_left": [
        [1, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ],
}


@pytest.mark.parametrize("kind", unilm.KINDS)
def test_masks_equal_the_hand_written_ones(kind):
    got = unilm.unilm_mask(kind, AM, SEG)
    assert got.shape == (1, 1, 6, 6) and got.dtype == bool
    np.testing.assert_array_equal(got[0, 0], np.asarray(FULL[kind], bool))
    np.testing.assert_array_equal(
        unilm.unilm_mask(kind, AM_PAD, SEG_PAD)[0, 0], np.asarray(PADDED[kind], bool)
    )
    # One call serves a batch: rows are independent.
    both = unilm.unilm_mask(kind, np.concatenate([AM, AM_PAD]), np.concatenate([SEG, SEG_PAD]))
    np.testing.assert_array_equal(both[1, 0], np.asarray(PADDED[kind], bool))


def test_bad_kind_and_bad_weights_are_one_line_errors():
    with pytest.raises(ValueError, match="mask kind must be one of"):
        unilm.unilm_mask("causal", AM, SEG)
    with pytest.raises(ValueError, match=r"pretrain\.unilm\.seq2seq must be"):
        unilm.Unilm("builtin/corpus", mix={"seq2seq": -1.0})
    with pytest.raises(ValueError, match=r"pretrain\.unilm: unknown mask kinds \['causal'\]"):
        unilm.Unilm("builtin/corpus", mix={"causal": 1.0})
    with pytest.raises(ValueError, match="every weight is 0"):
        unilm.Unilm("builtin/corpus", mix=dict.fromkeys(unilm.KINDS, 0.0))


# ---------------------------------------------------------------- data
def test_pair_rows_take_consecutive_sentences_source_up_to_half():
    assert unilm.sentences(["A b. C d! E?", "F g."]) == ["A b.", "C d!", "E?", "F g."]
    # block 8: budget 5 tokens, the source takes whole sentences up to 2 of them.
    rows, segs = unilm.pair_rows(
        [[5, 6], [7], [8, 9, 10], [11], [12]], block_size=8, cls_id=1, sep_id=2
    )
    assert [r.tolist() for r in rows] == [[1, 5, 6, 2, 7, 2], [1, 8, 9, 10, 2, 11, 12, 2]]
    assert [s.tolist() for s in segs] == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1]]
    # Too long: longest first; the short side keeps all of itself.
    rows, segs = unilm.pair_rows([[5] * 9, [6]], block_size=8, cls_id=1, sep_id=2)
    assert rows[0].tolist() == [1, 5, 5, 5, 5, 2, 6, 2] and segs[0].tolist() == [0] * 6 + [1] * 2


def _tiny_config(**over):
    c = unilm_config.get_config("tiny")
    with c.unlocked():
        for k, v in over.items():
            node = c
            *parents, leaf = k.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = v
    return c


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(minilm_dir())


def _stream(tokenizer, seed=3, mix=None, **kw):
    masking = Masking.for_tokenizer(tokenizer, len(tokenizer))
    probs = unilm.mixture(dict(mix or unilm.PAPER_MIX))
    return unilm.unilm_stream(
        _tiny_config(), tokenizer, "builtin/corpus", index=0, block_size=32, masking=masking,
        probs=probs, seed=seed, **kw,
    ), masking  # fmt: skip


def test_mixture_proportions_over_many_draws(tokenizer):
    td, _ = _stream(tokenizer, with_eval=False)
    it = td.train_iter
    n = 6000
    kinds = [it.kind_at([3, e, p]) for e in range(3) for p in range(n // 3)]
    freq = {k: kinds.count(k) / n for k in unilm.KINDS}
    # std of a frequency at n=6000 is <= 0.0061; 5 std of slack
    for k, p in unilm.PAPER_MIX.items():
        assert abs(freq[k] - p) < 0.03, (k, freq)
    assert kinds == [it.kind_at([3, e, p]) for e in range(3) for p in range(n // 3)]  # pure
    td, _ = _stream(tokenizer, mix={**unilm.PAPER_MIX, "right_to_left": 0.0}, with_eval=False)
    assert "right_to_left" not in {td.train_iter.kind_at([0, 0, p]) for p in range(600)}


def test_batches_carry_the_kinds_mask_and_replay_after_restore(tokenizer):
    td, masking = _stream(tokenizer)
    it = td.train_iter
    first = []
    for _ in range(12):
        where = [it.seed, it.inner.epoch, it.inner.position]
        first.append((it.kind_at(where), next(it)))
    seen = set()
    for kind, b in first:
        seen.add(kind)
        np.testing.assert_array_equal(
            b["pair_mask"], unilm.unilm_mask(kind, b["attention_mask"], b["token_type_ids"])
        )
        # Rows are [CLS] source [SEP] target [SEP]: two segments in every real row.
        real = b["example_weight"] > 0
        assert (b["token_type_ids"][real] == 1).any(1).all()
        chosen = b["token_labels"] != IGNORE
        assert chosen.any() and not (chosen & (b["token_type_ids"] == 1)).sum() == 0
    assert len(seen) >= 3, seen
    saved = it.state()
    later = [next(it) for _ in range(2)]
    again, _ = _stream(tokenizer)
    again.train_iter.restore(json.loads(json.dumps(saved)))  # checkpoints hold JSON
    for a, b in zip(later, [next(again.train_iter) for _ in range(2)], strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert td.eval_batches and all("pair_mask" in b for b in td.eval_batches)


# ---------------------------------------------------------------- the masks in the encoder
def _encoder():
    cfg = bert_lib.BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
                              intermediate_size=64)  # fmt: skip
    return bert_lib.BertEncoder(cfg, rngs=nnx.Rngs(0))


@nnx.jit
def _run(enc, ids, am, seg, mask):
    return jnp.stack(enc(ids, am, seg, pair_mask=mask).hidden_states)


def _states(enc, ids, am, seg, kind):
    mask = jnp.asarray(unilm.unilm_mask(kind, am, seg))
    return np.asarray(_run(enc, jnp.asarray(ids), jnp.asarray(am), jnp.asarray(seg), mask))


IDS = np.random.default_rng(0).integers(5, 50, (2, 8))
AM8 = np.array([[1] * 8, [1] * 6 + [0] * 2])
SEG8 = np.array([[0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0, 0]])
TOL = 1e-6  # masked keys get exp(min float) = 0 weight: untouched outputs are equal to rounding


def _changed(ids, where):
    out = ids.copy()
    out[:, where] = (out[:, where] + 7) % 45 + 5
    return out


@pytest.mark.parametrize("t", range(7))
def test_left_to_right_output_ignores_tokens_to_its_right(t):
    enc = _encoder()
    base = _states(enc, IDS, AM8, SEG8, "left_to_right")
    moved = _states(enc, _changed(IDS, slice(t + 1, None)), AM8, SEG8, "left_to_right")
    np.testing.assert_allclose(moved[:, :, : t + 1], base[:, :, : t + 1], atol=TOL)
    assert np.abs(moved[-1, 0, t + 1 :] - base[-1, 0, t + 1 :]).max() > 1e-3  # the rest moved
    # Bidirectional: the same change reaches every position (so the check above can fail).
    bi = _states(enc, IDS, AM8, SEG8, "bidirectional")
    bi_moved = _states(enc, _changed(IDS, slice(t + 1, None)), AM8, SEG8, "bidirectional")
    assert np.abs(bi_moved[-1, 0, : t + 1] - bi[-1, 0, : t + 1]).max() > 1e-3


def test_right_to_left_and_seq2seq_see_what_the_figure_says():
    enc = _encoder()
    r2l = _states(enc, IDS, AM8, SEG8, "right_to_left")
    r2l_moved = _states(enc, _changed(IDS, slice(0, 4)), AM8, SEG8, "right_to_left")
    np.testing.assert_allclose(r2l_moved[:, :, 4:], r2l[:, :, 4:], atol=TOL)
    # seq2seq, row 0: source = positions 0-2, target = 3-7.
    s2s = _states(enc, IDS, AM8, SEG8, "seq2seq")
    tgt_moved = _states(enc, _changed(IDS, slice(5, 8)), AM8, SEG8, "seq2seq")
    np.testing.assert_allclose(tgt_moved[:, 0, :5], s2s[:, 0, :5], atol=TOL)  # source + t<=4
    src_moved = _states(enc, _changed(IDS, slice(1, 2)), AM8, SEG8, "seq2seq")
    # every target position sees the source
    assert np.abs(src_moved[-1, 0, 3:] - s2s[-1, 0, 3:]).max(-1).min() > 1e-4
    # Bidirectional is the plain padding mask on real tokens.
    plain = enc(jnp.asarray(IDS), jnp.asarray(AM8), jnp.asarray(SEG8)).hidden_states
    bi = _states(enc, IDS, AM8, SEG8, "bidirectional")
    real = AM8.astype(bool)
    for layer, h in enumerate(plain):
        np.testing.assert_allclose(bi[layer][real], np.asarray(h)[real], atol=1e-5)


# ---------------------------------------------------------------- training
def test_loss_falls_on_a_fixed_text_under_every_mask(tokenizer):
    td, masking = _stream(tokenizer, with_eval=False)
    raw = next(td.train_iter.inner)  # one fixed batch of pair rows, unmasked
    batches = {
        k: jax.tree.map(jnp.asarray, unilm.apply(raw, k, masking, np.random.default_rng(1),
                                                 segment_types=True))
        for k in unilm.KINDS
    }  # fmt: skip
    cfg = bert_lib.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=2,
                              num_heads=4, intermediate_size=64)  # fmt: skip
    rngs = nnx.Rngs(0)
    enc = bert_lib.BertEncoder(cfg, rngs=rngs)
    model = models.TransferModel(enc, {LM_KEY: bert_lib.mlm_head(cfg, rngs=rngs)})
    loss_fn = objectives.switch_loss([td], objective=None)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    def mean_loss(p, b):
        total, m = loss_fn(nnx.merge(graphdef, p), b, nnx.Rngs(dropout=0), False)
        return total / m["denominator"]

    @jax.jit
    def step(p, o, b):
        loss, g = jax.value_and_grad(mean_loss)(p, b)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    evaluate = jax.jit(mean_loss)
    first = {k: float(evaluate(params, b)) for k, b in batches.items()}
    for _ in range(10):
        for b in batches.values():
            params, opt, _ = step(params, opt, b)
    last = {k: float(evaluate(params, b)) for k, b in batches.items()}
    for k in unilm.KINDS:
        assert last[k] < 0.5 * first[k], (k, first, last)


# ---------------------------------------------------------------- the config, end to end
PRETRAIN, ADAPT = 10, 4
OVERRIDES = {
    "pretrain.optim.lr": 3e-3,
    "train.steps": ADAPT,
    "checkpoint.every_steps": 0,  # stage-end checkpoints only: step PRETRAIN's is kept
    # Fine-tuning at a tiny rate: Adam moves a parameter by about lr per step, so the encoder
    # the run ends with is within ADAPT * lr of the one adapting started from.
    "optim.lr": 1e-6,
}


def _launch_cmd(wd, model_dir, data_dir, overrides):
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=unsupervised_sequential",
           f"--workdir={wd}",
           f"--config={REPO / 'configs' / 'unsupervised_sequential_unilm.py'}:tiny",
           f"--config.model.name={model_dir}", f"--config.data.dir={data_dir}"]  # fmt: skip
    return cmd + [f"--config.{k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def launched(tiny_bert_dir, data_dir, tmp_path_factory):
    wd = tmp_path_factory.mktemp("unilm") / "wd"
    cmd = _launch_cmd(wd, tiny_bert_dir, data_dir, OVERRIDES)
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    return wd


@pytest.mark.slow  # about 60-75 s on the shared 2-core CPU: launch.py start-up and two stages
def test_tiny_config_runs_both_stages_and_adapts_the_pretrained_encoder(
    launched, tiny_bert_dir, data_dir
):
    wd = launched
    config = json.loads((wd / "config.json").read_text())
    assert config["pretrain"]["objective"] == "unilm"
    assert json.loads((wd / "tasks.json").read_text())["objective"] == "unilm"
    results = json.loads((wd / "results.json").read_text())
    assert results["wikitext"]["perplexity"] > 1.0  # WikiText-103 subset, its dev split
    test = json.loads((wd / "results_test.json").read_text())  # and its test articles
    assert 1.0 < test["wikitext"]["perplexity"] != results["wikitext"]["perplexity"]
    assert "accuracy" in results["sst2"]
    records = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["stage"] for r in train] == ["pretrain"] * PRETRAIN + ["adapt"] * ADAPT
    assert all(np.isfinite(r["loss"]) for r in train)
    phases = json.loads((wd / "plan.json").read_text())["phases"]
    assert [p["stage"] for p in phases] == ["pretrain", "adapt"]

    c = unilm_config.get_config("tiny")
    c.model.name, c.data.dir = str(tiny_bert_dir), str(data_dir)
    lmm = assembly.load_lm_model(c)
    targets = prepare_tasks(c.target.tasks, c, lmm.tokenizer, with_train=False)
    model = assembly.build_model(lmm.encoder, targets, c, extra_heads={LM_KEY: lmm.head})
    like = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    start = paths.flatten(like)
    pretrained = paths.flatten(ckpt_lib.load_params(wd, like, step=PRETRAIN)[0])
    final = paths.flatten(ckpt_lib.load_params(wd, like, step=PRETRAIN + ADAPT)[0])

    def moved(a, b, prefix):
        return max(float(np.abs(a[p] - b[p]).max()) for p in a if p.startswith(prefix))

    assert moved(start, pretrained, "encoder/") > 5e-3  # UNILM pretraining moved the encoder
    # Stage 2 began from stage 1's encoder (not the checkpoint's): only its own tiny steps apart.
    assert moved(pretrained, final, "encoder/") < 1e-4
    assert moved(pretrained, final, "heads/sst2/") > 0  # the new head trained


def _train_losses(wd):
    records = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["task"], r["loss"]) for r in records if r["split"] == "train"}


@pytest.mark.slow  # two more launches (killed, resumed): about two minutes
def test_kill_and_resume_replays_the_same_kinds_and_masks(
    launched, tiny_bert_dir, data_dir, tmp_path
):
    """kill -9 mid-pretraining after a checkpoint, re-run: the same loss at every step as the
    uninterrupted run (the batches' mask kinds and token masks come back with the iterator)."""
    wd = tmp_path / "wd"
    cmd = _launch_cmd(wd, tiny_bert_dir, data_dir, {**OVERRIDES, "checkpoint.every_steps": 4})
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    kill_after_checkpoint(cmd, wd, 4, env=env, cwd=REPO, timeout=300)
    p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    got, ref = _train_losses(wd), _train_losses(launched)
    assert sorted(got) == list(range(1, PRETRAIN + ADAPT + 1))
    assert got == ref  # exact: same batches, kinds, masks and losses at every step
