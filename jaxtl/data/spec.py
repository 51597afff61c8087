"""Task spec strings: a whole generic task, every option of its reader, as one task name.

::

    file:name=N,path=P,text=C[,text_pair=C][,label=C][,kind=K][,format=F][,header=1|0][,OPT=V...]
    hf:name=N,path=P[,text=C][,label=C][,OPT=V...]

is accepted wherever a task name is (``--config.tasks.names``, ``--config.pretrain.corpus``,
``get_task``). ``name`` is the task's name (its head key and results key) and ``path`` its files,
relative to ``data_dir`` unless absolute, ``{split}`` standing for train / dev / test. Both are
required.

Values: ``\\,`` is a comma inside a value (``\\|``, ``\\=``, ``\\:`` and ``\\\\`` likewise); booleans
are ``1|0|true|false|yes|no``; a list is ``a|b|c`` (``label_names=neg|pos``, ``metrics=...``); a
mapping is ``k:v|k:v`` (``paths=train:a.tsv|dev:b.tsv``, hf ``splits=dev:validation_matched``);
with ``header=0`` the columns ``text``/``text_pair``/``label``/``target`` are 0-based integers;
``delimiter=tab`` (or ``\\t``) / ``space`` / ``comma`` (``label_sep`` too); an empty value is None
(``label=`` for no label column). What a value means, and which options exist, is whatever the
reader's factory takes: the valid options are read from its signature, so an unknown option is
an error that lists them.

Which reader reads ``file:`` (``hf:`` always goes to :func:`jaxtl.data.hf_datasets.hf_task`):

- ``format=tsv|csv|jsonl|fasttext`` (the first three the default when P ends so; ``.json``
  is JSON lines; anything else is tsv; unset, each file of ``paths=`` is read as its own
  extension says) → the ``file``
  factory (:mod:`jaxtl.data.files`);
- ``kind=tagging`` on a ``.tsv``/``.csv`` path whose ``text``/``label`` name columns → the
  ``file`` factory (a row per sentence, words and tags space-separated);
- ``format=conll|conllu``, a ``.conll``/``.conllu`` path, or ``kind=tagging`` with another path
  that is not JSON lines → the ``conll`` factory (:mod:`jaxtl.data.conll`; ``text``/``label`` may name its
  ``word_column``/``tag_column``; CoNLL-U defaults to ``word_column=1``, ``tag_column=3``: UPOS);
- ``kind=qa`` → the ``qa`` factory (:mod:`jaxtl.data.qa`: SQuAD's JSON or JSON lines);
- a ``path``/``paths`` holding ``{lang}`` → the ``parallel`` factory (:mod:`jaxtl.data.text`:
  parallel text, a sentence a line in a file per language, ``text=`` the source language and
  ``target=`` the target's, e.g. ``path=mt/{split}.{lang},text=en,target=de``; a translation);
- ``kind=lm`` with ``format=txt``, a ``.txt``/``.tokens`` path or a path with no extension (a
  folder), or ``format=txt`` → the ``text`` corpus factory (:mod:`jaxtl.data.text`: one file, a
  ``{split}`` pattern, a glob or a folder).

Options given to :func:`get_task` as keywords (the loader's ``on_bad_row``) merge with the
spec's; the spec's win.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from jaxtl.data.io import LANG, SAVE_AS_CSV, SPREADSHEETS, did_you_mean, extension
from jaxtl.data.tasks import KINDS, REGISTRY, Task

# Spec prefix -> the factories (registry names) it can route to, in the order their signatures
# decide an option's type.
SOURCES: dict[str, tuple[str, ...]] = {"file": ("file", "conll", "text", "qa"), "hf": ("hf",)}
ROUTING = ("format", "kind")  # spec keys that choose the reader of file:
CONLL_ALIASES = {"text": "word_column", "label": "tag_column"}
COLUMNS = ("text", "text_pair", "label", "target")  # integers with header=0
DELIMITERS = {"tab": "\t", "\\t": "\t", "space": " ", "comma": ",", "semicolon": ";"}
FORMATS = ("tsv", "csv", "jsonl", "fasttext", "conll", "conllu", "txt")
COLUMNAR = (".parquet", ".arrow")  # file: routes these to the hf reader
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_ESCAPE = re.compile(r"\\([,|=:\\])")
_GLOB = re.compile(r"[*?[]")


def is_spec(name: str) -> bool:
    """Whether ``name`` is a spec string (``file:...`` or ``hf:...``)."""
    return name.split(":", 1)[0].lower() in SOURCES and ":" in name


def _split(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` where it is not escaped with a backslash (escapes kept)."""
    parts, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if text[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(text[i])
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    return _ESCAPE.sub(r"\1", text)


def factory_options(factory: str) -> list[str]:
    """The keyword options of a registered factory (everything but ``data_dir`` and the
    ``_``-prefixed ones jaxtl passes itself)."""
    params = inspect.signature(REGISTRY[factory]).parameters
    return [p for p in params if p != "data_dir" and not p.startswith("_")]


def _annotation(source: str, key: str) -> str:
    for factory in SOURCES[source]:
        param = inspect.signature(REGISTRY[factory]).parameters.get(key)
        if param is not None:
            ann = param.annotation
            return (ann if isinstance(ann, str) else str(ann)).replace(" ", "")
    return "str"


def valid_options(source: str) -> list[str]:
    """Every option a ``source:`` spec may carry: the options of the factories it routes to."""
    names = {o for factory in SOURCES[source] for o in factory_options(factory)}
    if source == "file":
        names.update(ROUTING)
    return sorted(names)


def _unknown(key: str, spec: str, valid: list[str], reader: str | None = None) -> ValueError:
    by = f" (read by the {reader!r} reader)" if reader else ""
    return ValueError(
        f"unknown option {key!r}{did_you_mean(key, valid)} in task spec {spec!r}{by}; "
        f"valid options: {', '.join(valid)}"
    )


def _bool(value: str, key: str, spec: str) -> bool:
    v = value.lower()
    if v in TRUE or v in FALSE:
        return v in TRUE
    raise ValueError(f"task spec {spec!r}: {key}={value!r} is not a boolean (1|0|true|false)")


def _int(value: str, key: str, spec: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"task spec {spec!r}: {key}={value!r} is not an integer") from None


def _convert(raw: str, ann: str, key: str, spec: str, header: bool) -> Any:
    """The value of ``key=raw`` for a factory parameter annotated ``ann``."""
    if raw == "" and "None" in ann:
        return None
    if "bool" in ann:
        return _bool(raw, key, spec)
    if "Mapping[" in ann or "dict[" in ann:
        out = {}
        for item in _split(raw, "|"):
            pieces = _split(item, ":")
            if len(pieces) < 2:
                raise ValueError(
                    f"task spec {spec!r}: {key}= takes key:value items separated by '|', "
                    f"got {_unescape(item)!r}"
                )
            out[_unescape(pieces[0]).strip()] = _unescape(":".join(pieces[1:])).strip()
        return out
    if "Sequence[" in ann or "tuple[" in ann or "list[" in ann:
        return [_unescape(x).strip() for x in _split(raw, "|")]
    value = _unescape(raw)
    if key in ("delimiter", "label_sep"):
        return DELIMITERS.get(value.lower(), value)
    if re.fullmatch(r"(str\|int|int\|str)(\|None)?", ann):
        return int(value) if not header and re.fullmatch(r"-?\d+", value) else value
    if re.fullmatch(r"int(\|None)?", ann):
        return _int(value, key, spec)
    if re.fullmatch(r"float(\|None)?", ann):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"task spec {spec!r}: {key}={value!r} is not a number") from None
    return value


