"""The whole book as one PDF, offline: ``make pdf`` (issue 30).

    python scripts/build_pdf.py                       # after `make book`: _build/pdf/marabook.pdf
    python scripts/build_pdf.py --executed DIR        # executed notebooks from elsewhere (the tests' smoke run)

How: Sphinx's single-page HTML builder renders every page of the table of contents into one HTML file, from the
notebooks `make book` executed (``_build/jupyter_execute/book``; nothing is run again), and the headless
Chromium the browser test already uses prints it to PDF after MathJax has typeset every equation. The build
refuses to write a PDF when a chapter is missing from the page or when MathJax reports an error, and says which.

LaTeX would be the other road (Jupyter Book's ``pdflatex`` builder), but Debian's TeX Live for it is a large
install and the book's HTML tables and figures are what the browser test checks, so the PDF prints the same
pages the reader sees online.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: JavaScript: resolve once MathJax has typeset the page (or at once when the page has no MathJax)
WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
let waited = 0;
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done('typeset')).catch(e => done('error: ' + e));
  } else if (waited > 60000) { done('no-mathjax'); }
  else { waited += 200; setTimeout(poll, 200); }
})();
"""

#: JavaScript: the page's MathJax errors and the titles of its sections (a chapter is a second-level section of the
#: single page, under the root document's title)
PAGE_REPORT = """
const errs = Array.from(document.querySelectorAll('mjx-merror, .MathJax_Error, mjx-container [data-mjx-error]'))
  .map(e => (e.getAttribute('data-mjx-error') || e.textContent || '').slice(0, 120));
const titles = Array.from(document.querySelectorAll('h1, h2'))
  .map(h => h.textContent.replace(/[#\\u00b6]/g, '').trim());
return {errors: errs, titles: titles, height: document.documentElement.scrollHeight};
"""

#: CSS injected before printing: solutions and hidden code stay as on the page, but nothing is cut off the paper
PRINT_CSS = """
@media print {
  .bd-sidebar-primary, .bd-sidebar-secondary, .bd-header, .bd-footer, .header-article, .prev-next-area,
  .bd-header-article, .search-button, .theme-switch-button { display: none !important; }
  .bd-main .bd-content .bd-article-container { max-width: 100% !important; }
  div.math, .bd-article pre, table { overflow: visible !important; }
  figure, img, table, div.math { break-inside: avoid; }
  h1 { break-before: page; }
}
"""


