"""The test launcher (tests/launcher.py) gives what a new interpreter gives: exit status, stdout,
stderr, stdin, working directory and environment; a timeout kills the command."""

import os
import pathlib
import subprocess
import sys

import launcher
import pytest

REPO = pathlib.Path(launcher.REPO)


def _both(cmd, **kwargs):
    """(forked, real) results of one command."""
    assert launcher._program(cmd) is not None
    return launcher.run(cmd, **kwargs), launcher._real_run(cmd, **kwargs)


@pytest.fixture(autouse=True)
def _forking_on(monkeypatch):
    monkeypatch.delenv("JAXTL_TEST_FORK", raising=False)


def test_a_forked_command_gives_what_a_new_interpreter_gives(tmp_path):
    cases = [
        ([sys.executable, "-m", "jaxtl", "--version"], {"cwd": tmp_path}),
        ([sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitsk"],
         {"cwd": tmp_path}),
        ([sys.executable, "launch.py", "--regime=supervised_sequential",
          "--config=configs/multitask.py:tiny", f"--workdir={tmp_path / 'wd'}"], {"cwd": REPO}),
        # stdin, a relative path from the working directory, and the environment reach it
        ([sys.executable, "-m", "jaxtl", "--predict", "--workdir=nowhere", "--input=-"],
         {"cwd": tmp_path, "input": "a line\n",
          "env": dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))}),
    ]  # fmt: skip
    for cmd, kw in cases:
        forked, real = _both(cmd, capture_output=True, text=True, timeout=120, **kw)
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            real.returncode, real.stdout, real.stderr), cmd  # fmt: skip
    assert forked.returncode != 0 and "nowhere" in forked.stderr


def test_a_command_past_its_timeout_is_killed(tmp_path):
    cmd = [sys.executable, "-m", "jaxtl", "--regime=multitask", "--config=multitask:tiny",
           f"--workdir={tmp_path / 'wd'}"]  # fmt: skip
    with pytest.raises(subprocess.TimeoutExpired):
        launcher.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1)
    # the helper serves the next command
    p = launcher.run([sys.executable, "-m", "jaxtl", "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip()


def test_other_programs_and_arguments_run_for_real():
    assert launcher._program([sys.executable, "-c", "print(1)"]) is None
    assert launcher._program([str(REPO / ".venv" / "bin" / "jaxtl"), "--version"]) is None
    assert launcher._program([sys.executable, "bench/run.py"]) is None
    assert launcher._program([sys.executable, "-m", "jaxtl"]) == ("module", "jaxtl")
    assert launcher._program([sys.executable, str(REPO / "launch.py")])[0] == "script"
    assert launcher._program([sys.executable, "scripts/check_deps.py"]) is None
    assert launcher._program([sys.executable, "tests/fake_gcs.py", "root", "launch.py"])
