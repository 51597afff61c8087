"""The encoder–decoder (jaxtl.models.seq2seq): it learns a toy translation, beam search of width
1 is greedy decoding, and decoders never look ahead."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxtl import metrics
from jaxtl.models import seq2seq
from jaxtl.models.bert import BertConfig, BertEncoder
from jaxtl.models.bilstm import BiLSTMConfig, BiLSTMEncoder

PAD, BOS, EOS = 0, 1, 2
V = 24  # ids 3..23 are words


def toy_pairs(n: int = 20, seed: int = 0):
    """A toy language pair: each source word w becomes (w * 7) mod 21 + 3, and the first two
    words swap places (a little reordering for the attention to learn)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        src = rng.integers(3, V, size=rng.integers(3, 7)).tolist()
        tgt = [(w * 7) % 21 + 3 for w in [src[1], src[0], *src[2:]]]
        pairs.append((src, tgt))
    return pairs


def batch_of(pairs, t: int = 10):
    b = len(pairs)
    src = np.full((b, t), PAD, np.int32)
    tgt = np.full((b, t), PAD, np.int32)
    for i, (s, g) in enumerate(pairs):
        src[i, : len(s) + 2] = [BOS, *s, EOS]
        tgt[i, : len(g) + 2] = [BOS, *g, EOS]
    return (
        jnp.asarray(src),
        jnp.asarray(src != PAD, jnp.int32),
        jnp.asarray(tgt),
        jnp.asarray(tgt != PAD, jnp.int32),
    )


def words(ids) -> str:
    out = []
    for i in np.asarray(ids)[1:]:
        if i == EOS:
            break
        out.append(f"w{int(i)}")
    return " ".join(out)


def make_model(kind: str, seed: int = 0) -> seq2seq.Seq2Seq:
    rngs = nnx.Rngs(seed)
    if kind == "lstm":
        enc = BiLSTMEncoder(BiLSTMConfig(V, embed_size=32, hidden_size=32, num_layers=1,
                                         dropout=0.0), rngs=rngs)  # fmt: skip
        dec = seq2seq.build_decoder("lstm", V, enc.hidden_size, bos_id=BOS, eos_id=EOS,
                                    pad_id=PAD, embed_size=32, hidden_size=64, num_layers=1,
                                    dropout=0.0, rngs=rngs)  # fmt: skip
    else:
        enc = BertEncoder(BertConfig(V, hidden_size=32, num_layers=1, num_heads=2,
                                     intermediate_size=64, max_position_embeddings=16,
                                     hidden_dropout=0.0, attention_dropout=0.0), rngs=rngs)  # fmt: skip
        dec = seq2seq.build_decoder("transformer", V, enc.hidden_size, bos_id=BOS, eos_id=EOS,
                                    pad_id=PAD, hidden_size=32, num_layers=2, num_heads=2,
                                    intermediate_size=64, max_positions=16, dropout=0.0,
                                    rngs=rngs)  # fmt: skip
    return seq2seq.Seq2Seq(enc, dec)


def train(model, batch, steps: int, lr: float):
    src, src_mask, tgt, tgt_mask = batch
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    opt = tx.init(params)

    def loss_fn(p):
        m = nnx.merge(graphdef, p)
        dec_in, labels, valid = seq2seq.shift(tgt, tgt_mask)
        total, den = seq2seq.token_nll(m(src, src_mask, dec_in), labels, valid)
        return total / den

    @jax.jit
    def step(p, o):
        loss, g = jax.value_and_grad(loss_fn)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    for _ in range(steps):
        params, opt, loss = step(params, opt)
    return nnx.merge(graphdef, params), float(loss)


def decode(model, src, mask, beam: int):
    # Merged inside the jitted function: the BiLSTM's nnx.RNN cannot use Variables of an outer trace.
    graphdef, state = nnx.split(model)
    return jax.jit(lambda st, s, m: nnx.merge(graphdef, st).generate(s, m, 10, beam=beam))(
        state, src, mask
    )


