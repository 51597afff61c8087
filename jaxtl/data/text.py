"""Unlabelled text corpora (language modelling) and parallel text (translation).

A corpus yields one Example per non-empty line (a WikiText paragraph, a sentence of a ``.txt``
file); jaxtl.data.tokenize.pack_corpus concatenates them into fixed-length LM blocks. Parallel
text pairs line i of the source file with line i of the target file (Multi30k layout).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterator, Mapping

from jaxtl.data.io import (
    COMPRESSION,
    LANG,
    check_encoding,
    present_splits,
    read_lines,
    resolve,
    spec_split_paths,
    split_files,
    split_name,
    uncompressed,
    user_path,
)
from jaxtl.data.tasks import (
    SPLITS,
    BadRows,
    DataError,
    Example,
    Loaded,
    Task,
    register,
    streamed_reader,
)

_HEADING = re.compile(r"^\s*=( =)*[^=].*=\s*$")


def iter_corpus(path: str, bad: BadRows, *, drop_headings: bool = False,
                encoding: str | None = None) -> Iterator[Example]:  # fmt: skip
    """One Example per non-blank line, a line at a time; WikiText ``= Title =`` lines dropped
    if asked."""
    for i, line in read_lines(path, bad, encoding):
        text = line.strip()
        if not text or (drop_headings and _HEADING.match(line)):
            continue
        yield Example(text, source=f"{path}:{i}")


def _corpus_task(name: str, path_for, splits, drop_headings: bool, on_bad_row: str,
                 encoding: str | None = None) -> Task:  # fmt: skip
    """``path_for(split)``: the split's file, or a list of files read one after the other."""

    def files(split: str) -> tuple[str, ...]:
        found = path_for(split)
        return (found,) if isinstance(found, str) else tuple(found)

    def rows(split: str, bad: BadRows) -> Iterator[Example]:
        for p in files(split):
            yield from iter_corpus(p, bad, drop_headings=drop_headings, encoding=encoding)

    def what(split: str) -> str:
        paths = files(split)
        return paths[0] if len(paths) == 1 else f"{len(paths)} files"

    load, stream = streamed_reader(rows, what, on_bad_row)

    return Task(name, "lm", load, tuple(splits), metrics=("perplexity",), main_metric="perplexity",
                files=files, stream=stream)  # fmt: skip


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


_GLOB = re.compile(r"[*?[]")
# A corpus file's extensions: plain text, and WikiText's wiki.train.tokens / wiki.train.raw.
CORPUS_EXTENSIONS = (".txt", ".tokens", ".raw")


def split_of_file(filename: str) -> str | None:
    """The split a corpus file's name gives (``train.txt``, ``dev.txt.gz``, WikiText's
    ``wiki.valid.tokens`` → dev: the last dotted part before the extension, ``validation``
    and the other :data:`SPLIT_ALIASES` naming dev), or None for another name."""
    stem, ext = os.path.splitext(os.path.basename(uncompressed(filename)))
    if ext.lower() not in CORPUS_EXTENSIONS:
        return None
    ours = split_name(stem.rsplit(".", 1)[-1].lower())
    return ours if ours in SPLITS else None


def corpus_files(data_dir: str | None, path: str, name: str) -> dict[str, list[str]]:
    """The files of each split of a text corpus at ``path`` (relative to ``data_dir``):

    - ``corpus/{split}.txt``: the splits whose file exists (dev also as ``validation``,
      ``valid``…: WikiText's ``wiki.{split}.tokens`` has ``wiki.valid.tokens``);
    - a glob (``corpus/*.txt``): every match, sorted, concatenated as the train split;
    - a folder: the files named by a split (``train.txt``, ``dev.txt``, ``test.txt``, or
      WikiText's ``wiki.train.tokens``, ``wiki.valid.tokens``…, compressed or not) when any
      is there, else every ``*.txt`` in it, sorted, as the train split;
    - a file: the train split.
    """
    if "{split}" in path:  # the file readers' lookup, dev also as validation, valid…
        split_paths = spec_split_paths(data_dir, path, None, name)
        found = {s: [p] for s, p in split_paths.items() if os.path.isfile(p)}
        if not found:
            raise DataError(f"{path}: no file found for any of the splits train, dev "
                            "(or validation, valid), test")  # fmt: skip
        return found
    full = user_path(data_dir, path)
    if _GLOB.search(path):
        matches = sorted(p for p in glob.glob(full) if os.path.isfile(p))
        if not matches:
            raise DataError(f"{full}: no file matches the pattern")
        return {"train": matches}
    if os.path.isdir(full):
        named: dict[str, list[str]] = {}
        for f in sorted(os.listdir(full)):
            split = split_of_file(f)
            if split is not None and os.path.isfile(os.path.join(full, f)):
                named.setdefault(split, []).append(os.path.join(full, f))
        for split, files in named.items():
            if len(files) > 1:  # wiki.train.tokens beside wiki.train.raw: which is meant?
                raise DataError(f"{full}: {len(files)} files for split {split!r} "
                                f"({', '.join(os.path.basename(f) for f in files)}): name the "
                                "split's file, path=FOLDER/wiki.{split}.tokens")  # fmt: skip
        if named:
            return {s: named[s] for s in SPLITS if s in named}
        every = sorted(p for p in glob.glob(os.path.join(full, "*.txt")) if os.path.isfile(p))
        if not every:
            raise DataError(f"{full}: folder has no .txt file, nor files named by a split "
                            "(train.txt, wiki.train.tokens)")  # fmt: skip
        return {"train": every}
    return {"train": [full]}


