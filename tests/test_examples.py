"""The research-code example runs as written (on the tiny model, few steps)."""

import importlib.util
import json
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


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
