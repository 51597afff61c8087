"""Tokenisation: pairs and token types, tagging alignment, MLM masking statistics, CLM, packing."""

import pathlib

import numpy as np
import pytest
from conftest import minilm_dir
from test_data_glue import minilm_tokenizer

from jaxtl.data import get_task, tokenize
from jaxtl.data.batch import IGNORE
from jaxtl.data.batching import eval_batches
from jaxtl.data.tasks import Example
from jaxtl.data.tokenize import (
    causal_labels,
    continuation_table,
    encode,
    mask_tokens,
    pack_corpus,
    special_ids,
)


@pytest.fixture(scope="module")
def tok():
    return minilm_tokenizer()


def test_tagging_alignment_first_subtoken(tok):
    task = get_task("builtin/ner")
    words = ("Schwarzenegger", "visited", "Leicestershire", ".")
    ex = Example(" ".join(words), None, ("B-PER", "O", "B-LOC", "O"), words=words, source="t:1")
    enc = encode(task, [ex], tok, max_length=32)
    pieces = tok.convert_ids_to_tokens(enc.input_ids[0].tolist())
    assert pieces[:4] == ["[CLS]", "schwarz", "##ene", "##gger"]  # a word split in 3 pieces
    lab = enc.token_labels[0]
    names = task.label_names
    assert lab[0] == IGNORE and lab[-1] == IGNORE  # [CLS], [SEP]
    assert lab[1] == names.index("B-PER") and lab[2] == IGNORE and lab[3] == IGNORE
    assert lab[4] == names.index("O")
    assert [names[x] for x in lab[lab != IGNORE]] == list(ex.label)
    assert enc.word_ids[0].tolist() == [-1, 0, 0, 0, 1, 2, 3, -1]


def test_pair_truncation_longest_first(tok):
    task = get_task("builtin/entailment")
    long_pair = "nine ten eleven twelve thirteen fourteen"
    ex = Example("one two three four five six seven eight", long_pair, 0, source="t:1")
    types = encode(task, [ex], tok, max_length=9).token_type_ids[0].tolist()
    # 6 word slots shared by the longer side first: 3 + 3 (with [CLS] a [SEP] b [SEP]).
    assert types == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    short = Example("one two", long_pair, 0, source="t:2")
    types = encode(task, [short], tok, max_length=8, truncation="only_second").token_type_ids[0]
    assert types.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_mlm_masking_statistics(tok):
    task = get_task("builtin/corpus", n_train=1000)
    enc = encode(task, task.load("train"), tok, max_length=128)
    batch = eval_batches(enc, batch_size=1000, buckets=(128,), pad_id=tok.pad_token_id)[0]
    rng = np.random.default_rng(0)
    specials = special_ids(tok)
    out = mask_tokens(batch, rng, mask_id=tok.mask_token_id, vocab_size=len(tok),
                      special_ids=specials)  # fmt: skip
    maskable = (batch["attention_mask"] == 1) & ~np.isin(batch["input_ids"], specials)
    chosen = out["token_labels"] != IGNORE
    assert maskable.sum() > 30000
    # Tolerances ~4 binomial standard deviations: rate over >30k tokens (std 0.002) within 0.01;
    # shares of the ~5k chosen tokens (std <= 0.006) within 0.025.
    assert abs(chosen.sum() / maskable.sum() - 0.15) < 0.01
    assert not (chosen & ~maskable).any()  # never special tokens or padding
    assert (out["token_labels"][chosen] == batch["input_ids"][chosen]).all()
    new = out["input_ids"][chosen]
    masked = np.mean(new == tok.mask_token_id)
    kept = np.mean(new == batch["input_ids"][chosen])
    assert abs(masked - 0.8) < 0.025 and abs(kept - 0.1) < 0.025
    assert abs(1 - masked - kept - 0.1) < 0.025
    assert not np.isin(new[new != tok.mask_token_id], specials).any()
    assert (out["input_ids"][~chosen] == batch["input_ids"][~chosen]).all()


