"""The built book in a real browser (Debian's chromium, driven by Selenium; issue: reader's experience).

Serves the smoke-scale build on localhost and, for every page in _toc.yml: loads it, checks that the
book's own assets raise no console errors, that every image loads, that every internal link resolves,
that chapters show code outputs and Colab/Binder buttons pointing at their .ipynb, that the
previous/next navigation follows the table of contents, and saves full-page screenshots at 1280 px and at
390 px (a phone) to _build/screenshots/.

What a reader sees is checked too, on every page at 1280 px: nothing is wider than the content column (no
sideways scrolling in code, outputs or tables); at 1280 px and at 390 px every display equation is fully
visible or scrolls inside its own box with every symbol reachable, shows at most one number, and the page
itself never scrolls sideways; only a page with widgets loads the widgets' JavaScript; every chapter figure
sits in a numbered, captioned figure ("Figure 4.2: ..."). Code and printed text wrap (book/_static/
marabook.css): a wrapped sentence still reads, a wrapped table does not, so a printed line with aligned
columns (three or more runs of two spaces) that is wider than the column fails, as a wide `print` table would;
every figure spans at least 80% of the column and its smallest type (marabook.plotting.MIN_FONT_PT, at
the PNG's resolution and the shrink the browser applied) renders at 9 CSS px or more, and every image has
alt text that says what it shows (not a file name). Search is checked once, and a chapter opened from disk (file://) must typeset
its equations: MathJax is served from the book itself (sphinx-mathjax-offline), so the test machine
needs no network.

`make test` installs chromium and chromedriver with apt when they are missing (as root); where no
browser can be installed the tests skip with that message.
"""

import http.server
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
from conftest import REPO, ROOT, toc_files

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = ROOT / "_build" / "screenshots"
PAGES = toc_files()


def _is_chapter(page: str) -> bool:
    return page.split("/")[-1][:2].isdigit()


