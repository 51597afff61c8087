"""TFDS datasets as tasks: ``get_task("tfds:glue/sst2", data_dir, text="sentence", label="label")``.

Reads datasets prepared in the array_record format (random access, no TensorFlow needed). The
prepared folder ``<data_dir>/<dataset>[/<config>]/<version>/`` is opened with
``tfds.builder_from_directory`` and read with ``as_data_source`` — the same ArrayRecord source
``tfds.data_source`` returns — because ``tfds.data_source`` would try to *download* a dataset it
does not find (impossible offline, and TFDS's message then misleads), and it needs the dataset's
builder class importable, which for several text datasets (glue) needs TensorFlow. Reading the
folder works for any dataset prepared elsewhere and copied here.

To prepare a dataset on a machine with network access::

    tfds build glue/sst2 --data_dir=/some/dir --file_format=array_record

then copy ``/some/dir/glue/sst2`` to ``<data_dir>/glue/sst2``. A builder of your own
(``tfds.core.GeneratorBasedBuilder`` subclass) prepares without TensorFlow:
``MyBuilder(data_dir=d, file_format="array_record").download_and_prepare()``.

Options: ``text`` (feature name), ``text_pair``, ``label`` (a ClassLabel feature gives a
classification task with its names; a float feature a regression task; ``kind=`` overrides),
``splits`` (our split name → TFDS split; default train→train, dev→validation, test→test, only
those that exist), ``on_bad_row``. Rows whose ClassLabel is -1 (GLUE's unlabelled test sets) are
bad rows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from jaxtl.data.io import DEFAULT_METRICS
from jaxtl.data.tasks import BadRows, DataError, Example, Loaded, Task

DEFAULT_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def prepared_dir(name: str, data_dir: str) -> str:
    """The prepared folder of ``name`` ("ds", "ds/config", optionally ":1.2.3"), latest version
    when none is given; a DataError explaining how to prepare it when there is none."""
    base, _, version = name.partition(":")
    root = os.path.join(data_dir, *base.split("/"))
    versions = []
    if os.path.isdir(root):
        versions = [
            v
            for v in os.listdir(root)
            if re.fullmatch(r"\d+\.\d+\.\d+", v)
            and os.path.isfile(os.path.join(root, v, "dataset_info.json"))
        ]
    if version:
        versions = [v for v in versions if v == version]
    if not versions:
        want = f"{root}/{version or '<version>'}/dataset_info.json"
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {data_dir} (no {want}). It cannot be "
            "downloaded here: this environment is offline. Prepare it on a machine with network "
            f"access: `tfds build {base} --data_dir=DIR --file_format=array_record`, then copy "
            f"DIR/{base} to {root} (or pass data_dir= the folder holding it)."
        )
    return os.path.join(root, max(versions, key=_version_key))


def tfds_task(
    name: str,
    data_dir: str | None = None,
    *,
    text: str = "sentence",
    text_pair: str | None = None,
    label: str | None = "label",
    kind: str | None = None,
    splits: Mapping[str, str] | None = None,
    metrics: tuple[str, ...] | None = None,
    on_bad_row: str = "error",
) -> Task:
    """A task over a prepared TFDS dataset (see the module docstring)."""
    import tensorflow_datasets as tfds

    folder = prepared_dir(name, os.fspath(data_dir) if data_dir else default_data_dir())
    builder = tfds.builder_from_directory(folder)
    features = builder.info.features
    for col in (text, text_pair, label):
        if col is not None and col not in features:
            raise DataError(f"{folder}: no feature {col!r}; features: {sorted(features.keys())}")
    label_names: tuple[str, ...] = ()
    feature = features[label] if label else None
    if isinstance(feature, tfds.features.ClassLabel):
        label_names = tuple(feature.names)
        kind = kind or "classification"
    kind = kind or ("regression" if label else "lm")
    if kind not in ("classification", "regression", "lm"):
        raise ValueError(f"tfds:{name}: kind={kind!r} is not read from TFDS here (classification, "
                         "regression or lm); export the dataset to files for a file: or hf: task")  # fmt: skip
    available = set(builder.info.splits.keys())
    mapping = dict(splits or {k: v for k, v in DEFAULT_SPLITS.items() if v in available})
    missing = {k: v for k, v in mapping.items() if v not in available}
    if missing:
        raise DataError(f"{folder}: TFDS splits {missing} not found; it has {sorted(available)}")

    def load(split: str) -> Loaded:
        try:
            source = builder.as_data_source(split=mapping[split])
        except Exception as e:  # e.g. prepared as tfrecord: no random access without TF
            raise DataError(
                f"{folder}: cannot open split {mapping[split]!r} as array_record ({e}); "
                "prepare it with file_format='array_record'"
            ) from e
        bad = BadRows(on_bad_row)
        out = []
        for i in range(len(source)):
            rec = source[i]
            where = f"{folder}[{mapping[split]}][{i}]"
            try:
                t = _text(rec[text])
                pair = _text(rec[text_pair]) if text_pair else None
            except UnicodeDecodeError as e:
                bad(where, f"invalid UTF-8 at byte {e.start}")
                continue
            value: Any = None
            if kind == "classification":
                value = int(rec[label])
                if not 0 <= value < len(label_names):
                    bad(where, f"label {value} is not a class id of {label_names}")
                    continue
            elif kind == "regression":
                value = float(rec[label])
            out.append(Example(t, pair, value, source=where))
        return bad.result(out, f"tfds:{name}/{split}")

    mets, main = DEFAULT_METRICS[kind]
    mets = tuple(metrics or mets)
    return Task(
        name=f"tfds:{name}",
        kind=kind,  # type: ignore[arg-type]
        loader=load,
        splits=tuple(mapping),
        label_names=label_names,
        text_fields=tuple(c for c in (text, text_pair) if c),
        metrics=mets,
        main_metric=main if main in mets else mets[0],
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
