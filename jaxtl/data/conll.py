"""Column-format tagging data: CoNLL-2003 NER, UD CoNLL-U part-of-speech, and generic CoNLL files.

One token per line, a blank line between sentences. The tag column is configurable. Span tags are
IOB: ``scheme="auto"`` (default) and ``"iob1"`` accept IOB1 and IOB2 and convert to IOB2 (an
``I-X`` that opens a span becomes ``B-X``); ``scheme="iob2"`` is strict and rejects an ``I-X`` that
does not continue an ``X`` span. A tag that is not ``O`` / ``B-<type>`` / ``I-<type>`` (``B-``,
``X-PER``) is always bad. A bad line makes its whole sentence bad (an error naming file and line,
or a skip with ``on_bad_row="skip"``).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Mapping, Sequence

from jaxtl.data.io import (
    NOT_IOB,
    SPAN_TAG,
    IOBError,
    check_encoding,
    extension,
    present_splits,
    read_lines,
    resolve,
    scheme_of,
    spec_split_paths,
    split_files,
    to_iob2,
    unknown_class,
)
from jaxtl.data.tasks import BadRows, Example, Loaded, Task, register

CONLL2003_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip


def _sentences(
    path: str, bad: BadRows, comment: str | None, encoding: str | None = None
) -> Iterator[tuple[list[tuple[int, str]], str | None, str | None]]:
    """Groups of (line number, line) separated by blank lines, each with its ``# sent_id = …``
    and ``# text = …`` comments' values (CoNLL-U's sentence id and text; None without them);
    comment lines dropped."""
    block: list[tuple[int, str]] = []
    sent_id = text = None
    for i, line in read_lines(path, bad, encoding):
        if comment and line.startswith(comment):
            key, eq, value = line[len(comment) :].partition("=")
            if eq and key.strip() == "sent_id" and value.strip():
                sent_id = value.strip()
            elif eq and key.strip() == "text" and value.strip():
                text = value.strip()
            continue
        if not line.strip():
            if block:
                yield block, sent_id, text
            block, sent_id, text = [], None, None
            continue
        block.append((i, line))
    if block:
        yield block, sent_id, text


def read_conll(
    path: str,
    bad: BadRows,
    *,
    word_column: int = 0,
    tag_column: int = -1,
    width: int | None = None,
    delimiter: str | None = None,
    iob: bool = True,
    scheme: str = "auto",
    label_names: Sequence[str] | None = None,
    conllu: bool = False,
    tags_optional: bool = False,
    encoding: str | None = None,
    raw_tags: set[str] | None = None,
) -> list[Example]:
    """Sentences of a column file as tagging Examples (``words`` and ``label`` = tags).

    ``width``: the exact number of columns per token line (None: that of the file's first token
    line). ``conllu``: CoNLL-U rules (tab-separated, ``#`` comments, multiword-token ranges
    ``1-2`` and empty nodes ``1.1`` skipped; a sentence's ``# sent_id = …`` is its example's
    ``id`` and its ``# text = …`` the example's text — the sentence as written, "don't" where
    the words are "do", "n't" — which its prediction record carries; else the words joined).
    ``label_names``: the allowed tag set. ``tags_optional``: a file of words alone (one column; e.g. a test set to predict) is read
    unlabelled (``label=None``); otherwise such a file is an error, as its words are no tags.
    ``raw_tags``: a set that gets every tag as written, before IOB2 (which scheme the file has).
    """
    allowed = set(label_names) if label_names else None
    words_only = False
    out: list[Example] = []
    for block, sent_id, text in _sentences(path, bad, "#" if conllu else None, encoding):
        first = block[0][0]
        words: list[str] = []
        tags: list[str] = []
        line_of: list[int] = []  # file line of each word, to place IOB errors
        error = None
        for i, line in block:
            fields = line.split("\t") if conllu else line.split(delimiter)
            if fields[0] == "-DOCSTART-":
                break
            if width is None:
                width = len(fields)
                if width == 1 and not conllu:
                    if not tags_optional:
                        error = (i, "one column, a word without a tag; only a split other than "
                                    "the one that trains or gives the tag set may be unlabelled")  # fmt: skip
                        break
                    words_only = True
                elif not (-width <= word_column < width and -width <= tag_column < width):
                    error = (i, f"{width} columns: no word column {word_column} or tag column "
                                f"{tag_column}")  # fmt: skip
                    break
            if len(fields) != width:
                error = (i, f"expected {width} columns, found {len(fields)}")
                break
            if conllu and not fields[0].isdigit():
                if re.match(r"^\d+(-\d+|\.\d+)$", fields[0]):
                    continue  # multiword token range or empty node: not a word of its own
                error = (i, f"token id {fields[0]!r} is not an integer, range or decimal")
                break
            if words_only:
                words.append(fields[0])
                line_of.append(i)
                continue
            word, tag = fields[word_column], fields[tag_column]
            if iob and not SPAN_TAG.match(tag):
                error = (i, f"tag {tag!r} {NOT_IOB}")
                break
            if (
                allowed is not None
                and tag not in allowed
                and not (iob and "B-" + tag[2:] in allowed)
            ):
                error = (i, unknown_class(tag, allowed, "tag"))
                break
            words.append(word)
            tags.append(tag)
            line_of.append(i)
        if error:
            bad(f"{path}:{error[0]}", error[1])
            continue
        if not words:
            continue
        if words_only:
            out.append(Example(text or " ".join(words), None, None, words=tuple(words),
                               source=f"{path}:{first}", id=sent_id))  # fmt: skip
            continue
        if raw_tags is not None:
            raw_tags.update(tags)
        if iob:
            try:
                tags = list(to_iob2(tags, scheme))
            except IOBError as e:
                bad(f"{path}:{line_of[e.index]}", f"sentence starting line {first}: {e}")
                continue
        out.append(
            Example(
                text or " ".join(words),  # CoNLL-U's # text: the sentence as written
                None,
                tuple(tags),
                words=tuple(words),
                source=f"{path}:{first}",
                id=sent_id,
            )  # fmt: skip
        )
    return out


def _tagging_task(
    name: str,
    files_for,
    splits: Sequence[str],
    label_names: Sequence[str],
    iob: bool,
    on_bad_row: str,
    label_split: str | None = None,
    tag_scheme: str = "iob2",
    **read_options,
) -> Task:
    def load(split: str) -> Loaded:
        path = files_for(split)
        bad = BadRows(on_bad_row)
        # As for table files: a split that neither trains nor gave the tag set may be words
        # alone (a test set to predict), read unlabelled.
        examples = read_conll(path, bad, iob=iob, label_names=label_names,
                              tags_optional=split not in ("train", label_split), **read_options)  # fmt: skip
        return bad.result(examples, path)

    metrics = ("span_f1", "token_accuracy") if iob else ("token_accuracy",)
    return Task(
        name=name,
        kind="tagging",
        loader=load,
        splits=tuple(splits),
        label_names=tuple(label_names),
        text_fields=("words",),
        metrics=metrics,
        main_metric=metrics[0],
        iob=iob,
        tag_scheme=tag_scheme if iob else "iob2",
    )


@register("conll2003")
def conll2003(
    data_dir: str | None = None,
    *,
    folder: str = "conll2003",
    tag_column: int = 3,
    scheme: str = "auto",
    on_bad_row: str = "error",
) -> Task:
    """CoNLL-2003 English NER (``word POS chunk NER``); ``tag_column=2`` gives chunking instead
    (then the label set is read from the file's tags, see ``get_task('conll', ...)``)."""
    root = resolve(data_dir, folder, "conll2003")
    files = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
    names = CONLL2003_TAGS if tag_column == 3 else None
    if names is None:
        return conll_task(data_dir, path=os.path.join(root, "{split}.txt"), tag_column=tag_column)
    return _tagging_task(
        "conll2003", split_files(root, files, "conll2003"), tuple(files), names, True, on_bad_row,
        tag_column=tag_column, width=4, scheme=scheme,
    )  # fmt: skip


@register("ud_pos")
def ud_pos(
    data_dir: str | None = None,
    *,
    folder: str = "UD_English-EWT",
    column: int = 3,
    on_bad_row: str = "error",
) -> Task:
    """Universal Dependencies part of speech (UPOS, column 3; ``column=4`` for XPOS with the
    label set read from train) from ``<folder>/*-ud-{train,dev,test}.conllu``."""
    root = resolve(data_dir, folder, "ud_pos")
    files = {}
    for split in ("train", "dev", "test"):
        found = sorted(glob.glob(os.path.join(root, f"*-ud-{split}.conllu")))
        files[split] = os.path.basename(found[0]) if found else f"*-ud-{split}.conllu"
    names: Sequence[str] | None = UPOS_TAGS if column == 3 else None
    path_for = split_files(root, files, "ud_pos")
    if names is None:
        bad = BadRows(on_bad_row)
        train = read_conll(path_for("train"), bad, word_column=1, tag_column=column, iob=False,
                           width=10, conllu=True)  # fmt: skip
        names = sorted({t for ex in train for t in ex.label})  # type: ignore[union-attr]
    return _tagging_task(
        "ud_pos", path_for, tuple(files), names, False, on_bad_row,
        word_column=1, tag_column=column, width=10, conllu=True,
    )  # fmt: skip


@register("conll")
def conll_task(
    data_dir: str | None = None,
    *,
    path: str | None = None,
    paths: Mapping[str, str] | None = None,
    word_column: int | None = None,
    tag_column: int | None = None,
    delimiter: str | None = None,
    iob: bool | None = None,
    scheme: str = "auto",
    label_names: Sequence[str] | None = None,
    conllu: bool | None = None,
    encoding: str | None = None,
    name: str = "conll",
    on_bad_row: str = "error",
) -> Task:
    """Generic column files: ``path`` with a ``{split}`` placeholder (relative to ``data_dir``) or
    ``paths``, a file per split (a spec's one file without ``{split}`` is the train split);
    whitespace-separated columns unless ``delimiter``; ``iob=False`` for plain tags such as POS.
    The tag set is ``label_names`` or, when omitted, the sorted tags of the train split.

    ``conllu`` (default: whether ``path`` ends in ``.conllu``) reads CoNLL-U: tab-separated,
    ``#`` comments, multiword ranges and empty nodes skipped; its defaults are the UPOS tags
    (``word_column=1``, ``tag_column=3``, ``iob=False``; ``tag_column=4`` for XPOS). Otherwise
    the defaults are ``word_column=0``, ``tag_column=-1`` (the last column) and ``iob=True``.
    ``encoding``: the files' text encoding, when not UTF-8 (``cp1252``, ``latin-1``)."""
    split_paths = spec_split_paths(data_dir, path, paths, "conll")
    if conllu is None:
        conllu = extension(next(iter(split_paths.values()))) == ".conllu"
    if word_column is None:
        word_column = 1 if conllu else 0
    if tag_column is None:
        tag_column = 3 if conllu else -1
    if iob is None:
        iob = not conllu
    present, path_for = present_splits(split_paths, f"task {name!r}")

    options: dict = dict(word_column=word_column, tag_column=tag_column, delimiter=delimiter)
    if encoding:
        options["encoding"] = check_encoding(encoding, "conll")
    if conllu:
        options["conllu"] = True
    if iob:
        options["scheme"] = scheme
    label_split = None  # the split the tag set is read from, when it is not given
    written: set[str] = set(label_names or ())  # the tags as the files write them
    if not label_names:
        bad = BadRows(on_bad_row)
        label_split = "train" if "train" in present else next(iter(present))
        rows = read_conll(path_for(label_split), bad, iob=iob, raw_tags=written, **options)
        tags = {t for ex in rows for t in ex.label}  # type: ignore[union-attr]  # tag tuples
        label_names = sorted(tags)
        if iob:
            types = sorted({t[2:] for t in tags if t != "O"})
            label_names = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
    return _tagging_task(name, path_for, tuple(present), label_names, iob, on_bad_row,
                         label_split=label_split, tag_scheme=scheme_of(written),
                         **options)  # fmt: skip
