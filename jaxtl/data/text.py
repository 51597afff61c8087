"""Unlabelled text corpora (language modelling) and parallel text (translation).

A corpus yields one Example per non-empty line (a WikiText paragraph, a sentence of a ``.txt``
file); jaxtl.data.tokenize.pack_corpus concatenates them into fixed-length LM blocks. Parallel
text pairs line i of the source file with line i of the target file (Multi30k layout).
"""

from __future__ import annotations

import os
import re

from jaxtl.data.io import read_lines, resolve, split_files
from jaxtl.data.tasks import BadRows, DataError, Example, Loaded, Task, register

_HEADING = re.compile(r"^\s*=( =)*[^=].*=\s*$")


def read_corpus(path: str, bad: BadRows, *, drop_headings: bool = False) -> list[Example]:
    """One Example per non-blank line; WikiText ``= Title =`` lines dropped if asked."""
    out = []
    for i, line in read_lines(path, bad):
        text = line.strip()
        if not text or (drop_headings and _HEADING.match(line)):
            continue
        out.append(Example(text, source=f"{path}:{i}"))
    return out


def _corpus_task(name: str, path_for, splits, drop_headings: bool, on_bad_row: str) -> Task:
    def load(split: str) -> Loaded:
        path = path_for(split)
        bad = BadRows(on_bad_row)
        return bad.result(read_corpus(path, bad, drop_headings=drop_headings), path)

    return Task(name, "lm", load, tuple(splits), metrics=("perplexity",), main_metric="perplexity")


@register("wikitext")
def wikitext(
    data_dir: str | None = None,
    *,
    folder: str = "wikitext-103-subset",
    drop_headings: bool = True,
    on_bad_row: str = "error",
) -> Task:
    """WikiText ``wiki.{train,valid,test}.tokens`` (splits train/dev/test)."""
    root = resolve(data_dir, folder, "wikitext")
    files = {"train": "wiki.train.tokens", "dev": "wiki.valid.tokens", "test": "wiki.test.tokens"}
    return _corpus_task("wikitext", split_files(root, files, "wikitext"), files, drop_headings,
                        on_bad_row)  # fmt: skip


@register("text")
def text_corpus(
    data_dir: str | None = None,
    *,
    path: str,
    name: str = "text",
    drop_headings: bool = False,
    on_bad_row: str = "error",
) -> Task:
    """Any text files, one example per non-empty line: ``path`` with a ``{split}`` placeholder
    (``corpus/{split}.txt``), or a single file used as the train split."""
    if "{split}" in path:
        paths = {s: resolve(data_dir, path.format(split=s), name) for s in ("train", "dev", "test")}
        paths = {s: p for s, p in paths.items() if os.path.isfile(p)}
        if not paths:
            raise DataError(f"{path}: no file found for any of the splits train, dev, test")
    else:
        paths = {"train": resolve(data_dir, path, name)}

    def path_for(split: str) -> str:
        return paths[split]

    return _corpus_task(name, path_for, paths, drop_headings, on_bad_row)


def read_parallel(src_path: str, tgt_path: str, bad: BadRows) -> list[Example]:
    src = list(read_lines(src_path, bad))
    tgt = list(read_lines(tgt_path, bad))
    if len(src) != len(tgt) and not bad.skip:
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: not parallel"
        )
    targets = dict(tgt)
    out = []
    for i, s in src:
        if i not in targets:
            continue  # the target line was unreadable and skipped (already counted)
        t = targets[i]
        if not s.strip() or not t.strip():
            bad(f"{src_path}:{i}", "empty source or target line")
            continue
        out.append(Example(s.strip(), target=t.strip(), source=f"{src_path}:{i}"))
    return out


@register("parallel")
def parallel(
    data_dir: str | None = None,
    *,
    path: str,
    src: str,
    tgt: str,
    name: str = "parallel",
    files: dict[str, str] | None = None,
    on_bad_row: str = "error",
) -> Task:
    """Parallel text: ``path`` is the folder; ``files`` maps split → file stem (default
    ``{split}``) and the files are ``<stem>.<src>[.gz]`` / ``<stem>.<tgt>[.gz]``."""
    root = resolve(data_dir, path, name)
    stems = files or {"train": "train", "dev": "dev", "test": "test"}

    def pick(stem: str, lang: str) -> str:
        for suffix in (".gz", ""):
            p = os.path.join(root, f"{stem}.{lang}{suffix}")
            if os.path.isfile(p):
                return p
        return os.path.join(root, f"{stem}.{lang}")

    src_files = {s: os.path.basename(pick(stem, src)) for s, stem in stems.items()}
    src_for = split_files(root, src_files, name)

    def load(split: str) -> Loaded:
        sp = src_for(split)
        tp = pick(stems[split], tgt)
        if not os.path.isfile(tp):
            raise DataError(f"{tp}: target file not found for split {split!r}")
        bad = BadRows(on_bad_row)
        return bad.result(read_parallel(sp, tp, bad), sp)

    return Task(name, "translation", load, tuple(stems), text_fields=(src, tgt),
                metrics=("bleu",), main_metric="bleu")  # fmt: skip


@register("multi30k")
def multi30k(
    data_dir: str | None = None,
    *,
    folder: str = "multi30k",
    src: str = "en",
    tgt: str = "de",
    on_bad_row: str = "error",
) -> Task:
    """Multi30k task 1 (``train``, ``val`` → dev, ``test_2016_flickr`` → test), gzip or plain."""
    return parallel(
        data_dir, path=folder, src=src, tgt=tgt, name="multi30k", on_bad_row=on_bad_row,
        files={"train": "train", "dev": "val", "test": "test_2016_flickr"},
    )  # fmt: skip
