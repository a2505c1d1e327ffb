"""The core's import map: which module imports which at load time, its floors, its cycles and its largest modules.

    python benchmarks/import_map.py [--imports all]

A module's imports at load time are its top-level `import` statements, not those under `if TYPE_CHECKING:` nor
those inside functions (those run later, when called). `--imports all` counts every import wherever it is written.
A module's floor is 0 when it imports no other core module, else one more than the highest floor it imports; the
modules of a cycle share a floor. Issue 31 asks for no cycles and modules of at most about 400 lines.

The packages stand in LAYERS' order: a module may import its own layer and those listed before it, never one listed
after ("an import running back up"). `--check` exits 1 when there is a cycle, such an import, a module over
MAX_MODULE_LINES or a function over 80 lines (tests/test_layout.py runs it); `--root` maps another package folder
laid out the same way.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mergekit_evo"

MAX_MODULE_LINES = 450  # "no core module over about 400 lines" (issue 31), with room for a docstring to grow

# The core's packages and top-level modules, lowest first. `mergekit_evo` itself (the public API, which loads its
# names lazily) is outside the order.
LAYERS = [
    "plugin",  # hookspecs, the manager, errors
    "threads",
    "model_files",
    "mergekit_api",
    "config",
    "store",
    "rank",
    "merge",
    "space",
    "scoring",
    "estimate",
    "views",
    "run",
    "demo",
    "cli",
    "testing",  # the public test kit drives the CLI in-process
    "__main__",
]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, everywhere: bool, top: str = "mergekit_evo") -> set[str]:
    tree = ast.parse(path.read_text())
    nodes: list[ast.AST] = []
    if everywhere:  # every import a run may execute: all but those for type checkers
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        nodes = [n for n in ast.walk(tree) if id(n) not in typing_only]
    else:
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            nodes += list(ast.walk(node)) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [node]
            if isinstance(node, ast.ClassDef):  # class bodies run at import; their methods do not
                nodes += [n for b in node.body if not isinstance(b, ast.FunctionDef) for n in ast.walk(b)]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == top:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == top}
    return found


def layer(module: str) -> int | None:
    """The module's place in LAYERS (by its first name under the root); None for the root and unlisted names."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where the imported module stands in a later layer, or in no layer at all."""
    found = []
    for m, deps in graph.items():
        if m.count(".") == 0:
            continue
        for d in deps:
            mine, theirs = layer(m), layer(d)
            if mine is None or theirs is None or theirs > mine:
                found.append((m, d))
    return sorted(found)


def long_functions(path: Path, limit: int = 80) -> list[tuple[int, str]]:
    """(lines, name) of each function or method longer than `limit` lines, decorators excluded."""
    tree = ast.parse(path.read_text())
    return sorted(
        (
            (n.end_lineno or n.lineno) - n.lineno + 1,
            n.name,
        )
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and (n.end_lineno or n.lineno) - n.lineno + 1 > limit
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imports", choices=["load", "all"], default="load")
    parser.add_argument("--root", type=Path, default=ROOT, help="the package folder to map")
    parser.add_argument("--check", action="store_true", help="exit 1 on a cycle or an import running back up")
    args = parser.parse_args()
    root = args.root.resolve()
    top = root.name
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    # `from mergekit_evo import Name` reaches the public API's lazy loader, not a module: left out of the map
    graph = {
        m: {i for i in imports_of(p, args.imports == "all", top) if i in files and i not in (m, top)}
        for m, p in files.items()
    }
    # strongly connected components (Tarjan), then floors over the condensed graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    of = {m: n for n, c in enumerate(components) for m in c}
    floor: dict[int, int] = {}
    for n, component in enumerate(components):  # Tarjan yields components callees first
        below = {of[w] for v in component for w in graph[v] if of[w] != n}
        floor[n] = 1 + max((floor[b] for b in below), default=-1)
    cycles = [sorted(c) for c in components if len(c) > 1]
    sizes = sorted(((len(p.read_text().splitlines()), m) for m, p in files.items()), reverse=True)
    print(
        f"{len(files)} modules, {1 + max(floor.values())} floors, {len(cycles)} import cycles ({args.imports} imports)"
    )
    for cycle in cycles:
        print("  cycle: " + " -> ".join(cycle))
    upward = upward_imports(graph)
    print(f"{len(upward)} imports running back up (layers: {' < '.join(LAYERS)})")
    for importer, imported in upward:
        print(f"  up: {importer} -> {imported}")
    print("largest: " + ", ".join(f"{m} {n}" for n, m in sizes[:6]))
    big = [(n, m) for n, m in sizes if n > MAX_MODULE_LINES]
    print(f"{len(big)} modules over {MAX_MODULE_LINES} lines" + "".join(f"\n  {m} {n}" for n, m in big))
    long = sorted(((n, f"{m}.{f}") for m, p in files.items() for n, f in long_functions(p)), reverse=True)
    print(f"{len(long)} functions over 80 lines" + "".join(f"\n  {name} {n}" for n, name in long))
    if args.check and (cycles or upward or big or long):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
