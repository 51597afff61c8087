"""The benchmark harness end to end on a tiny configuration: every case runs and writes its
fields, and the markdown tables regenerate. No speed is asserted (timings on a shared CPU are
noise at this size); what must hold is the shape of the results."""

from __future__ import annotations

import gzip
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

STEP_ROW = {"seq_len", "strategy", "jaxtl_median_s", "torch_median_s", "ratio_median",
            "jaxtl_flops", "jaxtl_compile_s", "jaxtl_opt_state_bytes", "torch_opt_state_bytes",
            "jaxtl_trainable_params", "torch_trainable_params"}  # fmt: skip
E2E_SIDE = {"wall_s", "accuracy", "pad_fraction"}
CACHE = {"ratio", "ratio_without_compile", "accuracy_gap_points", "steps"}
MEMORY_ROW = {"system", "strategy", "opt_state_bytes", "peak_rss_mib", "trainable_params"}
SCALING_ROW = {"devices", "step_median_s", "compile_s", "per_device_bytes",
               "per_device_param_bytes", "per_device_opt_bytes"}  # fmt: skip
PADDING = {"pad_fraction_buckets_32_64_128", "pad_fraction_fixed_128",
           "pad_fraction_batch_max_shuffled"}  # fmt: skip


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_cpu_isa_names_the_widest_vector_extension():
    """Two machines both called "AMD EPYC" differ in what their kernels can use: the results
    record the widest SIMD and, for AVX-512, the extensions oneDNN and XLA have kernels for."""
    from bench.common import cpu_isa

    assert cpu_isa("fpu sse4_2 avx avx2 fma") == "AVX2"
    assert cpu_isa("avx2 avx512f avx512bw avx512_vnni avx512_bf16") == "AVX-512 (bf16, vnni)"
    assert cpu_isa("avx2 avx512f avx512dq") == "AVX-512"
    assert cpu_isa("fp asimd aes") == "NEON" and cpu_isa("") == "unknown"
    if pathlib.Path("/proc/cpuinfo").exists():  # this machine's own flags (Linux x86 or ARM)
        assert cpu_isa() != "unknown"


HARNESS_CASES = ("step", "forward", "e2e", "cache", "memory", "scaling", "accelerator", "padding")


def _harness(tiny_bert_dir, data_dir, tmp_path, cases):
    """``bench/run.py`` on the tiny model for ``cases``, in a fresh process (one CPU device, as
    users run it), rendering into a Markdown file with prose and a stale block: the results
    JSON, and the Markdown's text."""
    out = tmp_path / "r.json"
    md = tmp_path / "BENCH.md"
    md.write_text(
        "# title\n\nprose kept\n\n<!-- bench:padding:start -->\nold\n<!-- bench:padding:end -->\n"
    )
    argv = [
        "--model", str(tiny_bert_dir), "--data-dir", str(data_dir), "--batch-size", "8",
        "--seq-lens", "16", "--pairs", "2", "--train-examples", "16", "--dev-examples", "8",
        "--cache-examples", "8", "--padding-examples", "256", "--cache-epochs", "2", "--memory-steps", "1",
        "--scaling-devices", "2", "--scaling-seq-len", "16", "--scaling-steps", "1",
        "--out", str(out), "--markdown", str(md), "--no-keras", "--cases", ",".join(cases),
    ]  # fmt: skip
    # XLA's backend optimisation is off here: it cuts compile time ~2.5x and no test of the
    # harness asserts a speed.
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    p = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), *argv], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["command"].startswith("python bench/run.py --model")
    assert res["machine"]["nproc"] >= 1 and res["machine"]["cpu_model"]
    assert set(res["cases"]) == set(cases)
    text = md.read_text()
    from bench import common

    isa = common.cpu_isa()
    assert res["machine"]["cpu_isa"] == isa and f'"{res["machine"]["cpu_model"]}", {isa},' in text
    assert "prose kept" in text and "\nold\n" not in text
    for name in cases:
        assert f"<!-- bench:{name}:start -->" in text and f"<!-- bench:{name}:end -->" in text
    assert res["command"] in text
    # The XLA flags it ran with are recorded and printed before the command, so it reproduces.
    assert res["machine"]["env"]["XLA_FLAGS"] == env["XLA_FLAGS"]
    assert f"`XLA_FLAGS={env['XLA_FLAGS']} {res['command']}`" in text
    # The run block (machine, command) is written by a run of every case only.
    assert ("<!-- bench:meta:start -->" in text) == (set(cases) == set(HARNESS_CASES))
    return res


def test_compiled_cpu_kernels_are_read_from_the_program():
    """The step table's kernels column names what the compiled program holds: YNNPACK library
    fusions under jaxlib's default options, none once they are handed back to XLA."""
    import jax
    import jax.numpy as jnp

    from jaxtl import runtime

    if jax.default_backend() != "cpu" or not runtime._option_known(runtime._YNN_OPTION, ""):
        pytest.skip("YNNPACK fusions are a CPU option of this jaxlib")

    def f(a, b):
        return jnp.tanh(a @ b).sum()

    a, b = jnp.ones((256, 64)), jnp.ones((64, 64))
    lowered = jax.jit(jax.grad(f)).lower(a, b)
    assert runtime.compiled_cpu_kernels(lowered.compile()) == "ynnpack"
    assert runtime.compiled_cpu_kernels(lowered.compile({runtime._YNN_OPTION: ""})) == "xla"


def test_harness_renders_the_cases_it_runs(tiny_bert_dir, data_dir, tmp_path):
    """The default run's check of the harness: three cheap cases (no training, no peers)
    through the command, the results file and the Markdown blocks; every case runs in the slow
    test_harness_tiny."""
    c = _harness(tiny_bert_dir, data_dir, tmp_path, ("forward", "accelerator", "padding"))["cases"]
    assert {"jaxtl_median_s", "torch_median_s", "ratio_median", "jaxtl_flops"} <= set(c["forward"])
    assert c["accelerator"]["available"] is False and c["accelerator"]["reason"]
    assert c["padding"]["pad_fraction_packed_32_64_128"] < c["padding"]["pad_fraction_fixed_128"]


