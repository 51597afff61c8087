"""Sequence packing (jaxtl.data.packing): a packed batch gives every example the logits and
loss it gets alone, deterministically and resumably, with under 5% padding on SST-2."""

import json
import pathlib
import signal

import jax
import ml_collections
import numpy as np
import pytest
from conftest import minilm_dir, small_config
from flax import nnx

from jaxtl import assembly, models, train
from jaxtl import config as config_lib
from jaxtl.data import batching, get_task, packing, tokenize
from jaxtl.data.prepare import TaskData
from jaxtl.models import hf
from jaxtl.models.heads import POOLINGS
from jaxtl.objectives import switch_loss, switch_predict
from jaxtl.objectives.supervised import segment_kw

TOL = 1e-5  # fp32: packed and unpacked differ only in summation order

FAMILIES = {
    "bert": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 64, "max_position_embeddings": 512, "type_vocab_size": 2},
    # RoBERTa: positions start at pad_token_id + 1, so packing must add the family's offset.
    "roberta": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                "intermediate_size": 64, "max_position_embeddings": 514, "type_vocab_size": 1,
                "pad_token_id": 1},
    # MPNet: RoBERTa's positions and a relative-position bias over the row.
    "mpnet": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "max_position_embeddings": 514},
    # GPT-2: causal, pooled on each segment's last token.
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256},
}  # fmt: skip
TASKS = {
    "classification": "builtin/sentiment",
    "multilabel": "builtin/mentions",
    "pair_classification": "builtin/entailment",
    "regression": "builtin/similarity",
    "tagging": "builtin/ner",
}


@pytest.fixture(scope="module")
def tokenizer():
    return hf.load_tokenizer(minilm_dir())


def _model(family, task, pooling="auto"):
    cfg = dict(FAMILIES[family], vocab_size=30522)
    enc = models.build_encoder(family, cfg, rngs=nnx.Rngs(0))
    config = config_lib.base_config()
    if pooling != "auto":
        config.model.head, config.model.pooling = "linear", pooling
    head = assembly.make_head(task, enc.hidden_size, config, nnx.Rngs(1), encoder=enc)
    return models.TransferModel(enc, {"t": head})


def _logits(model, batch):
    b = {k: jax.numpy.asarray(v) for k, v in batch.items()}
    kw = {}
    if packing.is_packed(batch):
        kw = {"segment_ids": b["segment_ids"], "position_ids": b["position_ids"]}
    _, feats = model.features(b["input_ids"], b["attention_mask"], b["token_type_ids"], **kw)
    return np.asarray(model.heads["t"](feats, b["attention_mask"], **segment_kw(b)))


def _per_example(batches, logits, enc, token_level, buckets):
    """{example index: its logits} from unpacked or packed batches."""
    out = {}
    if not packing.is_packed(batches[0]):
        order = iter(batching.eval_order(enc, buckets=buckets))
        for b, lg in zip(batches, logits):
            for r in np.flatnonzero(b["example_weight"] > 0):
                i = next(order)
                out[i] = lg[r, : len(enc.input_ids[i])] if token_level else lg[r]
        return out
    for b, lg in zip(batches, logits):
        for r, s in zip(*np.nonzero(b["example_weight"] > 0)):
            i = int(b["example_index"][r, s])
            out[i] = lg[r][b["segment_ids"][r] == s + 1] if token_level else lg[r, s]
    return out