def test_whole_word_masking(tok):
    ex = [Example("Schwarzenegger visited Leicestershire and Kazakhstan " * 6)] * 50
    task = get_task("builtin/corpus")
    enc = encode(task, ex, tok, max_length=128)
    batch = eval_batches(enc, batch_size=50, buckets=(128,), pad_id=0)[0]
    cont = continuation_table(tok)
    out = mask_tokens(batch, np.random.default_rng(1), mask_id=tok.mask_token_id,
                      vocab_size=len(tok), special_ids=special_ids(tok), whole_word=True,
                      continuation=cont)  # fmt: skip
    chosen = out["token_labels"] != IGNORE
    is_cont = cont[batch["input_ids"]]
    # A continuation piece is chosen exactly when the piece before it is.
    assert (chosen[:, 1:][is_cont[:, 1:]] == chosen[:, :-1][is_cont[:, 1:]]).all()
    assert chosen[is_cont].any()


def test_causal_labels_and_packing(tok):
    ids = np.array([[5, 6, 7, 0]], np.int32)
    assert causal_labels(ids, np.array([[1, 1, 1, 0]])).tolist() == [[6, 7, IGNORE, IGNORE]]
    examples = get_task("builtin/corpus", n_train=50).load("train")
    mlm = pack_corpus(examples, tok, block_size=64)
    assert len(mlm) > 5 and set(mlm.lengths.tolist()) == {64}
    assert all(b[0] == tok.cls_token_id and b[-1] == tok.sep_token_id for b in mlm.input_ids)
    clm = pack_corpus(examples, tok, block_size=64, objective="clm")
    b = clm.input_ids[0]
    assert clm.token_labels[0][:-1].tolist() == b[1:].tolist() and clm.token_labels[0][-1] == IGNORE
    # Concatenation loses nothing but the last partial block.
    total = sum(len(tok(e.text, add_special_tokens=False)["input_ids"]) + 1 for e in examples)
    assert len(clm) == total // 64


def _sentencepiece_tokenizer():
    """A real XLMRobertaTokenizer (SentencePiece-style Unigram) over a few word pieces, offline."""
    import string

    import transformers

    pieces = ["\u2581Al", "ice", "\u2581met", "\u2581Bob", "\u2581in", "\u2581Par", "is", "\u2581"]
    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, -1.0) for p in pieces] + [(c, -10.0) for c in chars] + [("<mask>", 0.0)]
    return transformers.XLMRobertaTokenizer(vocab=vocab)


