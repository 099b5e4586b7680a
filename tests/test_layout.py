"""The package's shape stays what ``docs/architecture`` promises: parts in layers, no import cycle.

Every ``import`` in every module counts, those inside functions and ``TYPE_CHECKING`` blocks too.
An import of ``egrc_lite.a.b`` is an edge to that module only: the parent package ``egrc_lite.a``
that Python runs first is not counted, so a package's ``__init__`` may import its own modules
(a registry or a facade) as long as those modules do not import the package back.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "egrc_lite"

# Each part may import parts of a lower layer only (and its own modules).
LAYERS: dict[str, int] = {
    "cli": 8,
    "sweep": 7,
    "train": 6,  # training logs analysis' token statistics every step, so it sits above analysis
    "evaluation": 5, "analysis": 5, "merge": 5,
    "generate": 4,  # generators load models through backends.sources
    "grading": 3, "backends": 3,
    "presets": 2, "data": 2, "runs": 2,
    "config": 1,
    "errors": 0,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(path: Path, modules: set[str]) -> list[tuple[str, int, list[str]]]:
    """``(target module, line, names)`` for every egrc_lite import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, []) for a in node.names if a.name.split(".")[0] == "egrc_lite"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "egrc_lite":
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in modules:
                    out.append((sub, node.lineno, []))
                else:
                    out.append((node.module, node.lineno, [alias.name]))
    return out


def _graph() -> dict[str, dict[str, int]]:
    mods = _modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for mod, path in mods.items():
        for target, line, _ in _imports(path, set(mods)):
            if target != mod and target != "egrc_lite":
                assert target in mods, f"{path}:{line}: imports {target}, which does not exist"
                graph[mod].setdefault(target, line)
    return graph


def _cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle of ``graph`` as a closed path of modules, or ``None``."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _part(module: str) -> str:
    return module.split(".")[1]


def test_no_import_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_cycle_detector_finds_a_cycle():
    assert _cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) is None


def test_parts_import_only_lower_layers():
    graph, bad = _graph(), []
    for mod, targets in graph.items():
        for target, line in targets.items():
            a, b = _part(mod), _part(target)
            assert a in LAYERS and b in LAYERS, f"{mod}: part '{a}' or '{b}' has no layer in this test"
            if a != b and LAYERS[a] <= LAYERS[b]:
                bad.append(f"{mod}:{line} imports {target}")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_no_module_imports_a_private_name_of_another():
    mods, bad = _modules(), []
    for mod, path in mods.items():
        for target, line, names in _imports(path, set(mods)):
            bad += [f"{mod}:{line} imports {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_top_level_explains_the_system():
    entries = sorted(p.name for p in PKG.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 15, entries
    for pkg in (p for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"):
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May import:" in doc, f"{pkg.name}/__init__.py: say what it owns and what it may import"


def test_every_part_has_a_layer():
    assert {_part(m) for m in _modules() if m != "egrc_lite"} == set(LAYERS)
