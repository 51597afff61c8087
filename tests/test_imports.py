"""scripts/check_imports.py: jaxtl/data imports one way, and the checker does catch a cycle."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_imports.py"

_spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
check_imports = importlib.util.module_from_spec(_spec)
sys.modules["check_imports"] = check_imports  # dataclasses look their module up there
_spec.loader.exec_module(check_imports)


def write_package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_jaxtl_data_has_no_cycle():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--package", "jaxtl/data"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("no import cycles in jaxtl/data/ (")


def test_jaxtl_data_layers():
    # The rule that keeps new readers from re-creating the cycle: tasks imports nothing in
    # jaxtl.data, io only tasks, each reader only tasks and io; only the catalogue sees them all.
    edges = check_imports.build_graph(REPO / "jaxtl" / "data").edges
    assert edges["jaxtl.data.tasks"] == {}
    assert set(edges["jaxtl.data.io"]) == {"jaxtl.data.tasks"}
    readers = ["builtin", "glue", "files", "conll", "text", "tfds_source"]
    for reader in readers:
        assert set(edges[f"jaxtl.data.{reader}"]) <= {"jaxtl.data.tasks", "jaxtl.data.io"}, reader
    assert {f"jaxtl.data.{r}" for r in readers} <= set(edges["jaxtl.data.catalogue"])


@pytest.mark.parametrize("where", ["module", "function"])
def test_cycle_is_reported(tmp_path, capsys, where):
    # a -> b at module level; b -> a at module level or lazily inside a function (still an edge).
    back = "from pkg.a import X\n" if where == "module" else "def f():\n    from pkg import a\n"
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import Y\nX = 1\n",
            "pkg/b.py": "Y = 2\n" + back,
            "pkg/c.py": "import pkg.a\n",
        },
    )
    assert check_imports.main(["--package", str(package)]) == 1
    out = capsys.readouterr().out
    assert "import cycle among 2 modules: pkg.a, pkg.b" in out
    assert "pkg.a -> pkg.b -> pkg.a" in out
    line = 2 if where == "module" else 3
    assert f"{package / 'b.py'}:{line}: pkg.b imports pkg.a" in out
    assert "1 import cycle(s)" in out


def test_reexports_and_names(tmp_path):
    # __init__ re-exports submodules that import siblings: no cycle. A submodule importing a
    # *name* from the package depends on the __init__, which imports it: a cycle.
    package = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.top import get\nfrom pkg.base import Base\n",
            "pkg/base.py": "import typing\nBase = object\n",
            "pkg/top.py": "from pkg.base import Base\nfrom . import leaf\nget = leaf\n",
            "pkg/leaf.py": (
                "from typing import TYPE_CHECKING\nfrom .base import Base\n"
                "if TYPE_CHECKING:\n    from pkg.top import get\n"
            ),
        },
    )
    graph = check_imports.build_graph(package)
    assert set(graph.edges["pkg"]) == {"pkg.top", "pkg.base"}
    assert set(graph.edges["pkg.top"]) == {"pkg.base", "pkg.leaf"}  # `from . import leaf`
    assert set(graph.edges["pkg.leaf"]) == {"pkg.base"}  # TYPE_CHECKING never runs
    assert check_imports.cycles(graph) == []

    (package / "leaf.py").write_text("from pkg import Base\n")  # a name: edge to the package
    found = check_imports.cycles(check_imports.build_graph(package))
    assert [members for members, _ in found] == [["pkg", "pkg.leaf", "pkg.top"]]
