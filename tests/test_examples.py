"""The research-code example runs as written (on the tiny model, few steps)."""

import importlib.util
import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


# ~50 s on 2 cores (five train programs at 8 fake devices); the stages API it uses runs in the
# default run's tests/test_strategy.py and tests/test_train.py.
@pytest.mark.slow
def test_custom_stages_example(tiny_bert_dir, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "custom_stages", REPO / "examples" / "custom_stages.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    results = mod.main(str(tmp_path), model=str(tiny_bert_dir), source_steps=4, target_steps=6)
    assert {"builtin/entailment", "builtin/sentiment"} <= set(results)
    phases = json.loads((tmp_path / "plan.json").read_text())["phases"]
    assert [p["stage"] for p in phases][0] == "source"
    assert sum(p["stage"] == "target" for p in phases) == 3  # gradual unfreezing, 2 layers


def test_conll_entity_types_example_writes_a_multilabel_task(data_dir, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "conll_entity_types", REPO / "examples" / "conll_entity_types.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(str(data_dir), str(tmp_path)) == {"train": 14041, "dev": 3250, "test": 3453}
    lines = (tmp_path / "train.tsv").read_text().splitlines()
    assert lines[:2] == [
        "sentence\ttypes",
        "EU rejects German call to boycott British lamb .\tMISC,ORG",
    ]
    from jaxtl.data import get_task

    task = get_task(f"file:name=t,path={tmp_path}/{{split}}.tsv,label=types,text=sentence,"
                    "kind=multilabel")  # fmt: skip
    assert task.label_names == ("LOC", "MISC", "ORG", "PER")
    dev = task.load("dev")
    assert len(dev) == 3250 and sum(not ex.label for ex in dev) == 645  # sentences naming none
