"""Every number in a chapter's prose comes from code (issue 27's mechanism).

A run-derived number typed into a chapter's markdown goes stale the day its study is re-run: chapter 8 once
said "3,153 vs 2,169, p = 0.002" about stored results that read 2,600 vs 2,207. So a chapter's markdown may
carry a number only when it is

* glued: written as ``{glue:text}`name:fmt``` and computed by a code cell of the same chapter; or
* declared: listed in the notebook's metadata, ``metadata.marabook.prose_constants``, a short mapping from
  the literal as written (``"0.01"``) to why it is a constant (a setting the chapter chooses, an equation's
  constant, a number quoted from the paper with its section); or
* one of the things that are not data: an integer from 0 to 10 (counts, list positions, the task's answers
  "1" and "2"), a cross-reference (chapter 5, section 5.9, eq. (5.1), Exercise 7.3, Table 1, Algorithm 2),
  digits inside a name (k3, GPT-2, OB100, p90, SmolLM2-135M, 3e-6), or an integer inside inline maths
  (exponents and indices are notation; a decimal inside inline maths, ``$p = 0.036$``, still counts).

Display maths, code spans and code blocks are not prose. The "Exercises" section at a chapter's end is left
out: its numbers are problem data the exercise poses and worked solutions derived from them (the numeric
ones are checked against ``marabook.exercises`` by tests/test_exercises.py), not results of a run.
Declared constants that the prose no longer uses fail too, so the lists stay short and true.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")) + [ROOT / "book" / "intro.ipynb"]  # and the intro

SMALL_INTEGERS = {str(i) for i in range(11)}
_FENCE = re.compile(r"^(`{3,}|:{3,})\s*(\{([\w-]+)\})?.*?$", re.M)
_DISPLAY = re.compile(r"\$\$.*?\$\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)
_ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_HTML = re.compile(r"<[^>\n]+>")
_INLINE_MATH = re.compile(r"(?<![\\$])\$([^$\n]+?)\$")
_HEADING_NUMBER = re.compile(r"^(#+\s*)[\d.]+", re.M)
_REF_WORDS = (r"chapters?|sections?|§|eqs?\.|equations?|exercises?|figures?|figs?\.|tables?|algorithms?|"
              r"appendix|cells?|items?|steps? of algorithm|lines?|issue|definitions?|theorems?|propositions?|lemmas?|"
              r"corollar(?:y|ies)|remarks?")
_NUM = r"\(?\d+(?:\.\d+)*\)?"
_CROSS_REF = re.compile(rf"\b(?:{_REF_WORDS})\s+{_NUM}(?:\s*(?:,|-|–|and|or|to)\s*{_NUM})*", re.I)
_EQ_NUMBER = re.compile(r"\(\d+\.\d+[a-z]?\)")
_NAME = re.compile(r"[A-Za-z_@][\w@]*(?:[-.][\w@]+)*")  # words; digits attached to a letter are part of a name
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")
_DECIMAL = re.compile(r"(?<![\w.])\d*\.\d+(?![\w])")
_PROSE_DIRECTIVES = {"admonition", "note", "tip", "warning", "important", "caution", "dropdown", "hint",
                     "seealso", "attention", "danger", "error", "exercise", "solution", "margin", "sidebar",
                     "epigraph", "topic"}


def _drop_non_prose_blocks(text: str) -> str:
    """Code/maths/include blocks removed; admonitions and other prose directives keep their body (not options)."""
    out, stack = [], []
    for line in text.splitlines():
        m = _FENCE.match(line.strip())
        if m:
            fence = m.group(1)
            if stack and line.strip() == stack[-1][0]:
                stack.pop()
                continue
            prose = m.group(2) is not None and m.group(3) in _PROSE_DIRECTIVES
            stack.append((fence, prose and (not stack or stack[-1][1])))
            continue
        if stack and not stack[-1][1]:
            continue
        if stack and re.match(r"^\s*:[\w-]+:", line):  # a directive's option line
            continue
        out.append(line)
    return "\n".join(out)


def _drop_exercises(text: str) -> str:
    m = re.search(r"^(#+)\s*Exercises\b", text, re.M)
    if not m:
        return text
    level = len(m.group(1))
    end = re.compile(rf"^#{{1,{level}}}\s", re.M).search(text, m.end())
    return text[:m.start()] + (text[end.start():] if end else "")


def prose_numbers(markdown: str) -> list[tuple[str, str]]:
    """``(literal, context)`` for every number in ``markdown`` that must be glued or declared."""
    text = _drop_non_prose_blocks(_drop_exercises(markdown))
    text = _DISPLAY.sub(" ", text)
    text = _ROLE.sub(" ", text)
    text = _CODE.sub(" ", text)
    text = _LINK.sub("]", text)
    text = _URL.sub(" ", text)
    text = _HTML.sub(" ", text)
    text = _HEADING_NUMBER.sub(r"\1", text)
    # inline maths: only its decimals count (integers there are exponents, indices, notation)
    text = _INLINE_MATH.sub(lambda m: " " + " ".join(_DECIMAL.findall(m.group(1))) + " ", text)
    text = _CROSS_REF.sub(" ", text)
    text = _EQ_NUMBER.sub(" ", text)
    text = re.sub(r"(?<![\w.])[x×](?=\d)|(?<=\d)[x×](?![\w])", " ", text)  # x1.34 and 1.34x are ratios
    text = _NAME.sub(lambda m: m.group(0) if not re.search(r"\d", m.group(0)) else " ", text)
    found = []
    for m in _NUMBER.finditer(text):
        literal = m.group(0)
        if literal in SMALL_INTEGERS:
            continue
        lo, hi = max(0, m.start() - 40), m.end() + 40
        found.append((literal, " ".join(text[lo:hi].split())))
    return found


def declared_constants(notebook: dict) -> dict:
    return (notebook.get("metadata", {}).get("marabook", {}) or {}).get("prose_constants", {}) or {}


def undeclared_numbers(notebook: dict) -> tuple[list[str], list[str]]:
    """(numbers the prose carries that are neither glued nor declared, declared constants the prose never uses)."""
    declared = declared_constants(notebook)
    bad, used = [], set()
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for literal, context in prose_numbers("".join(cell["source"])):
            if literal in declared:
                used.add(literal)
            else:
                bad.append(f"cell {i} ({cell.get('id')}): {literal!r} in '...{context}...'")
    return bad, sorted(set(declared) - used)


# ------------------------------------------------------------------------------ the scanner itself
STALE_CH8 = ("With sigma = 128, tau = 0.85 finds 45% more hits (3,153 vs 2,169, p = 0.002) while tau = 0.80 is on "
             "par (2,286, p = 0.25); see Table 8.2 and eq. (8.1).")


def test_scanner_flags_the_stale_chapter_8_sentence():
    """The sentence that went stale in chapter 8 (issue 27, item 1) is caught number by number."""
    literals = [lit for lit, _ in prose_numbers(STALE_CH8)]
    assert literals == ["128", "0.85", "45", "3,153", "2,169", "0.002", "0.80", "2,286", "0.25"]


def test_scanner_accepts_glue_references_names_and_notation():
    text = ("MARA keeps {glue:text}`n_modes:d` modes at $\\beta = 10^{-3}$ (eq. (4.1), section 5.9, chapters 2 "
            "and 3, Exercise 7.3, Table 1) with k3, GPT-2, OB100, p90 and SmolLM2-135M at lr `3e-4`; "
            "1.34x and x1.34 are ratios;\n$$J(\\pi) = 0.5 \\sum_y r(y)$$\n"
            "```{admonition} Exercise 4.2\n:class: dropdown\nTry beta = 0.25.\n```\n"
            "```python\nx = 12.5\n```\n## 5.9 Target versus dynamics\nthe answers 1 and 2")
    literals = [lit for lit, _ in prose_numbers(text)]
    assert literals == ["1.34", "1.34", "0.25"]


def test_scanner_leaves_out_the_exercises_section_only():
    text = "Results: 0.37.\n## Exercises\n**4.1** With beta = 0.25 ...\n## Summary\nAnd 0.42."
    assert [lit for lit, _ in prose_numbers(text)] == ["0.37", "0.42"]


def test_scanner_counts_decimals_inside_inline_maths():
    assert [lit for lit, _ in prose_numbers("the test gives $p = 0.036$ over $n_{12}$ runs")] == ["0.036"]


def test_declared_constants_must_be_used_and_exempt_their_numbers():
    nb = {"metadata": {"marabook": {"prose_constants": {"0.01": "the learning rate", "0.5": "unused"}}},
          "cells": [{"cell_type": "markdown", "id": "a", "source": ["lr 0.01, and 0.37 of mass"]}]}
    bad, unused = undeclared_numbers(nb)
    assert len(bad) == 1 and "'0.37'" in bad[0]
    assert unused == ["0.5"]


# ------------------------------------------------------------------------------ the chapters
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_prose_number_is_glued_or_declared(path):
    nb = json.loads(path.read_text())
    for literal, why in declared_constants(nb).items():
        assert isinstance(why, str) and len(why) >= 10, f"{path.name}: constant {literal!r} needs a reason"
    bad, unused = undeclared_numbers(nb)
    assert not bad, (f"{path.name}: numbers in prose that are neither glued nor declared in "
                     f"metadata.marabook.prose_constants:\n" + "\n".join(bad))
    assert not unused, f"{path.name}: declared constants the prose no longer uses: {unused}"