CASES = [("bert", k) for k in sorted(TASKS)] + [
    ("roberta", "pair_classification"), ("roberta", "tagging"),
    ("mpnet", "pair_classification"), ("mpnet", "tagging"),
    ("gpt2", "classification"), ("gpt2", "multilabel"), ("gpt2", "regression"),
    ("gpt2", "tagging"),
]  # fmt: skip


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_packed_batch_gives_each_example_its_unpacked_logits_and_loss(family, kind, tokenizer):
    task = get_task(TASKS[kind])
    examples = task.load("dev")[:16]
    enc = tokenize.encode(task, examples, tokenizer, max_length=32)
    model = _model(family, task)
    buckets, pad = (32, 64), (1 if family in ("roberta", "mpnet") else 0)
    flat = batching.eval_batches(enc, batch_size=4, buckets=buckets, pad_id=pad)
    packed = packing.eval_batches(enc, batch_size=4, buckets=buckets, pad_id=pad)
    assert max(int((b["example_weight"] > 0).sum(1).max()) for b in packed) >= 2
    token_level = kind == "tagging"
    a = _per_example(flat, [_logits(model, b) for b in flat], enc, token_level, buckets)
    b = _per_example(packed, [_logits(model, b) for b in packed], enc, token_level, buckets)
    assert sorted(a) == sorted(b) == list(range(len(examples)))
    worst = max(float(np.max(np.abs(a[i] - b[i]))) for i in a)
    assert worst <= TOL, f"{family} {kind}: packed logits differ by {worst:.2e}"
    # The loss of the switch (the training objective, sum and denominator) is the same too.
    td = TaskData(task, 0, "t", len(enc), None, [], "dev")
    loss = switch_loss([td])
    rngs = nnx.Rngs(dropout=0)

    def total(batches):
        sums = [loss(model, jax.tree.map(jax.numpy.asarray, x), rngs, False) for x in batches]
        return sum(float(s) for s, _ in sums), sum(float(m["denominator"]) for _, m in sums)

    (la, da), (lb, db) = total(flat), total(packed)
    assert da == db and abs(la - lb) <= TOL * max(1.0, abs(la)), (la, lb)


@pytest.mark.parametrize("pooling", [p for p in POOLINGS if p != "cls"])
def test_every_linear_head_pooling_per_segment_matches_unpacked(pooling, tokenizer):
    task = get_task("builtin/sentiment")
    enc = tokenize.encode(task, task.load("dev")[:16], tokenizer, max_length=32)
    model = _model("bert", task, pooling=pooling)
    flat = batching.eval_batches(enc, batch_size=4, buckets=(32,))
    packed = packing.eval_batches(enc, batch_size=4, buckets=(32,))
    a = _per_example(flat, [_logits(model, b) for b in flat], enc, False, (32,))
    b = _per_example(packed, [_logits(model, b) for b in packed], enc, False, (32,))
    assert max(float(np.max(np.abs(a[i] - b[i]))) for i in a) <= TOL


def test_packed_predictions_come_back_in_example_order(tokenizer):
    """Scores and prediction records of packed eval batches equal the unpacked ones."""
    from jaxtl import metrics, predictions
    from jaxtl import step as step_lib

    for name in ("builtin/sentiment", "builtin/ner"):
        task = get_task(name)
        examples = task.load("dev")[:20]
        enc = tokenize.encode(task, examples, tokenizer, max_length=32)
        model = _model("bert", task)
        graphdef, params = nnx.split(model, nnx.Param)
        td = TaskData(task, 0, "t", len(enc), None, [], "dev")
        predict = step_lib.make_eval_step(graphdef, switch_predict([td]))
        got = []
        for make in (batching.eval_batches, packing.eval_batches):
            batches = make(enc, batch_size=4, buckets=(32,))
            outs = [jax.tree.map(np.asarray, predict(params, b)) for b in batches]
            rows = predictions.records(task, examples, enc, (32,), outs, batches, labelled=True)
            got.append((metrics.score_task(task, outs, batches), rows))
        (sa, ra), (sb, rb) = got
        assert sa == pytest.approx(sb)
        assert [r["id"] for r in rb] == list(range(len(examples)))
        for x, y in zip(ra, rb):
            assert x.get("label") == y.get("label") and x.get("tags") == y.get("tags")
            assert x.get("probs", [0]) == pytest.approx(y.get("probs", [0]), abs=1e-5)


