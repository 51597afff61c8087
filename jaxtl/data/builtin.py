"""The built-in offline task suite: SYNTHETIC English tasks generated from a small lexicon.

Nothing here is real data. Every sentence is a template filled from a few dozen names, places,
organisations, sentiment verbs and adjectives; the point is a suite that ships with the package,
needs no files or network, is generated in milliseconds, is identical for a given seed, and still
gives a pretrained English encoder real transfer to do (it knows what "despised", "hardly" and
"was thanked by" mean; a randomly initialised model has to learn them from a few thousand
examples). All tasks are drawn from one latent structure — events "agent <verb> patient in
<place> on <day>", opinions "person <verb> the <thing>" — so they share knowledge across tasks:

- ``builtin/sentiment``: 2 labels. Negation ("did not", "never", "nobody", "hardly") flips the
  polarity and "X, but Y" sentences take the polarity of Y, so both polarities' words often occur
  in one sentence and a bag of words is not enough.
- ``builtin/entailment``: pairs (premise, hypothesis), labels entailment / not_entailment.
  Hypotheses restate the premise in the passive voice or drop details (entailed), or swap who did
  what to whom, change the place, negate, or change a person (not entailed); swapped roles keep
  the same bag of words.
- ``builtin/similarity``: pairs scored 0–5 = 5 minus the weights of the event slots that differ
  (agent 1.25, action 1.25, patient 1.25, place 0.75, day 0.5), surface voice chosen at random.
- ``builtin/ner``: IOB2 PER / LOC / ORG tags; some names ("Jordan", "Washington", "Georgia",
  "Florence") are people in some sentences and places in others, so context decides.
- ``builtin/mentions``: multilabel: which of LOC / ORG / PER a ``builtin/ner`` sentence
  mentions (one, two or all three), so the same ambiguous names decide it by context.
- ``builtin/corpus``: unlabelled lines of 2–4 sentences from all of the above (kind ``lm``).

Sizes (options ``n_train``, ``n_dev``, ``n_test``; ``seed``): 3,000 / 400 / 400 examples
(corpus: 6,000 / 400 / 400 lines). Splits use different seeds, so dev/test sentences are fresh
combinations of the same lexicon.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from jaxtl.data.tasks import Example, Loaded, Task, register

FIRST = (
    "Alice",
    "Bob",
    "Maria",
    "David",
    "Sarah",
    "James",
    "Laura",
    "Peter",
    "Emma",
    "Omar",
    "Chen",
    "Priya",
    "Lucas",
    "Nina",
    "Tom",
    "Grace",
    "Ahmed",
    "Sofia",
    "Ivan",
    "Yuki",
)
LAST = (
    "Smith",
    "Garcia",
    "Khan",
    "Miller",
    "Rossi",
    "Novak",
    "Okafor",
    "Tanaka",
    "Silva",
    "Brown",
    "Weber",
    "Larsen",
)
PLACES = (
    "Paris",
    "Berlin",
    "New York",
    "Cairo",
    "Lima",
    "Tokyo",
    "Oslo",
    "Lagos",
    "Sydney",
    "Madrid",
    "Toronto",
    "Mumbai",
    "Buenos Aires",
    "Cape Town",
    "Seoul",
    "Rome",
)
ORGS = (
    "Acme Bank",
    "Globex",
    "Northwind Airlines",
    "Initech",
    "Blue River Foods",
    "Apex Motors",
    "Union Bank",
    "Stark Industries",
    "Green Leaf Books",
    "Orbit Media",
)
# Words that are a person in one sentence and a place in another.
AMBIGUOUS = ("Jordan", "Washington", "Georgia", "Florence")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
THINGS = (
    "film",
    "meal",
    "concert",
    "hotel",
    "book",
    "service",
    "show",
    "trip",
    "game",
    "museum",
    "lecture",
    "album",
    "play",
    "restaurant",
    "course",
)
# (past, base) opinion verbs
POS_VERBS = (
    ("loved", "love"),
    ("enjoyed", "enjoy"),
    ("liked", "like"),
    ("admired", "admire"),
    ("praised", "praise"),
    ("adored", "adore"),
    ("recommended", "recommend"),
)
NEG_VERBS = (
    ("hated", "hate"),
    ("disliked", "dislike"),
    ("despised", "despise"),
    ("criticised", "criticise"),
    ("regretted", "regret"),
    ("loathed", "loathe"),
    ("complained about", "complain about"),
)
POS_ADJ = (
    "good",
    "great",
    "wonderful",
    "excellent",
    "delightful",
    "charming",
    "superb",
    "pleasant",
    "brilliant",
    "moving",
)
NEG_ADJ = (
    "bad",
    "awful",
    "terrible",
    "boring",
    "dull",
    "disappointing",
    "dreadful",
    "tedious",
    "poor",
    "painful",
)
INTENS = ("really", "truly", "very", "extremely", "quite")
# (past, base, past participle) actions between two people
ACTIONS = (("called", "call", "called"), ("visited", "visit", "visited"),
           ("thanked", "thank", "thanked"), ("helped", "help", "helped"),
           ("hired", "hire", "hired"), ("paid", "pay", "paid"), ("blamed", "blame", "blamed"),
           ("invited", "invite", "invited"), ("interviewed", "interview", "interviewed"),
           ("warned", "warn", "warned"), ("followed", "follow", "followed"),
           ("taught", "teach", "taught"))  # fmt: skip

SIZES = {"train": 3000, "dev": 400, "test": 400}


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _sentence(words: list[str]) -> str:
    """Join words, attaching punctuation to the word before."""
    out = ""
    for w in words:
        out += w if (w in ".,!?" or not out) else " " + w
    return out


def _person(rng: np.random.Generator) -> str:
    if rng.random() < 0.1:
        return _pick(rng, AMBIGUOUS)
    first = _pick(rng, FIRST)
    return f"{first} {_pick(rng, LAST)}" if rng.random() < 0.4 else first


def _place(rng: np.random.Generator) -> str:
    return _pick(rng, AMBIGUOUS) if rng.random() < 0.1 else _pick(rng, PLACES)


# --- sentiment ------------------------------------------------------------------------------


def _opinion_clause(rng: np.random.Generator, positive: bool, negated: bool) -> str:
    """A clause whose overall polarity is ``positive`` XOR ``negated``."""
    thing = _pick(rng, THINGS)
    form = int(rng.integers(4))
    if form == 0:  # person + verb
        past, base = _pick(rng, POS_VERBS if positive else NEG_VERBS)
        person = _person(rng)
        if not negated:
            adv = _pick(rng, INTENS) + " " if rng.random() < 0.3 and "about" not in past else ""
            return f"{person} {adv}{past} the {thing}"
        neg = _pick(rng, ("did not", "never", "did not really"))
        verb = base if neg.startswith("did") else past
        return f"{person} {neg} {verb} the {thing}"
    if form == 1:  # the thing + adjective
        adj = _pick(rng, POS_ADJ if positive else NEG_ADJ)
        adv = _pick(rng, INTENS) + " " if rng.random() < 0.4 else ""
        neg = (
            _pick(rng, ("was not", "was hardly", "was never", "was not at all"))
            if negated
            else "was"
        )
        return f"the {thing} {neg} {adv}{adj}"
    if form == 2:  # quantifier subject
        past, base = _pick(rng, POS_VERBS if positive else NEG_VERBS)
        if negated:
            return f"nobody {past} the {thing}"
        return f"{_pick(rng, ('everyone', 'most people', 'the critics'))} {past} the {thing}"
    adj = _pick(rng, POS_ADJ if positive else NEG_ADJ)
    if negated:
        return f"{_person(rng)} did not think the {thing} was {adj}"
    return f"{_person(rng)} thought the {thing} was {adj}"


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def gen_sentiment(rng: np.random.Generator) -> Example:
    label = int(rng.integers(2))
    negated = bool(rng.random() < 0.5)
    main = _opinion_clause(rng, bool(label) != negated, negated)
    if rng.random() < 0.35:
        # The first clause has the opposite polarity: only the clause after "but" counts.
        neg1 = bool(rng.random() < 0.5)
        first = _opinion_clause(rng, bool(1 - label) != neg1, neg1)
        return Example(f"{_cap(first)}, but {main}.", label=label)
    if rng.random() < 0.2:
        return Example(f"In {_place(rng)}, {main}.", label=label)
    return Example(_cap(main) + ".", label=label)


# --- events: entailment and similarity ---------------------------------------------------------


def _event(rng: np.random.Generator) -> dict:
    a = _person(rng)
    b = _person(rng)
    while b == a:
        b = _person(rng)
    return {"agent": a, "action": _pick(rng, ACTIONS), "patient": b,
            "place": _pick(rng, PLACES), "day": _pick(rng, DAYS)}  # fmt: skip


def _say(e: dict, rng: np.random.Generator, *, passive: bool | None = None,
         place: bool = True, day: bool = True, negate: bool = False) -> str:  # fmt: skip
    past, base, pp = e["action"]
    passive = bool(rng.random() < 0.5) if passive is None else passive
    if passive:
        core = f"{e['patient']} was {'not ' if negate else ''}{pp} by {e['agent']}"
    else:
        core = f"{e['agent']} {'did not ' + base if negate else past} {e['patient']}"
    where = f" in {e['place']}" if place else ""
    when = f" on {e['day']}" if day else ""
    if day and rng.random() < 0.3:
        return f"On {e['day']}, {core}{where}."
    return f"{core}{where}{when}."


def gen_entailment(rng: np.random.Generator) -> Example:
    e = _event(rng)
    premise = _say(e, rng, passive=bool(rng.random() < 0.3))
    label = int(rng.integers(2))  # 0 entailment, 1 not_entailment
    drop = dict(place=bool(rng.random() < 0.5), day=bool(rng.random() < 0.4))
    if label == 0:
        hyp = _say(e, rng, **drop)
    else:
        kind = int(rng.integers(4))
        h = dict(e)
        if kind == 0:  # who did what to whom
            h["agent"], h["patient"] = e["patient"], e["agent"]
            hyp = _say(h, rng, **drop)
        elif kind == 1:
            while h["place"] == e["place"]:
                h["place"] = _pick(rng, PLACES)
            hyp = _say(h, rng, place=True, day=drop["day"])
        elif kind == 2:
            hyp = _say(e, rng, negate=True, **drop)
        else:
            while h["agent"] in (e["agent"], e["patient"]):
                h["agent"] = _person(rng)
            hyp = _say(h, rng, **drop)
    return Example(premise, hyp, label)


WEIGHTS = {"agent": 1.25, "action": 1.25, "patient": 1.25, "place": 0.75, "day": 0.5}


def gen_similarity(rng: np.random.Generator) -> Example:
    e = _event(rng)
    h = dict(e)
    mode = int(rng.integers(5))
    if mode == 0:  # swap roles: same words, different meaning
        h["agent"], h["patient"] = e["patient"], e["agent"]
    else:
        n = int(rng.integers(0, 5))
        draw = {"agent": _person, "patient": _person,
                "action": lambda r: _pick(r, ACTIONS), "place": lambda r: _pick(r, PLACES),
                "day": lambda r: _pick(r, DAYS)}  # fmt: skip
        for slot in rng.permutation(list(WEIGHTS))[:n]:
            people = (h["agent"], h["patient"]) if slot in ("agent", "patient") else ()
            new = draw[slot](rng)
            while new == e[slot] or new in people:
                new = draw[slot](rng)
            h[slot] = new
    score = 5.0 - sum(w for s, w in WEIGHTS.items() if h[s] != e[s])
    return Example(_say(e, rng), _say(h, rng), float(score))


# --- NER ----------------------------------------------------------------------------------------


def _ent(name: str, typ: str) -> list[tuple[str, str]]:
    words = name.split()
    return [(w, ("B-" if i == 0 else "I-") + typ) for i, w in enumerate(words)]


def _o(text: str) -> list[tuple[str, str]]:
    return [(w, "O") for w in text.split()]


def gen_ner(rng: np.random.Generator) -> Example:
    per, per2 = _person(rng), _person(rng)
    loc, loc2 = _place(rng), _pick(rng, PLACES)
    org = _pick(rng, ORGS)
    t = int(rng.integers(8))
    day = _pick(rng, DAYS)
    P, L, G = (lambda x: _ent(x, "PER")), (lambda x: _ent(x, "LOC")), (lambda x: _ent(x, "ORG"))
    parts = [
        P(per) + _o("works for") + G(org) + _o("in") + L(loc) + _o("."),
        P(per) + _o("flew from") + L(loc) + _o("to") + L(loc2) + _o(f"on {day} .")
        if loc != loc2
        else P(per) + _o("stayed in") + L(loc) + _o("."),
        G(org) + _o("opened a new office in") + L(loc) + _o("."),
        P(per) + _o("met") + P(per2) + _o("at the") + G(org) + _o("offices ."),
        _o(f"On {day} ,") + P(per) + _o("visited") + L(loc) + _o("."),
        _o("The") + L(loc) + _o("branch of") + G(org) + _o("hired") + P(per) + _o("."),
        P(per) + _o("said that") + G(org) + _o("will move to") + L(loc) + _o("."),
        _o("Reporters in") + L(loc) + _o("asked") + P(per) + _o("about") + G(org) + _o("."),
    ][t]
    words = tuple(w for w, _ in parts)
    tags = tuple(tag for _, tag in parts)
    return Example(_sentence(list(words)), None, tags, words=words)


MENTION_TYPES = ("LOC", "ORG", "PER")


def gen_mentions(rng: np.random.Generator) -> Example:
    """A NER sentence as text, labelled with the entity types it mentions."""
    ex = gen_ner(rng)
    found = {str(tag)[2:] for tag in ex.label or () if tag != "O"}  # type: ignore[union-attr]
    return Example(ex.text, label=tuple(i for i, t in enumerate(MENTION_TYPES) if t in found))


# --- corpus -------------------------------------------------------------------------------------


def gen_corpus(rng: np.random.Generator) -> Example:
    sentences = []
    for _ in range(int(rng.integers(2, 5))):
        k = int(rng.integers(4))
        if k == 0:
            sentences.append(gen_sentiment(rng).text)
        elif k == 1:
            sentences.append(_say(_event(rng), rng))
        elif k == 2:
            sentences.append(gen_ner(rng).text)
        else:
            ex = gen_entailment(rng)
            sentences.append(ex.text if ex.label else f"{ex.text} {ex.text_pair}")
    return Example(" ".join(sentences))


GENERATORS: dict[str, tuple[Callable[[np.random.Generator], Example], dict]] = {
    "sentiment": (gen_sentiment, dict(kind="classification", label_names=("negative", "positive"),
                                      metrics=("accuracy", "macro_f1"), main_metric="accuracy")),
    "entailment": (gen_entailment, dict(kind="classification",
                                        label_names=("entailment", "not_entailment"),
                                        text_fields=("premise", "hypothesis"),
                                        metrics=("accuracy", "macro_f1"), main_metric="accuracy")),
    "similarity": (gen_similarity, dict(kind="regression", text_fields=("sentence1", "sentence2"),
                                        metrics=("pearson", "spearman"), main_metric="pearson")),
    "ner": (gen_ner, dict(kind="tagging", iob=True, text_fields=("words",),
                          label_names=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"),
                          metrics=("span_f1", "token_accuracy"), main_metric="span_f1")),
    "mentions": (gen_mentions, dict(kind="multilabel", label_names=MENTION_TYPES,
                                    metrics=("micro_f1", "macro_f1", "subset_accuracy"),
                                    main_metric="micro_f1")),
    "corpus": (gen_corpus, dict(kind="lm", metrics=("perplexity",), main_metric="perplexity")),
}  # fmt: skip


def generate(name: str, split: str, n: int, seed: int = 0) -> Loaded:
    """``n`` examples of builtin task ``name`` for ``split``, identical for identical arguments."""
    gen = GENERATORS[name][0]
    # Split and task enter the seed so splits differ and adding a task changes no other task.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(split.encode())])
    out = Loaded()
    for i in range(n):
        ex = gen(rng)
        out.append(Example(ex.text, ex.text_pair, ex.label, ex.words, ex.target,
                           source=f"builtin/{name}:{split}:{i}"))  # fmt: skip
    return out


def _factory(name: str) -> Callable[..., Task]:
    def factory(
        data_dir: str | None = None,
        *,
        seed: int = 0,
        n_train: int | None = None,
        n_dev: int | None = None,
        n_test: int | None = None,
        on_bad_row: str = "error",
    ) -> Task:
        # Generated, not read: no data_dir and no bad rows (the option is accepted for uniformity).
        del data_dir, on_bad_row
        sizes = dict(SIZES)
        if name == "corpus":
            sizes["train"] = 6000
        for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
            if n is not None:
                sizes[split] = int(n)
        return Task(
            name=f"builtin/{name}",
            loader=lambda split: generate(name, split, sizes[split], seed),
            # Each example draws on from where the one before stopped, so the first n of a
            # split are made alone: a run capped at 64 examples does not make 3,000.
            make_first=lambda split, n: generate(name, split, min(n, sizes[split]), seed),
            splits=("train", "dev", "test"),
            **GENERATORS[name][1],
        )

    return factory


for _name in GENERATORS:
    register(f"builtin/{_name}")(_factory(_name))
# builtin/paraphrase is another name for the sentence-pair task.
register("builtin/paraphrase")(_factory("entailment"))
