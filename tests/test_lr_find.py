"""--lr_find: the learning-rate range test (an exponential LR sweep, fastai's smoothing and
suggestions) from the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxtl import lr_find
from jaxtl.partition.schedules import make_schedule

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_the_range_test_schedule_sweeps_exponentially_from_start_to_lr():
    sched = make_schedule("range_test", lr=10.0, total_steps=81, range_start=1e-7)
    got = np.array([float(sched(t)) for t in range(81)])
    np.testing.assert_allclose(got[[0, 10, 80]], [1e-7, 1e-6, 10.0], rtol=1e-5)
    assert np.all(np.diff(np.log10(got)) > 0)  # equal steps in log(lr)
    with pytest.raises(ValueError, match="range_start must be in"):
        make_schedule("range_test", lr=1e-8, total_steps=10, range_start=1e-7)


def test_suggestions_are_read_from_the_smoothed_curve_before_it_diverges():
    # 200 steps a decade, so the smoothing's lag (about 50 steps) is a quarter of a decade
    lrs = np.logspace(-7, 1, 1601)
    x = np.log10(lrs)
    # flat at 1.0, falling fastest at lr 1e-3, lowest at 10**-1.5, then exploding
    loss = 0.6 - 0.4 * np.tanh((x + 3) * 2) + np.where(x > -1.5, 10 ** (3 * (x + 1.5)) - 1, 0)
    got = lr_find.suggest(lrs, loss)
    assert 10**-3.0 < got["steepest"] < 10**-2.6  # just after 1e-3: the smoothing lags
    assert 10**-1.8 < got["minimum"] < 10**-1.2 and got["minimum_div_10"] == got["minimum"] / 10
    assert 1000 < got["used_steps"] < 1601  # cut once the smoothed loss passes 4x its minimum
    smooth = got["smoothed"]
    assert smooth[0] == pytest.approx(loss[0])  # bias-corrected from the first step
    # a diverged run: the curve ends at the first non-finite loss
    short = lr_find.suggest(lrs[:50], np.r_[np.linspace(2, 1, 40), [np.nan] * 10])
    assert len(short["loss"]) == 40
    with pytest.raises(ValueError, match="the range test logged 2 finite losses"):
        lr_find.suggest(lrs[:5], [1.0, 1.0, np.inf, 1.0, 1.0])
    for args, message in ((["--lr_find_steps=5"], "needs 10 steps or more"),
                          (["--lr_find_end=-1"], "must be a positive number"),
                          (["--lr_find_steps=x"], "is not a number")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            lr_find.split_args(["--lr_find", *args])


def test_lr_find_from_the_command_line(tiny_bert_dir, tmp_path):
    wd = tmp_path / "lrf"
    cmd = [sys.executable, "launch.py", "--regime=multitask", "--config=configs/multitask.py:tiny",
           f"--config.model.name={tiny_bert_dir}", "--config.tasks.names=('builtin/sentiment',)",
           "--lr_find", "--lr_find_steps=16", "--lr_find_end=1", f"--workdir={wd}"]  # fmt: skip
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    got = json.loads((wd / "lr_find.json").read_text())
    assert len(got["lr"]) == 16 and got["lr"][0] == pytest.approx(1e-7, rel=1e-5)
    assert got["lr"][-1] == pytest.approx(1.0, rel=1e-5)  # the logged rates are the sweep's
    assert (wd / "lr_find.png").stat().st_size > 0 and not (wd / "lr_find/checkpoints").exists()
    assert f"steepest {got['steepest']:.2e}" in p.stdout
    p = subprocess.run([*cmd[:-1], f"--workdir={tmp_path / 'x'}", "--config.optim.lr=1e-3"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode != 0 and not (tmp_path / "x").exists()
    assert "--config.optim.lr with --lr_find" in p.stderr.strip().splitlines()[-1]
