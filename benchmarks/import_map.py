"""The core's import map: which module imports which at load time, its floors, its cycles and its largest modules.

    python benchmarks/import_map.py [--imports all]

A module's imports at load time are its top-level `import` statements, not those under `if TYPE_CHECKING:` nor
those inside functions (those run later, when called). `--imports all` counts every import wherever it is written.
A module's floor is 0 when it imports no other core module, else one more than the highest floor it imports; the
modules of a cycle share a floor. Issue 31 asks for no cycles and modules of at most about 400 lines.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mergekit_evo"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, everywhere: bool) -> set[str]:
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
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mergekit_evo"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mergekit_evo")}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imports", choices=["load", "all"], default="load")
    args = parser.parse_args()
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    # `from mergekit_evo import Name` reaches the public API's lazy loader, not a module: left out of the map
    graph = {
        m: {i for i in imports_of(p, args.imports == "all") if i in files and i not in (m, "mergekit_evo")}
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
    print("largest: " + ", ".join(f"{m} {n}" for n, m in sizes[:6]))


if __name__ == "__main__":
    main()
