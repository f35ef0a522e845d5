"""Provenance for stored results: which command, code revision, device and date produced them.

Every results file the book shows next to a live run carries this block (DESIGN.md, "One code
path, three scales"), so a reader can tell a stored full-scale result from the small live one.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["provenance", "save_json", "load_json", "RESULTS_DIR", "stored_path", "load_stored", "describe", "note", "Note"]

#: Where the stored full-scale results live (inside the package, so that Colab and pip readers get them).
RESULTS_DIR = Path(__file__).resolve().parent / "data" / "results"


def _git_revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
        return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    except ImportError:
        return f"cpu: {platform.processor() or platform.machine()}"


def provenance(command: str | None = None) -> dict:
    """``{"command", "git_revision", "device", "date", "python", "packages"}`` for this process."""
    if command is not None and not isinstance(command, str):
        raise ValueError(f"command must be a string or None, got {command!r}")
    pkgs = {}
    for name in ("numpy", "torch", "transformers", "rdkit", "marabook"):
        mod = sys.modules.get(name)
        if mod is not None:
            pkgs[name] = getattr(mod, "__version__", "?")
    return {
        "command": command if command is not None else " ".join(sys.argv),
        "git_revision": _git_revision(),
        "device": _device(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": pkgs,
    }


def save_json(path, results: dict, command: str | None = None, prov: dict | None = None) -> Path:
    """Write ``{"provenance": ..., "results": results}`` as JSON and return the path.

    ``prov``: a provenance block taken when the run *started* (:func:`provenance`), so that commits made while
    a long run works do not end up in its record; by default it is taken now."""
    if not isinstance(results, dict):
        raise ValueError("results must be a dict")
    if prov is not None and not (isinstance(prov, dict) and "git_revision" in prov):
        raise ValueError("prov must be a provenance block (a dict with a 'git_revision')")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"provenance": prov if prov is not None else provenance(command), "results": results},
                            indent=1))
    return p


def load_json(path) -> dict:
    """Read a file written by :func:`save_json`; raises ValueError if it has no provenance."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "provenance" not in data or "results" not in data:
        raise ValueError(f"path {path} is not a marabook results file (no provenance block)")
    return data


def stored_path(name: str) -> Path:
    """The path of the stored result ``name`` (e.g. ``"reinvent"``) in :data:`RESULTS_DIR`."""
    if not isinstance(name, str) or not name or "/" in name or name.endswith(".json"):
        raise ValueError(f"name must be a stored result's name such as 'reinvent', got {name!r}")
    return RESULTS_DIR / f"{name}.json"


def load_stored(name: str) -> dict:
    """The stored result ``name`` shipped with the package (``{"provenance", "results"}``).

    Raises FileNotFoundError naming the script that writes it when it is missing."""
    path = stored_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no stored result {name!r} at {path}; the scripts in scripts/ write it")
    return load_json(path)


def describe(prov: dict) -> str:
    """One line for a reader: ``stored: <command> | revision <rev> | <device> | <date>`` (absolute paths in
    the command are shown by file name: they describe the machine that ran it, not the result)."""
    for key in ("command", "git_revision", "device", "date"):
        if key not in prov:
            raise ValueError(f"prov must have a {key!r} entry")
    date = str(prov["date"])[:10]
    # absolute paths in a command name files on the machine that ran it: show their file names only
    command = " ".join(Path(w).name if w.startswith("/") else w for w in str(prov["command"]).split())
    return f"stored: {command} | revision {str(prov['git_revision'])[:12]} | {prov['device']} | {date}"


class Note(str):
    """:func:`describe`'s line (the ``str`` itself) that a notebook shows as a collapsed "How this stored
    result was made" block (``_repr_html_``): provenance stays one click away instead of interrupting the
    argument."""

    def _repr_html_(self) -> str:
        import html

        return ('<details class="marabook-provenance"><summary>How this stored result was made</summary>'
                f"<p><code>{html.escape(str(self))}</code></p></details>")


def note(prov: dict, extra: str = "") -> Note:
    """:func:`describe` of ``prov``, plus ``extra`` (e.g. the run's wall time), as a collapsed :class:`Note`."""
    if not isinstance(extra, str):
        raise ValueError(f"extra must be a string, got {type(extra).__name__}")
    return Note(describe(prov) + extra)
