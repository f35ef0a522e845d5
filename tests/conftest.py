"""Shared fixtures: one smoke-scale build of the whole book per test session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files():
    """Page paths (without suffix) in reading order, as _toc.yml lists them."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """Build the book once (smoke scale, warnings as errors) and return its html directory.

    ``MARABOOK_BUILT_BOOK=path/to/_build/html`` reuses an existing build instead (for iterating on the
    browser tests; the full suite always builds).
    """
    reuse = os.environ.get("MARABOOK_BUILT_BOOK")
    if reuse:
        return Path(reuse)
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["MARABOOK_SMOKE"] = "1"
    proc = subprocess.run([str(jb), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)],
                          capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return out / "_build" / "html"