def parse(spec: str) -> tuple[str, dict[str, Any]]:
    """``("file" | "hf", options)`` of a spec string, values converted (see the module docstring).

    ValueError (one line) on an unknown source or option, a duplicate or valueless option, a
    value of the wrong type, or a missing ``name=`` / ``path=``.
    """
    source, sep, body = spec.partition(":")
    source = source.strip().lower()
    if not sep or source not in SOURCES:
        raise ValueError(
            f"task spec {spec!r} must start with one of {', '.join(s + ':' for s in SOURCES)}"
        )
    valid = valid_options(source)
    raw: dict[str, str] = {}
    for item in _split(body, ","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        key = _unescape(key).strip()
        if not eq:
            raise ValueError(f"task spec {spec!r}: option {key!r} has no value (write {key}=...)")
        if key not in valid:
            raise _unknown(key, spec, valid)
        if key in raw:
            raise ValueError(f"task spec {spec!r}: option {key!r} is given twice")
        raw[key] = value.strip()
    header = _bool(raw["header"], "header", spec) if "header" in raw else True
    options = {k: _convert(v, _annotation(source, k), k, spec, header) for k, v in raw.items()}
    missing = [k for k in ("name", "path") if not options.get(k)]
    if missing == ["path"] and options.get("paths"):
        missing = []
    if missing:
        what = " and ".join(f"{k}=" for k in missing)
        raise ValueError(
            f"task spec {spec!r} is missing {what}; the form is "
            f"{source}:name=NAME,path=PATH,text=COLUMN[,label=COLUMN][,option=value...]"
        )
    return source, options


def _column_number(value: Any) -> int | None:
    """A 0-based column number given as an int or its digits (``text=0``), else None (a name)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _conll_column(value: Any, alias: str, spec: str) -> int:
    number = _column_number(value)
    if number is not None:
        return number
    raise ValueError(
        f"task spec {spec!r}: CoNLL columns are 0-based integers; {alias}={value!r} "
        f"({CONLL_ALIASES[alias]}) is not one"
    )


def _names_a_column(o: dict[str, Any]) -> bool:
    """Whether ``text=``/``label=`` name a table's columns (``text=tokens``) rather than give
    CoNLL's 0-based column numbers."""
    return any(isinstance(o.get(k), str) and _column_number(o[k]) is None
               for k in ("text", "label"))  # fmt: skip


def _one_file_is_train(o: dict[str, Any]) -> None:
    """A ``path`` with neither ``{split}`` nor a glob names one file: the train split."""
    p = o.get("path")
    if p is not None and "{split}" not in p and not _GLOB.search(p) and "paths" not in o:
        o["paths"] = {"train": o.pop("path")}


def spec_files(options: Mapping[str, Any]) -> list[str]:
    """The file names a spec's options give: its ``path``, or each of its ``paths``."""
    return [p for p in [options.get("path"), *(options.get("paths") or {}).values()] if p]


def route(source: str, options: dict[str, Any], spec: str) -> tuple[str, dict[str, Any]]:
    """The registry name of the factory that reads a spec, and the keyword options it gets."""
    kind = options.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"task spec {spec!r}: kind={kind}{did_you_mean(kind, KINDS)} is not "
                         f"one of {', '.join(KINDS)}")  # fmt: skip
    if source == "hf":
        return "hf", dict(options)
    o = dict(options)
    fmt = o.pop("format", None)
    fmt = fmt.lower() if isinstance(fmt, str) else fmt
    given = fmt is not None
    kind = o.get("kind")
    named = spec_files(o)
    path = named[0] if named else ""
    ext = extension(path)
    if ext in SPREADSHEETS:
        raise ValueError(f"task spec {spec!r}: {ext} is a spreadsheet, which jaxtl does not "
                         f"read; {SAVE_AS_CSV} and name that")  # fmt: skip
    if ext in COLUMNAR and fmt is None:  # Parquet/Arrow: the hf reader reads them
        if "paths" in o:
            raise ValueError(f"task spec {spec!r}: {ext} files are read by the hf reader, "
                             "which takes path= with {split} (path=dir/{split}" + ext + "), "
                             "not paths=")  # fmt: skip
        return "hf", o
    if any(LANG in p for p in named):
        return _parallel(o, fmt, spec)
    if kind == "qa":  # SQuAD JSON or JSON lines, told apart by the file (jaxtl.data.qa)
        what = ""
        if fmt not in (None, "json", "jsonl"):
            what = f"format={fmt}"
        elif ext in (".tsv", ".csv", ".conll", ".conllu", ".txt"):
            what = f"a {ext} file"
        if what:
            raise ValueError(f"task spec {spec!r}: kind=qa reads SQuAD's JSON or JSON lines "
                             f"(.json, .jsonl), not {what}")  # fmt: skip
        _one_file_is_train(o)
        return "qa", o
    if fmt is None:
        if ext in (".conll", ".conllu"):
            fmt = ext[1:]
        elif kind == "lm" and ext in (".txt", ".tokens", ""):
            fmt = "txt"
        elif kind == "tagging" and ext in (".tsv", ".csv") and _names_a_column(o):
            fmt = ext[1:]  # a table: words and tags in named columns, space-separated
        elif kind == "tagging" and ext not in (".jsonl", ".json"):
            fmt = "conll"
        elif ext in (".tsv", ".csv", ".jsonl"):
            fmt = ext[1:]
        elif ext == ".json":
            fmt = "jsonl"
        else:
            fmt = "tsv"
    if fmt in ("tsv", "csv", "jsonl", "fasttext"):
        if given:  # else each file's own extension names its format (train.csv + dev.tsv)
            o["format"] = fmt
        _one_file_is_train(o)
        return "file", o
    if fmt in ("conll", "conllu"):
        if kind not in (None, "tagging"):
            raise ValueError(f"task spec {spec!r}: format={fmt} is tagging data, not kind={kind}")
        o.pop("kind", None)
        for alias, real in CONLL_ALIASES.items():
            if alias in o:
                if real in o:
                    raise ValueError(f"task spec {spec!r}: give {alias}= or {real}=, not both")
                o[real] = _conll_column(o.pop(alias), alias, spec)
        if fmt == "conllu":
            o.setdefault("conllu", True)
        _one_file_is_train(o)
        return "conll", o
    if fmt == "txt":
        if kind not in (None, "lm"):
            raise ValueError(f"task spec {spec!r}: format=txt is a text corpus (kind=lm), "
                             f"not kind={kind}")  # fmt: skip
        o.pop("kind", None)
        return "text", o
    raise ValueError(f"task spec {spec!r}: format must be one of {', '.join(FORMATS)}; got {fmt!r}")