# Slow (a minute on two cores): every case, each timing jaxtl and PyTorch, some in processes of
# their own; the cheap cases and the rendering are in test_harness_renders_the_cases_it_runs.
@pytest.mark.slow
def test_harness_tiny(tiny_bert_dir, data_dir, tmp_path):
    c = _harness(tiny_bert_dir, data_dir, tmp_path, HARNESS_CASES)["cases"]

    rows = c["step"]["rows"]
    assert {r["strategy"] for r in rows} == {"full", "frozen", "bottom_half", "lora"}
    for r in rows:
        assert STEP_ROW <= set(r), STEP_ROW - set(r)
        assert len(r["jaxtl_s"]) == 2 and len(r["torch_s"]) == 2
        assert _finite(r["ratio_median"]) and r["jaxtl_flops"] > 0
        # both systems train the same parameters
        assert r["jaxtl_trainable_params"] == r["torch_trainable_params"], r["strategy"]
        # 8 rows of 16 tokens: cpu_kernels=auto gives every train step YNNPACK's kernels
        assert r["jaxtl_cpu_kernels"] == "ynnpack", r["strategy"]
    # freezing removes backward work: fewer compiled FLOPs than full fine-tuning
    full = {r["seq_len"]: r["jaxtl_flops"] for r in rows if r["strategy"] == "full"}
    for r in rows:
        if r["strategy"] != "full":
            assert r["jaxtl_flops"] < full[r["seq_len"]], r["strategy"]
    assert {"frozen", "bottom_half"} <= set(c["step"]["derived"]["16"])

    assert {"jaxtl_median_s", "torch_median_s", "ratio_median", "jaxtl_flops"} <= set(c["forward"])

    e = c["e2e"]
    assert E2E_SIDE <= set(e["jaxtl"]) and E2E_SIDE <= set(e["torch"])
    assert e["train_examples"] == 16 and e["dev_examples"] == 8 and e["steps"] == 2
    assert 0.0 <= e["jaxtl"]["accuracy"] <= 1.0 and 0.0 <= e["torch"]["accuracy"] <= 1.0
    assert {"ratio", "accuracy_gap_points", "ratio_counts", "ratio_warm"} <= set(e)
    # jaxtl's two runs share one new compile-cache folder: the first compiles every program
    # into it, the second loads every one of them
    cold, warm = e["jaxtl"], e["jaxtl_warm"]
    assert cold["cache_misses"] > 0 and cold["cache_hits"] == 0, cold
    assert warm["cache_hits"] == cold["cache_misses"] and warm["cache_misses"] == 0, warm

    assert CACHE <= set(c["cache"]) and all(_finite(c["cache"][k]) for k in CACHE)

    mem = c["memory"]["rows"]
    assert {(r["system"], r["strategy"]) for r in mem} == {
        (s, k) for s in ("jaxtl", "torch") for k in ("full", "frozen", "lora")
    }
    for r in mem:
        assert MEMORY_ROW <= set(r) and r["peak_rss_mib"] > 0
        phases = r["peak_rss_by_phase_mib"]  # high-water marks only grow, phase by phase
        order = [phases[k] for k in ("imports", "model", "compile", "steps") if k in phases]
        assert len(order) >= 3 and order == sorted(order) and order[-1] <= r["peak_rss_mib"]
        if r["system"] == "jaxtl":  # XLA's temporaries of a train step: activations at least
            assert r["xla_temp_bytes"] > 0 and r["xla_argument_bytes"] > 0
    by = {(r["system"], r["strategy"]): r for r in mem}
    # Adam keeps two moments per trainable parameter in both systems
    for k in ("full", "frozen", "lora"):
        assert by["jaxtl", k]["trainable_params"] == by["torch", k]["trainable_params"]
    assert by["jaxtl", "frozen"]["opt_state_bytes"] < by["jaxtl", "full"]["opt_state_bytes"] / 10

    sc = c["scaling"]["rows"]
    assert [r["devices"] for r in sc] == [2]
    assert SCALING_ROW <= set(sc[0])
    # FSDP over 2 devices: each holds part of the params and of the optimizer state
    assert sc[0]["per_device_param_bytes"] < sc[0]["total_param_bytes"]
    assert sc[0]["per_device_opt_bytes"] < sc[0]["total_opt_bytes"]

    assert c["accelerator"]["available"] is False and c["accelerator"]["reason"]
    assert PADDING <= set(c["padding"])
    assert c["padding"]["pad_fraction_buckets_32_64_128"] < c["padding"]["pad_fraction_fixed_128"]
    pad = c["padding"]
    assert pad["pad_fraction_packed_32_64_128"] < pad["pad_fraction_buckets_32_64_128"]


@pytest.mark.slow
def test_families_case_times_each_family_and_renders():
    """Three families at a tiny shape (the full case runs every registered family at hidden
    256); T5 trains its encoder alone on both sides."""
    from bench.common import Settings
    from bench.families import case_families, render_families

    shape = dict(hidden=32, layers=2, heads=4, mlp=64, vocab=1100, positions=64)
    res = case_families(Settings(batch_size=2, seq_lens=(8,), pairs=2, warmup=0), shape,
                        only=("bert", "llama", "t5"))  # fmt: skip
    assert [r["family"] for r in res["rows"]] == ["bert", "llama", "t5"]
    for r in res["rows"]:
        assert _finite(r["jaxtl_median_s"]) and _finite(r["torch_median_s"]) and r["params"] > 0
    assert res["rows"][0]["vs_bert"] == 1.0
    table = "\n".join(render_families(res))
    assert "| llama |" in table and "jaxtl / PyTorch" in table


