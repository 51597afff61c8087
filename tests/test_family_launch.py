"""Each newer family trains from the command line: ``launch.py --config.model.name=<dir>`` on a
tiny model with a real tokenizer of its own kind, sentence classification + tagging, parameters
sharded over 8 fake devices (data 4 × fsdp 2), exported at the end (to transformers' classes
where the family has them: T5 no sequence classifier, Gemma 3 no token classifier). The
in-process runs of tests/test_family_*.py cover the same code below ``launch.py``; this is the
user's command itself (slow: one process and one compilation set per family)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the family tests build their tokenizers with transformers")

import test_family_albert  # noqa: E402
import test_family_deberta  # noqa: E402
import test_family_deberta_v1  # noqa: E402
import test_family_gemma  # noqa: E402
import test_family_llama  # noqa: E402
import test_family_llama_variants  # noqa: E402
import test_family_modernbert  # noqa: E402
import test_family_phi3  # noqa: E402
import test_family_t5  # noqa: E402
from conftest import xla_flags  # noqa: E402

from jaxtl import models  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
BUILD = {
    "llama": test_family_llama.llama_dir,
    "modernbert": test_family_modernbert.modernbert_dir,
    "deberta-v2": test_family_deberta.deberta_dir,
    "qwen2": lambda path: test_family_llama_variants.variant_dir("qwen2", path),
    "qwen3": lambda path: test_family_llama_variants.variant_dir("qwen3", path),
    "mistral": lambda path: test_family_llama_variants.variant_dir("mistral", path),
    "gemma2": lambda path: test_family_gemma.gemma_dir("gemma2", path),
    "gemma3_text": lambda path: test_family_gemma.gemma_dir("gemma3_text", path),
    "t5": lambda path: test_family_t5.t5_dir(path),
    "umt5": lambda path: test_family_t5.t5_dir(path, "umt5"),
    "albert": test_family_albert.albert_dir,
    "deberta": test_family_deberta_v1.deberta_v1_dir,
    "phi3": test_family_phi3.phi3_dir,
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(BUILD))
def test_family_trains_through_launch_with_fsdp(family, tmp_path):
    model = BUILD[family](tmp_path / "model")
    wd, export = tmp_path / "wd", tmp_path / "export"
    cmd = [sys.executable, str(REPO / "launch.py"), "--regime=multitask",
           f"--config={REPO / 'configs' / 'multitask.py'}:tiny", f"--workdir={wd}",
           f"--config.model.name={model}", "--config.tasks.names=('builtin/sentiment','builtin/ner')",
           "--config.mesh.fsdp=2", "--config.train.steps=4", f"--config.export_dir={export}",
           "--config.train.progress=False"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(8))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert "accuracy" in results["builtin/sentiment"] and "span_f1" in results["builtin/ner"]
    archs = {json.loads(c.read_text())["architectures"][0] for c in export.rglob("config.json")}
    fam = models.FAMILIES[json.loads((model / "config.json").read_text())["model_type"]]
    if fam.sequence_head is not None:  # T5 has none without its decoder
        assert any(a.endswith("ForSequenceClassification") for a in archs), archs
    if fam.token_head is not None:  # Gemma 3 has none
        assert any(a.endswith("ForTokenClassification") for a in archs), archs
