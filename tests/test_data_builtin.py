"""The built-in synthetic suite: offline, deterministic, sized, and not solved by bag-of-words."""

import numpy as np
import pytest

from jaxtl.data import get_task
from jaxtl.data.conll import to_iob2

NAMES = ["sentiment", "entailment", "similarity", "ner", "corpus"]


@pytest.mark.parametrize("name", NAMES)
def test_generated_deterministic_and_sized(name):
    task = get_task(f"builtin/{name}")
    train = task.load("train")
    assert len(train) >= 3000 and len(task.load("dev")) == 400 and len(task.load("test")) == 400
    assert train[:50] == get_task(f"builtin/{name}").load("train")[:50]
    assert train[:50] != get_task(f"builtin/{name}", seed=1).load("train")[:50]
    assert task.load("dev")[:50] != train[:50]
    assert len(get_task(f"builtin/{name}", n_train=10).load("train")) == 10


def test_labels_valid():
    s = get_task("builtin/sentiment").load("train")
    assert 0.4 < np.mean([e.label for e in s]) < 0.6
    sim = [e.label for e in get_task("builtin/similarity").load("train")]
    assert min(sim) >= 0 and max(sim) == 5.0 and len(set(sim)) > 8
    ner = get_task("builtin/ner")
    for e in ner.load("train")[:500]:
        assert len(e.words) == len(e.label) and to_iob2(e.label, "iob2") == e.label
        assert set(e.label) <= set(ner.label_names)


@pytest.mark.parametrize("name", ["sentiment", "entailment"])
def test_bag_of_words_is_not_enough(name):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    task = get_task(f"builtin/{name}")
    train, dev = task.load("train"), task.load("dev")
    join = (lambda e: e.text + " || " + e.text_pair) if name == "entailment" else (lambda e: e.text)
    vec = CountVectorizer().fit([join(e) for e in train])
    clf = LogisticRegression(max_iter=2000).fit(
        vec.transform([join(e) for e in train]), [e.label for e in train]
    )
    acc = clf.score(vec.transform([join(e) for e in dev]), [e.label for e in dev])
    assert acc < 0.85, f"bag-of-words reaches {acc:.3f} on builtin/{name}"
