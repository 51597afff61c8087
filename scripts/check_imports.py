"""Fail when modules of a package import each other in a circle.

Usage::

    python scripts/check_imports.py                        # all of jaxtl/
    python scripts/check_imports.py --package jaxtl/data   # one subtree, edges inside it only

Every ``import`` / ``from ... import`` statement in every ``.py`` file under the package is an
edge, wherever it sits: at module level, inside a function, inside ``try``. A lazy import inside a
function only hides a cycle until the function runs, so it counts. Two kinds of statement do not:
imports under ``if TYPE_CHECKING:`` (never executed), and ``importlib.import_module`` calls whose
argument is not a string literal (the target is not known statically; literal ones do count).

Targets are resolved to the most specific module on disk:

- ``import a.b.c`` and ``from a.b.c import X`` are edges to ``a.b.c`` (not to the packages
  ``a`` / ``a.b`` that Python also initialises on the way; otherwise every submodule would form
  a cycle with a package ``__init__`` that re-exports it).
- ``from a.b import c`` is an edge to ``a.b.c`` when that is a module or package, and to the
  package ``a.b`` when ``c`` is a name defined there (a real dependency on its ``__init__``).
- A package's ``__init__.py`` is the package itself. Relative imports are resolved too.

Strongly connected components of the graph (iterative Tarjan) with more than one module are
cycles: each is printed with one closed path through it and the file:line of each import on the
path, and the exit status is 1. Otherwise it prints ``no import cycles in <path>/ (N modules,
M edges)`` and exits 0.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Graph:
    root: Path  # the checked directory
    modules: dict[str, Path]  # module name -> file
    # importer -> imported -> (file, line) of the first import statement making the edge
    edges: dict[str, dict[str, tuple[Path, int]]]

    @property
    def n_edges(self) -> int:
        return sum(len(t) for t in self.edges.values())


def _base_dir(package: Path) -> Path:
    """The sys.path entry that ``package`` is imported from: the folder above its topmost
    enclosing package, so that ``jaxtl/data`` is named ``jaxtl.data``, not ``data``."""
    top = package
    while (top.parent / "__init__.py").is_file():
        top = top.parent
    return top.parent


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, base: Path) -> bool:
    path = base.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") or p == "__pycache__" for p in rel):
            continue
        yield path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every import statement and literal import_module call, skipping TYPE_CHECKING blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the else branch does run
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(node: ast.AST, importer: str, is_package: bool, base: Path) -> Iterator[str]:
    """Names of the modules an import statement depends on (before restricting to the tree)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if isinstance(node, ast.Call):
        yield node.args[0].value  # type: ignore[attr-defined]
        return
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        # Relative: level 1 is the importer's own package (the module itself for an __init__).
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        source = ".".join(package + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        yield sub if alias.name != "*" and _is_module(sub, base) else source


def build_graph(package: Path) -> Graph:
    root = package.resolve()
    base = _base_dir(root)
    modules = {_module_name(p, base): p for p in _python_files(root)}
    edges: dict[str, dict[str, tuple[Path, int]]] = {m: {} for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _import_nodes(tree):
            for target in _targets(node, name, is_package, base):
                # A name that is not a module on disk (a missing or dynamic one): the nearest
                # enclosing module is what actually gets executed.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target not in edges[name]:
                    edges[name][target] = (path, node.lineno)  # type: ignore[attr-defined]
    return Graph(root, modules, edges)


def strongly_connected(edges: dict[str, dict[str, object]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a deep import chain must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def cycle_through(start: str, members: set[str], edges: dict[str, dict[str, object]]) -> list[str]:
    """A shortest closed path start -> ... -> start inside one strongly connected component."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges[node]):
            if child not in members:
                continue
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                return [*reversed(chain), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is in a component but on no cycle")


def cycles(graph: Graph) -> list[tuple[list[str], list[str]]]:
    """(members, one closed path through them) per strongly connected component of more than
    one module. Listing every elementary cycle could be exponential; breaking the path shown and
    rerunning reveals the next one."""
    found = []
    for component in strongly_connected(graph.edges):
        if len(component) > 1:
            found.append((component, cycle_through(component[0], set(component), graph.edges)))
    return found


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--package",
        default=None,
        help="folder to check (default: jaxtl/); only imports between modules inside it count",
    )
    args = parser.parse_args(argv)
    package = Path(args.package) if args.package else REPO / "jaxtl"
    if not package.is_dir() and not package.is_absolute() and (REPO / package).is_dir():
        package = REPO / package  # run from outside the repository
    if not package.is_dir():
        print(f"check_imports: {package} is not a folder", file=sys.stderr)
        return 2
    shown = (args.package or "jaxtl").rstrip("/") + "/"
    try:
        graph = build_graph(package)
    except SyntaxError as e:
        print(f"check_imports: cannot parse {e.filename}:{e.lineno}: {e.msg}", file=sys.stderr)
        return 2
    found = cycles(graph)
    for members, path in found:
        print(f"import cycle among {len(members)} modules: {', '.join(members)}")
        print(f"  for example {' -> '.join(path)}:")
        for importer, imported in zip(path, path[1:]):
            file, line = graph.edges[importer][imported]
            print(f"    {_display(file)}:{line}: {importer} imports {imported}")
    summary = f"{len(graph.modules)} modules, {graph.n_edges} edges"
    if found:
        print(f"{len(found)} import cycle(s) in {shown} ({summary})")
        return 1
    print(f"no import cycles in {shown} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
