"""Every figure a chapter draws is numbered and captioned, and says what it shows in its own words (issue 30).

MyST-NB makes a code cell's figure a numbered figure with a caption from ``metadata.mystnb.figure``
(``caption``, ``name``); the book's Sphinx extension numbers them per chapter ("Figure 4.2"); the browser test
checks the rendered captions. Here, statically: every cell with a figure's alt text has a caption and a name,
names are unique ``fig-<chapter>-...``, and no two figures in the book share an alt text or a caption.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def _figure_cells():
    for path in CHAPTERS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("mystnb", {})
            if cell["cell_type"] == "code" and ("image" in meta or "figure" in meta):
                yield path, cell, meta


def test_every_figure_has_a_caption_and_a_chapter_name():
    bad = []
    for path, cell, meta in _figure_cells():
        fig = meta.get("figure", {})
        chapter = int(path.name[:2])
        if not isinstance(fig.get("caption"), str) or len(fig["caption"].strip()) < 20:
            bad.append(f"{path.name} {cell.get('id')}: no caption")
        if not re.fullmatch(rf"fig-{chapter}-[a-z0-9-]+", str(fig.get("name", ""))):
            bad.append(f"{path.name} {cell.get('id')}: name {fig.get('name')!r} is not fig-{chapter}-<slug>")
        if re.search(r"\{[\w:-]+\}`", str(fig.get("caption", ""))):
            bad.append(f"{path.name} {cell.get('id')}: a caption is plain text and maths (no roles such as glue)")
    assert not bad, "\n".join(bad)


def test_names_alt_texts_and_captions_are_unique_in_the_book():
    seen = {"name": {}, "alt": {}, "caption": {}}
    dupes = []
    for path, cell, meta in _figure_cells():
        values = {"name": meta.get("figure", {}).get("name"), "alt": meta.get("image", {}).get("alt"),
                  "caption": meta.get("figure", {}).get("caption")}
        for kind, value in values.items():
            if value is None:
                continue
            where = f"{path.name} {cell.get('id')}"
            if value in seen[kind]:
                dupes.append(f"{kind} of {where} repeats {seen[kind][value]}: {value[:60]!r}")
            seen[kind][value] = where
    assert not dupes, "\n".join(dupes)