def test_keras_side_steps_when_keras_hub_is_installed(tmp_path):
    """KerasHub (optional ``bench`` extra) trains an HF BERT checkpoint: full, frozen and LoRA."""
    from bench import keras_side as K

    why = K.available()
    if why is not None:
        import pytest

        pytest.skip(why)
    import transformers

    from bench import jaxtl_side as J
    from bench.common import Settings

    cfg = transformers.BertConfig(vocab_size=1100, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64)  # fmt: skip
    transformers.BertModel(cfg).save_pretrained(tmp_path)  # with the pooler KerasHub reads
    s = Settings(model=str(tmp_path), batch_size=2)
    batch = J.random_batch(1100, 2, 8, 0)
    counts = {}
    for strategy in ("full", "frozen", "lora"):
        k = K.train_setup(s, strategy, batch)
        before = [w.numpy().copy() for w in k.model.backbone.weights[:1]]
        k.run()
        counts[strategy] = k.trainable_params
        changed = any((w.numpy() != b).any() for w, b in zip(k.model.backbone.weights[:1], before))
        assert changed == (strategy == "full"), strategy
    assert counts["frozen"] < counts["lora"] < counts["full"]


def test_keras_side_end_to_end_fits_one_epoch(tmp_path):
    """KerasHub's e2e side: one epoch of ``fit`` at one fixed length (the longest example
    rounded up to 8), then dev accuracy; the step count is the epoch's."""
    from bench import keras_side as K

    why = K.available()
    if why is not None:
        import pytest

        pytest.skip(why)
    import shutil

    import transformers
    from conftest import minilm_dir

    from bench.common import Settings
    from jaxtl.data.tasks import Example

    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64)  # fmt: skip
    transformers.BertModel(cfg).save_pretrained(tmp_path)  # with the pooler KerasHub reads
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir() / f).exists():
            shutil.copy(minilm_dir() / f, tmp_path / f)
    words = ["good", "bad", "fine", "awful", "nice", "poor"]
    train = [Example(" ".join(words[: 1 + i % 6]), label=i % 2) for i in range(18)]
    dev = [Example(w, label=i % 2) for i, w in enumerate(words)]
    res = K.e2e(Settings(model=str(tmp_path), batch_size=4), train, dev)
    assert res["steps"] == 5 and res["sequence_length"] == 8  # [CLS] + 6 words + [SEP] -> 8
    assert 0.0 <= res["accuracy"] <= 1.0 and 0.0 < res["pad_fraction"] < 1.0
    assert res["wall_s"] > 0