def test_packing_is_deterministic_and_covers_every_example_once_per_epoch(tokenizer):
    task = get_task("builtin/sentiment")
    enc = tokenize.encode(task, task.load("train")[:300], tokenizer, max_length=64)

    def epochs(seed, n=2):
        """Batches of the first ``n`` epochs, by epoch (repacking changes their number)."""
        it = packing.PackedTrainBatches(enc, batch_size=4, buckets=(32, 64), seed=seed)
        out = [[] for _ in range(n)]
        while True:
            x = next(it)
            if it.epoch == n:
                return out
            out[it.epoch].append(x)

    a, b = epochs(0), epochs(0)
    for x, y in zip(sum(a, []), sum(b, []), strict=True):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    for batches in a:  # every example once per epoch
        idx = np.concatenate([x["example_index"][x["example_weight"] > 0] for x in batches])
        assert sorted(idx.tolist()) == list(range(len(enc)))
    # rows_per_epoch counts the epoch's packed rows: the real (non-padding) rows of its batches.
    it = packing.PackedTrainBatches(enc, batch_size=4, buckets=(32, 64), seed=0)
    real_rows = sum(int((x["segment_ids"] > 0).any(axis=1).sum()) for x in a[0])
    assert it.rows_per_epoch() == real_rows and len(enc) / real_rows > 1.5  # several per row
    # A new epoch repacks: other rows; another seed, other batches.
    assert not np.array_equal(a[0][0]["input_ids"], a[1][0]["input_ids"])
    c = epochs(1, 1)
    assert not all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a[0], c[0]))
    # Every row fits and each segment restarts its positions.
    for x in sum(a, []):
        seg, pos = x["segment_ids"], x["position_ids"]
        starts = (seg > 0) & (np.concatenate([np.zeros_like(seg[:, :1]), seg[:, :-1]], 1) != seg)
        assert (pos[starts] == 0).all() and (x["attention_mask"] == (seg > 0)).all()


def best_fit_reference(lengths, order, capacity, max_segments):
    """Best fit as lists of lists: each example in turn into the open row with the least free
    space that holds it; among rows of equal free space, the one that last took an example (the
    packer keeps open rows in a stack per free space)."""
    rows, free, last = [], [], []
    for step, i in enumerate(order):
        fits = [r for r in range(len(rows)) if len(rows[r]) < max_segments
                and lengths[i] <= free[r]]  # fmt: skip
        if fits:
            r = min(fits, key=lambda r: (free[r], -last[r]))
        else:
            r = len(rows)
            rows.append([])
            free.append(capacity)
            last.append(-1)
        rows[r].append(int(i))
        free[r] -= int(lengths[i])
        last[r] = step
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pack_is_best_fit_in_a_compact_layout(seed):
    rng = np.random.default_rng(seed)
    n = 700
    lengths = np.clip(rng.lognormal(2.4, 0.8, n).astype(np.int64) + 2, 3, 64)
    order = rng.permutation(n)
    want = best_fit_reference(lengths, order, 64, 8)
    rows = packing.pack(lengths, order, 64, 8)
    assert [rows[r].tolist() for r in range(len(rows))] == want
    assert rows[-1].tolist() == want[-1]
    # Two flat arrays, 4 bytes an example plus 8 a row, whatever the number of examples.
    assert rows.members.dtype == np.int32 and rows.members.nbytes == 4 * n
    assert rows.starts.nbytes == 8 * (len(want) + 1)
    np.testing.assert_array_equal(rows.fill(lengths), [lengths[r].sum() for r in want])
    with pytest.raises(IndexError):
        rows[len(want)]


def test_resumed_iterator_replays_the_identical_batches(tokenizer):
    task = get_task("builtin/ner")
    enc = tokenize.encode(task, task.load("train")[:120], tokenizer, max_length=32)
    it = packing.PackedTrainBatches(enc, batch_size=2, buckets=(16, 32), seed=3)
    for _ in range(it.batches_per_epoch() + 2):  # into the second epoch
        next(it)
    state = json.loads(json.dumps(it.state()))
    want = [next(it) for _ in range(5)]
    again = packing.PackedTrainBatches(enc, batch_size=2, buckets=(16, 32), seed=3)
    again.restore(state)
    for x, y in zip(want, [next(again) for _ in range(5)]):
        assert all(np.array_equal(x[k], y[k]) for k in x)


