"""A jaxtl process never runs torch, so nothing on a run's path may import it: where torch is
installed (the test extra installs it) an import costs about a second and ~180 MiB per process.
The two places that did: ``AutoTokenizer`` (via transformers' model-config machinery) and
tensorboardX's writer module."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from conftest import minilm_dir

REPO = pathlib.Path(__file__).resolve().parents[1]


def _torch_imported(code: str) -> bool:
    p = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('torch' in sys.modules)"],
                       capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout.strip().splitlines()[-1] == "True"


def test_torch_is_installed_here_so_the_checks_below_can_fail():
    pytest.importorskip("torch")
    assert _torch_imported("import torch")


def test_loading_a_tokenizer_does_not_import_torch():
    pytest.importorskip("torch")
    assert not _torch_imported(
        "import pathlib\nfrom jaxtl.models import hf\n"
        f"tok = hf.load_tokenizer(pathlib.Path({str(minilm_dir())!r}))\n"
        "assert tok is not None and tok.is_fast"
    )


def test_metrics_log_writes_tensorboard_events_without_importing_torch(tmp_path):
    pytest.importorskip("torch")
    assert not _torch_imported(
        "import pathlib\nfrom jaxtl import report\n"
        f"log = report.MetricsLog({str(tmp_path)!r})\n"
        "log.write(1, 'train', 'sst2', {'loss': 0.5})\nlog.close()"
    )
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