@pytest.mark.slow  # four launches (~90 s alone); the cache itself is tests/test_compile_cache.py's
def test_compile_case_reuses_the_cache_on_the_second_run(tiny_bert_dir, monkeypatch):
    """Two fresh processes on one cache folder: the first fills it (misses, no hits), the second
    loads every program from it (hits, no misses) and spends less time on XLA. Backend
    optimisation off, as in the harness test: it asserts no speed, only less compile work."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    from bench.cases import case_compile
    from bench.common import Settings
    from bench.report import compile_cache

    res = case_compile(Settings(model=str(tiny_bert_dir)))
    assert [k["name"] for k in res["configs"]] == ["tiny", "default shapes"]
    for k in res["configs"]:
        first, second = k["runs"]
        assert first["cache_misses"] > 0 and first["cache_hits"] == 0
        assert second["cache_misses"] == 0 and second["cache_hits"] == first["cache_misses"]
        assert first["cache_files"] == second["cache_files"] > 0  # the second wrote nothing new
        assert second["compile_seconds"] < first["compile_seconds"] and k["compile_ratio"] > 1
    text = compile_cache({"cases": {"compile": res}, "command": "x", "date": "d"},
                         pathlib.Path("r.json"))  # fmt: skip
    assert "| `default shapes` | second (identical) |" in text and "goal ≥ 10×" in text
    assert "--config.train.steps=2" in text


@pytest.mark.slow  # eight runs of tiny BERT and the Trainer (~2 min)
def test_checkpoint_case_runs_each_system_with_and_without_saves_and_renders(
    tiny_bert_dir, data_dir
):
    """jaxtl with no periodic checkpoint keeps only its end-of-run one; with saves every 2
    steps (in the background and in the loop) it keeps the last two, the one before the end a
    multiple of 2; the Trainer runs with and without ``save_steps``. The best-params rows
    evaluate every 2 steps and at the end; with ``save_best`` at least the first evaluation
    writes ``best/``, without it none. The tables have a row per mode with its saves and a cost
    per save; no speed is asserted."""
    from bench.cases import case_checkpoint
    from bench.common import Settings
    from bench.report import checkpoint

    s = Settings(model=str(tiny_bert_dir), data_dir=str(data_dir), batch_size=8,
                 train_examples=64, dev_examples=16, checkpoint_every=2, checkpoint_pairs=1)  # fmt: skip
    res = case_checkpoint(s)
    rows = {r["mode"]: r for r in res["rows"]}
    assert list(rows) == [
        "jaxtl, no periodic checkpoint", "jaxtl, in the background (default)",
        "jaxtl, in the loop (checkpoint.async_save=False)", "HF Trainer, no checkpoint",
        "HF Trainer, save_steps",
        "jaxtl, evaluating, no best params (train.save_best=False)",
        "jaxtl, best params in the loop (default)",
        "jaxtl, best params in the background (checkpoint.async_best=True)",
    ]  # fmt: skip
    assert rows["HF Trainer, save_steps"]["saves"] == res["trainer_steps"] // 2 == 4
    assert (
        rows["jaxtl, in the loop (checkpoint.async_save=False)"]["saves"] == res["jaxtl_steps"] // 2
    )
    assert all(0 <= r["accuracy"] <= 1 and len(r["wall_s"]) == 1 for r in rows.values())
    end = res["jaxtl_steps"]
    assert rows["jaxtl, no periodic checkpoint"]["checkpoints_kept"] == [end]
    for mode in ("jaxtl, in the background (default)",
                 "jaxtl, in the loop (checkpoint.async_save=False)"):  # fmt: skip
        assert rows[mode]["checkpoints_kept"] == [(end - 1) // 2 * 2, end]
    assert rows["HF Trainer, no checkpoint"]["checkpoints_kept"] == []
    assert rows["HF Trainer, save_steps"]["checkpoints_kept"] == [2, 4, 6, 8]
    assert all((r["peak_rss_mib"] or 0) > 100 for m, r in rows.items() if m.startswith("jaxtl"))
    assert rows["HF Trainer, save_steps"]["peak_rss_mib"] is None  # not its own process
    text = checkpoint({"cases": {"checkpoint": res}, "command": "x", "date": "d"},
                      pathlib.Path("r.json"))  # fmt: skip
    assert "| jaxtl, in the background (default) | 2 |" in text and "in the loop" in text
    best = [r for r in rows.values() if r["saving"] == "best params"]
    assert len(best) == 3 and all(r["evaluations"] == (end - 1) // 2 + 1 for r in best)
    for r in best:
        assert (r["saves"] >= 1) if "no best params" not in r["mode"] else r["saves"] == 0
        assert r["checkpoints_kept"] == [end]
    assert "| jaxtl, best params in the loop (default) | 2 |" in text


def test_mlm_case_decodes_masked_positions_with_the_same_loss(tiny_bert_dir):
    """jaxtl's masked-only MLM step and the every-position one start from the same parameters,
    batch and dropout key: their first losses agree (rtol 1e-5), and the case renders. No speed
    is asserted."""
    from bench.cases import case_mlm
    from bench.common import Settings
    from bench.report import mlm

    res = case_mlm(Settings(model=str(tiny_bert_dir), batch_size=4, seq_lens=(32,), pairs=2))
    assert res["masked"] > 0 and res["loss_masked_only"] > 0
    assert res["loss_masked_only"] == pytest.approx(res["loss_every_position"], rel=1e-5)
    assert all(_finite(x) for x in (res["jaxtl_median_s"], res["torch_median_s"],
                                    res["jaxtl_every_position_median_s"]))  # fmt: skip
    text = mlm({"cases": {"mlm": res}, "command": "x", "date": "d"}, pathlib.Path("r.json"))
    assert "| transformers BertForMaskedLM (PyTorch) |" in text


def test_embed_case_gives_sentence_transformers_vectors_and_renders(tiny_bert_dir, data_dir):
    """jaxtl's embedder and SentenceTransformer.encode on the same plain HF folder (mean
    pooling, not normalised, for both) give the same vectors (1e-5), and the case renders. No
    speed is asserted."""
    pytest.importorskip("sentence_transformers")
    from bench.cases import case_embed
    from bench.common import Settings
    from bench.report import embed

    res = case_embed(Settings(model=str(tiny_bert_dir), data_dir=str(data_dir),
                              embed_examples=64, pairs=2))  # fmt: skip
    assert res["sentences"] == 64 and res["max_abs_diff"] <= 1e-5
    assert _finite(res["jaxtl_median_s"]) and _finite(res["torch_median_s"])
    text = embed({"cases": {"embed": res}, "command": "x", "date": "d"}, pathlib.Path("r.json"))
    assert "| sentence-transformers `encode` (PyTorch) |" in text
    assert f"embedded by `{tiny_bert_dir}`" in text and "MiniLM" not in text  # the model run


def test_full_epoch_runs_e2e_on_all_of_train_into_a_table_of_its_own(
    data_dir, tmp_path, monkeypatch
):
    """``--full-epoch`` runs the e2e case on every training example (``train_examples=0``) as the
    ``e2e_full`` case, whose table sits beside the quick e2e table instead of replacing it."""
    from bench import cases, run

    quick = json.loads((REPO / "bench/results/2026-12-02-e2e-cold-warm.json").read_text())
    quick_e2e = quick["cases"]["e2e"]
    seen = {}

    def fake_e2e(s):
        seen["train_examples"] = s.train_examples
        # the full epoch has no second (compile-cache-warm) jaxtl run
        return {k: v for k, v in quick_e2e.items() if k not in ("jaxtl_warm", "ratio_warm")}

    monkeypatch.setattr(cases, "case_e2e", fake_e2e)
    md = tmp_path / "BENCH.md"
    md.write_text("<!-- bench:e2e:start -->\nquick table\n<!-- bench:e2e:end -->\n")
    res = run.main(["--full-epoch", "--quick", "--data-dir", str(data_dir),
                    "--out", str(tmp_path / "r.json"), "--markdown", str(md)])  # fmt: skip
    assert seen == {"train_examples": 0}  # --quick's 2,048-example subset does not apply
    assert list(res["cases"]) == ["e2e_full"]
    text = md.read_text()
    assert "quick table" in text  # the quick case's table is kept
    full = text.split("<!-- bench:e2e_full:start -->")[1].split("<!-- bench:e2e_full:end -->")[0]
    assert "all of SST-2 train, one epoch" in full and "second run" not in full
    assert "--full-epoch" in full


def test_data_scale_render_names_the_cpu_per_row_only_when_files_differ(tmp_path):
    from bench import data_scale

    def result(cpu, examples_per_s):
        run = {"system": "jaxtl", "rows": 10, "phase": "cold", "batches": 1, "wall_s": 1.0,
               "examples_per_s": examples_per_s, "tokenise_s": 0.5, "batch_s": 0.5,
               "rss_after_tokenise_mib": 1.0, "peak_rss_mib": 2.0, "load_average": 0.1}  # fmt: skip
        return {"machine": {"cpu_model": cpu, "nproc": 2}, "batch_size": 32, "max_length": 128,
                "runs": [run], "command": f"cmd {cpu}"}  # fmt: skip

    paths = []
    for name, cpu, eps in (("a.json", "AMD EPYC", 11.0), ("b.json", "Intel Xeon", 22.0)):
        (tmp_path / name).write_text(json.dumps(result(cpu, eps)))
        paths.append(str(tmp_path / name))
    mixed = data_scale.render(data_scale.merged(paths))
    assert "CPU per row" in mixed and "| jaxtl | 10 | AMD EPYC | cold |" in mixed
    assert "| jaxtl | 10 | Intel Xeon | cold |" in mixed and "| 22 |" in mixed
    header = next(line for line in mixed.splitlines() if line.startswith("| system"))
    rule = next(line for line in mixed.splitlines() if line.startswith("|---"))
    assert header.count("|") == rule.count("|") == 13
    same = data_scale.render(data_scale.merged(paths[:1]))
    assert same.startswith("CPU: AMD EPYC") and "| jaxtl | 10 | cold |" in same


def test_data_scale_packed_system_batches_one_epoch_of_packed_rows(data_dir, tmp_path):
    """The packed system batches every example of the corpus once (one epoch of packed rows),
    and the ratio line names it."""
    from bench import data_scale

    data = data_scale.write_corpus(3000, tmp_path, source=data_dir / "SST-2")
    runs = {}
    for system in ("jaxtl", "jaxtl-packed"):
        cache = tmp_path / f"cache-{system}"
        runs[system] = data_scale.run_worker(system, 3000, data, cache)
    assert runs["jaxtl-packed"]["examples_batched"] == 3000  # one packed epoch: each once
    # ceil(3000 / 32) bucketed batches (their buckets' partial batches leave a few out)
    assert 2900 < runs["jaxtl"]["examples_batched"] <= 3000
    assert runs["jaxtl"]["batches"] == 94
    # 3 packed rows a step hold about as many SST-2 sentences as a batch of 32
    assert 24 < 3000 / runs["jaxtl-packed"]["batches"] < 34
    res = {"machine": {"cpu_model": "x", "nproc": 2}, "batch_size": 32, "max_length": 128,
           "runs": [], "ratios": {"3000:cold:packed": 2.5, "3000:cold": 2.0}}  # fmt: skip
    text = data_scale.render(res)
    assert "- jaxtl (packed rows) / datasets throughput at 3,000 rows, cold: 2.50×" in text
    assert "- jaxtl / datasets throughput at 3,000 rows, cold: 2.00×" in text


# The step_variants and families tools compile a program per variant or family (~35 and ~13 s
# on 2 cores): slow. The default run checks the harness with test_harness_renders_the_cases_it_runs
# and the variants' names with test_step_variants_refuse_unknown_variants.
@pytest.mark.slow
def test_step_variants_time_one_step_in_each_variant(
    tiny_bert_dir, data_dir, tmp_path, monkeypatch
):
    from bench import step_variants

    # glibc reads its tunables at process start, so this only tests that the result records
    # them (hugetlb=0 is glibc's default either way).
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
    calls = iter(range(1, 1000))  # each read of the load average a later "time"
    monkeypatch.setattr(os, "getloadavg", lambda: (float(next(calls)),) * 3)
    out = tmp_path / "v.json"
    step_variants.main([
        "--model", str(tiny_bert_dir), "--data-dir", str(data_dir), "--batch-size", "2",
        "--seq-len", "16", "--variants",
        "base,sgd,no_dropout,classic_rng,ynn=individual_dot+reduce,xla_kernels",
        "--rounds", "2", "--profile", "1", "--out", str(out),
    ])  # fmt: skip
    res = json.loads(out.read_text())
    assert res["machine"]["env"]["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
    # The load before the variants compile, and the one after they ran.
    assert res["machine"]["load_average_at_start"][0] < res["machine"]["load_average_at_end"][0]
    rows = {r["variant"]: r for r in res["rows"]}
    assert list(rows) == ["base", "sgd", "no_dropout", "classic_rng", "ynn=individual_dot+reduce",
                          "xla_kernels"]  # fmt: skip
    for r in rows.values():
        assert len(r["times_s"]) == 2 and all(t > 0 for t in r["times_s"])
        assert r["minor_faults_per_step"] >= 0 and _finite(r["system_cpu_ms_per_step"])
        assert r["compile_s"] > 0 and _finite(r["compile_s"])
    assert rows["base"]["ratio_to_first_median"] == 1.0
    # 2 rows of 16 tokens: the run's default (cpu_kernels=auto) and the named fusions are
    # YNNPACK's; the variant that hands them all back to XLA reads xla.
    assert rows["base"]["cpu_kernels"] == rows["ynn=individual_dot+reduce"]["cpu_kernels"]
    assert rows["base"]["cpu_kernels"] == "ynnpack" and rows["xla_kernels"]["cpu_kernels"] == "xla"
    # --profile: the traced step's kernels by kind, every kind (the tiny model's dots rank
    # anywhere from 8th to 12th with the load, so a top-N cut would drop them at random);
    # XLA's own kernels do the default's matmuls.
    assert len(rows["base"]["kernels"]) > step_variants.PRINTED_KINDS
    kinds = {k["kind"]: k for k in rows["base"]["kernels"]}
    assert "dot" in kinds and kinds["dot"]["per_step"] >= 1 and kinds["dot"]["ms_per_step"] > 0
    assert all(len(r["kernels"]) > 0 for r in rows.values())
    # The first step's loss comes before any update: the optimizer and the kernels used must
    # not change it (other kernels round differently: rtol 1e-5); dropout off must, and so must
    # the classic generator's other bits (the tests' eight devices make base partitionable).
    base = rows["base"]["first_loss"]
    assert rows["sgd"]["first_loss"] == base
    assert rows["ynn=individual_dot+reduce"]["first_loss"] == pytest.approx(base, rel=1e-5)
    assert rows["no_dropout"]["first_loss"] != pytest.approx(base, rel=1e-5)
    assert rows["classic_rng"]["first_loss"] != pytest.approx(base, rel=1e-5)


def test_step_variants_refuse_unknown_variants():
    from bench import step_variants

    for bad in ("base,nope", "ynn=dot+nope", "ynn=", "xla:cpu_thing=1", "xla:xla_cpu_ftz"):
        with pytest.raises(SystemExit):
            step_variants.main(["--variants", bad])
    with pytest.raises(SystemExit):
        step_variants.main(["--steps", "0"])


@pytest.mark.slow
def test_step_variants_run_the_accelerator_model_several_steps_a_sample(
    data_dir, tmp_path, monkeypatch
):
    """``--model bert-base`` builds the accelerator case's random bf16 BERT (here shrunk to
    TINY_BERT's shape), ``--steps`` times several steps a sample, and ``padded`` changes the
    batch (so its first loss), not the model."""
    from bench import cases, step_variants

    monkeypatch.setattr(cases, "BERT_BASE", TINY_BERT)
    out = tmp_path / "v.json"
    step_variants.main([
        "--model", "bert-base", "--data-dir", str(data_dir), "--batch-size", "2",
        "--seq-len", "16", "--variants", "base,padded", "--steps", "3", "--rounds", "2",
        "--profile", "1", "--out", str(out),
    ])  # fmt: skip
    res = json.loads(out.read_text())
    assert res["steps_per_sample"] == 3 and res["model"] == "bert-base"
    rows = {r["variant"]: r for r in res["rows"]}
    assert list(rows) == ["base", "padded"]
    assert all(len(r["times_s"]) == 2 and len(r["kernels"]) > 0 for r in rows.values())
    assert rows["padded"]["first_loss"] != pytest.approx(rows["base"]["first_loss"], rel=1e-5)


def test_kernels_of_a_gpu_trace_are_the_devices_own():
    """The H200 trace of three BERT-base steps before the token-type change (BENCHMARKS.md
    section 7): only the GPU's kernels count, the host's Python and runtime events do not, and
    the token-type gradient's scatter is the top kind at 137.57 ms / 3 steps (to 0.01 ms)."""
    from bench.step_variants import kernels_by_kind

    trace = REPO / "bench" / "results" / "2026-12-04-h200-trace-before.json.gz"
    with gzip.open(trace) as f:
        events = json.load(f)["traceEvents"]
    kinds = kernels_by_kind(events, steps=3)
    assert kernels_by_kind(events, steps=3, top=2) == kinds[:2]
    top = kinds[0]
    assert top["kind"] == "input_scatter_fusion_1" and top["per_step"] == 1
    assert top["ms_per_step"] == pytest.approx(137.57 / 3, abs=0.01)
    names = {k["kind"] for k in kinds}
    assert not names & {"command_buffer_1", "cuGraphLaunch (CudaGraph:316)", "ParseArguments"}
    gpu_ms = sum(k["ms_per_step"] for k in kinds)
    assert gpu_ms == pytest.approx(309.80 / 3, abs=0.01)


