"""Hugging Face ``datasets`` as tasks, from local files only:
``get_task("hf:name=sent,path=/data/sent,text=sentence,label=label")`` or ``get_task("hf", ...)``.

``path`` (relative to ``data_dir`` unless absolute) is one of

- a folder written by ``Dataset.save_to_disk`` (the train split) or ``DatasetDict.save_to_disk``
  (split ``validation``/``valid`` → ``dev``; ``train``, ``test`` and any other name kept), read
  with ``datasets.load_from_disk``;
- data files: one ``.parquet`` / ``.arrow`` / ``.json`` / ``.jsonl`` / ``.csv`` file (the train
  split), a ``{split}`` pattern (``sent/{split}.parquet``; ``dev`` also finds ``validation``) or a
  glob (``shards/*.parquet``, all files as train), read file by file with
  ``datasets.load_dataset(<parquet|arrow|json|csv>, data_files=...)``; ``format`` overrides the
  builder taken from the extension. A folder holding ``train.<ext>`` / ``dev.<ext>`` /
  ``validation.<ext>`` / ``test.<ext>`` files works too;
- otherwise a hub dataset name (``subset`` picks its configuration), read with
  ``datasets.load_dataset(name)`` in offline mode: only from the local Hugging Face cache. jaxtl
  never downloads; a dataset that is not cached is a one-line error saying how to point at
  local files instead.

Options mirror the ``file`` task: ``text``, ``text_pair``, ``label`` (``label=`` empty for a corpus),
``target``, ``kind`` (default from the label feature: ``ClassLabel`` → classification, float →
regression, a list → tagging beside a list of words or multilabel beside a text (a set of
classes per example: ``Sequence(ClassLabel)`` as GoEmotions has, or lists of strings or ints),
no label → lm; strings and ints → classification), ``label_names``
(default: a ``ClassLabel``'s names, so its ids stay the ids; for int labels ``0..max``; for
strings the sorted labels of the train split, whole numbers by value), ``id`` (default
``id``: the column of each row's own id, which its prediction records carry in place of the
row's index, where a split has it), ``metrics``, ``main_metric``, ``splits`` (our split
→ the dataset's split name, e.g. ``{"dev": "validation_matched"}``), ``on_bad_row``. Tagging:
``text`` is a list-of-words column and ``label`` a list of tags (a list of ``ClassLabel`` gives
the tag names). ``kind=qa``: extractive question answering over ``question`` / ``context`` /
``answers`` columns (options of those names), as Hugging Face's ``squad`` is laid out, with
``null_answers`` for SQuAD 2.0's unanswerable questions (:mod:`jaxtl.data.qa`).

Each row becomes an :class:`~jaxtl.data.tasks.Example` whose ``source`` is ``<file or split
folder>:<row>`` (row = the 0-based index in that file or split, as ``dataset[row]``). A row with an
empty text, a missing value or a label outside the label set is a bad row (error naming path, row
and column, or a counted skip with ``on_bad_row="skip"``); a column missing from a split is an
error listing its columns, except a missing label column in a split other than train, which reads
that split unlabelled (``label=None``); so does a ``ClassLabel`` split whose labels are all -1
(the HF convention for unlabelled test sets), or a label column with no value in any row (a
pandas frame's None written to Parquet). ``datasets`` is imported only when such a task is
built (it is slow to import).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from jaxtl.data.io import (
    DEFAULT_ID,
    DEFAULT_METRICS,
    ENCODING_HINT,
    NO_ID,
    IOBError,
    check_encoding,
    chosen_metrics,
    did_you_mean,
    extension,
    has_id_column,
    id_column,
    iob2_tag_set,
    is_blank,
    is_iob_set,
    is_multi_hot,
    label_order,
    multilabel_ids,
    names_by_id,
    names_of_split,
    one_class,
    qa_example,
    qa_task_of,
    resolve,
    row_id,
    scheme_of,
    split_name,
    to_iob2,
    unknown_class,
    unnamed_columns_hint,
    whole_scores,
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

log = logging.getLogger(__name__)

BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json",
            ".csv": "csv"}  # fmt: skip
_GLOB = re.compile(r"[*?[]")

# Per split: the (where, dataset) parts to read one after the other.
Parts = list[tuple[str, Any]]


def _cache_dir() -> str:
    """The datasets cache as the environment says *now* (``datasets.config`` reads it once)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return os.path.join(home, "datasets")


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """``HF_DATASETS_OFFLINE=1`` semantics while inside, whatever the environment said when
    ``datasets`` was imported: nothing is fetched, only local files and the cache are read."""
    import datasets
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _builder(path: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("parquet", "arrow", "json", "jsonl", "csv"):
            raise ValueError(f"hf task: format must be parquet, arrow, json or csv, got {fmt!r}")
        return "json" if fmt == "jsonl" else fmt
    ext = extension(path)
    if ext not in BUILDERS:
        raise DataError(f"{path}: cannot tell the file format from {ext!r}; pass format=")
    return BUILDERS[ext]


def _load_file(path: str, fmt: str | None, encoding: str | None = None) -> Any:
    """One local data file as a Dataset; a file its builder cannot read (broken JSON, text
    that is not UTF-8) is a DataError naming it and why, not the builder's traceback."""
    import datasets

    builder = _builder(path, fmt)
    # the text builders' own option; Parquet and Arrow carry their encoding
    extra = {"encoding": encoding} if encoding and builder in ("csv", "json") else {}
    try:
        with offline():
            return datasets.load_dataset(
                builder, data_files={"train": [path]}, split="train", cache_dir=_cache_dir(),
                **extra,
            )  # fmt: skip
    except datasets.exceptions.DatasetGenerationError as e:
        cause: BaseException = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        if isinstance(cause, UnicodeDecodeError):
            reason = (f"invalid {encoding} at byte {cause.start}" if encoding else
                      f"invalid UTF-8 at byte {cause.start} ({ENCODING_HINT})")  # fmt: skip
        else:
            reason = " ".join(f"{type(cause).__name__}: {cause}".split())
            if not encoding and "utf8" in reason.lower().replace("-", ""):  # Arrow's CSV reader
                reason += f" ({ENCODING_HINT})"
        raise DataError(f"{path}: the {builder} reader cannot read it: {reason}") from None


def _files_parts(files: Sequence[str], fmt: str | None,
                 encoding: str | None = None) -> Callable[[], Parts]:  # fmt: skip
    return lambda: [(f, _load_file(f, fmt, encoding)) for f in files]


def _dict_parts(dd: Mapping[str, Any], where: Callable[[str], str],
                splits: Mapping[str, str] | None) -> dict[str, Callable[[], Parts]]:  # fmt: skip
    """Our split → parts, from a DatasetDict (its split names mapped, or ``splits``)."""
    if splits:
        missing = [s for s in splits.values() if s not in dd]
        if missing:
            raise DataError(f"{where('')}: no split {missing[0]!r}; splits: {list(dd)}")
        return {ours: _const([(where(theirs), dd[theirs])]) for ours, theirs in splits.items()}
    out: dict[str, Callable[[], Parts]] = {}
    for theirs in dd:
        ours = split_name(theirs)
        if ours not in out:
            out[ours] = _const([(where(theirs), dd[theirs])])
    return out


def _const(parts: Parts) -> Callable[[], Parts]:
    return lambda: parts


def _split_files(local_pattern: str) -> dict[str, list[str]]:
    """``{split}`` pattern → existing files per split (``dev`` also as validation, valid…)."""
    found: dict[str, list[str]] = {}
    for ours in SPLITS:
        for theirs in names_of_split(ours):
            p = local_pattern.replace("{split}", theirs)
            files = sorted(glob.glob(p)) if _GLOB.search(p) else [p] if os.path.isfile(p) else []
            if files:
                found[ours] = files
                break
    return found


def _hub(name: str, subset: str | None, splits: Mapping[str, str] | None
         ) -> dict[str, Callable[[], Parts]]:  # fmt: skip
    import datasets

    try:
        with offline():
            dd = datasets.load_dataset(name, subset, cache_dir=_cache_dir())
    except Exception as e:  # offline misses surface as several exception types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"hf dataset {name!r} is not in the local Hugging Face cache ({_cache_dir()}) and "
            f"jaxtl never downloads ({type(e).__name__}: {reason[:200]}); point at local files "
            f"instead: hf:name=N,path=/dir/saved_with_save_to_disk or "
            f"hf:name=N,path=/dir/{{split}}.parquet"
        ) from None
    if not isinstance(dd, Mapping):
        dd = {"train": dd}
    return _dict_parts(dd, lambda s: f"{name}[{s}]" if s else name, splits)


