"""Package conventions readers rely on: lazy submodules, named extras, typing marker, metadata, commands."""

import importlib
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT

import marabook
from marabook import _compat


def test_submodules_are_attributes_and_torch_is_not_imported_eagerly():
    out = subprocess.run([sys.executable, "-c", "import marabook, sys; print('torch' in sys.modules); "
                          "print(marabook.rl.Trainer.__name__); print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "Trainer", "True"]
    assert "experiments" in dir(marabook)
    with pytest.raises(AttributeError, match="nothing"):
        marabook.nothing  # noqa: B018


def test_a_missing_dependency_names_the_extra():
    with pytest.raises(ImportError, match=r'pip install "marabook\[chem\]"'):
        _compat.require("marabook.chem", "numpy", "no_such_package_xyz", extra="chem")
    _compat.require("marabook.rl", "numpy", extra="lm")  # present: no error


def test_metadata_typing_marker_and_commands():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["authors"] and meta["urls"]["Source"].startswith("https://") and meta["classifiers"]
    assert any(d.startswith("ipywidgets>=7.6") for d in meta["dependencies"])  # Colab ships 7.7
    assert (ROOT / "marabook" / "py.typed").exists()
    for name, target in meta["scripts"].items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
