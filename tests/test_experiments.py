"""The experiment scripts' shared statistics and table writing (experiments/common.py)."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))
import common  # noqa: E402


def test_paired_bootstrap_detects_a_better_system_and_not_an_equal_one():
    rng = np.random.default_rng(0)
    b = (rng.random(300) < 0.6).astype(float)
    better = b.copy()
    better[np.flatnonzero(b == 0)[:40]] = 1.0  # 40 more examples right, none lost
    assert common.paired_bootstrap(better, b) < 0.01
    assert common.paired_bootstrap(b, better) > 0.99
    assert 0.0 < common.paired_bootstrap(b, rng.permutation(b)) < 1.0


def test_welch_and_mean_std():
    assert common.welch([0.5, 0.51, 0.49], [0.7, 0.71, 0.69]) < 0.001
    assert common.welch([0.5, 0.6, 0.55], [0.5, 0.6, 0.55]) == pytest.approx(1.0)
    assert np.isnan(common.welch([0.5], [0.6, 0.7]))
    assert common.mean_std([0.5, 0.7]) == "60.0 ± 14.1"


def test_write_replaces_its_block_and_keeps_the_rest(tmp_path, monkeypatch):
    doc = tmp_path / "EXPERIMENTS.md"
    doc.write_text("# Experiments\n\nintro\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\ntail\n")
    monkeypatch.setattr(common, "DOC", doc)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    common.write("a", ["new table"], {"x": [1.0]})
    common.write("b", ["other"], {})
    text = doc.read_text()
    assert "old" not in text and "<!-- a:start -->\nnew table\n<!-- a:end -->" in text
    assert text.index("tail") < text.index("<!-- b:start -->")
    assert json.loads((tmp_path / "results" / "a.json").read_text()) == {"x": [1.0]}