def _parallel(o: dict[str, Any], fmt: str | None, spec: str) -> tuple[str, dict[str, Any]]:
    """A path with ``{lang}`` names parallel text, a file per language (``mt/train.en`` and
    ``mt/train.de``): the ``parallel`` reader, ``text=`` and ``target=`` the languages."""
    kind = o.pop("kind", None)
    if kind not in (None, "translation") or fmt not in (None, "txt"):
        given = f"kind={kind}" if kind not in (None, "translation") else f"format={fmt}"
        raise ValueError(f"task spec {spec!r}: a path with {LANG} names parallel text, a "
                         f"sentence a line in a file per language (kind=translation), not "
                         f"{given}")  # fmt: skip
    src, tgt = o.pop("text", None), o.pop("target", None)
    if not (isinstance(src, str) and src and isinstance(tgt, str) and tgt):
        raise ValueError(f"task spec {spec!r}: parallel text ({LANG} in the path) needs "
                         f"text=<source language> and target=<target language>, the values "
                         f"{LANG} takes (text=en,target=de for train.en and train.de)")  # fmt: skip
    return "parallel", {**o, "src": src, "tgt": tgt}


def get_task(
    spec: str,
    data_dir: str | os.PathLike | None = None,
    *,
    replace: Mapping[str, Any] | None = None,
    **options: Any,
) -> Task:
    """The task a spec string describes; keyword ``options`` merge in (the spec's win), then
    ``replace`` overrides the spec (a None value removes the option): e.g. the same task read
    from another file, ``replace={"path": None, "paths": {"test": file}}``."""
    source, spec_options = parse(spec)
    merged = {**options, **spec_options}
    for key, value in (replace or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    factory, kwargs = route(source, merged, spec)
    accepted = factory_options(factory)
    for key in kwargs:
        if key not in accepted:
            extra = list(ROUTING) + list(CONLL_ALIASES) if factory == "conll" else []
            extra += list(ROUTING) if factory == "text" else []
            raise _unknown(key, spec, sorted(set(accepted) | set(extra)), factory)
    build: Callable[..., Task] = REGISTRY[factory]
    return build(None if data_dir is None else os.fspath(data_dir), **kwargs)