@register("text")
def text_corpus(
    data_dir: str | None = None,
    *,
    path: str,
    name: str = "text",
    drop_headings: bool = False,
    encoding: str | None = None,
    on_bad_row: str = "error",
) -> Task:
    """Any text files, one example per non-empty line. ``path``: a ``{split}`` pattern
    (``corpus/{split}.txt``), a glob (``corpus/*.txt``, all files as train), a folder
    (files named by a split when present, ``train.txt`` or WikiText's ``wiki.train.tokens``,
    else all its ``*.txt`` as train) or a single file used as the train split; see
    :func:`corpus_files`."""
    paths = corpus_files(data_dir, path, name)

    def path_for(split: str) -> list[str]:
        return paths[split]

    return _corpus_task(name, path_for, paths, drop_headings, on_bad_row,
                        check_encoding(encoding, "text"))  # fmt: skip


def read_parallel(src_path: str, tgt_path: str, bad: BadRows, encoding: str | None = None
                  ) -> list[Example]:  # fmt: skip
    src = list(read_lines(src_path, bad, encoding))
    tgt = list(read_lines(tgt_path, bad, encoding))
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
    path: str | None = None,
    paths: dict[str, str] | None = None,
    src: str,
    tgt: str,
    name: str = "parallel",
    files: dict[str, str] | None = None,
    encoding: str | None = None,
    on_bad_row: str = "error",
) -> Task:
    """Parallel text, a sentence a line: line i of the target file translates line i of the
    source file. Either ``path`` is a folder and ``files`` maps split → file stem (default
    ``{split}``), the files being ``<stem>.<src>[.gz]`` / ``<stem>.<tgt>[.gz]`` (or ``.bz2``,
    ``.xz``; Multi30k's layout); or ``path`` (with ``{split}``, or one file: the train split) or ``paths`` (a file
    per split) hold a ``{lang}`` placeholder that ``src`` and ``tgt`` fill, as a spec names
    them: ``file:name=mt,path=mt/{split}.{lang},kind=translation,text=en,target=de``."""
    pattern = path if paths is None else next(iter(paths.values()), "")
    encoding = check_encoding(encoding, "parallel")
    if LANG in (pattern or ""):
        return _parallel_pattern(data_dir, path, paths, src, tgt, name, on_bad_row, encoding)
    if path is None:
        raise DataError(f"task {name!r}: parallel text needs path=FOLDER, or path=/paths= "
                        f"naming its files with a {LANG} placeholder")  # fmt: skip
    root = resolve(data_dir, path, name)
    stems = files or {"train": "train", "dev": "dev", "test": "test"}

    def pick(stem: str, lang: str) -> str:
        for suffix in (*COMPRESSION, ""):  # a compressed copy first, as Multi30k ships
            p = os.path.join(root, f"{stem}.{lang}{suffix}")
            if os.path.isfile(p):
                return p
        return os.path.join(root, f"{stem}.{lang}")

    src_files = {s: os.path.basename(pick(stem, src)) for s, stem in stems.items()}
    src_for = split_files(root, src_files, name)
    return _parallel_task(name, src_for, lambda split: pick(stems[split], tgt), tuple(stems),
                          src, tgt, on_bad_row, encoding)  # fmt: skip


def _parallel_pattern(
    data_dir: str | None,
    path: str | None,
    paths: Mapping[str, str] | None,
    src: str,
    tgt: str,
    name: str,
    on_bad_row: str,
    encoding: str | None,
) -> Task:
    """A parallel task whose files are named by a ``{lang}`` pattern (:func:`parallel`)."""
    if path is not None and paths is None and "{split}" not in path:
        paths, path = {"train": path}, None  # one file pair: the train split
    fill: dict[str, dict[str, str] | None] = {
        lang: {s: p.replace(LANG, lang) for s, p in (paths or {}).items()} or None
        for lang in (src, tgt)
    }
    src_paths = spec_split_paths(data_dir, path and path.replace(LANG, src), fill[src], name)
    present, src_for = present_splits(src_paths, f"task {name!r} ({src} side)")
    # the target side found as the source side is (validation.de beside validation.en)
    tgt_paths = spec_split_paths(data_dir, path and path.replace(LANG, tgt), fill[tgt], name)

    def tgt_for(split: str) -> str:
        if split in tgt_paths:
            return tgt_paths[split]
        return user_path(data_dir, str(path).replace(LANG, tgt).replace("{split}", split))

    return _parallel_task(name, src_for, tgt_for, tuple(present), src, tgt, on_bad_row,
                          encoding)  # fmt: skip


def _parallel_task(
    name: str,
    src_for: Callable[[str], str],
    tgt_for: Callable[[str], str],
    splits: tuple[str, ...],
    src: str,
    tgt: str,
    on_bad_row: str,
    encoding: str | None = None,
) -> Task:
    def load(split: str) -> Loaded:
        sp, tp = src_for(split), tgt_for(split)
        if not os.path.isfile(tp):
            raise DataError(f"{tp}: target file not found for split {split!r}")
        bad = BadRows(on_bad_row)
        return bad.result(read_parallel(sp, tp, bad, encoding), sp)

    return Task(name, "translation", load, splits, text_fields=(src, tgt),
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