def test_sst2_train_pad_fraction_is_under_five_percent(tokenizer, data_dir):
    task = get_task("glue/sst2", str(data_dir))
    train = task.load("train")[:20000]
    lengths = tokenize.encode(task, train, tokenizer, max_length=128).lengths
    kw = {"batch_size": 32, "buckets": (32, 64, 128), "seed": 0}
    packed = packing.padding_fraction(lengths, **kw)
    assert packed <= 0.05, packed
    assert batching.padding_fraction(lengths, **kw) > 0.5  # what the buckets alone leave


def _run(model_dir, wd, *, packing_on=True, stop_at=None, monkeypatch=None):
    from jaxtl.configs import multitask as multitask_config
    from jaxtl.regimes import multitask

    c = small_config(multitask_config.get_config("tiny"), model_dir, **{
        "train.steps": 8, "train.eval_every": 0, "checkpoint.every_steps": 4,
        "optim.lr": 1e-3, "data.packing": packing_on, "data.max_train_examples": 96,
    })  # fmt: skip
    if stop_at is not None:  # a SIGTERM arriving at step stop_at: checkpoint, then stop
        original = train.Trainer._checkpoint_hook

        def hook(self, ev):
            original(self, ev)
            if ev.step == stop_at:
                self._signal = signal.SIGTERM

        monkeypatch.setattr(train.Trainer, "_checkpoint_hook", hook)
    return multitask.run(c, str(wd))


def _losses(wd):
    rows = [json.loads(x) for x in (pathlib.Path(wd) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["task"], r["loss"]) for r in rows if r["split"] == "train"}


# ~45 s on 2 cores (four in-process runs). The default run keeps both halves elsewhere: packed
# rows vs one example per row, exact, in this module's logits-and-loss tests; a packed run's
# bit-identical resume in tests/test_train.py and tests/test_reliability.py (packing is on there).
@pytest.mark.slow
def test_packed_multitask_run_resumes_bit_identically_and_matches_unpacked(
    tiny_bert_dir, tmp_path, monkeypatch
):
    ref = _run(tiny_bert_dir, tmp_path / "ref")
    with pytest.raises(train.Preempted):
        _run(tiny_bert_dir, tmp_path / "cut", stop_at=4, monkeypatch=monkeypatch)
    monkeypatch.undo()
    resumed = _run(tiny_bert_dir, tmp_path / "cut")
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "ref")  # exact, every step
    assert resumed == ref
    # Packing changes what a step sees (batch_size counts rows of several examples), not what
    # the model computes: the same tiny run lands on close scores (measured, on / off:
    # sentiment accuracy 0.50 / 0.50, similarity Pearson 0.28 / 0.28, NER span F1 0.16 / 0.15).
    off = _run(tiny_bert_dir, tmp_path / "off", packing_on=False)
    for name, task in off["joint"].items():
        if name != "average":
            main = next(iter(task))
            assert ref["joint"][name][main] == pytest.approx(task[main], abs=0.1), name


def test_packing_is_on_where_exact_and_falls_back_to_padding_elsewhere():
    bert = models.build_encoder("bert", dict(FAMILIES["bert"], vocab_size=64), rngs=nnx.Rngs(0))
    lstm = models.BiLSTMEncoder(models.BiLSTMConfig(vocab_size=64, embed_size=8, hidden_size=4),
                                rngs=nnx.Rngs(0))  # fmt: skip
    c = config_lib.base_config()
    assert c.data.packing and assembly.packing(c, bert)
    assert not assembly.packing(c, lstm)  # a recurrent encoder reads across examples
    assert not assembly.packing(c, bert, joint_stream=True)  # unlabelled stream, same stage
    c.model.tagger_bilstm = 8
    assert not assembly.packing(c, bert)
    c.model.tagger_bilstm, c.data.packing = 0, False
    assert not assembly.packing(c, bert)
    d = c.to_dict()  # a config read back from JSON with a bad value
    d["data"]["packing"] = "yes"
    with pytest.raises(ValueError, match="data.packing='yes'"):
        config_lib.validate(ml_collections.ConfigDict(d))


