"""Checkpoint files: the format every trainer writes, its version, fingerprints of what a run belongs to, and
the reading, hashing and fsync helpers (the loop that writes them is :class:`marabook.plumbing.TrainLoop`;
how a checkpoint survives a kill is described there).

Torch and safetensors are imported only inside functions, so importing this module costs nothing.

**Growing a config without invalidating old runs.** A dataclass config is fingerprinted by all its fields
(:func:`settings_fingerprint`, the key of a resumable sweep's stored jobs), and a checkpoint records it as JSON
(:func:`config_record`). A field added later would change both for every run already stored, and the store or
checkpoint would refuse to resume. A field declared with ``metadata={"fingerprint": "omit_default"}``
(:data:`OMIT_DEFAULT`), e.g. ``mara_form: str = field(default="reward", metadata=OMIT_DEFAULT)``, is left out
of both while it equals its default: a new knob keeps every older store and checkpoint valid, and a run that
sets it to anything else gets a new fingerprint, as it must.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

from marabook._validate import check_int

__all__ = ["CHECKPOINT_FORMAT", "READABLE_FORMATS", "CheckpointError", "module_fingerprint", "settings_fingerprint",
           "OMIT_DEFAULT", "fingerprinted_fields", "config_record", "optimizer_to_safe", "optimizer_from_safe", "checkpoint_files", "read_record", "fsync", "file_sha256"]


CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)
VERSIONED_FILE = re.compile(r"^(model|state)-\d{8}-[0-9a-f]{8}\.safetensors$")
TEMPORARY_FILE = re.compile(r"^state\.json(\.[0-9a-f\-]+)?\.tmp$")
#: Field metadata for a config knob added after runs were stored; the field counts in fingerprints and checkpoint
#: records only when it differs from its default (``field(default=..., metadata=OMIT_DEFAULT)``).
OMIT_DEFAULT = {"fingerprint": "omit_default"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: missing, incomplete, corrupt, of another format version, or of
    another run (trainer, config, task, oracle, model). The message names the file and, for a mismatch,
    both sides. A ``ValueError``, so code that catches bad input catches it too."""


def fsync(path) -> None:
    """Flush ``path`` (a file or a directory) to the disk; directories cannot be opened on some systems."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. directories on filesystems that refuse fsync on them
        pass
    finally:
        os.close(fd)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def module_fingerprint(module, sample: int = 1024) -> str:
    """A short hash that tells models apart: every tensor's name, dtype and shape in ``module.state_dict()``
    and a strided sample of at most ``sample`` of its values (cheap for billion-parameter models, the same
    on every device). Two models with the same weights have the same fingerprint; a trained copy of a
    model does not. Checkpoints record it for the trained module as the trainer was built."""
    import torch

    check_int(sample, "sample", minimum=1)
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if not isinstance(t, torch.Tensor):
            continue
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        flat = t.detach().reshape(-1)
        if flat.numel():
            vals = flat[:: max(1, flat.numel() // sample)][:sample]
            try:
                h.update(vals.to("cpu", torch.float64).numpy().tobytes())
            except (RuntimeError, TypeError):  # exotic dtypes: names, dtypes and shapes only
                pass
    return h.hexdigest()[:16]


def _default_of(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def fingerprinted_fields(config) -> dict:
    """``{name: value}`` of the fields of the dataclass instance ``config`` that define it: every field, except
    one whose ``metadata`` holds ``{"fingerprint": "omit_default"}`` (:data:`OMIT_DEFAULT`) while its value
    equals its default (see the module docstring). Values are returned as they are (not converted)."""
    if not is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"config must be a dataclass instance, got {type(config).__name__}")
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        rule = f.metadata.get("fingerprint")
        if rule not in (None, "omit_default"):
            raise ValueError(f"field {f.name!r} of {type(config).__qualname__}: fingerprint metadata must be "
                             f"'omit_default', got {rule!r}")
        if rule == "omit_default":
            default = _default_of(f)
            if default is MISSING:
                raise ValueError(f"field {f.name!r} of {type(config).__qualname__} is marked 'omit_default' "
                                 "but has no default")
            if type(value) is type(default) and value == default:
                continue
        out[f.name] = value
    return out


def config_record(config) -> dict:
    """The JSON record of a dataclass config that a checkpoint stores and compares on resume: the fields of
    :func:`fingerprinted_fields` (nested dataclasses recursively, by the same rule), as JSON data."""
    def plain(v):
        if is_dataclass(v) and not isinstance(v, type):
            return {k: plain(x) for k, x in fingerprinted_fields(v).items()}
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return json.loads(json.dumps(plain(config)))


def _plain(value):
    """``value`` as JSON-able data for :func:`settings_fingerprint` (callables by their qualified name)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        return _plain(value.tolist())
    if is_dataclass(value) and not isinstance(value, type):  # configs: their fields count (fingerprinted_fields)
        return {"__type__": type(value).__qualname__,
                **{name: _plain(v) for name, v in fingerprinted_fields(value).items()}}
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return f"{type(value).__module__}.{type(value).__qualname__}"


def settings_fingerprint(settings) -> str:
    """A short hash of ``settings`` (JSON-like data; callables count by their qualified name, other objects
    by their type), for a task's or oracle's identity in a checkpoint (``TrainLoop._identity``)."""
    text = json.dumps(_plain(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def optimizer_to_safe(state_dict: dict) -> tuple[dict, dict]:
    """Split a torch optimiser ``state_dict`` into tensors (for safetensors) and JSON-able rest."""
    import torch

    tensors, per_param = {}, {}
    for pid, st in state_dict["state"].items():
        entry = {}
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
                entry[key] = {"tensor": f"optimizer.{pid}.{key}"}
            else:
                entry[key] = value
        per_param[str(pid)] = entry
    return tensors, {"state": per_param, "param_groups": state_dict["param_groups"]}


def optimizer_from_safe(tensors: dict, meta: dict) -> dict:
    """Inverse of :func:`optimizer_to_safe`: a ``state_dict`` an optimiser can load (the optimiser's
    ``load_state_dict`` moves each tensor to its parameter's device, as torch decides per key)."""
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {k: (tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v)
                           for k, v in entry.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def read_record(d: Path) -> dict:
    """``state.json`` of the checkpoint in ``d``, parsed and format-checked (CheckpointError naming it)."""
    path = d / "state.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (state.json is missing)")
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint record (truncated or corrupt: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a marabook checkpoint record (a JSON {type(state).__name__})")
    fmt = state.get("format")
    if fmt not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format {fmt!r}; this marabook reads formats "
                              f"{', '.join(map(str, READABLE_FORMATS))} (written by another marabook version?)")
    needed = ("trainer", "config", "step", "history", "optimizer", "extra")
    for key in needed + (("identity", "files", "sizes", "sha256") if fmt >= 2 else ()):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint record has no {key!r} entry")
    return state


def checkpoint_files(directory) -> dict:
    """``{"record", "model", "state"}``: the paths of the complete checkpoint in ``directory`` (its
    ``state.json`` and the two safetensors files it names), e.g. to inspect the saved weights."""
    d = Path(directory)
    state = read_record(d)
    names = state.get("files", {"model": "model.safetensors", "state": "state.safetensors"})
    return {"record": d / "state.json", "model": d / names["model"], "state": d / names["state"]}
