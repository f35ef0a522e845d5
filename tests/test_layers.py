"""Layers import downward only (DESIGN.md): a module may import marabook modules of lower rank."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "marabook"

# rank of every module; equal rank may not import each other either (keeps siblings independent)
RANK = {
    "_validate": 0, "config": 0, "provenance": 0, "glue": 0, "plumbing": 0,
    "problems": 1,
    "targets": 2,
    "mara": 3,
    "metrics": 4,
    "fitting": 5, "estimators": 5,
    "bandit": 6,
    "rl": 7,
    "lm": 8, "chem": 8,
    "plotting": 9,
    "widgets": 10,
    "exercises": 11,
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
