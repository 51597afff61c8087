"""Tokenisation with the model's Hugging Face fast tokenizer, ready for bucketed batching.

:func:`encode` turns a task's Examples into an :class:`Encoded`: per-example variable-length int32
arrays (token ids, token types, token labels) plus per-example label / score arrays. Sequences are
cut to ``max_length`` here (pairs with the ``longest_first`` policy by default), so batching only
pads. Tokenising uses the tokenizer's batch call (Rust, all examples at once).

Token-level targets follow one rule for every kind, so every loss is "logits at position t
against ``token_labels[t]``", IGNORE (-100) where no loss applies:

- tagging: the first sub-token of each word carries the word's tag id; other sub-tokens, special
  tokens and padding are IGNORE. ``Encoded.word_ids`` keeps each token's word index (-1 for
  specials) so predictions can be mapped back to words; words cut off by truncation have no token
  and are not scored.
- MLM: :func:`mask_tokens` is applied per batch at train time (fresh masks every epoch) with a
  numpy Generator: 15% of real, non-special tokens; of those 80% → [MASK], 10% → a random token,
  10% unchanged; optional whole-word masking. The labels are the original ids at chosen positions.
- CLM: the shift is done HERE, not in the loss: ``token_labels[t] = input_ids[t + 1]`` and the last
  real position is IGNORE (:func:`causal_labels`), so a causal LM loss needs no special case.

:func:`pack_corpus` concatenates a corpus into fixed-length LM blocks (MLM: ``[CLS] ... [SEP]``;
CLM: plain token blocks with shifted labels), documents separated by the SEP/EOS token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxtl.data.batch import IGNORE
from jaxtl.data.tasks import DataError, Example, Task


@dataclasses.dataclass
class Encoded:
    """A tokenised split: row i of every field belongs to example i.

    ``token_labels`` None means all IGNORE (classification, regression, unmasked LM input).
    ``target_ids`` only for translation (decoder targets); ``label_set`` only for multilabel
    (uint8[N, C]: 1 where class c applies to example i). A qa task's rows are windows of its
    examples' contexts (:func:`encode_qa`): ``example_of`` (int32[N]) names each row's example
    and ``char_spans`` (int32[T, 2] per row) each token's ``[start, end)`` characters in the
    context, -1 for tokens that are not the context's.
    """

    # Lists of arrays, or jaxtl.data.token_cache.Ragged rows read by index from its files.
    input_ids: Sequence[np.ndarray]
    token_type_ids: Sequence[np.ndarray]
    label: np.ndarray  # int32[N]
    score: np.ndarray  # float32[N]
    task_id: int = 0
    token_labels: Sequence[np.ndarray] | None = None
    word_ids: Sequence[np.ndarray] | None = None
    target_ids: Sequence[np.ndarray] | None = None
    label_set: np.ndarray | None = None
    example_of: np.ndarray | None = None
    char_spans: Sequence[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """int32[N]: tokens per example (the longer of source and target for translation)."""
        n = _lengths(self.input_ids)
        if self.target_ids is not None:
            n = np.maximum(n, _lengths(self.target_ids))
        return n

    def subset(self, index: Sequence[int]) -> Encoded:
        """The examples at ``index`` (e.g. a small slice for a quick run)."""
        pick = (lambda xs: [xs[i] for i in index]) if len(self) else (lambda xs: xs)
        return Encoded(
            pick(self.input_ids), pick(self.token_type_ids), self.label[list(index)],
            self.score[list(index)], self.task_id,
            None if self.token_labels is None else pick(self.token_labels),
            None if self.word_ids is None else pick(self.word_ids),
            None if self.target_ids is None else pick(self.target_ids),
            None if self.label_set is None else self.label_set[list(index)],
            None if self.example_of is None else self.example_of[list(index)],
            None if self.char_spans is None else pick(self.char_spans),
        )  # fmt: skip


def _lengths(rows: Sequence[np.ndarray]) -> np.ndarray:
    # Rows of the on-disk token cache know their lengths without being read.
    known = getattr(rows, "lengths", None)
    if known is not None:
        return known
    return np.fromiter((len(x) for x in rows), np.int32, len(rows))


def input_hashes(rows: Sequence[np.ndarray], chunk_tokens: int = 1 << 20) -> np.ndarray:
    """uint64[N]: a 64-bit fingerprint of each row's token ids (a polynomial hash with its length,
    then mixed), computed a million tokens at a time: rows of the on-disk token cache are read
    from its file a chunk at a time into fresh buffers (not through a memory map, whose pages
    would stay in the process's resident set), never held all at once."""
    lengths = _lengths(rows).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    file = getattr(rows, "path", None)  # the token cache's rows: read from their file
    base = np.uint64(0x9E3779B97F4A7C15)
    out = np.empty(len(lengths), np.uint64)
    start = 0
    while start < len(lengths):  # rows [start, stop) hold at most chunk_tokens (or one row)
        stop = max(
            start + 1, int(np.searchsorted(offsets, offsets[start] + chunk_tokens, "right")) - 1
        )
        stop = min(stop, len(lengths))
        n = lengths[start:stop]
        if file is not None:
            dtype = np.dtype(rows.dtype)  # type: ignore[attr-defined]
            count, at = int(offsets[stop] - offsets[start]), int(offsets[start]) * dtype.itemsize
            ids = np.fromfile(file, dtype, count, offset=at).astype(np.uint64)
        else:
            ids = np.concatenate([np.asarray(r, np.uint64) for r in rows[start:stop]])
        first = offsets[start:stop] - offsets[start]
        pos = np.arange(len(ids), dtype=np.int64) - np.repeat(first, n)
        with np.errstate(over="ignore"):  # wrapping mod 2**64 is the hash
            weights = np.power(base, (pos + 1).astype(np.uint64))
            terms = (ids + np.uint64(1)) * weights
            # each row's sum as a difference of running sums: an empty row sums to 0
            running = np.concatenate([np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)])
            sums = running[first + n] - running[first]
            h = sums + n.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
            h ^= h >> np.uint64(30)  # splitmix64's finaliser: every bit of h moves every other
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(27)
            h *= np.uint64(0x94D049BB133111EB)
            out[start:stop] = h ^ (h >> np.uint64(31))
        start = stop
    return out


