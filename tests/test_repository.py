"""One repository address, set in one place (_config.yml), and one install ref (pyproject.toml)."""

import importlib.util
import json
import shutil

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("set_repository", ROOT / "scripts" / "set_repository.py")
set_repository = importlib.util.module_from_spec(spec)
spec.loader.exec_module(set_repository)


def test_every_place_agrees_with_the_config():
    assert set_repository.disagreements() == []
    url, ref = set_repository.read_url(), set_repository.read_ref()
    assert url.startswith("https://github.com/") and ref == "v" + __import__("marabook").__version__
    for path in set_repository.chapters():
        first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert f"git+{url}@{ref}" in "".join(first["source"]), path.name


@pytest.fixture
def copy_of_the_book(tmp_path, monkeypatch):
    for name in ("_config.yml", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("_build", "*.png"))
    monkeypatch.setattr(set_repository, "ROOT", tmp_path)
    return tmp_path


def test_a_hand_edited_setup_cell_is_caught(copy_of_the_book):
    path = copy_of_the_book / "book" / "05_rl_language_models.ipynb"
    path.write_text(path.read_text().replace("github.com/marabook/marabook", "github.com/someone/else"))
    assert set_repository.disagreements() == ["book/05_rl_language_models.ipynb"]


def test_setting_a_new_address_rewrites_every_place(copy_of_the_book):
    set_repository.main(["https://github.com/reader/fork", "--ref", "main"])
    assert set_repository.read_url() == "https://github.com/reader/fork" and set_repository.read_ref() == "main"
    assert set_repository.disagreements() == []
    text = "".join((copy_of_the_book / p).read_text() for p in ("README.md", "book/intro.ipynb",
                                                                "book/08_mara_molecules.ipynb"))
    assert "git+https://github.com/reader/fork@main" in text and "git clone https://github.com/reader/fork" in text
    assert "marabook/marabook" not in text


def test_the_intro_bibtex_names_this_version_and_address():
    """How to cite: the software entry's version is the package's and its address the configured one."""
    import re

    import marabook

    import json

    nb = json.loads((set_repository.ROOT / "book" / "intro.ipynb").read_text())
    intro = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    entry = re.search(r"@software\{marabook,[^@]*?\n\}", intro)
    assert entry, "the intro's How to cite has no @software{marabook, ...} entry"
    assert f"version = {{{marabook.__version__}}}" in entry.group(0)
    assert f"url     = {{{set_repository.read_url()}}}" in entry.group(0)
