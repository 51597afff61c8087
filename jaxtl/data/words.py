"""A raw text's words, for a tagger that was trained on words (CoNLL, CoNLL-U, word lists).

``whitespace``: the text's whitespace-separated tokens, each tagged as it is (``Paris.`` is one
word). ``treebank``: the Penn Treebank's splitting, as NLTK's ``TreebankWordTokenizer`` does it
— punctuation off its word (``Paris`` ``.``), ``did`` ``n't``, ``U.S.`` kept whole — which is
how CoNLL-2003's and UD English's words are split; the text is taken as one sentence (a full
stop is split off at its end only), and its double quotes stay ``"`` (the Treebank writes
`````/``''``, which neither corpus does).
"""

from __future__ import annotations

import functools
from typing import Any

WORD_SPLITS = ("whitespace", "treebank")


def check_word_split(how: str) -> None:
    if how not in WORD_SPLITS:
        raise ValueError(f"--word_split={how!r}: choose one of {', '.join(WORD_SPLITS)}")


def split_words(text: str, how: str = "whitespace") -> tuple[str, ...]:
    """``text``'s words (module docstring)."""
    check_word_split(how)
    if how == "whitespace":
        return tuple(text.split())
    words = _treebank().tokenize(text)
    return tuple('"' if w in ("``", "''") and w not in text else w for w in words)


@functools.cache
def _treebank() -> Any:
    """One tokenizer for every line (``split_words`` runs once per input line)."""
    try:
        from nltk.tokenize import TreebankWordTokenizer
    except ImportError as e:  # a dependency of jaxtl: only a broken install lacks it
        raise ValueError(f"--word_split=treebank needs nltk ({e}): pip install nltk") from None
    return TreebankWordTokenizer()