@pytest.mark.parametrize("kind,steps,lr", [("lstm", 300, 2e-2), ("transformer", 300, 3e-3)])
def test_overfits_twenty_pairs_to_bleu_above_90_greedy_and_beam(kind, steps, lr):
    pairs = toy_pairs()
    batch = batch_of(pairs)
    model, loss = make_model(kind), None
    before = metrics.bleu([words(r) for r in model.generate(batch[0], batch[1], 10)],
                          [words(batch[2][i]) for i in range(len(pairs))])  # fmt: skip
    model, loss = train(model, batch, steps, lr)
    refs = [" ".join(f"w{w}" for w in g) for _, g in pairs]
    greedy = decode(model, batch[0], batch[1], 1)
    beam = decode(model, batch[0], batch[1], 4)
    bleu_greedy = metrics.bleu([words(r) for r in greedy], refs)
    bleu_beam = metrics.bleu([words(r) for r in beam], refs)
    assert before < 20, before  # the untrained model does not already translate
    assert bleu_greedy > 90 and bleu_beam > 90, (kind, loss, bleu_greedy, bleu_beam)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_beam_width_one_equals_greedy(kind):
    model = make_model(kind, seed=3)  # untrained: many near-ties, a strict check
    src, mask, _, _ = batch_of(toy_pairs(8, seed=1))
    g = seq2seq.greedy(model.decoder, model.encode(src, mask), mask, 10)
    b = seq2seq.beam_search(model.decoder, model.encode(src, mask), mask, 10, width=1)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(b))
    assert (np.asarray(g)[:, 0] == BOS).all()


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_decoder_is_causal(kind):
    """Changing target tokens from position j on changes no logits before j (tolerance 0:
    the computation of earlier positions must not read later ones at all)."""
    model = make_model(kind, seed=1)
    src, mask, tgt, _ = batch_of(toy_pairs(4, seed=2))
    memory = model.encode(src, mask)
    base_logits = model.decoder(memory, mask, tgt)
    j = 4
    perturbed = tgt.at[:, j:].set((tgt[:, j:] + 5) % V)
    new_logits = model.decoder(memory, mask, perturbed)
    np.testing.assert_array_equal(np.asarray(base_logits[:, :j]), np.asarray(new_logits[:, :j]))
    assert not np.allclose(base_logits[:, j:], new_logits[:, j:])  # later positions do change


def test_beam_search_keeps_a_better_normalised_hypothesis_than_greedy_on_average():
    """Beam search maximises the length-normalised model score at least as well as greedy on
    most inputs (it can lose on some: pruning is by the raw score)."""
    model = make_model("lstm", seed=5)
    src, mask, _, _ = batch_of(toy_pairs(8, seed=4))
    memory = model.encode(src, mask)

    def score(tokens):
        dec_in, labels = tokens[:, :-1], tokens[:, 1:]
        logp = jax.nn.log_softmax(model.decoder(memory, mask, dec_in), -1)
        lp = jnp.take_along_axis(logp, labels[..., None], -1)[..., 0]
        ends = jnp.cumsum(labels == EOS, 1) - (labels == EOS)  # 0 up to and including EOS
        valid = (ends == 0) & (labels != PAD)
        return (lp * valid).sum(1) / jnp.maximum(valid.sum(1), 1)

    g = score(seq2seq.greedy(model.decoder, memory, mask, 10))
    b = score(seq2seq.beam_search(model.decoder, memory, mask, 10, width=6))
    assert float(b.mean()) >= float(g.mean()) - 1e-6, (g, b)


def test_bad_decoder_kind_is_a_one_line_error():
    with pytest.raises(ValueError, match="decoder kind 'gru'"):
        seq2seq.build_decoder("gru", 10, 8, bos_id=1, eos_id=2, pad_id=0, rngs=nnx.Rngs(0))


