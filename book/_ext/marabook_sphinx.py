"""Small fixes to the HTML that Jupyter Book 1 produces, found by the browser test (tests/test_browser.py).

* sphinx-thebe's inline configuration script is registered twice in some builds; two identical
  ``const THEBE_JS_URL = ...`` scripts are a SyntaxError in the browser. Identical scripts are
  dropped from each page.
* pydata-sphinx-theme logs "Got invalid theme mode" when no default colour mode is set; we set
  ``default_mode`` to "auto" (follow the reader's system setting) unless configured.
* The book's stylesheet (``book/_static/marabook.css``) is added to every page: code cells wrap long lines,
  result tables (``marabook.tables.Table``) fit the content column.
* The API reference (``book/api*.md``, autodoc): docstrings write ``:func:`load_reference_lm``` for a
  function of a sibling module and name submodules the pages document through their package
  (``marabook.rl.sequences`` is documented as part of ``marabook.rl``). A reference Sphinx cannot resolve is
  looked up by its last dotted parts among the documented objects (exactly one must match) and, for a
  module, by its longest documented parent. What is still
  unresolved stays a warning, so the build (``-W -n``) fails on it.
* Figures are numbered per chapter, "Figure 4.2" (a captioned figure: MyST-NB's ``mystnb.figure`` cell
  metadata). Sphinx numbers figures under a numbered toctree only, and the book's headings carry their own
  numbers; so after Sphinx has counted the figures, each chapter's (``NN_*`` pages) are renumbered
  ``(NN, k)`` in page order, and every other page's ``(k,)``.
* Docstrings say "chapter 4" and "eq. (4.2)"; on the API pages these become links to the chapter.
* The widgets' JavaScript (4 MB) and a page's widget state are registered by MyST-NB while that page is
  written, into Sphinx's list of scripts for every page written after it; they are dropped from every page
  whose own notebook has no widget state, so only chapter 3 loads them.
* Embedded widgets (chapter 3's explorer) need RequireJS and the Jupyter widgets HTML manager. MyST-NB
  loads both from public CDNs, so pages opened from disk show empty boxes. When ``make`` has fetched them
  into ``book/_static/vendor-widgets`` (from the npm registry), they are copied into the site's ``_static``
  and loaded from there instead, with a small script that tells RequireJS where they are and lets the
  widgets' MathJax 2 calls reach the book's MathJax 3; otherwise the CDN defaults stay.
"""

from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "_static"
VENDOR = STATIC / "vendor-widgets"


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


def _book_css(app, config):
    """The book's own stylesheet (book/_static/marabook.css): code wraps, result tables fit the column."""
    config.html_static_path = list(config.html_static_path) + [str(STATIC / "marabook.css")]
    app.add_css_file("marabook.css")


def _serve_widget_js(app, config):
    if (VENDOR / "embed-amd.js").exists() and (VENDOR / "require.js").exists():
        paths = VENDOR / "widgets-paths.js"
        if not paths.exists() or paths.read_text() != _REQUIRE_PATHS:
            paths.write_text(_REQUIRE_PATHS)
        config.html_static_path = list(config.html_static_path) + [str(VENDOR)]
        config.nb_ipywidgets_js = {"require.js": {}, "widgets-paths.js": {}, "embed-amd.js": {}}


_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _widget_script(app, js) -> bool:
    """Whether ``js`` (a Sphinx JavaScript entry) is one of the widgets' files or a page's widget state."""
    name = str(getattr(js, "filename", js) or "")
    attrs = getattr(js, "attributes", {}) or {}
    widget_files = {Path(str(k)).name for k in (getattr(app.config, "nb_ipywidgets_js", None) or {})}
    return attrs.get("type") == _WIDGET_STATE or (name != "" and Path(name.split("?")[0]).name in widget_files)


def _page_has_widgets(app, pagename) -> bool:
    try:
        from myst_nb.sphinx_ import NbMetadataCollector

        return bool(NbMetadataCollector.get_js_files(app.env, pagename))
    except (ImportError, KeyError, AttributeError):
        return True  # cannot tell: keep the scripts


def _clean_page(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if files:
        seen, kept = set(), []
        own_widgets = _page_has_widgets(app, pagename)
        for js in files:
            if not own_widgets and _widget_script(app, js):
                continue
            # inline scripts come back from the pickled environment with filename "" instead of None
            key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                kept.append(js)
        files[:] = kept
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def _chapter_figure_numbers(app, env):
    """Renumber the figures of each chapter page ``(chapter, k)`` and of other pages ``(k,)`` (module doc)."""
    changed = []
    for docname, by_type in env.toc_fignumbers.items():
        stem = docname.split("/")[-1]
        prefix = (int(stem[:2]),) if stem[:2].isdigit() else ()
        for numbers in by_type.values():
            for k, fid in enumerate(list(numbers), 1):
                if numbers[fid] != (*prefix, k):
                    numbers[fid] = (*prefix, k)
                    if docname not in changed:
                        changed.append(docname)
    return changed


def _resolve_short_python_refs(app, env, node, contnode):
    """Resolve ``:func:`name``` and friends that name a documented object by a shorter path (see module doc):
    exactly one documented object must end with the name; a module falls back to its nearest documented
    parent. Anything else stays unresolved, and the nitpicky build warns."""
    if node.get("refdomain") != "py":
        return None
    from sphinx.util.nodes import make_refnode

    target = node["reftarget"].lstrip("~.")
    objects = env.get_domain("py").objects  # full name -> ObjectEntry(docname, node_id, objtype, aliased)
    hits = [name for name in objects if name.endswith("." + target)]
    if not hits and node.get("reftype") == "mod":
        parts = target.split(".")
        while len(parts) > 1 and not hits:
            parts.pop()
            hits = [n for n in objects if n == ".".join(parts) and objects[n].objtype == "module"]
    if len(hits) != 1:
        return None
    entry = objects[hits[0]]
    return make_refnode(app.builder, node.get("refdoc", ""), entry.docname, entry.node_id, contnode, hits[0])


def _chapter_links(app, what, name, obj, options, lines):
    """"chapter N" and "eq. (N.M)" in a docstring become links to chapter N's page (API reference pages).
    Text inside inline literals and roles (anything between backticks) is left alone."""
    import re

    docs = {d.split("/")[-1][:2].lstrip("0"): d for d in app.env.found_docs if d.split("/")[-1][:2].isdigit()}
    pattern = re.compile(r"\b([Cc]hapters?|[Ee]qs?\.) (\()?(\d)((?:\.\d+)?)((?(2)\)))(?!\.?\d)")

    def link(m):
        doc = docs.get(m.group(3))
        if doc is None or (m.group(1).lower().startswith("eq") and not m.group(4)):
            return m.group(0)
        text = f"{m.group(1)} {m.group(2) or ''}{m.group(3)}{m.group(4)}{m.group(5)}"
        return f":doc:`{text} </{doc}>`"

    def sub(line):
        parts = re.split(r"(`[^`]*`+)", line)  # odd indices: literals and roles, untouched
        return "".join(p if k % 2 else pattern.sub(link, p) for k, p in enumerate(parts))

    lines[:] = [sub(line) for line in lines]


def setup(app):
    # early: html-page-context stops at the first handler that returns a template name
    app.connect("html-page-context", _clean_page, priority=100)
    app.connect("config-inited", _serve_widget_js)
    app.connect("config-inited", _book_css)
    app.connect("missing-reference", _resolve_short_python_refs)
    app.connect("env-get-updated", _chapter_figure_numbers, priority=900)  # after Sphinx has counted them
    app.connect("autodoc-process-docstring", _chapter_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