def chapter_titles(source: Path) -> list[str]:
    """The first-level title of every notebook page the table of contents lists (what the PDF must contain)."""
    import json

    toc = yaml.safe_load((source / "_toc.yml").read_text())
    files = [toc["root"]] + [e["file"] for part in toc.get("parts", []) for e in part["chapters"]]
    titles = []
    for f in files:
        nb = source / (f + ".ipynb")
        if nb.exists():
            first = next(c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown")
            titles.append("".join(first["source"]).lstrip("# ").split("\n", 1)[0].strip())
    return titles


def prepare_source(executed: Path, dest: Path) -> Path:
    """A copy of the book's sources in ``dest`` whose notebooks are the executed ones in ``executed`` and whose
    configuration does not execute them again."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("_toc.yml",):
        shutil.copy2(ROOT / name, dest / name)
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"
    (dest / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copytree(ROOT / "book", dest / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    missing = []
    for nb in sorted((dest / "book").glob("*.ipynb")):
        ran = executed / nb.name
        if not ran.exists():
            missing.append(nb.name)
        else:
            shutil.copy2(ran, nb)
    if missing:
        raise ValueError(f"executed must hold every executed notebook of the book; {executed} lacks {missing} "
                         "(run `make book` first)")
    (dest / "marabook").symlink_to(ROOT / "marabook")  # the chapters' literalinclude of the package's code
    return dest


def build_singlehtml(source: Path, out: Path, smoke: bool = False) -> Path:
    """Sphinx's single-page HTML of the book in ``source`` (already executed); returns the HTML file."""
    jb = Path(sys.executable).parent / "jupyter-book"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if smoke:
        env["MARABOOK_SMOKE"] = "1"
    proc = subprocess.run([str(jb), "build", str(source), "--builder", "singlehtml", "--path-output", str(out)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"the single-page build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    site = out / "_build" / "singlehtml"
    page = site / (yaml.safe_load((source / "_toc.yml").read_text())["root"] + ".html")
    # The root document lives in book/, and the single page links its static files and images relative to
    # the site's root ("_static/...", "_images/..."): give its folder the same names.
    for entry in site.iterdir():
        if entry.is_dir() and entry.name.startswith("_") and not (page.parent / entry.name).exists():
            (page.parent / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
    return page


def chrome(chromium: str | None = None, chromedriver: str | None = None):
    """A headless Chromium driven by Selenium (Debian's chromium and chromedriver, offline)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = chromedriver or shutil.which("chromedriver")
    if not (chromium and chromedriver):
        raise RuntimeError("no chromium/chromedriver: `make browser` installs them (as root, with apt)")
    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    d.set_page_load_timeout(300)
    d.set_script_timeout(300)
    return d


def print_pdf(html: Path, pdf: Path, expected_titles: list[str], driver=None) -> dict:
    """Print ``html`` to ``pdf`` once MathJax has finished; refuse (ValueError) when MathJax reports an error or a
    title of ``expected_titles`` is not on the page. Returns a report: titles found, MathJax status, pages, size."""
    import base64

    own = driver is None
    driver = driver or chrome()
    try:
        driver.get(html.resolve().as_uri())
        for _ in range(600):
            if driver.execute_script("return document.readyState") == "complete":
                break
            time.sleep(0.1)
        status = driver.execute_async_script(WAIT_FOR_MATH)
        driver.execute_script("const s = document.createElement('style'); s.textContent = arguments[0]; "
                              "document.head.appendChild(s);", PRINT_CSS)
        report = driver.execute_script(PAGE_REPORT)
        if str(status).startswith("error"):
            raise ValueError(f"MathJax failed on {html}: {status}")
        if report["errors"]:
            raise ValueError(f"MathJax reports {len(report['errors'])} error(s) on {html}: {report['errors'][:5]}")
        found = " | ".join(report["titles"])
        absent = [t for t in expected_titles if t not in found]
        if absent:
            raise ValueError(f"the single page lacks the chapters {absent}")
        # Chrome's own printToPDF (DevTools protocol): WebDriver's print command gives up on a page this long
        # after ten seconds ("Timed out receiving message from renderer")
        res = driver.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69,  # A4, inches
                                                         "printBackground": True})
        data = base64.b64decode(res["data"])
    finally:
        if own:
            driver.quit()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_suffix(".pdf.part")
    tmp.write_bytes(data)
    os.replace(tmp, pdf)  # a killed build never leaves half a PDF under the final name
    return {"mathjax": status, "titles": report["titles"], "bytes": len(data), "pdf": str(pdf)}


def build_pdf(executed: Path, pdf: Path, smoke: bool = False, workdir: Path | None = None) -> dict:
    """The book's PDF from the executed notebooks in ``executed``: single-page HTML, then Chromium's print."""
    executed = Path(executed)
    if not executed.is_dir():
        raise ValueError(f"executed must be a folder of executed notebooks, got {executed} (run `make book` first)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        source = prepare_source(executed, work / "src")
        html = build_singlehtml(source, work / "out", smoke=smoke)
        return print_pdf(html, Path(pdf), chapter_titles(source))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--executed", default=str(ROOT / "_build" / "jupyter_execute" / "book"),
                    help="folder of the executed notebooks (default: what `make book` left)")
    ap.add_argument("--out", default=str(ROOT / "_build" / "pdf" / "marabook.pdf"))
    args = ap.parse_args(argv)
    t0 = time.time()
    report = build_pdf(Path(args.executed), Path(args.out))
    print(f"wrote {report['pdf']} ({report['bytes'] / 1e6:.1f} MB, {len(report['titles'])} titles, MathJax "
          f"{report['mathjax']}) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