def test_step_variants_name_the_xla_options_they_compile_with():
    """``ynn=a+b`` is XLA's repeated fusion-type option as a comma-separated list of its enum
    names; ``xla:k=v;k=v`` passes options typed (booleans, integers, strings)."""
    from bench.step_variants import _YNN, _options

    assert _options("ynn=individual_dot+reduce") == {
        _YNN: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    }
    assert _options("xla:xla_cpu_prefer_vector_width=512;xla_cpu_use_xnnpack=false;"
                    f"{_YNN}=") == {"xla_cpu_prefer_vector_width": 512,
                                   "xla_cpu_use_xnnpack": False, _YNN: ""}  # fmt: skip
    assert _options("ynnpack") == {} and _options("base") is None


def test_cpu_kernels_reach_the_worker_processes_configs():
    """``--cpu-kernels`` is jaxtl's setting in the bench process and, through Settings, in the
    configs the e2e and cache workers run (fresh processes that read it from their config)."""
    from bench import cases
    from bench.run import parse, settings_from

    assert settings_from(parse([])).cpu_kernels == "auto"
    s = settings_from(parse(["--cpu-kernels", "ynnpack"]))
    assert s.cpu_kernels == "ynnpack"
    c = cases._cache_config(s, 8, 8, steps=1, mode="off")
    assert c.cpu_kernels == "ynnpack"


