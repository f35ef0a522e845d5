"""Provenance for stored results: which command, code revision, device and date produced them.

Every results file the book shows next to a live run carries this block (DESIGN.md, "One code
path, three scales"), so a reader can tell a stored full-scale result from the small live one.

Files are written atomically (a temporary file, fsynced, then renamed over the target), so a run killed
while it writes leaves the previous file whole; each carries a ``schema`` version (:data:`RESULTS_SCHEMA`)
that :func:`load_json` checks, and a loader that needs particular fields asks for them (``required=``,
:func:`need`) and gets a :class:`ResultsFileError` naming the file and the missing field instead of a
bare ``KeyError``. The console commands write to ``./results/`` (:func:`default_out`) unless told
otherwise, never into the installed package.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["provenance", "save_json", "load_json", "RESULTS_DIR", "stored_path", "load_stored", "describe", "note", "Note",
           "RESULTS_SCHEMA", "ResultsFileError", "need", "atomic_write_text", "default_out", "OUT_DIR",
           "portable_path", "portable_command"]

#: Where the stored full-scale results live (inside the package, so that Colab and pip readers get them).
RESULTS_DIR = Path(__file__).resolve().parent / "data" / "results"

#: The folder the console commands write to by default, ``results/`` under the working directory (not the
#: package, so that an interrupted run never touches a shipped file). To update a shipped result, pass ``--out`` explicitly.
OUT_DIR = Path("results")

#: Version of the results-file layout ``{"schema", "provenance", "results"}`` that :func:`save_json` writes.
#: Files from before versions were recorded have no ``schema`` and count as version 1 (the same layout).
RESULTS_SCHEMA = 1


class ResultsFileError(ValueError):
    """A results file that cannot be used: unreadable, truncated, of another schema version, or without a
    field its loader needs. The message names the file (and the field)."""


def default_out(name: str) -> str:
    """The default ``--out`` of a console command: ``results/<name>`` under the working directory."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a file name such as 'tokens_full.json', got {name!r}")
    return str(OUT_DIR / name)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` so that a kill at any instant leaves either the old file or the new one:
    a temporary file in the same directory, flushed and fsynced, renamed over ``path``, directory fsynced."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    try:
        fd = os.open(str(p.parent), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # directories cannot be opened or fsynced everywhere
        pass
    return p


_REPO = Path(__file__).resolve().parents[1]


def portable_path(path) -> str:
    """``path`` as a stored result may record it: relative paths as given, absolute ones relative to the
    repository when inside it, else the file's name only (the machine's folders describe the machine, not
    the result, and stored files must not carry them)."""
    text = str(path)
    if not text.startswith("/"):
        return text
    p = Path(text)
    try:
        return str(p.resolve().relative_to(_REPO))
    except (ValueError, OSError):
        return p.name


def portable_command(command: str) -> str:
    """``command`` with every absolute path (a word, or the value of ``--opt=/path``) made :func:`portable_path`."""
    words = []
    for w in command.split():
        key, eq, value = w.partition("=")
        words.append(key + eq + portable_path(value) if eq and value.startswith("/") else portable_path(w))
    return " ".join(words)


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
    """``{"command", "git_revision", "device", "date", "python", "packages"}`` for this process (absolute paths
    in the command recorded by :func:`portable_command`)."""
    if command is not None and not isinstance(command, str):
        raise ValueError(f"command must be a string or None, got {command!r}")
    pkgs = {}
    for name in ("numpy", "torch", "transformers", "rdkit", "marabook"):
        mod = sys.modules.get(name)
        if mod is not None:
            pkgs[name] = getattr(mod, "__version__", "?")
    return {
        "command": portable_command(command if command is not None else " ".join(sys.argv)),
        "git_revision": _git_revision(),
        "device": _device(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": pkgs,
    }


def save_json(path, results: dict, command: str | None = None, prov: dict | None = None) -> Path:
    """Write ``{"schema": RESULTS_SCHEMA, "provenance": ..., "results": results}`` as JSON, atomically
    (:func:`atomic_write_text`: a kill leaves the previous file whole), and return the path.

    ``prov``: a provenance block taken when the run *started* (:func:`provenance`), so that commits made while
    a long run works do not end up in its record; by default it is taken now."""
    if not isinstance(results, dict):
        raise ValueError("results must be a dict")
    if prov is not None and not (isinstance(prov, dict) and "git_revision" in prov):
        raise ValueError("prov must be a provenance block (a dict with a 'git_revision')")
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ValueError(f"path must be a file path, got {path!r}")
    try:
        text = json.dumps({"schema": RESULTS_SCHEMA, "provenance": prov if prov is not None else provenance(command),
                           "results": results}, indent=1, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"results must be JSON data (dicts, lists, numbers, strings): {exc}") from exc
    return atomic_write_text(path, text)


def need(mapping, *fields: str, where) -> None:
    """Raise a :class:`ResultsFileError` naming ``where`` (a file, or a file and a place in it) and the
    first of ``fields`` that ``mapping`` lacks (the check a loader makes before it reads the fields)."""
    if not isinstance(mapping, dict):
        raise ResultsFileError(f"{where}: expected a JSON object with {', '.join(map(repr, fields))}, "
                               f"got {type(mapping).__name__}")
    for f in fields:
        if f not in mapping:
            raise ResultsFileError(f"{where}: no {f!r} field (written by another marabook version, or "
                                   f"by another command?)")


def load_json(path, *, required=()) -> dict:
    """Read a file written by :func:`save_json`. Raises :class:`ResultsFileError` naming the file when it is
    unreadable or truncated, has no provenance block, has a schema version other than
    :data:`RESULTS_SCHEMA`, or lacks one of the ``required`` fields of its ``results``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{p}: not a readable results file (truncated or corrupt: {exc})") from exc
    if not isinstance(data, dict) or "provenance" not in data or "results" not in data:
        raise ResultsFileError(f"{p}: not a marabook results file (no provenance block)")
    schema = data.get("schema", 1)
    if schema != RESULTS_SCHEMA:
        raise ResultsFileError(f"{p}: results schema {schema!r}, this marabook reads schema {RESULTS_SCHEMA} "
                               f"(written by another marabook version)")
    if isinstance(required, str):
        required = (required,)
    need(data["results"], *required, where=f"{p} (results)")
    return data


def stored_path(name: str) -> Path:
    """The path of the stored result ``name`` (e.g. ``"reinvent"``) in :data:`RESULTS_DIR`."""
    if not isinstance(name, str) or not name or "/" in name or name.endswith(".json"):
        raise ValueError(f"name must be a stored result's name such as 'reinvent', got {name!r}")
    return RESULTS_DIR / f"{name}.json"


def load_stored(name: str, *, required=()) -> dict:
    """The stored result ``name`` shipped with the package (``{"provenance", "results"}``), checked as
    :func:`load_json` checks (``required``: fields its ``results`` must have).

    Raises FileNotFoundError naming the script that writes it when it is missing."""
    path = stored_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no stored result {name!r} at {path}; the scripts in scripts/ write it")
    return load_json(path, required=required)


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
