"""The persistent compilation cache: a second identical run compiles from the cache (hits, no
misses) and reports its compile seconds apart from training; compile_cache=off turns it off."""

import json
import subprocess
import sys

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _run(model_dir, wd, cache):
    cmd = [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
           f"--config.model.name={model_dir}", "--config.tasks.names=('builtin/sentiment',)",
           "--config.train.steps=2", f"--config.compile_cache={cache}", f"--workdir={wd}"]  # fmt: skip
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "run" and r["task"] == "compilations"][-1]


def test_second_run_compiles_from_the_cache(tiny_bert_dir, tmp_path):
    cache = tmp_path / "xla"
    first = _run(tiny_bert_dir, tmp_path / "a", cache)
    assert first["cache_misses"] > 0 and first["cache_hits"] == 0
    assert any(cache.iterdir())
    second = _run(tiny_bert_dir, tmp_path / "b", cache)
    assert second["cache_hits"] >= first["cache_misses"] and second["cache_misses"] == 0
    assert second["compile_seconds"] < first["compile_seconds"]


def test_compile_cache_off_and_its_default_folder(monkeypatch, tmp_path):
    import jax
    import ml_collections

    from jaxtl import runtime

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.cache_dir("auto") == str(tmp_path / "jaxtl" / "xla")
    assert runtime.cache_dir("off") is None
    # what --config.compile_cache=False or =none passes: off, not a folder named "False"
    for word in ("False", "false", "none", "0", "No"):
        assert runtime.cache_dir(word) is None, word
    assert runtime.cache_dir("True") == runtime.cache_dir("auto")
    assert runtime.cache_dir(str(tmp_path / "mine")) == str(tmp_path / "mine")
    c = ml_collections.ConfigDict({"compile_cache": "off"})
    try:
        assert runtime.enable_compile_cache(c) is None
        assert not jax.config.jax_enable_compilation_cache
    finally:
        jax.config.update("jax_enable_compilation_cache", True)