def _byte_level_bpe_tokenizer():
    """A byte-level BPE (GPT-2/RoBERTa style) trained offline on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    bpe.train_from_iterator(["met Bob in the town", "Bob met them in town"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", mask_token="<mask>")  # fmt: skip


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece", "byte_level_bpe"])
def test_whole_word_masking_for_each_tokenizer_kind(kind, tok):
    from jaxtl.data.tokenize import tokenizer_kind

    tokenizer = {"wordpiece": lambda: tok, "sentencepiece": _sentencepiece_tokenizer,
                 "byte_level_bpe": _byte_level_bpe_tokenizer}[kind]()  # fmt: skip
    assert tokenizer_kind(tokenizer) == kind
    text = "Schwarzenegger met Bob in Leicestershire"
    enc = tokenizer([text] * 64, return_tensors="np")
    word_of = np.array([-1 if w is None else w for w in enc.word_ids(0)])
    assert np.bincount(word_of[word_of >= 0]).max() > 1  # some word has several pieces
    specials = np.asarray(tokenizer.all_special_ids, np.int32)
    batch = {"input_ids": enc["input_ids"].astype(np.int32),
             "attention_mask": enc["attention_mask"].astype(np.int32)}  # fmt: skip
    out = mask_tokens(batch, np.random.default_rng(0), mask_id=tokenizer.mask_token_id,
                      vocab_size=len(tokenizer), special_ids=specials, prob=0.3, whole_word=True,
                      continuation=continuation_table(tokenizer))  # fmt: skip
    chosen = out["token_labels"] != IGNORE
    assert chosen.any() and not chosen.all()
    for w in range(word_of.max() + 1):  # every piece of a word shares the word's decision
        cols = chosen[:, word_of == w]
        assert (cols == cols[:, :1]).all(), (kind, w)


def test_whole_word_masking_refuses_a_tokenizer_without_word_markers():
    from jaxtl.data.tokenize import tokenizer_kind

    class Plain:
        def get_vocab(self):
            return {"a": 0, "b": 1}

    with pytest.raises(ValueError, match="marks no word boundaries"):
        tokenizer_kind(Plain())


def _wordpiece_tokenizer():
    return tokenize.train_wordpiece(["Alice met Bob in Paris", "a dull slow movie"] * 10, 120)


@pytest.mark.parametrize(
    "build",
    [_sentencepiece_tokenizer, _byte_level_bpe_tokenizer, _wordpiece_tokenizer, None],
    ids=["xlmr-sentencepiece", "byte-level-bpe", "wordpiece", "minilm"],
)
def test_load_tokenizer_matches_auto_tokenizer(build, tmp_path):
    """``hf.load_tokenizer`` takes the class tokenizer_config.json names straight from
    transformers; it must give what ``AutoTokenizer.from_pretrained(use_fast=True)`` gives:
    the same class, special tokens, sides, length limit and encodings (single and pair)."""
    from transformers import AutoTokenizer

    from jaxtl.models import hf

    if build is None:
        path = minilm_dir()
    else:
        path = tmp_path / "tok"
        build().save_pretrained(str(path))
    ours = hf.load_tokenizer(pathlib.Path(path))
    ref = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    assert type(ours) is type(ref) and ours.is_fast
    assert ours.special_tokens_map == ref.special_tokens_map
    assert ours.all_special_ids == ref.all_special_ids
    assert (ours.padding_side, ours.truncation_side, ours.model_max_length) == (
        ref.padding_side, ref.truncation_side, ref.model_max_length)  # fmt: skip
    texts = ["Alice met Bob in Paris.", "a dull, slow movie!", "ünïcode café"]
    for kw in ({}, {"text_pair": texts[::-1], "truncation": True, "max_length": 8}):
        assert ours(texts, **kw).data == ref(texts, **kw).data


@pytest.mark.parametrize("bad", [2, -1, 1.0, None, "1", (0,), 10**30])
def test_example_labels_name_the_first_example_that_is_not_a_class_id(bad):
    task = get_task("builtin/sentiment")
    examples = [Example(f"t{i}", label=i % 2, source=f"f.tsv:{i + 2}") for i in range(50)]
    examples[17] = Example("x", label=bad, source="f.tsv:19")
    with pytest.raises(tokenize.DataError, match=r"^f\.tsv:19: label .* is not a class id"):
        tokenize.example_labels(task, examples)


def test_example_labels_take_python_numpy_and_bool_ids():
    task = get_task("builtin/sentiment")
    labels = [0, np.int64(1), True, np.int32(0), False]
    label, score = tokenize.example_labels(task, [Example("t", label=x) for x in labels])
    assert label.dtype == np.int32 and label.tolist() == [0, 1, 1, 0, 0]
    assert not score.any()
    empty, _ = tokenize.example_labels(task, [])
    assert empty.shape == (0,)


def test_input_hashes_tell_rows_apart_and_agree_for_the_token_caches_rows(tmp_path):
    """Equal token rows hash equal; a reordering, a prefix, an added pad id or an empty row do
    not; chunking and the on-disk token cache's rows (read from its file) give the same."""
    from jaxtl.data.token_cache import Ragged

    rows = [np.array(r, np.int32) for r in ([1, 2, 3], [1, 2, 3], [3, 2, 1], [1, 2],
                                             [1, 2, 3, 0], [0], [7] * 600, [])]  # fmt: skip
    h = tokenize.input_hashes(rows)
    assert h.dtype == np.uint64 and len(h) == len(rows)
    assert h[0] == h[1] and len(set(h[[0, 2, 3, 4, 5, 6, 7]].tolist())) == 7
    np.testing.assert_array_equal(tokenize.input_hashes(rows, chunk_tokens=1), h)
    np.testing.assert_array_equal(tokenize.input_hashes(rows, chunk_tokens=5), h)
    flat = tmp_path / "input_ids.bin"
    np.concatenate(rows).astype(np.int32).tofile(flat)
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    np.testing.assert_array_equal(tokenize.input_hashes(Ragged(str(flat), np.int32, offsets)), h)