@pytest.fixture(scope="session")
def site(built_book):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(built_book))

    class Quiet(handler.func):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(built_book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session")
def driver():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no chromium/chromedriver on this machine (make test installs them with apt when run as root)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def _load(driver, url):
    driver.get(url)
    for _ in range(100):
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    time.sleep(0.3)  # let deferred scripts run


_checked_urls: dict = {}


def _status(url: str) -> int:
    if url not in _checked_urls:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                _checked_urls[url] = r.status
        except urllib.error.HTTPError as e:
            _checked_urls[url] = e.code
    return _checked_urls[url]


@pytest.mark.parametrize("page", PAGES)
def test_page_in_browser(page, site, driver, built_book):
    driver.set_window_size(1280, 900)  # whatever width an earlier page's failed check left the window at
    url = urljoin(site, page + ".html")
    driver.get_log("browser")  # drop messages from earlier pages
    _load(driver, url)
    assert "404" not in driver.title

    # console errors caused by the book's own files (external CDNs are out of reach offline)
    own = urlparse(site).netloc
    errors = [e["message"] for e in driver.get_log("browser")
              if e["level"] == "SEVERE" and (own in e["message"] or "http" not in e["message"])]
    assert not errors, f"{page}: console errors: {errors}"

    # every image loaded
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => i.src && !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)")
    assert not broken, f"{page}: broken images {broken}"

    # every internal link resolves (files over HTTP, fragments to an element on the target page)
    hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    for href in hrefs:
        if urlparse(href).netloc != own:
            continue
        target, frag = urldefrag(href)
        assert _status(target) == 200, f"{page}: link to {href} is broken"
        if frag and target == url:
            found = driver.execute_script("return document.getElementById(arguments[0]) !== null", frag)
            assert found, f"{page}: link to #{frag} has no target"

    # previous / next follow the table of contents
    i = PAGES.index(page)
    nxt = driver.execute_script("const a = document.querySelector('a.right-next'); return a ? a.href : null")
    prv = driver.execute_script("const a = document.querySelector('a.left-prev'); return a ? a.href : null")
    if i + 1 < len(PAGES):
        assert nxt == urljoin(site, PAGES[i + 1] + ".html"), f"{page}: next link {nxt}"
    if i > 0:
        assert prv == urljoin(site, PAGES[i - 1] + ".html"), f"{page}: previous link {prv}"

    _assert_math_rendered(driver, page)

    # no plumbing on the page: Python reprs of plotting objects or raw arrays in a cell's output
    noise = driver.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output')).map(e => e.innerText)"
        ".filter(t => /<matplotlib\\.|<Figure size|array\\(\\[/.test(t)).map(t => t.slice(0, 80))")
    assert not noise, f"{page}: repr noise in outputs: {noise}"
    if i == 0:  # the book's first page shows its result on the first screen (a 1280 x 900 window)
        top = driver.execute_script("const i = document.querySelector('article.bd-article .cell_output img');"
                                    "return i ? i.getBoundingClientRect().top + window.scrollY : null")
        assert top is not None and top < 900, f"{page}: the headline figure starts at {top}px, below the first screen"

    # one search box a reader can see (the theme's header button; the sidebar field is configured away)
    n_search = driver.execute_script(
        "return Array.from(document.querySelectorAll('.search-button__button, .bd-search input'))"
        ".filter(e => e.offsetParent !== null).length")
    assert n_search == 1, f"{page}: {n_search} visible search boxes"

    # results, not progress bars: no embedded tqdm / "Loading weights" widgets (the build disables them)
    assert "ProgressModel" not in driver.page_source, f"{page}: a progress-bar widget is embedded"

    if _is_chapter(page):
        n_out = driver.execute_script("return document.querySelectorAll('.cell_output').length")
        n_img = driver.execute_script("return document.querySelectorAll('.cell_output img').length")
        assert n_out >= 3 and n_img >= 1, f"{page}: {n_out} code outputs, {n_img} output images"
        _assert_solutions_hidden_until_clicked(driver, page)
        chapter = int(page.split("/")[-1][:2])
        figures = driver.execute_script(FIGURE_CAPTIONS)
        uncaptioned = [f["alt"][:50] for f in figures
                       if not (f["caption"] and f["caption"].startswith(f"Figure {chapter}."))]
        assert not uncaptioned, f"{page}: figures without a 'Figure {chapter}.k' caption: {uncaptioned}"
        links = " ".join(hrefs)
        assert f"colab.research.google.com/github/{REPO}/blob/main/{page}.ipynb" in links
        assert "mybinder.org" not in links  # no Binder button: it could not run chapters 5-8

    wide = driver.execute_script(WIDER_THAN_COLUMN)
    assert not wide, f"{page}: {len(wide)} element(s) wider than the content column: {wide[:5]}"
    broken = driver.execute_script(BROKEN_NUMBERS)
    assert not broken, f"{page}: table cells that break inside a number or after a '±': {broken[:5]}"
    _assert_figures_readable(driver, page, built_book)
    n_widget_js = driver.execute_script(WIDGET_SCRIPTS)
    has_widgets = driver.execute_script("return document.querySelectorAll('.jupyter-widgets, script[type*=widget-view]').length")
    assert has_widgets or n_widget_js == 0, f"{page}: loads {n_widget_js} widget script(s) and has no widget"

    # equations and the page at desktop and phone width
    for width in (1280, 390):
        driver.set_window_size(width, 900)
        time.sleep(0.3)
        math = driver.execute_script(DISPLAY_MATH)
        assert not math, f"{page} at {width}px: {math[:5]}"
        sideways = driver.execute_script(PAGE_SCROLLS_SIDEWAYS)
        assert not sideways, f"{page} at {width}px: the page is {sideways}px wide and scrolls sideways"
        broken = driver.execute_script(BROKEN_NUMBERS)
        assert not broken, f"{page} at {width}px: table cells that break inside a number: {broken[:5]}"

    # full-page screenshots at desktop and phone width, kept as test artifacts
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, suffix in ((1280, ""), (390, "__390px")):
        driver.set_window_size(width, 900)
        time.sleep(0.3)
        height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 16000)")
        driver.set_window_size(width, max(900, int(height)))
        shot = SCREENSHOTS / (page.replace("/", "__") + suffix + ".png")
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    driver.set_window_size(1280, 900)