def test_lengths_past_the_position_table_stop_naming_the_key():
    """Past its table a position lookup reads NaN rather than failing, so a length the model
    cannot take stops before data is read, naming the key: examples (``data.max_length``),
    unpacked rows (their positions run on to the bucket's end), LM blocks of a stage that trains."""
    roberta = models.build_encoder("roberta", dict(FAMILIES["roberta"], vocab_size=64),
                                   rngs=nnx.Rngs(0))  # fmt: skip
    gpt2 = models.build_encoder("gpt2", dict(FAMILIES["gpt2"], vocab_size=64), rngs=nnx.Rngs(0))
    lstm = models.BiLSTMEncoder(models.BiLSTMConfig(vocab_size=64, embed_size=8, hidden_size=4),
                                rngs=nnx.Rngs(0))  # fmt: skip
    assert roberta.cfg.position_limit == 512  # 514 rows, the first pad_token_id + 1 unused
    c = config_lib.base_config()
    c.data.max_length, c.data.buckets = 512, (128, 512)
    assembly.check_lengths(c, roberta, packed=True)
    c.data.max_length = 513
    with pytest.raises(ValueError, match=r"^data.max_length: 513 tokens, but model .* takes at "
                                         r"most 512 \(its position table\)"):  # fmt: skip
        assembly.check_lengths(c, roberta, packed=True)
    c.data.max_length, c.data.buckets = 128, (128, 600)
    assembly.check_lengths(c, roberta, packed=True)  # packed rows restart positions per example
    with pytest.raises(
        ValueError, match="^data.buckets: 600 tokens.* set its largest bucket to 512 or less"
    ):
        assembly.check_lengths(c, roberta, packed=False)
    c.data.buckets = (128,)
    c.pretrain = ml_collections.ConfigDict({"steps": 10, "block_size": 300})
    with pytest.raises(ValueError, match="^pretrain.block_size: 300 tokens.* at most 256"):
        assembly.check_lengths(c, gpt2, packed=True)
    c.pretrain.steps = 0  # a stage that does not train reads no blocks
    assembly.check_lengths(c, gpt2, packed=True)
    c.data.max_length, c.data.buckets = 100_000, (100_000,)
    assembly.check_lengths(c, lstm, packed=False)  # no position table


def _num_batches(bucket_of, num_buckets, batch_size):
    return sum(-(-int(c) // batch_size) for c in np.bincount(bucket_of, minlength=num_buckets))


def test_eval_moves_partial_batches_up_into_free_padding_rows():
    """fold_remainders: rows only move up, a batch count never grows, a bucket's partial batch
    moves only when the next bucket in use has that many padding rows free."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        nb, bs = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        before = rng.integers(0, nb, int(rng.integers(0, 40)))
        after = packing.fold_remainders(before, nb, bs)
        assert (after >= before).all()
        assert _num_batches(after, nb, bs) <= _num_batches(before, nb, bs)
    # 2 rows left in bucket 0; bucket 2's last batch (5 of 8) has 3 free rows: they move.
    got = packing.fold_remainders(np.array([0, 2, 2, 0, 2, 2, 2]), 3, 8)
    assert got.tolist() == [2] * 7
    # 4 left over, 3 free: they stay.
    got = packing.fold_remainders(np.array([0, 0, 0, 0, 2, 2, 2, 2, 2]), 3, 8)
    assert got.tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 2]


def test_sst2_dev_packs_into_one_shape_with_every_example_once(tokenizer, data_dir):
    """SST-2 dev packed at the default eval batch: the light rows packing leaves at the end join
    the last 128-token batch instead of a padded batch (and a compiled program) of their own."""
    task = get_task("glue/sst2", str(data_dir))
    enc = tokenize.encode(task, task.load("dev"), tokenizer, max_length=128)
    batches = packing.eval_batches(enc, batch_size=64, buckets=(32, 64, 128))
    assert {b["input_ids"].shape for b in batches} == {(64, 128)}
    seen = np.concatenate([b["example_index"][b["example_index"] >= 0] for b in batches])
    assert sorted(seen.tolist()) == list(range(len(enc)))
    rows = sum(int((b["segment_ids"] > 0).any(axis=1).sum()) for b in batches)
    assert len(batches) == -(-rows // 64)  # no batch more than the rows need
