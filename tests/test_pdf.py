"""The whole-book PDF (``make pdf``, scripts/build_pdf.py): built offline from the chapters the test suite executed,
it holds every chapter and MathJax reported no error on the page it printed (issue 30)."""

from __future__ import annotations

import re
import shutil
import sys
import unicodedata

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import build_pdf  # noqa: E402

HAVE_BROWSER = bool((shutil.which("chromium") or shutil.which("chromium-browser")) and shutil.which("chromedriver"))


def _flat(text: str) -> str:
    """Whitespace collapsed, ligatures ("ﬀ") and typographic quotes undone, as a PDF's text layer has them."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).replace("\u2019", "'")


def test_chapter_titles_follow_the_table_of_contents():
    titles = build_pdf.chapter_titles(ROOT)
    assert titles[0] == "KL-regularised RL is designed to mode collapse"  # the intro is the root
    assert [t.split(".")[0] for t in titles[1:]] == [str(k) for k in range(1, len(titles))]
    assert len(titles) == 1 + len(sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")))


def test_a_folder_without_the_executed_notebooks_is_refused(tmp_path):
    with pytest.raises(ValueError, match="executed"):
        build_pdf.build_pdf(tmp_path / "nowhere", tmp_path / "book.pdf")
    (tmp_path / "some").mkdir()
    with pytest.raises(ValueError, match="lacks"):
        build_pdf.prepare_source(tmp_path / "some", tmp_path / "src")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_BROWSER, reason="no chromium/chromedriver (make test installs them as root)")
def test_the_pdf_has_every_chapter_and_no_math_error(book_source, executed_chapters, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    pdf = tmp_path / "marabook.pdf"
    report = build_pdf.build_pdf(book_source / "book", pdf, smoke=True, workdir=tmp_path / "work")
    assert report["mathjax"] == "typeset" and pdf.stat().st_size == report["bytes"] > 100_000
    reader = pypdf.PdfReader(str(pdf))
    text = _flat(" ".join(page.extract_text() or "" for page in reader.pages))
    for title in build_pdf.chapter_titles(ROOT):
        assert _flat(title) in text, f"the PDF lacks {title!r}"
    assert "Figure 4.1" in text and "(4.1)" in text  # numbered figures and equations came through
    assert len(reader.pages) > 40

    # the MathJax check is not blind: an equation MathJax cannot parse is reported
    driver = build_pdf.chrome()
    try:
        driver.get((tmp_path / "work" / "out" / "_build" / "singlehtml" / "book" / "intro.html").as_uri())
        driver.execute_async_script(build_pdf.WAIT_FOR_MATH)
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1]; const p = document.createElement('span');"
            "p.className = 'math notranslate nohighlight';"  # as Sphinx marks inline maths for MathJax
            "p.textContent = '\\\\(x^2^3\\\\)'; document.querySelector('article').appendChild(p);"  # a TeX error
            "MathJax.typesetPromise([p]).then(() => done(true)).catch(() => done(false));")
        assert driver.execute_script(build_pdf.PAGE_REPORT)["errors"], "a broken equation went unreported"
    finally:
        driver.quit()
