"""scripts/check_deps.py: jaxtl imports only what pyproject.toml declares, and the check fails,
naming file, line, module and distribution, on a package that imports an undeclared one."""

import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_deps.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_jaxtl_imports_only_declared_distributions():
    p = _run()
    assert p.returncode == 0, p.stdout + p.stderr
    # rich (the results tables) arrives through flax too, but is declared in its own right
    assert "all declared" in p.stdout and "rich (rich)" in p.stdout


def test_undeclared_import_fails_naming_file_line_module_and_distribution(tmp_path):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "demo"
        dependencies = ["numpy>=2", "absl-py"]
        [project.optional-dependencies]
        test = ["torch==2.13.0", "pytest"]
    """))  # fmt: skip
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from demo import core\n")
    (pkg / "core.py").write_text(textwrap.dedent("""
        import os
        from typing import TYPE_CHECKING

        import numpy as np
        from absl import logging

        from . import helpers
        from demo import helpers as h2
        import rich.table

        if TYPE_CHECKING:
            import sklearn  # never runs: not a dependency

        import pytest


        def load():
            import torch  # lazy, and declared in an extra: an optional feature
            import no_such_module_anywhere

            return torch, no_such_module_anywhere
    """))  # fmt: skip
    (pkg / "helpers.py").write_text("")
    p = _run("--pyproject", tmp_path / "pyproject.toml", pkg)
    assert p.returncode == 1, p.stdout + p.stderr
    problems = [line for line in p.stdout.splitlines() if ": module " in line]
    assert sorted(problems) == [
        "demo/core.py:10: module 'rich': its distribution rich is not declared in pyproject.toml "
        "[project] dependencies",
        "demo/core.py:15: module 'pytest': pytest is only an optional extra (pytest, extra test) "
        "but is imported at module level; import it inside the function that needs it, or declare "
        "it in [project] dependencies",
        "demo/core.py:20: module 'no_such_module_anywhere': no installed distribution provides it "
        "(not declared, not installed?)",
    ]
    for fine in ("'numpy'", "'absl'", "'os'", "'torch'", "'sklearn'", "'demo'", "'helpers'"):
        assert fine not in p.stdout, fine
    assert "3 import(s)" in p.stdout