# Elements of the article wider than its content column at this window size: anything whose box sticks out
# on the right, and any scroll container (code, output, table wrapper) whose content is wider than its box.
# MathJax's hidden assistive MathML (clipped, never seen) is left out; equations are judged by their
# rendered mjx-math box against the column instead (their scrollWidth counts the hidden copy).
WIDER_THAN_COLUMN = """
const art = document.querySelector('article.bd-article');
const cs = getComputedStyle(art);
const left = art.getBoundingClientRect().left + parseFloat(cs.paddingLeft);
const right = art.getBoundingClientRect().right - parseFloat(cs.paddingRight);
const out = [];
const describe = (e, w) => e.tagName.toLowerCase() + (e.className && e.className.toString ? '.' +
  e.className.toString().split(' ')[0] : '') + ' ' + Math.round(w) + 'px: ' +
  (e.textContent || e.getAttribute('alt') || '').trim().slice(0, 60);
for (const e of art.querySelectorAll('*')) {
  if (e.closest('mjx-assistive-mml') || e.closest('.toggle-hidden, details:not([open])')) continue;
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if (e.closest('div.math')) continue;  // display maths: DISPLAY_MATH (it may scroll inside its own box)
  if (e.matches('span.math, mjx-container')) {
    const m = e.querySelector('mjx-math');
    if (m && m.getBoundingClientRect().right > right + 1) out.push(describe(e, m.getBoundingClientRect().width));
    continue;
  }
  if (e.closest('mjx-container')) continue;
  if (r.right > right + 1 && r.left >= left - 1) { out.push(describe(e, r.width)); continue; }
  const ox = getComputedStyle(e).overflowX;
  if ((ox === 'auto' || ox === 'scroll') && e.scrollWidth > e.clientWidth + 1) out.push(describe(e, e.scrollWidth));
}
// printed text wraps (marabook.css); a printed table must not need to: measure each output line unwrapped
const ctx = document.createElement('canvas').getContext('2d');
for (const pre of art.querySelectorAll('.cell_output pre')) {
  const ps = getComputedStyle(pre);
  ctx.font = ps.font;
  const room = pre.clientWidth - parseFloat(ps.paddingLeft) - parseFloat(ps.paddingRight);
  for (const ln of pre.textContent.split('\\n')) {
    const w = ctx.measureText(ln).width;
    if (w > room + 1 && /\\S( {2,}\\S+){3,}/.test(ln)) out.push('printed table line ' + Math.round(w) + 'px: ' + ln.trim().slice(0, 60));
  }
}
return out;
"""

# Display equations a reader cannot fully see, and equations that show more than one number. An equation wider
# than its box must be reachable: its box scrolls sideways and no symbol sits left of where scrolling starts
# (the theme's reversed flex row used to push wide tagged equations off the LEFT edge, with no scrollbar).
# Numbers: Sphinx's span.eqno plus MathJax's \tag labels; an amsmath environment once showed "(4.1) (1)".
DISPLAY_MATH = """
const out = [];
for (const d of document.querySelectorAll('article.bd-article div.math')) {
  if (d.closest('.toggle-hidden, details:not([open])') || d.getBoundingClientRect().width === 0) continue;
  const m = d.querySelector('mjx-math');
  if (!m) continue;
  const dr = d.getBoundingClientRect(), mr = m.getBoundingClientRect();
  const text = (d.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
  const ox = getComputedStyle(d).overflowX;
  const scrolls = (ox === 'auto' || ox === 'scroll') && d.scrollWidth > d.clientWidth + 1;
  const fits = mr.left >= dr.left - 1 && mr.right <= dr.right + 1;
  const reachable = scrolls && mr.left >= dr.left - 1 && mr.right - dr.left <= d.scrollWidth + 1;
  if (!fits && !reachable) out.push('clipped equation (' + Math.round(mr.width) + 'px in ' + Math.round(dr.width) + 'px): ' + text);
  const numbers = d.querySelectorAll('span.eqno').length + d.querySelectorAll('mjx-labels mjx-mtr').length;
  if (numbers > 1) out.push(numbers + ' numbers on one equation: ' + text);
}
return out;
"""

# The page itself never scrolls sideways (a phone shows wide tables inside their own scrolling box).
PAGE_SCROLLS_SIDEWAYS = "return document.documentElement.scrollWidth > window.innerWidth + 1 ? " \
                        "document.documentElement.scrollWidth : 0"

