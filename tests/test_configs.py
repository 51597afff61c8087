"""Every config file: the full run and ``:tiny`` both load locked, ``tiny`` keeps the run's shape
at a fraction of its steps, a bad argument names itself; and each regime's default config file
runs end to end through launch.py at ``:tiny`` size (on the tiny BERT fixture)."""

import importlib
import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest
from conftest import xla_flags

from jaxtl.configs import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p.stem for p in (REPO / "jaxtl" / "configs").glob("*.py") if p.stem not in ("__init__", "tiny")
)
REGIMES = ("self_supervised", "unsupervised_sequential", "multitask", "supervised_sequential")


def _load(name):
    return importlib.import_module(f"jaxtl.configs.{name}")


def _stage_steps(c) -> dict[str, int]:
    """``steps`` of every top-level section that has one (train, source, pretrain, refine...)."""
    return {
        k: c[k].steps
        for k in c.keys()
        if isinstance(c[k], ml_collections.ConfigDict) and "steps" in c[k]
    }


def test_every_regime_has_its_default_config_file():
    assert set(REGIMES) <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_full_and_tiny_configs_load_locked(name):
    mod = _load(name)
    full, tiny_c = mod.get_config(), mod.get_config("tiny")
    assert full.is_locked and tiny_c.is_locked
    assert mod.get_config("").to_dict() == full.to_dict()
    with pytest.raises(AttributeError):  # locked: an unknown key is an error, not a new key
        tiny_c.train.stepz = 1


@pytest.mark.parametrize("name", CONFIGS)
def test_tiny_keeps_the_run_shape_with_fewer_steps(name):
    mod = _load(name)
    full, small = mod.get_config(), mod.get_config("tiny")
    full_steps, tiny_steps = _stage_steps(full), _stage_steps(small)
    assert sum(tiny_steps.values()) < sum(full_steps.values())
    # same stages: a stage that runs still runs (with enough steps for MiniLM's 7 or 9 phases),
    # a stage that is off stays off
    for k, n in full_steps.items():
        assert tiny_steps[k] == (min(n, tiny.STEPS) if n > 0 else 0), k
    assert tiny.STEPS >= 9  # chain_thaw on MiniLM (6 layers): L + 3 phases
    # same regime shape: objective, tasks, strategy, schedule, model
    for key in ("objective", "model.name", "tasks.names", "source.tasks", "target.tasks",
                "optim.strategy", "optim.schedule", "pretrain.corpus", "unlabelled.corpus"):  # fmt: skip
        head, *rest = key.split(".")
        if head in full:
            assert _get(small, key) == _get(full, key), key
    assert small.train.batch_size <= 8 and small.data.max_length <= 64
    assert max(small.data.buckets) >= small.data.max_length
    assert 0 < small.data.max_train_examples <= 64 and 0 < small.data.max_eval_examples <= 32
    assert small.train.eval_every == 0
    for k in ("pretrain", "unlabelled"):
        if k in small:
            assert small[k].block_size == 32


def _get(c, key):
    for part in key.split("."):
        c = c[part]
    return c


@pytest.mark.parametrize("name", CONFIGS)
def test_bad_argument_names_the_value_the_file_and_the_valid_ones(name):
    with pytest.raises(ValueError, match=rf"{name}\.py.*'huge'.*'tiny'"):
        _load(name).get_config("huge")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--config.train.stepz=3", "--config.train.stepz: the config has no key 'stepz' "
                                   '(Did you mean "steps" instead of "stepz"?)'),
        ("--config.trian.steps=3", "--config.trian.steps: the config has no key 'trian'"),
        ("--config.train.steps=abc", "flag --config.train.steps=abc: invalid literal for int()"),
        ("--config=configs/nope.py", "--config: No such file or directory: 'configs/nope.py'; "
                                     "a config is a file's path or the name of a shipped one: "
                                     "multitask, multitask_glue, "),
        ("--config=configs/multitask.py:huge", "unknown config argument 'huge'"),
        ("--config.model.representation.kind=concat", "--config.model.representation.kind: "
                                                      "config.model.representation is a value "
                                                      "('last'), not a section with keys: set it "
                                                      "as --config.model.representation=VALUE"),
        ("--config.train=abc", "--config.train is a section of the config (its keys: accum_steps, "
                               "batch_size, "),
        ("--config.tasks=file:name=m,path=m.tsv", "--config.tasks is a section of the config (its "
                                                  "keys: names, weights), not a value: set one of "
                                                  "its keys, e.g. --config.tasks.names="
                                                  "'file:name=m,path=m.tsv'"),
    ],
)  # fmt: skip
def test_a_bad_command_line_config_stops_with_one_line(flag, message, tmp_path):
    _one_line_error(["--regime=multitask", flag], message, tmp_path)


def test_a_key_of_another_regime_names_where_this_config_has_it(tmp_path):
    """multitask's tasks.names given to a regime whose tasks are source.tasks/target.tasks."""
    _one_line_error(["--regime=supervised_sequential", "--config.tasks.names=('rte',)"],
                    "--config.tasks.names: the config has no key 'tasks' (this config has it as "
                    "--config.source.tasks and --config.target.tasks)", tmp_path)  # fmt: skip


def test_of_two_flags_ending_in_the_same_key_the_one_the_config_lacks_is_named(tmp_path):
    """--config.pretrain.steps exists and --config.target.steps does not: the error names the
    second (it named the first flag that ends in "steps")."""
    _one_line_error(["--regime=unsupervised_sequential", "--config.pretrain.steps=3",
                     "--config.target.steps=3"],
                    "--config.target.steps: the config has no key 'steps' (this config has it as "
                    "--config.lm_finetune.steps and --config.pretrain.steps and "
                    "--config.train.steps)", tmp_path)  # fmt: skip


def _one_line_error(args, message, tmp_path):
    cmd = [sys.executable, str(REPO / "launch.py"), *args, f"--workdir={tmp_path / 'wd'}"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("launch.py: ") and message in line, line
    assert not (tmp_path / "wd").exists()


# Slow (about two minutes for the four): every regime's launch path is also exercised in CI by
# its own test_regime_* launch test; this checks the config files' :tiny argument end to end.
@pytest.mark.slow
@pytest.mark.parametrize("regime", REGIMES)
def test_launch_default_config_at_tiny_size(regime, tiny_bert_dir, tmp_path):
    wd = tmp_path / "wd"
    cmd = [sys.executable, str(REPO / "launch.py"), f"--regime={regime}",
           f"--config={REPO / 'configs' / regime}.py:tiny", f"--config.model.name={tiny_bert_dir}",
           f"--workdir={wd}"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (wd / "results.json").is_file()
    assert json.loads((wd / "config.json").read_text())["train"]["steps"] == tiny.STEPS
