"""MPNet (``mpnet``) against transformers' MPNet* models: every hidden state with right and left
padding (rows long enough for the relative-position buckets to reach their cap), the buckets
themselves, packed rows, the MLM head, the task models' export and reload, a task checkpoint's
head reused, the tokenizer, and config errors.

Tiny random HF models (width 32, 2 layers, 4 heads) get noise on every parameter (``jitter``:
fresh LayerNorms are 1/0 and would hide a misplaced tensor). Tolerance: 1e-5 absolute (fp32)
at real positions.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="transformers (torch) is the reference")
transformers = pytest.importorskip("transformers")

from test_export import build, jaxtl_logits, max_diff, perturbed, task  # noqa: E402
from test_hf_parity import jitter  # noqa: E402

from jaxtl import export, models  # noqa: E402
from jaxtl.data import packing, tokenize  # noqa: E402
from jaxtl.models import bert, hf_heads  # noqa: E402

TOL = 1e-5
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=200)  # fmt: skip
NLI = ("entailment", "neutral", "contradiction")
TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
PAD = 1


def save_jittered(cls, path, seed=0, **kw):
    torch.manual_seed(seed)
    model = jitter(cls(transformers.MPNetConfig(**{**TINY, **kw}))).eval()
    model.save_pretrained(path)
    return model


def padded(t=150, left=False, seed=0):
    """Rows of t, 3t/5 and t/7 real tokens (ids 3..99, never the pad id 1); at t = 150 distances
    up to 149 reach the last bucket (128 and beyond)."""
    rng = np.random.default_rng(seed)
    ids, mask = np.full((3, t), PAD, np.int64), np.zeros((3, t), np.int64)
    for i, n in enumerate([t, 3 * t // 5, max(2, t // 7)]):
        where = slice(t - n, t) if left else slice(0, n)
        ids[i, where], mask[i, where] = rng.integers(3, 100, n), 1
    return ids, mask


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpnet")
    save_jittered(transformers.MPNetModel, path)
    return path


@pytest.mark.parametrize("t", [1, 9, 40, 129, 300])
def test_relative_buckets_equal_transformers(t):
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    pos = torch.arange(t)
    ref = MPNetEncoder.relative_position_bucket(pos[None, :] - pos[:, None]).numpy()
    np.testing.assert_array_equal(bert.relative_buckets(t), ref)


@pytest.mark.parametrize("left", [False, True], ids=["right", "left"])
def test_every_hidden_state_matches_mpnetmodel(tmp_path, left):
    ref = save_jittered(transformers.MPNetModel, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    assert enc.family == "mpnet" and enc.relative_bias is not None
    ids, mask = padded(left=left)
    with torch.no_grad():
        want = ref(torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
    got = enc(jnp.asarray(ids), jnp.asarray(mask)).hidden_states
    assert len(got) == len(want.hidden_states) == 3
    real = mask.astype(bool)
    for i, (a, b) in enumerate(zip(want.hidden_states, got)):
        assert max_diff(a.numpy(), np.asarray(b), real) <= TOL, f"hidden state {i}"


def test_save_pretrained_round_trip_loads_in_transformers(tmp_path):
    """A fresh jaxtl MPNet saved in HF layout is an MPNetModel with jaxtl's states."""
    from flax import nnx

    cfg = {k: v for k, v in TINY.items()}
    enc = models.build_encoder("mpnet", cfg, rngs=nnx.Rngs(3))
    out = models.save_pretrained(enc, tmp_path / "export")
    written = json.loads((out / "config.json").read_text())
    assert written["model_type"] == "mpnet" and written["architectures"] == ["MPNetModel"]
    again = transformers.AutoModel.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "MPNetModel"
    ids, mask = padded(t=40, seed=4)
    with torch.no_grad():
        want = again(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    got = enc(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
    assert max_diff(want.numpy(), np.asarray(got), mask) <= TOL


def test_a_wrong_bias_fails_parity(tmp_path):
    """The relative bias is not a no-op: without it the states differ."""
    ref = save_jittered(transformers.MPNetModel, tmp_path)
    enc = models.from_pretrained(tmp_path).model
    enc.relative_bias = None
    ids, mask = padded()
    with torch.no_grad():
        want = ref(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    got = enc(jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
    assert max_diff(want.numpy(), np.asarray(got), mask) > 1e-3


def test_packed_rows_equal_each_example_alone(base_dir):
    enc = models.from_pretrained(base_dir).model
    ids, mask = padded(t=40, seed=3)
    lengths = mask.sum(1)
    enc_rows = tokenize.Encoded(
        input_ids=[ids[i, : lengths[i]] for i in range(3)],
        token_type_ids=[np.zeros(n, np.int32) for n in lengths],
        label=np.zeros(3, np.int32), score=np.zeros(3, np.float32), task_id=0,
    )  # fmt: skip
    (b,) = packing.eval_batches(enc_rows, batch_size=1, buckets=(96,), pad_id=PAD)
    assert int((b["example_weight"] > 0).sum()) == 3  # all three in one row
    from jaxtl.models.base import segment_mask

    out = enc(jnp.asarray(b["input_ids"]), jnp.asarray(b["attention_mask"]),
              pair_mask=segment_mask(jnp.asarray(b["segment_ids"])),
              position_ids=jnp.asarray(b["position_ids"])).last_hidden_state  # fmt: skip
    for s in range(3):
        i = int(b["example_index"][0, s])
        alone = enc(jnp.asarray(ids[i : i + 1, : lengths[i]]),
                    jnp.asarray(mask[i : i + 1, : lengths[i]])).last_hidden_state  # fmt: skip
        here = np.asarray(out[0])[b["segment_ids"][0] == s + 1]
        assert max_diff(np.asarray(alone[0]), here) <= TOL


def test_mlm_head_matches_mpnetformaskedlm_and_exports_back(tmp_path):
    """``lm_head`` (dense, exact GELU, LayerNorm; the decoder tied to the word embeddings and
    ``lm_head.bias``) loads, matches, and saves as an MPNetForMaskedLM with the same logits."""
    ref = save_jittered(transformers.MPNetForMaskedLM, tmp_path)
    model = models.from_pretrained(tmp_path, load_lm_head=True).model
    assert isinstance(model.heads["lm"], models.MLMHead)
    ids, mask = padded(t=40)
    _, feats = model.features(jnp.asarray(ids), jnp.asarray(mask))
    ours = np.asarray(model.heads["lm"](feats, model.encoder.tied_embedding()))
    with torch.no_grad():
        want = ref(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    assert max_diff(ours, want, mask) <= TOL
    out = models.save_pretrained(model, tmp_path / "export")
    again = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    assert type(again).__name__ == "MPNetForMaskedLM"
    with torch.no_grad():
        back = again(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    assert max_diff(ours, back, mask) <= TOL


ARCH = {"classification": "ForSequenceClassification", "tagging": "ForTokenClassification",
        "qa": "ForQuestionAnswering"}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(ARCH))
def test_task_model_export_reloads_in_transformers(base_dir, tmp_path, kind):
    labels = {"classification": NLI, "tagging": TAGS, "qa": ()}[kind]
    td = task(kind, labels)
    model, tok, hf_config = build(base_dir, [td])
    params = perturbed(model, seed=7)
    rep = export.export_task_model(model, params, td, tmp_path / "out", hf_config=hf_config)
    assert rep["format"] == "transformers" and rep["architecture"] == f"MPNet{ARCH[kind]}"
    hf = getattr(transformers, f"AutoModel{ARCH[kind]}").from_pretrained(tmp_path / "out").eval()
    assert type(hf).__name__ == f"MPNet{ARCH[kind]}"
    ids, mask = padded(t=40, seed=1)
    mine = jaxtl_logits(model, params, td.key, ids, mask, None)
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    theirs = (np.stack([out.start_logits.numpy(), out.end_logits.numpy()], -1) if kind == "qa"
              else out.logits.numpy())  # fmt: skip
    per_token = kind != "classification"
    assert max_diff(mine, theirs, mask if per_token else None) <= TOL
    back, key, info = export.load_task_model(tmp_path / "out")
    assert info["kind"] == kind
    assert max_diff(mine, jaxtl_logits(back, None, key, ids, mask, None),
                    mask if per_token else None) <= TOL  # fmt: skip


def test_a_task_checkpoints_head_is_reused(tmp_path):
    """An MPNetForSequenceClassification checkpoint as model.name: the encoder loads from under
    ``mpnet.`` and the task head starts from its classifier, giving transformers' logits."""
    ref = save_jittered(transformers.MPNetForSequenceClassification, tmp_path, num_labels=3,
                        id2label=dict(enumerate(NLI)), label2id={n: i for i, n in enumerate(NLI)})  # fmt: skip
    td = task("classification", NLI)
    model, _, _ = build(tmp_path, [td])
    assert hf_heads.head_problem(model, td.key, td.task.kind) is None
    ids, mask = padded(t=40, seed=2)
    with torch.no_grad():
        want = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    assert max_diff(jaxtl_logits(model, None, td.key, ids, mask, None), want) <= TOL


def test_the_tokenizer_loads_and_encodes_pairs_as_transformers(tmp_path):
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"]
    vocab = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>", *words]
    tok = transformers.MPNetTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    tok.save_pretrained(tmp_path / "tok")
    save_jittered(transformers.MPNetModel, tmp_path / "tok", vocab_size=len(vocab))
    loaded = models.from_pretrained(tmp_path / "tok")
    ours = loaded.tokenizer("the cat sat", "a dog ran")
    theirs = tok("the cat sat", "a dog ran")
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["input_ids"][0] == 0 and loaded.tokenizer.pad_token_id == PAD


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"relative_attention_num_buckets": 16}, "relative_attention_num_buckets=16"),
        ({"is_decoder": True}, "is_decoder"),
        ({"hidden_size": 30}, "hidden_size=30 is not divisible"),
    ],  # fmt: skip
)
def test_config_errors_name_the_attribute(tmp_path, edit, message):
    save_jittered(transformers.MPNetModel, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(ValueError, match=message):
        models.from_pretrained(tmp_path)