def test_translation_task_trains_sharded_through_the_regime(tiny_bert_dir, tmp_path):
    """A user's parallel JSONL files as a ``translation`` task, a BERT-family encoder with a
    Transformer decoder, trained by supervised_sequential's one step with FSDP over the fake
    devices (data x fsdp 2), then a target stage: dev and test BLEU come out of sacrebleu, the
    losses are finite and fall, the target vocabulary is trained and kept in the workdir."""
    import json

    from conftest import small_config

    from jaxtl import config as config_lib
    from jaxtl.regimes import supervised_sequential

    rng = np.random.default_rng(0)
    words = ["red", "blue", "green", "small", "big", "dog", "cat", "runs", "sleeps", "the"]
    de = {"red": "rot", "blue": "blau", "green": "grün", "small": "klein", "big": "groß",
          "dog": "Hund", "cat": "Katze", "runs": "rennt", "sleeps": "schläft", "the": "der"}  # fmt: skip
    for split, n in (("train", 64), ("dev", 16), ("test", 16)):
        rows = []
        for _ in range(n):
            en = [str(w) for w in rng.choice(words, size=4)]
            rows.append(json.dumps({"en": " ".join(en), "de": " ".join(de[w] for w in en)}))
        (tmp_path / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    spec = (f"file:name=toy_mt,path={tmp_path}/{{split}}.jsonl,format=jsonl,text=en,target=de,"
            "kind=translation")  # fmt: skip
    c = supervised_sequential.add_config(config_lib.base_config())
    c.source.tasks, c.target.tasks = (spec,), ("builtin/sentiment",)
    c.model.decoder.kind = "transformer"
    c.model.decoder.update(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                           vocab_size=200, beam=2)  # fmt: skip
    c.source.optim.lr = 3e-3
    c = small_config(c, tiny_bert_dir, **{"source.steps": 12, "train.steps": 2,
                                          "mesh.fsdp": 2, "data.max_length": 32,
                                          "train.log_every": 1})  # fmt: skip
    work = tmp_path / "work"
    results = supervised_sequential.run(c, str(work))
    test = json.loads((work / "results_test.json").read_text())
    assert 0.0 <= results["toy_mt"]["bleu"] <= 100.0 and 0.0 <= test["toy_mt"]["bleu"] <= 100.0
    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train" and r["stage"] == "source"]
    assert len(losses) == 12 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert (work / "target_tokenizer" / "tokenizer.json").is_file()
    # The test split's predictions file holds every decoded translation with its reference,
    # and scoring that file with sacrebleu reproduces the run's test BLEU.
    import sacrebleu

    preds = [
        json.loads(x) for x in (work / "predictions/toy_mt/test.jsonl").read_text().splitlines()
    ]
    refs = [json.loads(x)["de"] for x in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == list(range(16))
    assert [p["gold"] for p in preds] == refs and all(
        isinstance(p["translation"], str) for p in preds
    )
    assert any(p["translation"] for p in preds)  # decoded text, not empty rows
    file_bleu = sacrebleu.corpus_bleu([p["translation"] for p in preds], [refs]).score
    assert abs(file_bleu - test["toy_mt"]["bleu"]) < 1e-6, (file_bleu, test)
    # A trained translation model predicts from the command line's input formats too: a
    # "source<TAB>reference" line gives the same translation as the run's test prediction.
    import jaxtl

    predictor = jaxtl.load(str(work))
    src = tmp_path / "src.tsv"
    src.write_text(f"{preds[0]['text']}\t{refs[0]}\n{preds[1]['text']}\n")
    td = predictor.task("toy_mt")
    rows = predictor.predict_examples(predictor.read_input(str(src), td, "lines"), td)
    assert rows[0]["translation"] == preds[0]["translation"] and "gold" not in rows[0]
    assert rows[1]["translation"] == preds[1]["translation"]


def test_translation_records_follow_each_example_through_bucketed_batches():
    """Prediction records put each decoded row back on its own example although eval batches
    group rows by length bucket (the decoded row here is the example's first source word, so a
    misplaced row shows)."""
    from conftest import minilm_dir
    from transformers import AutoTokenizer

    from jaxtl import predictions
    from jaxtl.data import batching, tokenize
    from jaxtl.data.tasks import Example, Task

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    words = ["red", "blue", "green", "small", "big", "dog", "cat", "runs", "sleeps", "house"]
    # alternately short and long sources: buckets (8, 32) reorder the rows
    examples = [Example(" ".join([w] + ["the"] * (1 if i % 2 else 12)), target=f"ref {i}")
                for i, w in enumerate(words)]  # fmt: skip
    task = Task("mt", "translation", lambda split: examples, metrics=("bleu",))
    enc = tokenize.encode(task, examples, tok, max_length=32, labelled=True)
    buckets = (8, 32)
    batches = batching.eval_batches(enc, batch_size=3, buckets=buckets, pad_id=0)
    # a "decoder" that outputs [BOS, first source word piece, EOS] for every row
    outputs = [{"pred_tokens": np.stack([np.asarray([tok.cls_token_id, row[1], tok.sep_token_id])
                                         for row in b["input_ids"]])} for b in batches]  # fmt: skip
    assert batching.eval_order(enc, buckets=buckets).tolist() != list(range(len(words)))
    rows = predictions.records(task, examples, enc, buckets, outputs, batches, labelled=True,
                               detokenize=tokenize.detokenizer(tok))  # fmt: skip
    assert [r["translation"] for r in rows] == words
    assert [r["gold"] for r in rows] == [f"ref {i}" for i in range(len(words))]
    with pytest.raises(ValueError, match="translation records need a detokenizer"):
        predictions.records(task, examples, enc, buckets, outputs, batches, labelled=True)
