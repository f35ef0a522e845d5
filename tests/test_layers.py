"""Layers import downward only (DESIGN.md): a module may import marabook modules of lower rank."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "marabook"

# rank of every module; equal rank may not import each other either (keeps siblings independent)
RANK = {
    "_validate": 0, "_compat": 0, "config": 0, "provenance": 0, "glue": 0, "tables": 0,
    "plumbing": 1,
    "problems": 1,
    "targets": 2,
    "mara": 3,
    "metrics": 4,
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


def test_moved_names_still_resolve_from_their_first_home():
    """lm and chem keep the first edition's experiment names importable through a lazy forward to
    marabook.experiments (PEP 562 __getattr__, never a module-level import: see test_imports_point_downward)."""
    import importlib

    for pkg in ("lm", "chem", "chem.reinvent"):
        mod = importlib.import_module(f"marabook.{pkg}")
        for name, target in mod.MOVED.items():
            exp = importlib.import_module(f"marabook.experiments.{target}")
            assert getattr(mod, name) is getattr(exp, name), f"marabook.{pkg}.{name}"


def test_no_module_is_a_bag_of_pieces():
    """No module over ~500 lines (issue: architecture v2): a module has one seam."""
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 520}
    assert not long, f"split these modules: {long}"