def take(rows: Sequence[np.ndarray], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the rows at ``index`` one after the other as int32, their int64 lengths): what a batcher
    scatters into its padded arrays in one assignment instead of one per example. Rows of the
    on-disk token cache read themselves (:meth:`jaxtl.data.token_cache.Ragged.take`)."""
    own = getattr(rows, "take", None)
    if own is not None:
        return own(index)
    parts = [rows[i] for i in np.asarray(index).tolist()]
    lengths = np.fromiter(map(len, parts), np.int64, len(parts))
    if not parts:
        return np.zeros(0, np.int32), lengths
    return np.concatenate(parts).astype(np.int32, copy=False), lengths


def _arrays(rows: Sequence[Sequence[int]]) -> list[np.ndarray]:
    return [np.asarray(r, np.int32) for r in rows]


def encode(
    task: Task,
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    max_length: int,
    task_id: int = 0,
    truncation: str = "longest_first",
    target_tokenizer: Any = None,
    labelled: bool = True,
    doc_stride: int = 0,
) -> Encoded:
    """Tokenise ``examples`` of ``task`` (see the module docstring for the label layout).

    ``truncation``: a Hugging Face strategy (``longest_first``, ``only_first``, ``only_second``)
    for pairs; single sentences are cut at ``max_length``. ``target_tokenizer`` tokenises
    translation targets (default: ``tokenizer``). ``labelled=False``: examples without labels
    (a test split to predict): labels are 0 (tagging: tag 0 on each word's first sub-token, so
    predictions still align with words) and nothing is checked. ``doc_stride``: a qa task's
    window overlap (:func:`encode_qa`).
    """
    n = len(examples)
    if task.kind == "qa":
        return encode_qa(examples, tokenizer, max_length=max_length, task_id=task_id,
                         labelled=labelled, doc_stride=doc_stride)  # fmt: skip
    label = np.zeros(n, np.int32)
    score = np.zeros(n, np.float32)
    if task.kind == "tagging":
        return _encode_tagging(task, examples, tokenizer, max_length, task_id, labelled)
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair for ex in examples]
    has_pair = [p is not None for p in pairs]
    if any(has_pair) and not all(has_pair):
        where = examples[has_pair.index(False)].source
        raise DataError(f"{where}: task {task.name!r} mixes single sentences and sentence pairs")
    enc = tokenizer(
        texts,
        pairs if any(has_pair) else None,
        truncation=truncation if any(has_pair) else True,
        max_length=max_length,
        return_token_type_ids=True,
        return_attention_mask=False,
    )
    label_set = None
    if task.kind == "multilabel":
        label_set = (label_sets(task, examples) if labelled else
                     np.zeros((n, task.num_labels), np.uint8))  # fmt: skip
    elif labelled:
        label, score = example_labels(task, examples)
    target_ids = None
    if task.kind == "translation":
        tok = target_tokenizer or tokenizer
        targets = [ex.target or "" for ex in examples]
        target_ids = _arrays(tok(targets, truncation=True, max_length=max_length)["input_ids"])
    return Encoded(
        _arrays(enc["input_ids"]),
        _arrays(enc["token_type_ids"]),
        label,
        score,
        task_id,
        target_ids=target_ids,
        label_set=label_set,
    )


def label_sets(task: Task, examples: Sequence[Example]) -> np.ndarray:
    """uint8[N, C]: the classes of each multilabel example (a tuple of class ids) as 0/1 rows,
    each checked against the task."""
    out = np.zeros((len(examples), task.num_labels), np.uint8)
    for i, ex in enumerate(examples):
        ids = ex.label
        if not isinstance(ids, (tuple, list)) or not all(
            isinstance(c, (int, np.integer)) and 0 <= c < task.num_labels for c in ids
        ):
            raise DataError(f"{ex.source}: labels {ids!r} are not class ids of {task.name}")
        out[i, np.asarray(ids, np.int64)] = 1
    return out


def example_labels(task: Task, examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """(int32 class ids, float32 scores) of sentence-level examples, each checked against the
    task; zeros where the kind has none."""
    n = len(examples)
    label = np.zeros(n, np.int32)
    score = np.zeros(n, np.float32)
    if task.kind == "classification":
        # Checked as one array (a chunk of the token cache is 16,384 examples); the loop below
        # only runs to name the first bad one.
        try:
            ids = np.asarray([ex.label for ex in examples]) if n else np.zeros(0, np.int64)
            sound = ids.ndim == 1 and ids.dtype.kind in "iub"
        except ValueError:  # ragged (a tuple among the ids)
            sound = False
        if not (sound and (n == 0 or (ids.min() >= 0 and ids.max() < task.num_labels))):
            for ex in examples:
                if not isinstance(ex.label, (int, np.integer)) or not (
                    0 <= ex.label < task.num_labels
                ):
                    raise DataError(
                        f"{ex.source}: label {ex.label!r} is not a class id of {task.name}"
                    )
        label[:] = ids
    elif task.kind == "regression":
        score[:] = np.asarray([ex.label for ex in examples], np.float32)
    return label, score


def _encode_tagging(
    task: Task, examples: Sequence[Example], tokenizer: Any, max_length: int, task_id: int,
    labelled: bool = True,
) -> Encoded:  # fmt: skip
    tag_id = {t: i for i, t in enumerate(task.label_names)}
    words = [list(ex.words or ex.text.split()) for ex in examples]
    enc = tokenizer(
        words,
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        return_token_type_ids=True,
        return_attention_mask=False,
    )
    labels, word_ids = [], []
    for i, ex in enumerate(examples):
        tags = ex.label if labelled else (task.label_names[0],) * len(words[i])
        if not isinstance(tags, tuple) or len(tags) != len(words[i]):
            raise DataError(f"{ex.source}: tagging example needs one tag per word")
        wid = np.array([-1 if w is None else w for w in enc.word_ids(i)], np.int32)
        # First sub-token of each word: a word index that differs from the previous token's.
        first = (wid >= 0) & (wid != np.concatenate([[-1], wid[:-1]]))
        try:
            ids = np.array([tag_id[t] for t in tags], np.int32)
        except KeyError as e:
            raise DataError(f"{ex.source}: tag {e.args[0]!r} not in {task.label_names}") from None
        lab = np.full(len(wid), IGNORE, np.int32)
        lab[first] = ids[wid[first]]
        labels.append(lab)
        word_ids.append(wid)
    return _token_rows(enc, task_id, labels, word_ids=word_ids)


def _token_rows(enc: Any, task_id: int, token_labels: list[np.ndarray], **extra: Any) -> Encoded:
    """The rows of a tokenizer call whose targets are all per token (tagging, qa): no sentence
    labels; ``extra`` fields as the kind needs (``word_ids``; ``example_of``, ``char_spans``)."""
    n = len(token_labels)
    return Encoded(
        _arrays(enc["input_ids"]),
        _arrays(enc["token_type_ids"]),
        np.zeros(n, np.int32),
        np.zeros(n, np.float32),
        task_id,
        token_labels=token_labels,
        **extra,
    )


# Marks of a qa row's token_labels (added: a one-token answer's token is START + END).
QA_START, QA_END = 1, 2


def qa_stride(max_length: int, doc_stride: int) -> int:
    """The overlap of a context's windows: ``doc_stride`` tokens (``data.doc_stride``), or a
    quarter of ``max_length`` when it is 0."""
    return int(doc_stride) if doc_stride > 0 else max(1, max_length // 4)


def encode_qa(
    examples: Sequence[Example], tokenizer: Any, *, max_length: int, task_id: int = 0,
    labelled: bool = True, doc_stride: int = 0,
) -> Encoded:  # fmt: skip
    """Extractive QA rows: ``[CLS] question [SEP] context window [SEP]``, a context too long
    for ``max_length`` cut into windows that overlap by :func:`qa_stride` tokens (transformers'
    ``run_qa`` and question-answering pipeline do the same), so every answer lies whole inside
    some window. ``token_labels`` marks the tokens an answer may start or end on (the
    context's, and the first token, which stands for "no answer") with 0, IGNORE elsewhere,
    and adds :data:`QA_START` / :data:`QA_END` at the first answer's first and last tokens —
    both at the first token when this window does not hold it whole (or there is none)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("a qa task needs a fast (Rust) tokenizer: its character offsets map "
                        "answers to tokens")  # fmt: skip
    stride = qa_stride(max_length, doc_stride)
    questions = [ex.text for ex in examples]
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    q_len = [len(x) for x in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    for ex, n in zip(examples, q_len):
        if n + specials + stride >= max_length:
            raise DataError(
                f"{ex.source}: the question's {n} tokens leave no room for the context in "
                f"windows of data.max_length={max_length} overlapping by {stride} "
                "(data.doc_stride): raise data.max_length or lower data.doc_stride"
            )
    enc = tokenizer(
        questions,
        [ex.text_pair or "" for ex in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        return_attention_mask=False,
    )
    example_of = np.asarray(enc["overflow_to_sample_mapping"], np.int32)
    labels, spans = [], []
    cls_id = tokenizer.cls_token_id
    for f, ids in enumerate(enc["input_ids"]):
        ex = examples[int(example_of[f])]
        seq = np.array([-1 if s is None else s for s in enc.sequence_ids(f)])
        context = seq == 1
        offsets = np.asarray(enc["offset_mapping"][f], np.int32).reshape(-1, 2)
        span = np.full((len(ids), 2), -1, np.int32)
        span[context] = offsets[context]
        null = ids.index(cls_id) if cls_id in ids else 0
        lab = np.full(len(ids), IGNORE, np.int32)
        lab[context] = 0
        lab[null] = 0
        start = end = null
        if labelled and isinstance(ex.label, tuple) and ex.label:
            a_start, text = ex.label[0]
            a_end = a_start + len(text)
            inside = np.flatnonzero(context)
            # the window holds the answer whole: its first and last tokens by their offsets
            if len(inside) and span[inside[0], 0] <= a_start and span[inside[-1], 1] >= a_end:
                start = int(inside[np.flatnonzero(span[inside, 1] > a_start)[0]])
                end = int(inside[np.flatnonzero(span[inside, 0] < a_end)[-1]])
        if labelled:
            lab[start] += QA_START
            lab[end] += QA_END
        labels.append(lab)
        spans.append(span)
    return _token_rows(enc, task_id, labels, example_of=example_of, char_spans=spans)


def word_windows(
    words: Sequence[Sequence[str]], tokenizer: Any, max_length: int, overlap: float = 0.25
) -> list[list[tuple[int, int]]]:
    """Per example, the word spans ``[start, end)`` whose sub-tokens (with the specials) fit
    ``max_length``, so a tagger can label every word of a text longer than the model's window.
    An example that fits is one span; a longer one is cut into windows that overlap by about
    ``overlap`` of the window's tokens, so a word near one window's edge sits well inside
    another (Hugging Face's token-classification pipeline does the same with its ``stride``).
    A single word longer than the window is a window of its own (it is cut, but its first
    sub-token, which carries its tag, stays)."""
    budget = max(1, max_length - tokenizer.num_special_tokens_to_add(pair=False))
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, add_special_tokens=False)
    out = []
    for i, ws in enumerate(words):
        counts = np.bincount([w for w in enc.word_ids(i) if w is not None], minlength=len(ws))
        if counts.sum() <= budget:
            out.append([(0, len(ws))])
            continue
        spans, start = [], 0
        while True:
            end, used = start, 0
            while end < len(ws) and (used + counts[end] <= budget or end == start):
                used += int(counts[end])
                end += 1
            spans.append((start, end))
            if end >= len(ws):
                break
            back, shared = end, 0  # step back from the end by about `overlap` of the window
            while back - 1 > start and shared + counts[back - 1] <= overlap * budget:
                back -= 1
                shared += int(counts[back])
            start = max(back, start + 1)
        out.append(spans)
    return out


def causal_labels(input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
    """Next-token targets for [..., T] ids: ``labels[t] = ids[t+1]``; last real token and padding
    are IGNORE."""
    ids = np.asarray(input_ids)
    mask = np.ones_like(ids, bool) if attention_mask is None else np.asarray(attention_mask) > 0
    out = np.full(ids.shape, IGNORE, np.int32)
    out[..., :-1] = np.where(mask[..., 1:], ids[..., 1:], IGNORE)
    return out


def pad_id(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else 0 (GPT-2 has none; the
    attention mask hides padding either way)."""
    if tokenizer is None or tokenizer.pad_token_id is None:
        return 0
    return int(tokenizer.pad_token_id)


def detokenizer(tokenizer: Any):
    """``rows -> texts`` for decoder outputs and targets (``[BOS] y … [EOS] pad``): the tokens
    after position 0 up to the first EOS (SEP), decoded without special tokens."""
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id

    def detokenize(rows: Any) -> list[str]:
        out = []
        for row in rows:
            ids = [int(i) for i in np.asarray(row)[1:]]
            if eos in ids:
                ids = ids[: ids.index(eos)]
            out.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
        return out

    return detokenize


def train_wordpiece(texts: Sequence[str], vocab_size: int) -> Any:
    """A cased BERT-style WordPiece tokenizer (``[PAD]`` = 0, ``[UNK] [CLS] [SEP] [MASK]``;
    ``[CLS] … [SEP]`` around each text) of at most ``vocab_size`` pieces trained on ``texts``
    with Hugging Face ``tokenizers``: a translation task's target vocabulary."""
    import tokenizers as tk
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = tk.Tokenizer(tk.models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = tk.normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    tok.decoder = tk.decoders.WordPiece()
    tok.train_from_iterator(
        list(texts), tk.trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = tk.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )  # fmt: skip
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


def special_ids(tokenizer: Any) -> np.ndarray:
    """int32 ids of the tokenizer's special tokens ([CLS], [SEP], [PAD], [MASK], [UNK], ...)."""
    return np.asarray(sorted(set(tokenizer.all_special_ids)), np.int32)


# How each tokenizer kind marks words: WordPiece marks a continuation ("##ing"); SentencePiece
# ("▁word") and byte-level BPE ("Ġword") mark a piece that starts a word after a space.
WORD_MARKERS = {"wordpiece": "##", "sentencepiece": "\u2581", "byte_level_bpe": "\u0120"}


def tokenizer_kind(tokenizer: Any) -> str:
    """``wordpiece`` | ``sentencepiece`` | ``byte_level_bpe``: the marker most vocabulary pieces
    carry. A vocabulary with none cannot show word boundaries: an error, rather than whole-word
    masking silently becoming token masking."""
    vocab = tokenizer.get_vocab()
    counts = {k: sum(t.startswith(m) for t in vocab) for k, m in WORD_MARKERS.items()}
    kind = max(counts, key=lambda k: counts[k])
    if counts[kind] == 0:
        raise ValueError(
            f"whole-word masking: {type(tokenizer).__name__} marks no word boundaries in its "
            "vocabulary (no '##', '\u2581' or '\u0120' pieces); use pretrain.whole_word=False"
        )
    return kind


def continuation_table(tokenizer: Any) -> np.ndarray:
    """bool[vocab]: True for pieces that continue the previous piece's word, for whole-word
    masking: WordPiece "##ing"; for SentencePiece and byte-level BPE every piece without the
    word-start marker ("ing", and punctuation attached to a word, as fairseq's whole-word masking
    treats it). Special tokens are never continuations."""
    vocab = tokenizer.get_vocab()
    kind = tokenizer_kind(tokenizer)
    marker = WORD_MARKERS[kind]
    table = np.zeros(max(vocab.values()) + 1, bool)
    for tok, i in vocab.items():
        table[i] = tok.startswith(marker) if kind == "wordpiece" else not tok.startswith(marker)
    table[list(getattr(tokenizer, "all_special_ids", []) or [])] = False
    return table


def mask_tokens(
    batch: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: np.ndarray,
    prob: float = 0.15,
    whole_word: bool = False,
    continuation: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """BERT masking of a batch (a new dict; the input is not changed).

    Chooses ``prob`` of the maskable tokens (attention_mask 1, not special); ``token_labels``
    gets their original ids (IGNORE elsewhere) and ``input_ids`` gets [MASK] for 80% of them,
    a random non-special token for 10%, and the original for 10%. ``whole_word`` (needs
    ``continuation`` from :func:`continuation_table`) chooses whole words: a continuation piece
    follows the decision of the piece that starts its word.
    """
    ids = batch["input_ids"]
    maskable = (batch["attention_mask"] > 0) & ~np.isin(ids, special_ids)
    chosen = rng.random(ids.shape) < prob
    if whole_word:
        if continuation is None:
            raise ValueError("whole_word masking needs continuation=continuation_table(tokenizer)")
        cont = continuation[ids] & maskable
        positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        start = np.maximum.accumulate(np.where(cont, 0, positions), axis=1)
        chosen = np.take_along_axis(chosen, start, axis=1)
    chosen &= maskable
    labels = np.where(chosen, ids, IGNORE).astype(np.int32)
    r = rng.random(ids.shape)
    new = ids.copy()
    new[chosen & (r < 0.8)] = mask_id
    swap = chosen & (r >= 0.8) & (r < 0.9)
    # Random replacements avoid special tokens so the model never sees a stray [SEP] or [PAD].
    normal = np.setdiff1d(np.arange(vocab_size, dtype=np.int32), special_ids)
    new[swap] = normal[rng.integers(len(normal), size=int(swap.sum()))]
    out = dict(batch)
    out["input_ids"] = new
    out["token_labels"] = labels
    return out


def pack_corpus(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    block_size: int,
    objective: str = "mlm",
    task_id: int = 0,
    drop_last: bool = True,
) -> Encoded:
    """Concatenate a corpus and cut it into LM blocks of exactly ``block_size`` tokens.

    Documents are joined with the SEP (or EOS) token. ``mlm``: each block is ``[CLS]`` +
    ``block_size - 2`` tokens + ``[SEP]``, labels left to :func:`mask_tokens`. ``clm``: blocks
    of raw tokens with shifted next-token labels. ``drop_last=False`` keeps a shorter last block.
    """
    if objective not in ("mlm", "clm"):
        raise ValueError(f"objective must be 'mlm' or 'clm', got {objective!r}")
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if sep is None:
        raise ValueError("pack_corpus needs a tokenizer with a SEP or EOS token")
    pieces = tokenizer(
        [ex.text for ex in examples], add_special_tokens=False, return_attention_mask=False
    )["input_ids"]
    stream = np.concatenate(
        [np.asarray(p + [sep], np.int32) for p in pieces] or [np.zeros(0, np.int32)]
    )
    inner = block_size - 2 if objective == "mlm" else block_size
    if inner <= 0:
        raise ValueError(f"block_size {block_size} is too small")
    n_full = len(stream) // inner
    cuts = [stream[i * inner : (i + 1) * inner] for i in range(n_full)]
    if not drop_last and len(stream) % inner:
        cuts.append(stream[n_full * inner :])
    if objective == "mlm":
        cls = tokenizer.cls_token_id
        blocks = [np.concatenate([[cls], c, [sep]]).astype(np.int32) for c in cuts]
        labels = None
    else:
        blocks = cuts
        labels = [causal_labels(b) for b in blocks]
    n = len(blocks)
    return Encoded(
        blocks,
        [np.zeros(len(b), np.int32) for b in blocks],
        np.zeros(n, np.int32),
        np.zeros(n, np.float32),
        task_id,
        token_labels=labels,
    )