def test_families_layers_and_only_reach_the_families_case(monkeypatch):
    """``--families-layers`` sets the depth of every family's model (the pre-norm families'
    step cost grew with depth where the 4-layer default hid it); the rest of the shape stays.
    ``--families-only`` names the model types to time (all by default)."""
    from bench import cases, families
    from bench.run import parse, settings_from

    seen = []
    monkeypatch.setattr(families, "case_families",
                        lambda s, shape, only: seen.append((shape, only)) or {})  # fmt: skip
    cases.case_families(settings_from(parse([])))
    cases.case_families(settings_from(parse(["--families-layers", "12"])))
    cases.case_families(settings_from(parse(["--families-only", "bert,phi3"])))
    assert [shape["layers"] for shape, _ in seen] == [4, 12, 4]
    assert seen[1][0] == {**families.SHAPE, "layers": 12}
    assert [only for _, only in seen] == [(), (), ("bert", "phi3")]


def test_recorded_commands_can_be_pasted_back_into_a_shell():
    """A results file's command keeps an empty argument and quotes what the shell would split."""
    from bench.common import command_line

    line = command_line("python bench/run.py", ["--markdown", "", "--out", "a b.json"])
    assert line == "python bench/run.py --markdown '' --out 'a b.json'"
    assert command_line("python bench/run.py", []) == "python bench/run.py"


