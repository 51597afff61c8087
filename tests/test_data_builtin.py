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


@pytest.mark.parametrize("name", NAMES)
def test_the_first_examples_are_made_without_the_rest(name, monkeypatch):
    """Task.head(split, n), what a run capped by data.max_*_examples reads: the same examples
    as load(split)[:n], and only n of them generated."""
    from jaxtl.data import builtin

    task = get_task(f"builtin/{name}")
    for split in task.splits:
        full = task.load(split)
        for n in (1, 64, len(full), len(full) + 5):
            assert task.head(split, n) == full[:n], (split, n)
        assert task.head(split, 0) == full
    made = []
    gen, meta = builtin.GENERATORS[name]
    monkeypatch.setitem(builtin.GENERATORS, name, (lambda rng: made.append(1) or gen(rng), meta))
    assert len(task.head("train", 64)) == 64 and len(made) == 64


def test_the_first_lines_of_target_text_are_its_loads_first_lines():
    """The target-text corpus (ULMFiT's LM fine-tuning on the targets' inputs): its head is
    its whole load cut, also where examples without text give no line, and reads the tasks
    only as far as those lines need."""
    from types import SimpleNamespace

    from jaxtl.data.tasks import Example, Loaded, Task
    from jaxtl.objectives.language_model import target_text

    calls = []

    def gappy(split):  # five examples without text first, then ten lines
        calls.append(split)
        return Loaded([Example("")] * 5 + [Example(f"line {i}") for i in range(10)])

    own = Task("own/gappy", "lm", gappy, ("train",))
    pairs, sentiment = get_task("builtin/entailment"), get_task("builtin/sentiment")
    for tasks in ([pairs, sentiment], [own, sentiment], [sentiment]):
        corpus = target_text([SimpleNamespace(task=t) for t in tasks])
        for split in corpus.splits:
            full = corpus.load(split)
            for n in (1, 3, 12, 64, len(full) + 1):
                assert corpus.head(split, n) == full[:n], ([t.name for t in tasks], split, n)
    calls.clear()
    corpus = target_text([SimpleNamespace(task=t) for t in (own, sentiment)])
    assert [ex.text for ex in corpus.head("train", 3)] == ["line 0", "line 1", "line 2"]
    assert calls == ["train", "train"]  # its first 3 had no text: read on, then stopped
