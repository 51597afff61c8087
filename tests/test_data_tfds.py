"""TFDS: a tiny dataset prepared here in array_record (no TensorFlow) read through the Task API."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jaxtl.data import DataError, get_task  # noqa: E402


class JaxtlTinyReviews(tfds.core.GeneratorBasedBuilder):
    """Four labelled sentences in train, two in validation."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "sentence": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                    "score": tfds.features.Scalar(dtype=np.float32),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(["great film", "awful plot", "fine cast", "dull"]),
            "validation": self._generate_examples(["lovely", "boring"]),
        }

    def _generate_examples(self, sentences):
        for i, s in enumerate(sentences):
            yield i, {"sentence": s, "label": int(s in ("great film", "fine cast", "lovely")),
                      "score": float(i)}  # fmt: skip


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    JaxtlTinyReviews(data_dir=str(d), file_format="array_record").download_and_prepare()
    return d


def test_read_prepared_dataset_as_task(tfds_dir):
    task = get_task("tfds:jaxtl_tiny_reviews", tfds_dir, text="sentence", label="label")
    assert task.kind == "classification" and task.label_names == ("negative", "positive")
    assert task.splits == ("train", "dev")
    train = task.load("train")
    got = sorted((e.text, e.label) for e in train)
    assert got == [("awful plot", 0), ("dull", 0), ("fine cast", 1), ("great film", 1)]
    assert sorted(e.text for e in task.load("dev")) == ["boring", "lovely"]
    with pytest.raises(DataError, match=r"no split 'test'.*\['train', 'dev'\]"):
        task.load("test")
    reg = get_task("tfds:jaxtl_tiny_reviews:1.0.0", tfds_dir, label="score")
    assert reg.kind == "regression" and sorted(e.label for e in reg.load("dev")) == [0.0, 1.0]


def test_unprepared_dataset_explains_offline_preparation(tmp_path):
    with pytest.raises(DataError) as e:
        get_task("tfds:glue/sst2", tmp_path)
    msg = str(e.value)
    assert f"not prepared in {tmp_path}" in msg and "offline" in msg
    assert "tfds build glue/sst2" in msg and "array_record" in msg and "copy" in msg


def test_unknown_feature(tfds_dir):
    with pytest.raises(DataError, match="no feature 'text'"):
        get_task("tfds:jaxtl_tiny_reviews", tfds_dir, text="text")


def test_a_kind_the_tfds_reader_cannot_fill_is_refused(tfds_dir):
    with pytest.raises(ValueError, match=r"kind='multilabel' is not read from TFDS here"):
        get_task("tfds:jaxtl_tiny_reviews", tfds_dir, text="sentence", label="label",
                 kind="multilabel")  # fmt: skip