TINY_BERT = {
    "vocab_size": 2000, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 2,
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
}  # fmt: skip


def test_accelerator_row_times_jaxtl_against_pytorch_and_renders(tmp_path):
    """The GPU case's row on the CPU with a tiny BERT: both systems train (bf16 compute), each
    sample is several steps, MFU is taken against the analytic model FLOPs, and the table has
    a line per system. On a GPU the same code runs PyTorch on CUDA."""
    from bench import report
    from bench.cases import accelerator_row, train_flops
    from bench.common import Settings

    s = Settings(accelerator_steps=2, pairs=3, warmup=1)
    row = accelerator_row(s, TINY_BERT, 2, 16)
    assert row["batch_size"] == 2 and row["seq_len"] == 16
    assert len(row["jaxtl_s"]) == 3 and len(row["torch_s"]) == 3
    for side in ("jaxtl", "torch"):
        x = row[side]
        assert x["step_median_s"] > 0 and math.isclose(
            x["tokens_per_s"], 2 * 16 / x["step_median_s"], rel_tol=1e-9
        )
        assert x["mfu"] is None  # no bf16 peak is known for a CPU
    assert _finite(row["ratio_median"]) and row["xla_flops_per_step"] > 0
    assert row["model_flops_per_step"] == train_flops(TINY_BERT, 2, 16)
    # The traced steps: jaxtl's kernels by kind, most time first.
    times = [k["ms_per_step"] for k in row["jaxtl_kernels"]]
    assert 0 < len(times) <= 8 and times == sorted(times, reverse=True) and times[0] > 0

    res = {
        "command": "python bench/run.py --cases accelerator --accelerator",
        "date": "2026-12-04T00:00:00+00:00",
        "machine": {"cpu_model": "x", "nproc": 1},
        "cases": {"accelerator": {"available": True, "backend": "gpu", "device_kind": "NVIDIA H200",
                                  "steps_per_sample": 2, "rows": [{**row, "peak_bf16_tflops": 989.0}]}},
    }  # fmt: skip
    text = report.accelerator(res, tmp_path / "r.json")
    assert "NVIDIA H200" in text and "| jaxtl | 2 | 16 |" in text
    assert "| transformers + PyTorch | 2 | 16 |" in text
    assert "jaxtl's top kernels at B = 2" in text and f"`{row['jaxtl_kernels'][0]['kind']}`" in text
    assert 'CPU "x", 1 cores' in text  # every table names where it ran


def test_train_flops_are_six_per_weight_per_token_plus_attention():
    """BERT-base at B=32, T=128: 6 x 85M layer weights x 4,096 tokens + 12 x L x B x T^2 x H."""
    from bench.cases import BERT_BASE, train_flops

    layer_weights = 12 * (4 * 768 * 768 + 2 * 768 * 3072)  # 84.9M (biases and norms left out)
    expected = 6 * layer_weights * 32 * 128 + 12 * 12 * 32 * 128**2 * 768 + 12 * 768 * 32
    assert train_flops(BERT_BASE, 32, 128) == expected
    assert 2.0e12 < expected < 2.3e12  # ~2.2 TFLOP a step


# Slow (15 s: three processes, one tokenising 20,000 pairs with the transformers call).
@pytest.mark.slow
def test_pair_tokenise_builds_the_same_entry_by_every_path(data_dir, tmp_path):
    """bench.pair_tokenise on 20,000 RTE pairs (two chunks, the second in a worker): the
    transformers call, the flat encoder here and in two workers write one entry (the
    benchmark's correctness check), and say so."""
    from bench import pair_tokenise

    res = pair_tokenise.main(["--rows", "20000", "--modes", "encode,flat,workers",
                              "--root", str(tmp_path), "--out", str(tmp_path / "r.json"),
                              "--data-dir", str(data_dir)])  # fmt: skip
    assert [r["mode"] for r in res["runs"]] == ["encode", "flat", "workers"]
    assert all(r["rows"] == 20000 and r["seconds"] > 0 for r in res["runs"])
    assert res["same_entry"] and json.loads((tmp_path / "r.json").read_text())["same_entry"]