def open_splits(
    data_dir: str | None, path: str, *, name: str, fmt: str | None = None,
    subset: str | None = None, splits: Mapping[str, str] | None = None,
    encoding: str | None = None,
) -> dict[str, Callable[[], Parts]]:  # fmt: skip
    """Our split name → a function giving its (where, Dataset) parts (see the module docstring)."""
    local = resolve(data_dir, path, name) if data_dir is not None else path
    if "{split}" in path:
        found = _split_files(local)
        if not found:
            raise DataError(
                f"{local}: no file found for any of the splits train, dev (or validation), test"
            )
        return {s: _files_parts(f, fmt, encoding) for s, f in found.items()}
    if _GLOB.search(path):
        files = sorted(p for p in glob.glob(local) if os.path.isfile(p))
        if not files:
            raise DataError(f"{local}: no file matches the pattern")
        return {"train": _files_parts(files, fmt, encoding)}
    if os.path.isdir(local):
        import datasets

        if os.path.isfile(os.path.join(local, "dataset_dict.json")) or os.path.isfile(
            os.path.join(local, "state.json")
        ):
            loaded = datasets.load_from_disk(local)
            if isinstance(loaded, datasets.DatasetDict):
                return _dict_parts(loaded, lambda s: os.path.join(local, s), splits)
            return {"train": _const([(local, loaded)])}
        for ext in BUILDERS:
            found = _split_files(os.path.join(local, "{split}" + ext))
            if found:
                return {s: _files_parts(f, fmt, encoding) for s, f in found.items()}
        raise DataError(
            f"{local}: not a folder written by save_to_disk (no dataset_dict.json or state.json) "
            f"and no train/dev/validation/test data files ({', '.join(BUILDERS)}) in it"
        )
    if os.path.isfile(local):
        return {"train": _files_parts([local], fmt, encoding)}
    if os.path.isabs(path) or extension(path) in BUILDERS or path.startswith("."):
        raise DataError(f"{local}: file or folder not found")
    return _hub(path, subset, splits)