# The widgets' JavaScript and widget state: only a page with widgets (chapter 3's explorer) loads them.
WIDGET_SCRIPTS = ("return Array.from(document.scripts).filter(s => /embed-amd|html-manager|widgets-paths/.test(s.src || '') "
                  "|| s.type === 'application/vnd.jupyter.widget-state+json').length")

# Every output figure of a chapter (widgets' own pictures aside) and the caption of the figure holding it.
FIGURE_CAPTIONS = """
return Array.from(document.querySelectorAll('article.bd-article .cell_output img'))
  .filter(i => !i.closest('.jupyter-widgets, .widget-output'))
  .map(i => { const f = i.closest('figure'); const c = f ? f.querySelector('figcaption') : null;
              return {alt: i.getAttribute('alt') || '', caption: c ? c.textContent.trim() : null}; });
"""

# Every image in the article: its rendered and natural width, source and alt text, and the column width.
IMAGES = """
const art = document.querySelector('article.bd-article');
const cs = getComputedStyle(art);
const col = art.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
return Array.from(art.querySelectorAll('img')).filter(i => i.getBoundingClientRect().height > 0)
  .map(i => ({src: i.getAttribute('src'), alt: i.getAttribute('alt') || '', shown: i.getBoundingClientRect().width,
              natural: i.naturalWidth, col: col, widget: i.closest('.jupyter-widgets, .widget-output') !== null}));
"""

MIN_TEXT_PX = 9.0


def _figure_problems(img: dict, dpi: float | None, min_font_pt: float) -> list[str]:
    """What is wrong with one rendered image (see IMAGES): too narrow, type too small, alt text missing."""
    bad = []
    alt = img["alt"].strip()
    # a live widget's picture (chapter 3's explorer) is redrawn by the widget manager, which sets no alt text;
    # the static grid under it carries the description
    if not img.get("widget") and len(alt) < 15 or alt.lower().endswith((".png", ".svg", ".jpg")) or "_images/" in alt:
        bad.append(f"alt text {alt!r} does not say what the figure shows")
    if img["shown"] < 0.8 * img["col"]:
        bad.append(f"shown {img['shown']:.0f}px wide, under 80% of the {img['col']:.0f}px column")
    if dpi:
        px = min_font_pt * dpi / 72 * img["shown"] / img["natural"]
        if px < MIN_TEXT_PX:
            bad.append(f"its {min_font_pt:g} pt type renders at {px:.1f}px (natural {img['natural']}px at {dpi:.0f} "
                       f"dpi shown at {img['shown']:.0f}px)")
    return bad


def _png_dpi(path) -> float | None:
    """The resolution a PNG records (matplotlib writes it; RDKit's molecule grids do not)."""
    from PIL import Image

    with Image.open(path) as im:
        dpi = im.info.get("dpi")
    return float(dpi[0]) if dpi and dpi[0] > 1 else None


def _assert_figures_readable(driver, page, built_book):
    from marabook.plotting import MIN_FONT_PT

    problems = []
    page_dir = (built_book / page).parent
    for img in driver.execute_script(IMAGES):
        path = (page_dir / img["src"]).resolve() if img["src"] and not img["src"].startswith("data:") else None
        dpi = _png_dpi(path) if path is not None and path.suffix == ".png" and path.exists() else None
        problems += [f"{img['src']}: {p}" for p in _figure_problems(img, dpi, MIN_FONT_PT)]
    assert not problems, f"{page}: " + "; ".join(problems)


_SOLUTION_BODIES = (
    "return Array.from(document.querySelectorAll('.admonition.dropdown'))"
    ".filter(a => ((a.querySelector('.admonition-title') || {}).textContent || '').trim().startsWith('Solution'))"
    ".map(a => a.querySelector('.admonition-title ~ *'))")