def test_e2e_over_seeds_runs_every_system_per_seed_and_judges_the_means(
    data_dir, tmp_path, monkeypatch
):
    """``--seeds 3,4`` runs one e2e round per seed (that seed in every system's settings) and
    takes the ratios and the 0.5-point accuracy rule on the means over seeds; ``--no-torch``
    leaves the Trainer out. The table has a row per system and seed and the means below it."""
    from bench import cases, run

    walls = {"jaxtl": (10.0, 14.0), "keras": (40.0, 44.0)}
    accs = {3: {"jaxtl": 0.890, "keras": 0.880}, 4: {"jaxtl": 0.884, "keras": 0.886}}
    seen = []

    def fake_once(s, steps, train, dev):
        seen.append((s.seed, s.torch))
        i = len(seen) - 1
        out = {name: {"wall_s": walls[name][i], "accuracy": accs[s.seed][name],
                      "pad_fraction": 0.01, "sequence_length": 64}
               for name in ("jaxtl", "keras")}  # fmt: skip
        # packing does not depend on the seed: the table says it once
        out["jaxtl"].update(row_batch_size=3, examples_per_step=28.68, steps=12)
        return out

    monkeypatch.setattr(cases, "_e2e_once", fake_once)
    md = tmp_path / "BENCH.md"
    md.write_text("")
    res = run.main(["--cases", "e2e", "--seeds", "3,4", "--no-torch", "--train-examples", "8",
                    "--dev-examples", "4", "--data-dir", str(data_dir),
                    "--out", str(tmp_path / "r.json"), "--markdown", str(md)])  # fmt: skip
    assert seen == [(3, False), (4, False)]
    c = res["cases"]["e2e"]
    assert [r["seed"] for r in c["runs"]] == [3, 4]
    jx, kh = c["summary"]["jaxtl"], c["summary"]["keras"]
    assert jx["wall_mean_s"] == pytest.approx(12.0) and kh["wall_mean_s"] == pytest.approx(42.0)
    assert jx["wall_std_s"] == pytest.approx(2 * math.sqrt(2))  # stdev, n - 1
    assert jx["accuracy_mean"] == pytest.approx(0.887) and kh["accuracy_mean"] == pytest.approx(
        0.883
    )
    assert c["ratio_keras"] == pytest.approx(12.0 / 42.0)
    assert c["ratio_keras_each"] == pytest.approx([10.0 / 40.0, 14.0 / 44.0])
    # one seed alone differs by 1.0 point; the means by 0.4, inside the rule
    assert c["accuracy_gap_keras_points"] == pytest.approx(0.4) and c["ratio_keras_counts"]
    assert c["accuracy_diff_keras_points"] == pytest.approx(0.4)  # jaxtl - KerasHub, signed
    assert "ratio" not in c and "torch" not in c["summary"]
    text = md.read_text()
    assert "| jaxtl (multitask regime, packed rows) | 4 | 14.0 |" in text
    assert "| KerasHub BertTextClassifier.fit (fixed length 64) | 3 | 40.0 |" in text
    assert text.count("jaxtl packs several examples per row: 3 rows per step (≈ 28.7") == 1
    assert "mean ± std over 2 seeds" in text and "jaxtl − KerasHub +0.40 points" in text
    assert "the ratio counts" in text
    # the quick case's goal is a ratio to the Trainer, which this run left out
    assert "- Goal: jaxtl's wall time ≤ 0.8× the Trainer's" in text
    assert "not met on the means over seeds (Trainer not run)" in text
    assert "Trainer +" not in text and "Trainer −" not in text


def test_e2e_goal_lines_hold_the_full_epoch_not_the_quick_case_to_equal_accuracy():
    """The quick case's goal is ≤ 0.8× the Trainer's wall time; the full epoch's ≤ 0.5× the
    Trainer's and KerasHub's at equal dev accuracy (±0.5), so a fast ratio with a 1.4-point
    gap meets the first and not the second."""
    from bench import report

    fast_but_apart = {"ratio": 0.46, "ratio_counts": False, "ratio_keras": 0.21,
                      "ratio_keras_counts": True}  # fmt: skip
    (quick,) = report._e2e_goal(fast_but_apart, "e2e")
    assert quick.endswith(": met (Trainer met (0.46)).")
    (full,) = report._e2e_goal(fast_but_apart, "e2e_full")
    assert ": not met (Trainer 0.46, but the accuracies differ by more than 0.5; " in full
    assert "KerasHub met (0.21))." in full
    slow = {**fast_but_apart, "ratio_counts": True, "ratio_keras": 0.55, "runs": [{}, {}]}
    (full,) = report._e2e_goal(slow, "e2e_full")
    assert "not met on the means over seeds (Trainer met (0.46); KerasHub missed by 0.05" in full
    both = {**slow, "ratio_keras": 0.5}
    assert "): met on the means over seeds (" in report._e2e_goal(both, "e2e_full")[0]
    assert report._e2e_goal(both, "step") == []


def test_seed_summary_takes_the_trainer_and_the_warm_runs_on_their_means():
    from bench.common import seed_summary

    def side(wall, acc):
        return {"wall_s": wall, "accuracy": acc}

    runs = [
        {
            "seed": 0,
            "jaxtl": side(30.0, 0.78),
            "jaxtl_warm": side(20.0, 0.78),
            "torch": side(50.0, 0.77),
        },
        {
            "seed": 1,
            "jaxtl": side(40.0, 0.76),
            "jaxtl_warm": side(30.0, 0.76),
            "torch": side(50.0, 0.78),
        },
    ]
    out = seed_summary(runs)
    assert out["ratio"] == pytest.approx(35.0 / 50.0)
    assert out["ratio_warm"] == pytest.approx(25.0 / 50.0)
    assert out["ratio_warm_each"] == pytest.approx([0.4, 0.6])
    # jaxtl 0.77, Trainer 0.775: jaxtl half a point lower, still within the rule
    assert out["accuracy_diff_points"] == pytest.approx(-0.5)
    assert out["ratio_counts"] and "ratio_keras" not in out
    assert out["summary"]["torch"]["accuracy_std"] == pytest.approx(0.01 / math.sqrt(2))


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [("--seeds", "0,x", "'0,x' is not a comma-separated list of integers"),
     ("--seq-lens", "128;64", "'128;64' is not a comma-separated list of integers"),
     ("--seeds", "1,2,1", "--seeds 1,2,1: a seed appears twice")],
)  # fmt: skip
def test_bench_list_flags_refuse_bad_values_in_one_line(flag, value, says, capsys):
    from bench import run

    with pytest.raises(SystemExit) as e:
        run.main([flag, value, "--cases", "padding", "--markdown", ""])
    assert says in f"{e.value}{capsys.readouterr().err}"


def test_without_torch_only_the_torch_free_cases_run(monkeypatch):
    """A venv without torch (Python 3.12+ without the test extra) still runs the cases that time
    nothing of PyTorch's, and a case that needs it stops in one line naming it."""
    import importlib

    import bench
    from bench import run

    importlib.import_module("bench.torch_side")  # as an earlier test in the process may have
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if absent
    monkeypatch.delitem(sys.modules, "bench.torch_side")
    monkeypatch.delattr(bench, "torch_side")  # else `from bench import torch_side` finds it
    assert run._torch_threads(["compile", "padding"]) is None
    with pytest.raises(SystemExit, match=r"^--cases memory,step: needs torch"):
        run._torch_threads(["compile", "step", "memory"])
    monkeypatch.undo()
    assert run._torch_threads(["step"]) == (os.cpu_count() or 1)