def _list_like(feature: Any) -> bool:
    import datasets

    return isinstance(feature, (list, datasets.List, datasets.LargeList)) or (
        hasattr(datasets, "Sequence")
        and isinstance(datasets.Sequence, type)
        and isinstance(feature, datasets.Sequence)
    )


def _class_label(feature: Any) -> Any:
    """The ClassLabel of a label feature (or of a list-of-labels feature), else None."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return feature
    inner = getattr(feature, "feature", None)
    if _list_like(feature) and isinstance(inner, datasets.ClassLabel):
        return inner
    return None


# The hf reader takes a CSV's first line as its header: a file without one is the file reader's.
HEADERLESS_HF = "; a CSV without a header line: a file: task with header=0 reads it"
# Rows read from the Arrow table at a time: a split is streamed, never held in Python lists.
ROWS_PER_READ = 4096


def _default_kind(feature: Any, text_feature: Any = None) -> str:
    import datasets

    if _list_like(feature):
        # labels per word (a list of words beside them) or a set of classes per text
        text_is_string = isinstance(text_feature, datasets.Value) and text_feature.dtype in (
            "string", "large_string")  # fmt: skip
        return "multilabel" if text_is_string else "tagging"
    if isinstance(feature, datasets.ClassLabel):
        return "classification"
    if isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        return "regression"
    return "classification"


@register("hf")
def hf_task(
    data_dir: str | None = None,
    *,
    path: str,
    name: str = "hf",
    text: str = "text",
    text_pair: str | None = None,
    label: str | None = "label",
    target: str | None = None,
    kind: str | None = None,
    label_names: Sequence[str] | None = None,
    label_columns: Sequence[str] | None = None,
    id: str | None = DEFAULT_ID,
    metrics: Sequence[str] | None = None,
    main_metric: str | None = None,
    format: str | None = None,
    subset: str | None = None,
    splits: Mapping[str, str] | None = None,
    on_bad_row: str = "error",
    question: str = "question",
    context: str = "context",
    answers: str = "answers",
    null_answers: bool = False,
    encoding: str | None = None,
    _labels_optional: bool = False,
) -> Task:
    """A task over a local Hugging Face dataset (see the module docstring).
    ``_labels_optional``: its one split may lack the label column (``--predict`` on a file,
    with the run's ``kind`` and ``label_names``)."""
    BadRows(on_bad_row)  # validates the policy now rather than at the first load
    by_id = {} if label_columns else names_by_id(label_names)  # int labels without a ClassLabel
    convert = False  # BIOES/BILOU tags read as IOB2 (set once the tag set is known)
    sources = open_splits(data_dir, path, name=name, fmt=format, subset=subset, splits=splits,
                          encoding=check_encoding(encoding, "hf"))  # fmt: skip
    cache: dict[str, Parts] = {}

    def parts(split: str) -> Parts:
        if split not in cache:
            cache[split] = sources[split]()
        return cache[split]

    if kind == "qa":
        return _qa_task(name, sources, parts, (question, context, answers), id, null_answers,
                        metrics, main_metric, on_bad_row, _labels_optional)  # fmt: skip

    first = "train" if "train" in sources else next(iter(sources))
    where0, ds0 = parts(first)[0]
    columns = tuple(str(c) for c in label_columns or ())
    if columns:  # one 0/1 column per class (multilabel), as the file task reads them
        if kind not in (None, "multilabel"):
            raise ValueError(f"hf task: label_columns is for kind=multilabel, not kind={kind!r}")
        missing = [c for c in columns if c not in ds0.column_names]
        if missing and not _labels_optional:
            raise DataError(f"{where0}: no column {missing[0]!r} of label_columns; columns: "
                            f"{ds0.column_names}")  # fmt: skip
        kind, label, label_names = "multilabel", None, columns
    if (label is not None and label not in ds0.column_names and kind not in ("lm", "translation")
            and not _labels_optional):  # fmt: skip
        raise DataError(
            f"{where0}: no label column {label!r}"
            f"{unnamed_columns_hint(ds0.column_names, (text, text_pair, label), HEADERLESS_HF)}"
            f"{did_you_mean(label, ds0.column_names)}; "
            f"columns: {ds0.column_names} "
            "(label= empty for an unlabelled corpus)"
        )
    feature = ds0.features[label] if label is not None and label in ds0.column_names else None
    if kind is None:
        text_feature = ds0.features.get(text) if text in ds0.column_names else None
        kind = "lm" if feature is None else _default_kind(feature, text_feature)
        if kind == "regression" and (classes := whole_scores(where0, ds0[label], label)):
            log.warning("%s", classes)  # a float column of 0.0/1.0: likely classes
    if kind not in DEFAULT_METRICS:
        raise ValueError(f"hf task: kind must be one of {list(DEFAULT_METRICS)}, got {kind!r}")
    labelled_kind = kind in ("classification", "multilabel", "regression", "tagging")
    class_label = _class_label(feature) if feature is not None else None

    def _examples(split_parts: Parts, split: str, lmap: Mapping[str, int] | None,
                  bad: BadRows) -> Iterator[Example]:  # fmt: skip
        """The split's examples, read a batch of rows at a time from the (memory-mapped)
        Arrow table: a dataset larger than memory streams."""
        for where, ds in split_parts:
            cols = ds.column_names
            for col in (text, text_pair, target):
                if col is not None and col not in cols:
                    raise DataError(f"{where}: no column {col!r}; columns: {cols}")
            if columns:
                labelled = all(c in cols for c in columns)
            else:
                labelled = labelled_kind and label is not None and label in cols
            cl = _class_label(ds.features[label]) if labelled and not columns else None
            rid_column = id_column(cols, id)  # "ID"/"Id" for the default id too
            has_id = has_id_column(rid_column in cols, rid_column, where)
            if labelled and not columns and _no_label_in(ds, cl):
                labelled = False  # ClassLabel -1 only, or no value in any row (pandas' None)
            if (
                labelled_kind
                and not labelled
                and split in ("train", first)
                and not _labels_optional
            ):
                raise DataError(
                    f"{where}: no labels in column {label!r} (columns: {cols}); only a split "
                    "other than the one that trains or gives the label set may be unlabelled"
                )
            wanted: list[Any] = [c for c in (text, text_pair, target,
                                             rid_column if has_id else None) if c is not None]  # fmt: skip
            if labelled:
                wanted += list(columns) or [label]
            i = 0
            for batch in ds.select_columns(list(dict.fromkeys(wanted))).iter(ROWS_PER_READ):
                n = len(batch[text])
                none = [None] * n
                pairs = batch[text_pair] if text_pair is not None else none
                targets = batch[target] if target is not None else none
                ids = batch[rid_column] if has_id else none
                raws: list[Any]
                if labelled and columns:  # a row's 0/1 per class column
                    raws = [list(r) for r in zip(*(batch[c] for c in columns))]
                else:
                    raws = batch[label] if labelled else none
                for j, (t, pair, tgt, raw, rid) in enumerate(
                    zip(batch[text], pairs, targets, raws, ids)
                ):
                    at = f"{where}:{i + j}"
                    if has_id:
                        rid = row_id(rid, at, rid_column, bad)
                        if rid is NO_ID:
                            continue
                    ex = _example(at, t, pair, tgt, raw, rid, labelled, cl, lmap, bad)
                    if ex is not None:
                        yield ex
                i += n

    def _no_label_in(ds: Any, cl: Any) -> bool:
        """Whether no row of ``ds`` has a label: every value blank, or a ClassLabel's -1
        (not a tagger's). Read a batch at a time; stops at the first label."""
        for batch in ds.select_columns([label]).iter(ROWS_PER_READ):
            values = batch[label]
            if not all(is_blank(r) for r in values) and not (
                cl is not None and kind != "tagging" and all(r == -1 for r in values)
            ):
                return False
        return True

    def _example(where: str, t: Any, pair: Any, tgt: Any, raw: Any, rid: Any, labelled: bool,
                 cl: Any, lmap: Mapping[str, int] | None, bad: BadRows) -> Example | None:  # fmt: skip
        if kind == "tagging":
            if not isinstance(t, list) or not t or not all(isinstance(w, str) for w in t):
                bad(where, f"column {text!r}: expected a non-empty list of words, got {t!r:.80}")
                return None
            if not isinstance(raw, list) or len(raw) != len(t):
                bad(where, f"column {label!r}: expected {len(t)} tags (one per word), got "
                           f"{raw!r:.80}")  # fmt: skip
                return None
            tags = tuple(cl.int2str(x) if cl is not None else by_id.get(str(x), str(x))
                         for x in raw)  # fmt: skip
            if convert:  # BIOES/BILOU tags as IOB2, the same spans
                try:
                    tags = to_iob2(tags)
                except IOBError as e:
                    bad(where, f"column {label!r}: {e}")
                    return None
            if lmap is not None:
                unknown = [x for x in tags if x not in lmap]
                if unknown:
                    bad(where, f"column {label!r}: " + unknown_class(unknown[0], lmap, "tag"))
                    return None
            words = tuple(t)
            return Example(" ".join(words), None, tags, words=words, source=where, id=rid)
        if not isinstance(t, str) or not t.strip():
            bad(where, f"column {text!r}: text is empty or not a string ({t!r:.80})")
            return None
        if text_pair is not None and (not isinstance(pair, str) or not pair.strip()):
            bad(where, f"column {text_pair!r}: text is empty or not a string ({pair!r:.80})")
            return None
        value: Any = None
        if labelled and kind == "multilabel":
            classes = raw
            if not columns and not is_multi_hot(raw):  # class names or ids
                if not isinstance(raw, list):
                    bad(where, f"column {label!r}: expected a list of labels, got {raw!r:.80}")
                    return None
                keys = [cl.int2str(x) if cl is not None else str(x).strip() for x in raw]
                # Reading the label set (no lmap), int ids without a ClassLabel stay ints: the
                # names are then 0..max, as for a classification column.
                classes = keys if lmap is not None else [
                    x if isinstance(x, int) and cl is None else k for x, k in zip(raw, keys)]  # fmt: skip
            value = multilabel_ids(classes, lmap, where, bad, columns=columns, column=label)
            if value is None:
                return None
        elif labelled:
            if raw is None or (cl is not None and raw == -1):
                bad(where, f"column {label!r}: no label ({raw!r})")
                return None
            if kind == "regression":
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    bad(where, f"column {label!r}: score {raw!r} is not a number")
                    return None
                if not math.isfinite(value):
                    bad(where, f"column {label!r}: score {raw!r} is not finite")
                    return None
            else:
                key = cl.int2str(raw) if cl is not None else str(raw).strip()
                if cl is None:  # an int id names label_names[id] (io.names_by_id)
                    key = by_id.get(key, key)
                if lmap is None:
                    value = raw if isinstance(raw, int) and cl is None else key
                elif key not in lmap:
                    bad(where, f"column {label!r}: " + unknown_class(key, lmap))
                    return None
                else:
                    value = lmap[key]
        return Example(t.strip(), pair, value, target=tgt, source=where, id=rid)

    names: tuple[str, ...] = tuple(str(x) for x in label_names or ())
    if labelled_kind and kind != "regression" and not names:
        if class_label is not None:
            names = tuple(class_label.names)
        else:
            values: set[Any] = set()
            for ex in _examples(parts(first), first, None, BadRows("skip")):
                values.update(ex.label if kind in ("multilabel", "tagging")  # type: ignore[arg-type]
                              else (ex.label,))  # fmt: skip
            ints = [v for v in values if isinstance(v, int)]
            if ints and len(ints) == len(values) and min(ints) >= 0:
                names = tuple(str(i) for i in range(max(ints) + 1))  # int labels stay the ids
            else:
                names = label_order(values)
            if kind == "classification" and len(names) == 1:
                log.warning("%s", one_class(f"{path} ({first})", names[0], label))
    written = "iob2"  # the scheme the tags are written in (io.scheme_of)
    if kind == "tagging" and (iob2 := iob2_tag_set(names)) is not None:
        names, convert, written = iob2, True, scheme_of(names)
    label_map = {n: i for i, n in enumerate(names)}

    def split_parts(split: str) -> Parts:
        if split not in sources:
            raise DataError(f"task {name!r} has no split {split!r}; splits: {list(sources)}")
        return parts(split)

    lmap = label_map if kind in ("classification", "multilabel", "tagging") else None
    load, stream = streamed_reader(
        lambda split, bad: _examples(split_parts(split), split, lmap, bad),
        lambda split: split_parts(split)[0][0] if split_parts(split) else path,
        on_bad_row,
    )

    iob = kind == "tagging" and is_iob_set(names)
    # tags that are not IOB spans: scored per token only
    plain_tags = ("token_accuracy",) if kind == "tagging" and not iob else None
    mets, main = chosen_metrics(kind, metrics, main_metric, plain_tags)
    text_fields = (text, text_pair) if kind != "translation" else (text, target)
    return Task(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        loader=load,
        stream=stream,
        splits=tuple(sources),
        label_names=names,
        text_fields=tuple(str(c) for c in text_fields if c is not None),
        metrics=mets,
        main_metric=main,
        iob=iob,
        tag_scheme=written,
    )


def _qa_task(
    name: str, sources: Mapping[str, Any], parts: Callable[[str], Parts],
    fields: tuple[str, str, str], id: str | None, null_answers: bool,
    metrics: Sequence[str] | None, main_metric: str | None, on_bad_row: str,
    labels_optional: bool = False,
) -> Task:  # fmt: skip
    """An extractive QA task (``kind=qa``) over a dataset laid out as Hugging Face's ``squad``:
    ``question``, ``context`` and ``answers`` (``{"text": [...], "answer_start": [...]}``)
    columns, named by the options of the same names; a split without ``answers`` (not the
    train split) is unlabelled. Rows are checked as the ``file`` reader checks SQuAD's files
    (:func:`jaxtl.data.io.qa_example`)."""
    question, context, answers = fields

    def load(split: str) -> Loaded:
        if split not in sources:
            raise DataError(f"task {name!r} has no split {split!r}; splits: {list(sources)}")
        bad = BadRows(on_bad_row)
        out: list[Example] = []
        split_parts = parts(split)
        for where, ds in split_parts:
            cols = ds.column_names
            for col in (question, context):
                if col not in cols:
                    raise DataError(f"{where}: no column {col!r}{did_you_mean(col, cols)}; "
                                    f"columns: {cols}")  # fmt: skip
            labelled = answers in cols
            if not labelled and split == "train" and not labels_optional:
                raise DataError(f"{where}: no column {answers!r}{did_you_mean(answers, cols)}; "
                                f"columns: {cols}; the train split needs answers")  # fmt: skip
            rid_column = id_column(cols, id)
            has_id = has_id_column(rid_column in cols, rid_column, where)
            ids = list(ds[rid_column]) if has_id else [None] * len(ds)
            golds = list(ds[answers]) if labelled else [None] * len(ds)
            for i, (q, c, a, rid) in enumerate(zip(ds[question], ds[context], golds, ids)):
                if has_id:
                    rid = row_id(rid, f"{where}:{i}", rid_column, bad)
                    if rid is NO_ID:
                        continue
                ex = qa_example(f"{where}:{i}", q, c, a, labelled, null_answers, bad, rid,
                                (question, context))  # fmt: skip
                if ex is not None:
                    out.append(ex)
        return bad.result(out, split_parts[0][0] if split_parts else name)

    return qa_task_of(name, load, tuple(sources), (question, context), null_answers, metrics,
                      main_metric)  # fmt: skip
