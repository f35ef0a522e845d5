"""Page <-> code: every equation and chapter a docstring cites exists in the book.

Functions that implement an equation say so in their docstring ("eq. (4.1)", "eq. 5.3", "chapter 7");
this test reads every docstring of the package and checks each citation against the chapters'
``\\tag{N.M}`` labels and the chapter files, so a renumbered equation cannot leave a stale back-link.
"""

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "marabook"
EQ = re.compile(r"\beqs?\.\s*\(?(\d+)\.(\d+)\)?(?:\s*(?:-|and|,)\s*\(?(?:(\d+)\.)?(\d+)\)?)?", re.I)
CHAPTER = re.compile(r"\bchapters?\s+(\d+)(?:\s*-\s*(\d+))?", re.I)


def chapter_files() -> dict:
    return {int(p.name[:2]): p for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb")}


def tags() -> set:
    out = set()
    for n, p in chapter_files().items():
        text = "".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
        out |= {(int(a), int(b)) for a, b in re.findall(r"\\tag\{(\d+)\.(\d+)\}", text)}
    return out


def docstrings():
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield f"{path.relative_to(ROOT)}:{getattr(node, 'name', '<module>')}", doc


def citations(doc: str):
    for m in EQ.finditer(doc):
        ch, first, ch2, last = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        yield ("eq", ch, first)
        if last is not None:  # "eqs. 5.2-5.4" or "eqs. 1.3 and 2.5"
            ch_end = int(ch2) if ch2 else ch
            if ch_end == ch:
                for k in range(first + 1, int(last) + 1):
                    yield ("eq", ch, k)
            else:
                yield ("eq", ch_end, int(last))
    for m in CHAPTER.finditer(doc):
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        for n in range(lo, hi + 1):
            yield ("chapter", n, None)


def test_every_cited_equation_and_chapter_exists():
    known_eqs, chapters = tags(), chapter_files()
    missing, cited = [], 0
    for where, doc in docstrings():
        for kind, a, b in citations(doc):
            cited += 1
            if kind == "eq" and (a, b) not in known_eqs:
                missing.append(f"{where}: eq. ({a}.{b})")
            if kind == "chapter" and a not in chapters:
                missing.append(f"{where}: chapter {a}")
    assert cited > 50, "the scan found almost no citations: is the pattern still right?"
    assert not missing, "back-links to nothing:\n" + "\n".join(sorted(set(missing)))


def test_the_scan_reads_citations():
    assert list(citations("Gibbs target (eq. 1.3); see eqs. 5.2-5.4 and chapters 7-8")) == [
        ("eq", 1, 3), ("eq", 5, 2), ("eq", 5, 3), ("eq", 5, 4), ("chapter", 7, None), ("chapter", 8, None)]
