"""Layers import downward only (DESIGN.md): a module may import marabook modules of lower rank."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "marabook"

# rank of every module; equal rank may not import each other either (keeps siblings independent)
RANK = {
    "_validate": 0, "_compat": 0, "config": 0, "figure_checks": 0, "provenance": 0, "glue": 0, "tables": 0, "checkpoints": 0, "style": 0,
    "plumbing": 1,
    "problems": 1,
    "targets": 2,
    "mara": 3,
    "metrics": 4, "stats": 4,
    "fitting": 5, "estimators": 5,
    "bandit": 6,
    "rl": 7,
    "lm": 8, "chem": 8,
    "integrations": 9,
    "experiments": 10,
    "plotting": 11,
    "widgets": 12,
    "exercises": 13,
}


def marabook_imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "marabook":
            parts = node.module.split(".")
            if len(parts) > 1:
                yield parts[1]
            else:
                yield from (a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "marabook" and len(parts) > 1:
                    yield parts[1]


def test_every_module_has_a_layer():
    modules = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = modules - RANK.keys()
    assert not missing, f"add these modules to RANK in tests/test_layers.py: {sorted(missing)}"


def test_imports_point_downward():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        own = rel.parts[0].removesuffix(".py")
        for dep in marabook_imports(path):
            if dep == own:
                continue
            if RANK.get(dep, 99) >= RANK[own] and not (RANK[own] == 0 and dep in ("_validate",)):
                bad.append(f"{rel} imports marabook.{dep}")
    assert not bad, "upward or sideways imports: " + "; ".join(bad)


def test_the_check_itself_catches_an_upward_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from marabook.widgets import target_explorer\nimport marabook.plotting as p\n")
    assert list(marabook_imports(f)) == ["widgets", "plotting"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _full_imports(path: Path):
    """The marabook modules ``path`` imports, as dotted names (``from pkg import sub`` resolves to ``pkg.sub``),
    with the names imported from each: ``(module, [names])``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "marabook":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                as_file = PKG.parent.joinpath(*sub.split("."))
                if as_file.with_suffix(".py").exists() or (as_file / "__init__.py").exists():
                    yield sub, []
                else:
                    yield node.module, [a.name]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "marabook":
                    yield a.name, []


def test_one_name_one_home_no_forwards_no_private_imports():
    """The first edition's compatibility layer is retired: no module forwards names to a higher layer through a
    module ``__getattr__`` (which hid upward imports from the layer test), and no module imports another
    module's private names (what is shared is public, or lives where it is used)."""
    forwards, private = [], []
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body) \
                and _module_name(path) not in ("marabook", "marabook.experiments"):  # lazy *submodule* imports only
            forwards.append(_module_name(path))
        for module, names in _full_imports(path):
            private += [f"{_module_name(path)} imports {module}.{n}" for n in names if n.startswith("_")
                        and module.split(".")[-1] not in ("_validate", "_compat")]
    assert not forwards, f"module __getattr__ forwards: {forwards}"
    assert not private, "cross-module private imports: " + "; ".join(private)
    import importlib

    for module, name in (("marabook.lm", "run_onetwo"), ("marabook.chem", "run_reinvent_grid"),
                         ("marabook.experiments.onetwo", "run_trl")):
        assert not hasattr(importlib.import_module(module), name), f"{module}.{name} should be gone"


def test_no_import_cycles():
    """No two marabook modules import each other, directly or through others (e.g. experiments.onetwo and
    experiments.onetwo_trl once did, through a compatibility forward)."""
    graph = {}
    for path in PKG.rglob("*.py"):
        me = _module_name(path)
        graph[me] = {m for m, _ in _full_imports(path) if m != me and not me.startswith(m + ".")}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_no_module_is_a_bag_of_pieces():
    """No module over ~500 lines (issue: architecture v2): a module has one seam."""
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 520}
    assert not long, f"split these modules: {long}"
