"""Stored results carry provenance; every stored results file shipped in marabook/data/results is well formed."""

import json
from pathlib import Path

import pytest

from marabook import provenance

ROOT = Path(__file__).resolve().parents[1]
STORED = sorted(provenance.RESULTS_DIR.glob("*.json"))


def test_save_and_load_roundtrip(tmp_path):
    p = provenance.save_json(tmp_path / "r.json", {"x": [1, 2]}, command="python make_it.py --fast")
    data = provenance.load_json(p)
    assert data["results"] == {"x": [1, 2]}
    prov = data["provenance"]
    assert prov["command"] == "python make_it.py --fast"
    assert len(prov["git_revision"].split("+")[0]) in (40, 7) or prov["git_revision"] == "unknown"
    assert prov["date"].startswith("20") and prov["device"]


def test_rejects_files_without_provenance(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"results": {}}))
    with pytest.raises(ValueError, match="provenance"):
        provenance.load_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="results"):
        provenance.save_json(tmp_path / "x.json", [1, 2])
    with pytest.raises(ValueError, match="command"):
        provenance.provenance(command=3)


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.name)
def test_stored_results_have_provenance(path):
    data = provenance.load_json(path)
    prov = data["provenance"]
    for key in ("command", "git_revision", "device", "date"):
        assert prov[key], key
    assert prov["command"].startswith("python scripts/")
    script = ROOT / prov["command"].split()[1]
    assert script.exists(), f"{path.name} names a script that is not in the repository: {script}"


def test_save_json_keeps_a_provenance_taken_at_the_start(tmp_path):
    from marabook import provenance as P

    start = P.provenance("python scripts/x.py")
    start["git_revision"] = "abc123"          # as if HEAD moved on while the run worked
    path = P.save_json(tmp_path / "r.json", {"x": 1}, prov=start)
    assert P.load_json(path)["provenance"]["git_revision"] == "abc123"
    with pytest.raises(ValueError, match="prov"):
        P.save_json(tmp_path / "s.json", {"x": 1}, prov={"command": "no revision"})


def test_note_is_the_described_line_shown_collapsed():
    prov = {"command": "python /work/x/scripts/run_tokens.py --seeds 10", "git_revision": "a" * 40,
            "device": "cpu", "date": "2026-11-24T01:02:03"}
    n = provenance.note(prov, " | 3.0 min")
    assert n == provenance.describe(prov) + " | 3.0 min" and "/work/" not in n
    assert n._repr_html_().startswith('<details class="marabook-provenance">') and "run_tokens.py" in n._repr_html_()
    with pytest.raises(ValueError, match="extra"):
        provenance.note(prov, 3)
    with pytest.raises(ValueError, match="date"):
        provenance.note({k: v for k, v in prov.items() if k != "date"})
