"""--seeds / --sweep: one run per setting and seed, mean ± std over seeds, the best setting
chosen on dev; an interrupted or extended sweep keeps its finished runs."""

import json
import pathlib
import subprocess
import sys

import pytest

from jaxtl import config as config_lib
from jaxtl import sweep
from jaxtl.regimes import multitask

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_flags_seeds_and_the_grid_are_parsed_and_checked():
    args = ["--regime=multitask", "--seeds", "0,1", "--sweep=optim.lr=1e-4|3e-4",
            "--sweep", "train.epochs=2|3", "--workdir=w", "--config.train.steps=5"]  # fmt: skip
    sweeps, seeds, workdir, rest = sweep.split_args(args)
    assert sweeps == ["optim.lr=1e-4|3e-4", "train.epochs=2|3"] and seeds == "0,1"
    assert workdir == "w" and rest == ["--regime=multitask", "--config.train.steps=5"]
    assert sweep.parse_seeds("0,1,2") == [0, 1, 2] and sweep.parse_seeds("3-5") == [3, 4, 5]
    for bad in ("a", "", "1,1"):
        with pytest.raises(ValueError, match="--seeds"):
            sweep.parse_seeds(bad)
    c = multitask.add_config(config_lib.base_config())
    grid = sweep.parse_sweeps(sweeps, c)
    assert [s.name for s in grid] == [
        "optim.lr=1e-4,train.epochs=2", "optim.lr=1e-4,train.epochs=3",
        "optim.lr=3e-4,train.epochs=2", "optim.lr=3e-4,train.epochs=3"]  # fmt: skip
    assert sweep.parse_sweeps([], c)[0].name == "default"
    off_on = sweep.parse_sweeps(["train.class_weights=|balanced"], c)  # "" is a value
    assert [s.overrides for s in off_on] == [(("train.class_weights", ""),),
                                             (("train.class_weights", "balanced"),)]  # fmt: skip
    named = sweep.parse_sweeps(["config.tasks.names=('glue/rte',)|('glue/mrpc',)"], c)
    assert [s.name for s in named] == ["tasks.names=__glue_rte___", "tasks.names=__glue_mrpc___"]
    for values, message in (
        (["optim.lrr=1"], "the config has no key 'optim.lrr'"),
        (["optim=1"], "optim is a section of the config, not a value"),
        (["seed=1|2"], "seeds are --seeds=0,1,2"),
        (["optim.lr"], "write KEY=VALUE|VALUE"),
        (["optim.lr=|"], "write KEY=VALUE|VALUE"),
        (["optim.lr=1|1"], "a value is given twice"),
        (["optim.lr=1", "optim.lr=2"], "optim.lr is swept twice"),
        (["tasks.names=a/b|a_b"], "two settings share the folder name 'tasks.names=a_b'"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=message.replace("|", r"\|").replace("(", r"\(")
                           .replace(")", r"\)")):  # fmt: skip
            sweep.parse_sweeps(values, c)


def _write_run(wd, dev, test):
    """A finished two-task run: its score is the mean of the tasks' main metrics (tasks.json),
    the task "u" at 0.5 throughout."""
    wd.mkdir(parents=True)
    for name, score in (("results.json", dev), ("results_test.json", test)):
        (wd / name).write_text(json.dumps({"t": {"accuracy": score, "macro_f1": 0.0},
                                           "u": {"pearson": 0.5}}))  # fmt: skip
    (wd / "tasks.json").write_text(json.dumps({"tasks": [
        {"name": "t", "main_metric": "accuracy"}, {"name": "u", "main_metric": "pearson"}]}))  # fmt: skip


def test_the_best_setting_is_chosen_on_dev_and_reported_on_test(tmp_path):
    grid = [sweep.Setting((("optim.lr", "a"),)), sweep.Setting((("optim.lr", "b"),))]
    # a: better on dev, worse on test; b the reverse: dev alone chooses
    _write_run(tmp_path / "optim.lr=a" / "seed0", 0.80, 0.60)
    _write_run(tmp_path / "optim.lr=a" / "seed1", 0.90, 0.62)
    _write_run(tmp_path / "optim.lr=b" / "seed0", 0.70, 0.90)
    _write_run(tmp_path / "optim.lr=b" / "seed1", 0.72, 0.92)
    got = sweep.aggregate(str(tmp_path), grid, [0, 1])
    assert got["best"] == "optim.lr=a"
    assert got["best_run"] == str(tmp_path / "optim.lr=a" / "seed1")  # its best seed on dev
    a = got["settings"][0]
    assert a["dev_score"]["mean"] == pytest.approx((0.85 + 0.5) / 2)
    assert a["dev_score"]["std"] == pytest.approx(0.0707107 / 2, abs=1e-6)  # sample std
    assert a["test"]["t"]["accuracy"]["mean"] == pytest.approx(0.61)
    assert a["dev"]["t"]["accuracy"]["std"] == pytest.approx(0.0707107, abs=1e-6)
    text = sweep.table(got)
    assert "optim.lr=a *" in text and "0.6750 ± 0.0354" in text


def _launch(args, wd, tiny_bert_dir):
    return subprocess.run(
        [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
         f"--config.model.name={tiny_bert_dir}", "--config.tasks.names=('builtin/sentiment',)",
         "--config.train.eval_every=0", f"--workdir={wd}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=900)  # fmt: skip


def test_a_sweep_from_the_command_line_resumes_and_grows(tiny_bert_dir, tmp_path):
    wd = tmp_path / "grid"
    p = _launch(["--sweep=train.steps=2", "--seeds=0"], wd, tiny_bert_dir)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert [str(x.relative_to(wd)) for x in wd.glob("*/seed*")] == ["train.steps=2/seed0"]
    steps = [json.loads(x) for x in (wd / "train.steps=2/seed0/metrics.jsonl").read_text()
             .splitlines()]  # fmt: skip
    assert max(r["step"] for r in steps if r["split"] == "train") == 2  # the override reached it
    assert "jaxtl: best on dev: train.steps=2 (" in p.stdout
    # two more seeds, two at a time: the finished run is kept, the new ones run side by side
    # (both start before either ends), the summary covers all three
    p = _launch(["--sweep=train.steps=2", "--seeds=0,1,2", "--sweep_jobs=2"], wd, tiny_bert_dir)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert p.stdout.count("finished earlier, kept") == 1 and "2 at a time" in p.stdout
    events = [line.split(": ")[-1] for line in p.stdout.splitlines() if line.startswith(
        "jaxtl: run ")]  # fmt: skip
    assert events[1:3] == ["started", "started"] and "dev score" in events[3], events
    got = json.loads((wd / "sweep.json").read_text())
    assert got["seeds"] == [0, 1, 2] and got["settings"][0]["dev_score"]["n"] == 3
    per_seed = got["settings"][0]["dev_score_per_seed"]
    for seed in ("0", "1", "2"):  # each run's own score: its one task's main metric (accuracy)
        run = json.loads((wd / f"train.steps=2/seed{seed}/results.json").read_text())
        assert per_seed[seed] == run["builtin/sentiment"]["accuracy"]
    assert got["best"] == "train.steps=2" and got["best_run"].startswith(str(wd))
    # the sweep's folder given as a workdir (--predict, --export) names its best run, which is
    p = subprocess.run([sys.executable, "launch.py", "--export", f"--workdir={wd}",
                        f"--output={tmp_path / 'x'}"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert p.returncode != 0 and (
        f"it is a sweep's folder, whose runs are workdirs: its best on dev is "
        f"--workdir={got['best_run']}") in p.stderr  # fmt: skip
    # a run that fails stops the sweep with its own one-line error and its log
    p = _launch(["--sweep=optim.lr=abc", "--seeds=0"], tmp_path / "bad", tiny_bert_dir)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert "run 1/1 (optim.lr=abc seed 0) failed" in last and "optim.lr" in last
    assert "logs/optim.lr=abc.seed0.log" in last
    # a key the config lacks stops before any run
    p = _launch(["--sweep=optim.lrr=1|2"], tmp_path / "none", tiny_bert_dir)
    assert p.returncode != 0 and not (tmp_path / "none").exists()
    assert "the config has no key 'optim.lrr'" in p.stderr.strip().splitlines()[-1]


def test_a_run_stopped_cleanly_stops_the_sweep_to_be_resumed(tmp_path, monkeypatch):
    """A run that exits 0 without results (preempted: SIGTERM or Ctrl-C, checkpoint saved)
    stops the sweep as a clean stop, not as a failure; the runs after it are not started."""
    started = []

    class Preempted:
        def __init__(self, cmd, stdout, stderr, env=None):
            started.append(cmd)
            stdout.write("jaxtl: stopped by SIGTERM at step 7; checkpoint saved\n")

        def wait(self):
            return 0

    monkeypatch.setattr(sweep.subprocess, "Popen", Preempted)
    with pytest.raises(sweep.Stopped, match=r"run 1/2 \(default seed 0\) stopped after \d+ s: "
                       "jaxtl: stopped by SIGTERM at step 7; checkpoint saved; the same command "
                       "resumes the sweep"):  # fmt: skip
        sweep.run(["--regime=multitask", "--seeds=0,1", f"--workdir={tmp_path}"])
    assert len(started) == 1 and started[0][-2:] == ["--config.seed=0",
                                                     f"--workdir={tmp_path}/default/seed0"]  # fmt: skip


def test_parallel_flags_are_parsed_and_checked():
    assert sweep.parse_parallel(None, None) == (1, [])
    assert sweep.parse_parallel("3", None) == (3, [])
    assert sweep.parse_parallel(None, "0,1, 2") == (3, ["0", "1", "2"])  # one run per device
    assert sweep.parse_parallel("2", "0,1,2,3") == (2, ["0", "1", "2", "3"])
    for jobs, devices, message in (("0", None, "give 1 or more"), ("x", None, "number of runs"),
                                   (None, "0,0", "distinct device ids"), (None, ",", "distinct"),
                                   ("3", "0,1", "each running run has a device to itself")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            sweep.parse_parallel(jobs, devices)


class _FakeRun:
    """A run process: finishes on its (3 + seed)th poll, writing results.json unless its seed
    is listed in ``failing``; records what ran at once and with which device."""

    running, peak, devices, terminated, failing = set(), 0, [], [], set()

    def __init__(self, cmd, stdout, stderr, env=None):
        self.wd = pathlib.Path(cmd[-1].split("=", 1)[1])
        self.seed = int(next(a for a in cmd if a.startswith("--config.seed=")).split("=")[1])
        self.polls, self.code = 0, None
        _FakeRun.running.add(self)
        _FakeRun.peak = max(_FakeRun.peak, len(_FakeRun.running))
        _FakeRun.devices.append((env or {}).get("CUDA_VISIBLE_DEVICES"))
        stdout.write(f"run of seed {self.seed}\n")

    def poll(self):
        self.polls += 1
        if self.code is None and self.polls >= 3 + self.seed:
            self.code = 1 if self.seed in _FakeRun.failing else 0
            if self.code == 0:
                _write_run(self.wd, 0.5, 0.5)
            else:
                (self.wd.parents[1] / "logs" / f"{self.wd.parent.name}.{self.wd.name}.log").open(
                    "a").write("jaxtl: error: boom\n")  # fmt: skip
            _FakeRun.running.discard(self)
        return self.code

    def wait(self):
        while self.poll() is None:
            pass
        return self.code

    def terminate(self):
        _FakeRun.terminated.append(self.seed)
        self.code = 0  # a preempted run exits 0 after its checkpoint
        _FakeRun.running.discard(self)


def test_runs_go_several_at_a_time_each_on_its_device(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep.subprocess, "Popen", _FakeRun)
    monkeypatch.setattr(sweep.time, "sleep", lambda s: None)
    _FakeRun.running, _FakeRun.peak, _FakeRun.devices, _FakeRun.terminated = set(), 0, [], []
    _FakeRun.failing = set()
    got = sweep.run(["--regime=multitask", "--seeds=0-4", "--sweep_devices=3,5",
                     f"--workdir={tmp_path / 'ok'}"])  # fmt: skip
    assert _FakeRun.peak == 2  # two at a time: one per device
    assert sorted(set(_FakeRun.devices)) == ["3", "5"] and len(_FakeRun.devices) == 5
    assert got["settings"][0]["dev_score"]["n"] == 5
    # the first failure stops the sweep: nothing new starts, the running run is stopped
    _FakeRun.running, _FakeRun.peak, _FakeRun.devices, _FakeRun.terminated = set(), 0, [], []
    _FakeRun.failing = {1}
    with pytest.raises(RuntimeError, match=r"run 2/5 \(default seed 1\) failed after \d+ s: "
                       "jaxtl: error: boom"):  # fmt: skip
        sweep.run(["--regime=multitask", "--seeds=0-4", "--sweep_jobs=3",
                   f"--workdir={tmp_path / 'bad'}"])  # fmt: skip
    assert len(_FakeRun.devices) == 4  # seed 3 took seed 0's place; seed 4 never started
    assert sorted(_FakeRun.terminated) == [2, 3]  # stopped unfinished when seed 1 failed
    assert (tmp_path / "bad/default/seed0/results.json").exists()
    assert not (tmp_path / "bad/default/seed2/results.json").exists()
