"""Shared fixtures: every chapter executed once per test session, and one book build from those outputs.

Each chapter runs exactly once (smoke scale) in ``executed_chapters``; the notebook tests read its
outputs, and ``built_book`` builds the book from the same executed notebooks with Jupyter Book's own
execution switched off. Both checks see the same run: a chapter that errors fails its notebook test,
and the book build still checks the pages (warnings as errors, every figure, link and equation).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml
from hypothesis import settings
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
# OWNER/NAME of the book's repository, from its one home (_config.yml's repository.url)
REPO = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].split("github.com/")[1].strip("/")
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))

# Property tests draw the same examples on every machine (same seed, same numbers): a failure in CI is then a
# failure on every rerun, never a draw of luck. HYPOTHESIS_PROFILE=explore draws fresh examples each run
# (and many more of them), which is how the tolerances of the property tests were checked.
settings.register_profile("marabook", derandomize=True, database=None)
settings.register_profile("explore", max_examples=2000, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "marabook"))

# appended to every chapter while it runs: the kernel itself must be at smoke scale
SMOKE_CHECK = ("import marabook.config, marabook.figure_checks\nassert marabook.config.scale() == 'smoke'\n"
               "assert not marabook.figure_checks.RECORDED, 'text overlaps in figures: ' + repr(marabook.figure_checks.RECORDED)\n"
               "print('SMOKE-CHECK-OK')")


def toc_files():
    """Page paths (without suffix) in reading order, as _toc.yml lists them."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part["chapters"])
    return files


@dataclass
class ExecutedChapter:
    notebook: nbformat.NotebookNode   # executed, with the smoke check cell still at the end
    error: str | None                 # the cell error that stopped it, if any
    seconds: float


def copy_book_source(dest: Path) -> Path:
    """The book's sources (config, toc, book/) copied to ``dest``, and a link to the package whose code
    the chapters include; the package itself is imported as installed."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "book", dest / "book",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (dest / "marabook").symlink_to(ROOT / "marabook")  # the chapters' literalinclude of the package's code
    return dest


def execute_chapter(path: Path) -> ExecutedChapter:
    """Run one chapter top to bottom in smoke mode with the chapter's folder as working directory."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(SMOKE_CHECK))
    t0, error = time.time(), None
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as e:  # the notebook keeps the outputs up to the failing cell
        error = str(e)
    return ExecutedChapter(nb, error, time.time() - t0)


@pytest.fixture(scope="session")
def book_source(tmp_path_factory):
    return copy_book_source(tmp_path_factory.mktemp("book-src"))


@pytest.fixture(scope="session")
def executed_chapters(book_source):
    """Every chapter executed once, in the copied book folder; executed notebooks written back there."""
    saved = {k: os.environ.get(k) for k in ("MARABOOK_SMOKE", "MPLBACKEND", "TQDM_DISABLE",
                                            "HF_HUB_DISABLE_PROGRESS_BARS", "MARABOOK_CHECK_FIGURES")}
    os.environ["MARABOOK_SMOKE"] = "1"
    os.environ["MARABOOK_CHECK_FIGURES"] = "1"  # every figure a chapter draws is checked for overlapping text
    os.environ["TQDM_DISABLE"] = os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # as `make book` does
    os.environ.pop("MPLBACKEND", None)  # let the kernel use its inline backend
    try:
        out = {}
        for path in CHAPTERS:
            copy = book_source / "book" / path.name
            ran = execute_chapter(copy)
            out[path.name] = ran
            page = nbformat.from_dict(ran.notebook)
            page.cells = page.cells[:-1]  # the page shows the chapter, not the test's check cell
            nbformat.write(page, copy)
        return out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def built_book(tmp_path_factory, book_source, request):
    """Build the book once from the executed chapters (warnings as errors); return its html directory.

    ``MARABOOK_BUILT_BOOK=path/to/_build/html`` reuses an existing build instead (for iterating on the
    browser tests; the full suite always builds).
    """
    reuse = os.environ.get("MARABOOK_BUILT_BOOK")
    if reuse:
        return Path(reuse)
    request.getfixturevalue("executed_chapters")  # the chapters run once, before the build reads them
    cfg_path = book_source / "_config.yml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["execute"]["execute_notebooks"] = "off"  # the chapters already ran, once, in executed_chapters
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["MARABOOK_SMOKE"] = "1"
    proc = subprocess.run([str(jb), "build", str(book_source), "-W", "-n", "--keep-going", "--path-output", str(out)],
                          capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return out / "_build" / "html"


# ------------------------------------------------------------------ a tiny chat model for the chat tasks' tests
@pytest.fixture(scope="module")
def tiny():
    """The book's toy reference LM and its tokenizer (one copy per test module, as each module had before)."""
    from marabook import lm

    return lm.load_reference_lm(device="cpu")


@pytest.fixture(scope="module")
def chat_tok(tiny):
    """The toy LM's tokenizer with a ChatML-like chat template, for the chat tasks' tests."""
    _, tok = tiny

    class ChatTok:  # the tiny LM's tokenizer with a ChatML-like template
        chat_template = "chatml"
        eos_token_id = tok.eos_token_id
        pad_token_id = tok.pad_token_id
        padding_side = "left"

        def __call__(self, text, add_special_tokens=False, **kw):
            return tok(text, add_special_tokens=add_special_tokens, **kw)

        def __len__(self):
            return len(tok)

        def decode(self, *a, **kw):
            return tok.decode(*a, **kw)

        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
            return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"

    return ChatTok()
