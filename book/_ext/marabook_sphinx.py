"""Small fixes to the HTML that Jupyter Book 1 produces, found by the browser test (tests/test_browser.py).

* sphinx-thebe's inline configuration script is registered twice in some builds; two identical
  ``const THEBE_JS_URL = ...`` scripts are a SyntaxError in the browser. Identical scripts are
  dropped from each page.
* pydata-sphinx-theme logs "Got invalid theme mode" when no default colour mode is set; we set
  ``default_mode`` to "auto" (follow the reader's system setting) unless configured.
* Embedded widgets (chapter 3's explorer) need RequireJS and the Jupyter widgets HTML manager. MyST-NB
  loads both from public CDNs, so pages opened from disk show empty boxes. When ``make`` has fetched them
  into ``book/_static/vendor-widgets`` (from the npm registry), they are copied into the site's ``_static``
  and loaded from there instead, with a small script that tells RequireJS where they are and lets the
  widgets' MathJax 2 calls reach the book's MathJax 3; otherwise the CDN defaults stay.
"""

from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "_static" / "vendor-widgets"


# Loaded between RequireJS and the widgets bundle:
# 1. the bundle loads its chunks and fonts from the RequireJS path "@jupyter-widgets/html-manager/dist/",
#    which RequireJS resolves against the page; point it at the folder the bundle itself was served from;
# 2. the widgets typeset their labels with MathJax 2's MathJax.Hub.Queue(["Typeset", Hub, element]); the book
#    serves MathJax 3, so forward such jobs to MathJax 3's typesetPromise (once MathJax has started).
_REQUIRE_PATHS = """(function () {
  var src = document.currentScript.src, base = src.substring(0, src.lastIndexOf("/"));
  require.config({paths: {"@jupyter-widgets/html-manager/dist": base}});
  function queue(job) {
    var M = window.MathJax;
    if (job && job[0] === "Typeset" && M && M.startup && M.startup.promise) {
      M.startup.promise.then(function () { return M.typesetPromise([job[2]]); });
    }
  }
  function install() {
    if (!window.MathJax) { window.MathJax = {}; }
    if (!window.MathJax.Hub) { window.MathJax.Hub = {Queue: queue}; }
  }
  install();
  document.addEventListener("DOMContentLoaded", install);
  window.addEventListener("load", install);
})();
"""


def _serve_widget_js(app, config):
    if (VENDOR / "embed-amd.js").exists() and (VENDOR / "require.js").exists():
        paths = VENDOR / "widgets-paths.js"
        if not paths.exists() or paths.read_text() != _REQUIRE_PATHS:
            paths.write_text(_REQUIRE_PATHS)
        config.html_static_path = list(config.html_static_path) + [str(VENDOR)]
        config.nb_ipywidgets_js = {"require.js": {}, "widgets-paths.js": {}, "embed-amd.js": {}}


def _clean_page(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if files:
        seen, kept = set(), []
        for js in files:
            # inline scripts come back from the pickled environment with filename "" instead of None
            key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                kept.append(js)
        files[:] = kept
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def setup(app):
    # early: html-page-context stops at the first handler that returns a template name
    app.connect("html-page-context", _clean_page, priority=100)
    app.connect("config-inited", _serve_widget_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
