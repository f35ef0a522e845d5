"""marabook.tables.Table: the plain text and the HTML of one table say the same thing."""

import re

import pytest

from marabook.experiments import onetwo
from marabook.tables import Table


def test_a_table_is_its_plain_text_and_renders_the_same_cells_as_html():
    t = Table(["method", "beta", "share of 1"], [["vanilla", "0.01", "0.940"], ["MARA", "0.01", "0.512 ± 0.030"]],
              caption="share of 1")
    assert isinstance(t, str) and t.splitlines() == [
        "share of 1",
        "method   beta     share of 1",
        "vanilla  0.01          0.940",
        "MARA     0.01  0.512 ± 0.030",
    ]
    html = t._repr_html_()
    cells = re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", html.replace("<wbr>", "").replace("\u00a0", " "))
    assert cells == ["method", "beta", "share of 1", "vanilla", "0.01", "0.940", "MARA", "0.01", "0.512 ± 0.030"]
    assert "0.512 ±\u00a00.030" in html  # breaks before "±", never after it
    assert html.count('class="num"') == 4 and html.count('class="txt"') == 2  # numbers right-aligned
    assert "<caption>share of 1</caption>" in html
    assert t.to_markdown().splitlines()[1] == "|:---|---:|---:|"


def test_a_table_survives_copy_and_pickle():
    import copy
    import pickle

    t = Table(["a", "b"], [["x", "1.0"]], caption="c")
    for u in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert u == t and u.rows == t.rows and u.caption == "c" and u._repr_html_() == t._repr_html_()


def test_cells_are_escaped_in_html():
    html = Table(["a<b"], [["x & y"]])._repr_html_()
    assert "a&lt;b" in html and "x &amp; y" in html
    assert "<th>yield@<wbr>0.80</th>" in Table(["yield@0.80"], [["1"]])._repr_html_()  # breaks after @ only
    # a number with a minus or an exponent never breaks at its hyphen; the cell breaks between values
    assert '>+0.18 <span class="nw">(4e-06)</span></td>' in Table(["d"], [["+0.18 (4e-06)"]])._repr_html_()
    assert '>multi-mode task</td>' in Table(["d"], [["multi-mode task"]])._repr_html_()  # words keep their hyphen break
    assert '<span class="nw">-0.5</span>' in Table(["d"], [["-0.5"]])._repr_html_()


@pytest.mark.parametrize("bad, name", [
    (lambda: Table("abc", []), "columns"),
    (lambda: Table([], []), "columns"),
    (lambda: Table(["a", "b"], [["1"]]), r"rows\[0\]"),
    (lambda: Table(["a"], "x"), "rows"),
    (lambda: Table(["a"], [["1"]], caption=3), "caption"),
])
def test_bad_tables_are_refused_by_name(bad, name):
    with pytest.raises(ValueError, match=name):
        bad()


def test_experiment_tables_are_tables():
    """The experiments' tables render as HTML in the book (and keep their text for print)."""
    row = {"kl": "reverse", "method": "MARA", "beta": 0.01, "reward_mean": 0.9, "reward_std": 0.1, "failed": 1,
           "runs": 5, "entropy_mean": 0.95, "entropy_std": 0.02, "collapsed": 0, "share_1_mean": 0.51}
    t = onetwo.table([row])
    assert isinstance(t, Table) and t.rows[0][3] == "0.900 ± 0.100" and t.rows[0][4] == "1/5"
    assert "<table" in t._repr_html_() and "0.510" in t


def test_molecule_tables_keep_every_cell():
    """Chapter 8's mode, coverage and anchor tables: one row per method (and sigma), the numbers of the rows."""
    from marabook.experiments import molecules

    runs = [{"task": "multi_mode", "method": m, "sigma": 128.0, "seed": s,
             "summary": {"modes@0.80": {"diazepam": h, "tolbutamide": 2}}}
            for m, h in (("REINVENT", 0), ("MARA 0.80", 3)) for s in range(2)]
    hits = molecules.mode_hits_table(runs, "multi_mode")
    assert [r[0] for r in hits.rows] == ["REINVENT", "MARA 0.80"] and hits.columns[-1] == "modes covered"
    assert hits.rows[1][hits.columns.index("diazepam")] == "3.0"
    cov = molecules.coverage_table(runs, "multi_mode")
    assert cov.rows[0][:3] == ("128", "REINVENT", "1.0") and cov.rows[1][cov.columns.index("diazepam")] == "2/2"
    anchors = {"MARA 0.80": {"steps_with_anchor": 40, "anchor_below_top": 0.46, "mean_good_per_step": 7.25}}
    t = molecules.anchor_table(anchors, {"MARA 0.80": {"mean": 739.4, "ratio": 1.34, "p": 0.036}})
    assert t.rows == (("MARA 0.80", "40", "0.46", "7.2", "739", "x1.34", "0.036"),)
    with pytest.raises(ValueError, match="yields"):
        molecules.anchor_table(anchors, {})
    assert Table(["a"], [["1"]]).with_caption("c").caption == "c"
