"""Small fixes to the HTML that Jupyter Book 1 produces, found by the browser test (tests/test_browser.py).

* sphinx-thebe's inline configuration script is registered twice in some builds; two identical
  ``const THEBE_JS_URL = ...`` scripts are a SyntaxError in the browser. Identical scripts are
  dropped from each page.
* pydata-sphinx-theme logs "Got invalid theme mode" when no default colour mode is set; we set
  ``default_mode`` to "auto" (follow the reader's system setting) unless configured.
"""


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
    return {"parallel_read_safe": True, "parallel_write_safe": True}