def _assert_solutions_hidden_until_clicked(driver, page):
    """Exercises end every chapter; their solutions are collapsed and open on a click."""
    bodies = driver.execute_script(_SOLUTION_BODIES)
    assert len(bodies) >= 2, f"{page}: {len(bodies)} exercise solutions"
    shown = "getComputedStyle({0}).visibility !== 'hidden' && {0}.getBoundingClientRect().height > 0"
    visible = driver.execute_script(f"return arguments[0].map(p => {shown.format('p')})", bodies)
    assert not any(visible), f"{page}: solutions visible before a click: {visible}"
    driver.execute_script(
        "const t = arguments[0].closest('.admonition').querySelector('.admonition-title');"
        "t.scrollIntoView(); t.click();", bodies[0])
    time.sleep(0.5)
    assert driver.execute_script(f"const p = arguments[0]; return {shown.format('p')}", bodies[0]), \
        f"{page}: clicking a solution's title does not open it"


def _assert_math_rendered(driver, page):
    """Every math element was typeset by MathJax (served from the book's own _static, so offline too)."""
    js = ("return Array.from(document.querySelectorAll('span.math, div.math'))"
          ".filter(e => !e.querySelector('mjx-container')).length")
    total = driver.execute_script("return document.querySelectorAll('span.math, div.math').length")
    for _ in range(150):
        if driver.execute_script(js) == 0:
            break
        time.sleep(0.1)
    left = driver.execute_script(js)
    assert left == 0, f"{page}: {left} of {total} math elements not typeset"
    # Typeset is not the same as right: a TeX error is typeset too, as red text in an mjx-merror node
    # (e.g. "\\tag not allowed in split environment"). Any such node fails the page, with its message.
    errors = driver.execute_script(
        "return Array.from(document.querySelectorAll('mjx-merror, .MathJax_Error'))"
        ".map(e => (e.getAttribute('data-mjx-error') || e.getAttribute('title') || e.textContent || '').trim())")
    assert not errors, f"{page}: {len(errors)} MathJax error(s): {errors}"
    return total


# Result-table number cells (marabook.tables.Table, td.num) whose text breaks anywhere but at an ordinary space: a
# line change inside a space-free token ("0.06|8", "4e-|06") or inside "± 0.005" (joined by a no-break space).
BROKEN_NUMBERS = r"""
const out = [];
for (const cell of document.querySelectorAll('article.bd-article table.marabook-table td.num')) {
  if (cell.getBoundingClientRect().width === 0) continue;
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  let node, token = [], text = '';
  const flush = () => {
    if (token.length > 1 && Math.max(...token) - Math.min(...token) > 2) out.push(cell.innerText.slice(0, 40));
    token = []; text = '';
  };
  while ((node = walker.nextNode())) {
    const s = node.textContent;
    for (let i = 0; i < s.length; i++) {
      // a space ends a token, except after a lone "±": "± 0.005" must stay on one line either way
      if ((s[i] === ' ' || s[i] === '\n') && text !== '±') { flush(); continue; }
      if (s[i] === ' ' || s[i] === '\n') continue;
      const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
      const rects = r.getClientRects();
      if (rects.length) { token.push(rects[0].top); text += s[i]; }
    }
  }
  flush();
}
return out;
"""


def test_the_number_check_catches_a_cell_broken_inside_a_number(site, driver):
    """Squeeze a real result table's number cells until they must break: the check must see the broken numbers
    (and nothing before)."""
    _load(driver, urljoin(site, "book/08_mara_molecules.html"))
    driver.set_window_size(1280, 900)
    assert driver.execute_script("return document.querySelectorAll('table.marabook-table td.num').length") > 0
    assert driver.execute_script(BROKEN_NUMBERS) == []
    driver.execute_script("for (const c of document.querySelectorAll('table.marabook-table td.num')) {"
                          " c.style.wordBreak = 'break-all'; c.style.maxWidth = '2.2em'; c.style.width = '2.2em'; }"
                          "for (const s of document.querySelectorAll('table.marabook-table span.nw')) s.style.whiteSpace = 'normal';")
    assert driver.execute_script(BROKEN_NUMBERS)


def test_the_width_check_catches_a_wide_printed_table(site, driver):
    """Put a wide ``print`` table back on a real page: the column check must see it (and not before)."""
    _load(driver, urljoin(site, "book/04_mara.html"))
    driver.set_window_size(1280, 900)
    assert driver.execute_script(WIDER_THAN_COLUMN) == []
    row = "  ".join(f"{name:>14}" for name in ("KL", "method", "beta", "reward", "entropy", "share of 1", "collapsed"))
    driver.execute_script(
        "const d = document.createElement('div'); d.className = 'cell_output docutils container';"
        "d.innerHTML = '<div class=\"output stream highlight-myst-ansi notranslate\"><div class=\"highlight\"><pre>' +"
        " arguments[0] + '</pre></div></div>';"
        "document.querySelector('article.bd-article section').appendChild(d);", row + "\n" + row)
    wide = driver.execute_script(WIDER_THAN_COLUMN)
    assert wide and any("KL" in w for w in wide), wide


