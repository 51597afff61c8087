"""Fail when the package imports a third-party module that pyproject.toml does not declare.

Usage::

    python scripts/check_deps.py                      # jaxtl/ and launch.py against pyproject.toml
    python scripts/check_deps.py --pyproject P.toml SRC [SRC ...]

A module that only arrives as a dependency of a dependency (``rich`` through flax) works until
that dependency drops it; this makes the omission an error now. Every ``import`` / ``from ...
import`` in every ``.py`` file under the given paths counts, wherever it sits (module level,
inside a function, inside ``try``), except relative imports and those under
``if TYPE_CHECKING:`` (never executed). Its top-level name is then skipped if it is standard
library (``sys.stdlib_module_names``) or local (a module or package beside the pyproject:
``jaxtl`` itself), and otherwise mapped to the installed distributions that provide it with
``importlib.metadata.packages_distributions()``. The import is fine when one of them is named in
``[project] dependencies``. One exception, for optional features: a distribution declared in an
extra of ``[project.optional-dependencies]`` (torch, for ``allow_pickle`` checkpoints) may be
imported *lazily*, inside a function, so that ``import jaxtl`` never needs it; imported at module
or class level it must be a real dependency. Everything else fails: a distribution that is not
declared, or a module that no installed distribution provides. Names are compared normalised
(PEP 503: ``ml_collections`` == ``ml-collections``).

Prints one line per failing import (``file:line: module 'X' (distribution Y) is not declared``)
and exits 1; otherwise prints the imports checked and the distributions they map to, exit 0.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = ("jaxtl", "launch.py")


def normalise(name: str) -> str:
    """PEP 503 project-name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: Sequence[str]) -> set[str]:
    out = set()
    for req in requirements:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if m:
            out.add(normalise(m.group(1)))
    return out


def declared(pyproject: Path) -> tuple[set[str], dict[str, set[str]]]:
    """Normalised distribution names of ``[project] dependencies``, and of each optional extra."""
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    extras = {k: _names(v) for k, v in project.get("optional-dependencies", {}).items()}
    return _names(project.get("dependencies", [])), extras


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[str, int, bool]]:
    """(top-level module name, line, lazy) of every absolute import outside ``if
    TYPE_CHECKING:``; lazy = inside a function body (runs only when the function is called)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((n, lazy) for n in node.orelse)  # the body never runs
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno, lazy
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno, lazy
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((n, inner) for n in ast.iter_child_nodes(node))


def python_files(sources: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)
        elif src.suffix == ".py":
            files.append(src)
        else:
            raise FileNotFoundError(f"not a directory or .py file: {src}")
    return files


def third_party_imports(
    sources: Sequence[Path], root: Path
) -> dict[str, list[tuple[Path, int, bool]]]:
    """{top-level module: [(file, line, lazy), ...]} for imports neither stdlib nor local."""
    local = {p.stem for p in root.glob("*.py")} | {
        p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
    }
    local |= {p.name for p in sources if p.is_dir()}
    found: dict[str, list[tuple[Path, int, bool]]] = {}
    for f in python_files(sources):
        tree = ast.parse(f.read_text(), filename=str(f))
        for name, line, lazy in _imports(tree):
            if name in sys.stdlib_module_names or name in local or name == "__future__":
                continue
            found.setdefault(name, []).append((f, line, lazy))
    return {k: sorted(v) for k, v in found.items()}


def check(sources: Sequence[Path], pyproject: Path) -> tuple[list[str], list[str]]:
    """(problems, ok lines): one problem per undeclared import site, one ok line per module."""
    root = pyproject.resolve().parent
    required, extras = declared(pyproject)
    dists = importlib.metadata.packages_distributions()
    problems, ok = [], []
    for name, sites in sorted(third_party_imports(sources, root).items()):
        providers = sorted(set(dists.get(name, [])))
        good = [d for d in providers if normalise(d) in required]
        if good:
            ok.append(f"{name} ({', '.join(good)})")
            continue
        in_extra = {
            d: sorted(e for e, names in extras.items() if normalise(d) in names) for d in providers
        }
        optional = [f"{d}, extra {'/'.join(e)}" for d, e in in_extra.items() if e]
        eager = [(f, line) for f, line, lazy in sites if not lazy]
        if optional and not eager:
            ok.append(f"{name} ({'; '.join(optional)}; imported lazily)")
            continue
        if optional:
            why = (f"{' / '.join(providers)} is only an optional extra ({'; '.join(optional)}) "
                   "but is imported at module level; import it inside the function that needs "
                   "it, or declare it in [project] dependencies")  # fmt: skip
            bad = eager
        elif providers:
            why = (f"its distribution {' / '.join(providers)} is not declared in "
                   f"{pyproject.name} [project] dependencies")  # fmt: skip
            bad = [(f, line) for f, line, _ in sites]
        else:
            why = "no installed distribution provides it (not declared, not installed?)"
            bad = [(f, line) for f, line, _ in sites]
        for f, line in bad:
            try:
                where = f.resolve().relative_to(root)
            except ValueError:
                where = f
            problems.append(f"{where}:{line}: module {name!r}: {why}")
    return problems, ok


def unimported(sources: Sequence[Path], pyproject: Path) -> list[str]:
    """Declared [project] dependencies that no checked import maps to (a hint, not an error:
    a dependency that nothing imports, as grain was, is a candidate for removal)."""
    required, _ = declared(pyproject)
    dists = importlib.metadata.packages_distributions()
    root = pyproject.resolve().parent
    used = {
        normalise(d) for name in third_party_imports(sources, root) for d in dists.get(name, [])
    }
    return sorted(required - used)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    ap.add_argument("sources", nargs="*", type=Path, help="default: jaxtl/ and launch.py")
    args = ap.parse_args(argv)
    root = args.pyproject.resolve().parent
    sources = args.sources or [root / s for s in DEFAULT_SOURCES]
    problems, ok = check(sources, args.pyproject)
    unused = unimported(sources, args.pyproject)
    shown = ", ".join(str(s.relative_to(root)) if s.is_relative_to(root) else str(s)
                      for s in sources)  # fmt: skip
    if problems:
        print("\n".join(problems))
        print(f"check_deps: {len(problems)} import(s) in {shown} of undeclared distributions")
    else:
        print(f"check_deps: {len(ok)} third-party modules imported by {shown}, all declared: "
              + ", ".join(ok))  # fmt: skip
    if unused:  # information only: some are needed at run time without an import (tokenizers)
        print(f"check_deps: declared but not imported by {shown}: {', '.join(unused)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
