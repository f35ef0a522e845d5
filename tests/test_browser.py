"""The built book in a real browser (Debian's chromium, driven by Selenium; issue: reader's experience).

Serves the smoke-scale build on localhost and, for every page in _toc.yml: loads it, checks that the
book's own assets raise no console errors, that every image loads, that every internal link resolves,
that chapters show code outputs and Colab/Binder buttons pointing at their .ipynb, that the
previous/next navigation follows the table of contents, and saves a full-page screenshot to
_build/screenshots/. Search is checked once, and a chapter opened from disk (file://) must typeset
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
def test_page_in_browser(page, site, driver):
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
        links = " ".join(hrefs)
        assert f"colab.research.google.com/github/{REPO}/blob/main/{page}.ipynb" in links
        assert "mybinder.org" not in links  # no Binder button: it could not run chapters 5-8

    # a full-page screenshot, kept as a test artifact
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 12000)")
    driver.set_window_size(1280, max(900, int(height)))
    shot = SCREENSHOTS / (page.replace("/", "__") + ".png")
    assert driver.save_screenshot(str(shot))
    driver.set_window_size(1280, 900)
    assert shot.stat().st_size > 10_000


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