def test_the_math_check_catches_a_clipped_or_doubly_numbered_equation(site, driver):
    """Restore the theme's layout (reversed flex row, hidden overflow) on a real page at phone width: the wide
    tagged equations must be reported as clipped; a second number on an equation must be reported too."""
    _load(driver, urljoin(site, "book/01_distribution_matching.html"))
    driver.set_window_size(390, 900)
    time.sleep(0.3)
    assert driver.execute_script(DISPLAY_MATH) == []
    driver.execute_script(
        "const s = document.createElement('style'); s.textContent = '.bd-article div.math { flex-direction: row-reverse "
        "!important; overflow: hidden !important; }'; document.head.appendChild(s);")
    time.sleep(0.3)
    found = driver.execute_script(DISPLAY_MATH)
    assert any(f.startswith("clipped equation") for f in found), found
    driver.execute_script(
        "const d = document.querySelector('article.bd-article div.math'); const n = document.createElement('span');"
        "n.className = 'eqno'; n.textContent = '(1)'; d.appendChild(n);")
    assert any("2 numbers on one equation" in f for f in driver.execute_script(DISPLAY_MATH))
    driver.set_window_size(1280, 900)


def test_the_figure_check_catches_small_type_narrow_figures_and_file_name_alts():
    """The figure rules on hand-made cases: a 1200 px-wide 100-dpi PNG squeezed into 688 px renders 9 pt type
    at 7.2 px; the book's retina figures (200 dpi, shown at half size) render it at 12.5 px."""
    ok = {"src": "x.png", "alt": "the reverse-KL target over beta", "shown": 688, "natural": 1376, "col": 688}
    assert _figure_problems(ok, 200, 9) == []
    squeezed = dict(ok, natural=1200)
    assert any("renders at 7.2px" in p for p in _figure_problems(squeezed, 100, 9))
    assert any("80%" in p for p in _figure_problems(dict(ok, shown=500, natural=1000), 200, 9))
    assert any("alt text" in p for p in _figure_problems(dict(ok, alt="../_images/3f2a.png"), 200, 9))
    assert _figure_problems(dict(ok, natural=690), None, 9) == []  # no resolution recorded: width and alt only


def test_book_opens_from_disk_with_math(built_book, driver):
    """Offline reading: the built HTML opened as a file renders its equations and figures."""
    _load(driver, (built_book / "book" / "04_mara.html").as_uri())
    assert _assert_math_rendered(driver, "04_mara (file://)") > 10
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0


def test_search_finds_mara(site, driver):
    _load(driver, urljoin(site, "search.html?q=anchor"))
    for _ in range(100):
        n = driver.execute_script("return document.querySelectorAll('#search-results li').length")
        if n:
            break
        time.sleep(0.1)
    assert n > 0, "search returned no results for 'anchor'"
    hits = driver.execute_script(
        "return Array.from(document.querySelectorAll('#search-results li a')).map(a => a.href)")
    assert any("04_mara" in h for h in hits), hits


def test_explorer_widget_renders_from_disk(built_book, driver):
    """Chapter 3's explorer is an embedded widget: opened from disk, with no network, it must still render
    (RequireJS and the widgets' HTML manager are served from the book's own _static)."""
    if not (built_book / "_static" / "embed-amd.js").exists():
        pytest.skip("the widget JavaScript was not fetched (no npm): this build loads it from a CDN")
    _load(driver, (built_book / "book" / "03_when_unimodal.html").as_uri())
    js = "return document.querySelectorAll('.widget-slider, .widget-hslider, .widget-readout').length"
    for _ in range(150):
        if driver.execute_script(js):
            break
        time.sleep(0.1)
    assert driver.execute_script(js) > 0, "the explorer's sliders did not render from disk"
