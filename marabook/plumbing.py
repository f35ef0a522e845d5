"""What every trainer of the book shares: device choice, padding, the loop, checkpoints.

Both trainers (:class:`marabook.rl.Trainer` for language models, chapter 5, and
:class:`marabook.chem.ReinventTrainer` for SMILES, chapter 8) subclass :class:`TrainLoop`, which owns

* ``train(until)``: call ``train_step()`` until the run's position (optimiser steps for RL, oracle
  calls for REINVENT) reaches ``until`` or the configured end, with a tqdm bar and periodic checkpoints;
* ``save_checkpoint`` / ``load_checkpoint``: one format for every trainer (``marabook.checkpoints.CHECKPOINT_FORMAT``), a
  directory holding ``model-<tag>.safetensors`` (the trained weights; only the trainable ones, e.g. LoRA
  adapters, when ``trainable_only``), ``state-<tag>.safetensors`` (optimiser moments, random generator
  state: tensors only) and ``state.json`` (format version, what the run belongs to, config, step, history,
  everything else, and the names, sizes and SHA-256 of the two tensor files). Nothing is pickled.

How a checkpoint survives a kill: a save writes its tensor files under new names, fsyncs them, writes
``state.json`` to a temporary file, fsyncs it and the directory, and switches it in with one atomic
``os.replace``; only then are the previous checkpoint's files removed. Killed at any instant, the
directory holds either the previous complete checkpoint or the new one, never a mix. A load checks the
format version, the trainer, the config and the run's identity (``TrainLoop._identity``, plus a
fingerprint of the trained module's weights when the trainer was built) and the files' sizes and hashes
*before* it changes anything, and refuses with a :class:`~marabook.checkpoints.CheckpointError` naming the file (and, for a
mismatch, both sides).

A subclass provides ``train_step()``, ``position`` (the quantity ``until`` refers to), ``end`` (where
a full run stops), ``label``, and the parts of its state that are not common: ``_extra_state()`` and
``_load_extra_state(state)`` (JSON), plus the names of the module and optimiser it trains.

Torch is imported only inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Sequence

from marabook.checkpoints import (CHECKPOINT_FORMAT, config_record, VERSIONED_FILE, TEMPORARY_FILE, CheckpointError, fsync, file_sha256, module_fingerprint, optimizer_to_safe, optimizer_from_safe, read_record, checkpoint_files)
from marabook.config import show_progress
from marabook._validate import check_int

__all__ = ["default_device", "device_name", "autocast_dtype", "pad_sequences", "pad_right", "TrainLoop", "PRECISIONS"]

#: Accepted ``precision`` settings: ``"auto"`` lets :func:`autocast_dtype` decide from the device.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def default_device(device=None):
    """The ``torch.device`` to run on: ``device`` when given, else CUDA when a GPU is visible, else CPU.

    The one place marabook decides where models run (both trainers, model loading, the chapters).
    """
    import torch

    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must name a torch device, got {device!r}") from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {device!r} asks for CUDA, but torch sees no CUDA GPU here "
                                 f"(torch.cuda.is_available() is False); use device='cpu' or None")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise ValueError(f"device {device!r} names CUDA GPU {dev.index}, but torch sees "
                                 f"{torch.cuda.device_count()}")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device) -> str:
    """What a run records as where it ran: the GPU's name for a CUDA device (``"NVIDIA H200"``), else the device
    type (``"cpu"``); ``device`` as :func:`default_device` accepts it, or a model's parameter device."""
    import torch

    d = default_device(device)
    return torch.cuda.get_device_name(d) if d.type == "cuda" else d.type


def autocast_dtype(device, precision: str = "auto"):
    """The dtype forward passes autocast to on ``device``, or None for plain fp32 (the one place this is decided).

    ``"auto"``: fp32 on the CPU; bf16 on GPUs that compute it natively (compute capability 8.0 and up:
    A100, H100, RTX 30xx/40xx, L4); fp16 on older GPUs such as Colab's free T4 (7.5), which only emulate
    bf16 -- fp16 needs a gradient scaler (``torch.amp.GradScaler``), which the trainer adds.
    ``"fp32"``, ``"bf16"``, ``"fp16"`` force a choice (the half precisions need a CUDA device).
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    if precision == "fp32":
        return None
    if dev.type != "cuda":
        if precision != "auto":
            raise ValueError(f"precision {precision!r} needs a CUDA device, got {dev}")
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    major, _ = torch.cuda.get_device_capability(dev)
    return torch.bfloat16 if major >= 8 else torch.float16


def pad_sequences(seqs: Sequence[Sequence[int]], pad_value: int, *, left: bool = False, device="cpu"):
    """Token-id lists padded into ``(ids, mask)`` LongTensors of shape (len(seqs), longest).

    ``left=True`` pads on the left (prompts, so that generation continues every row at the end);
    otherwise on the right (completions, SMILES). ``mask`` is 1 on real tokens.
    """
    import torch

    if isinstance(seqs, (str, bytes)) or len(seqs) == 0:
        raise ValueError("seqs must be a non-empty list of token-id lists")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_value), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s) == 0:
            continue
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, cols] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


def pad_right(ids, width: int, value: int):
    """Right-pad a (batch, T) tensor to ``width`` columns with ``value`` (unchanged when already ``width`` wide).

    The one right-padding step of both trainers: completions and reference samples scored in one pass
    (:class:`marabook.rl.Trainer`), sampled and replayed molecules in one batch
    (:class:`marabook.chem.ReinventTrainer`)."""
    import torch

    if ids.ndim != 2 or width < ids.shape[1]:
        raise ValueError(f"width must be >= the tensor's {ids.shape[-1]} columns, got {width}")
    return ids if ids.shape[1] == width else torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=value)


# ------------------------------------------------------------------------------------ checkpoints
#: The checkpoint layout :meth:`TrainLoop.save_checkpoint` writes (``"format"`` in ``state.json``);
#: :meth:`TrainLoop.load_checkpoint` reads this one and format 1 (fixed file names, no identity record).
class TrainLoop:
    """Shared loop and checkpointing of marabook's trainers (see the module docstring).

    Attributes a subclass sets in ``__init__``: ``config`` (a dataclass), ``device``, ``generator``
    (a ``torch.Generator``), ``optimizer``, ``step``, ``history``, ``checkpoint_dir``,
    ``checkpoint_every``, ``progress``; and ``trained_module`` (the name of the module it trains).
    ``__init__`` calls ``_init_loop`` first and ``_resume_if_checkpointed`` last.
    """

    trained_module: str = "model"
    unit: str = "step"
    #: save and restore only the parameters that train (e.g. LoRA adapters), not the frozen base
    trainable_only: bool = False

    # ---- what a subclass provides -------------------------------------------------------------
    def train_step(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def position(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def end(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _postfix(self, entry: dict) -> dict:
        return {}

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _identity(self) -> dict:
        """What the run belongs to besides its trainer class, config and start weights, as JSON-able
        ``{name: value}`` (e.g. ``{"oracle": {"name": ..., "fingerprint": ...}}``): written into every
        checkpoint and compared on resume, which refuses any difference, naming both sides. Default ``{}``."""
        return {}

    def _check_before_step(self) -> None:
        """Called by :meth:`train` before the first step: raise here (e.g. a task without ``metrics``)
        so that bad input is refused before the optimiser changes anything. Default: nothing."""

    # ---- the loop -----------------------------------------------------------------------------
    def _init_loop(self, checkpoint_dir, checkpoint_every: int, progress: bool) -> None:
        check_int(checkpoint_every, "checkpoint_every", minimum=0)
        self.checkpoint_dir = self._checked_dir(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = bool(progress)
        self.step = 0
        self.history: list[dict] = []
        self._saved_at = None

    @staticmethod
    def _checked_dir(checkpoint_dir) -> Path:
        """``checkpoint_dir`` as a Path to an existing, writable directory (created here), or a named error
        now, before any training, rather than after the last step."""
        if not isinstance(checkpoint_dir, (str, os.PathLike)) or str(checkpoint_dir) == "":
            raise ValueError(f"checkpoint_dir must be a path (str or pathlib.Path), got {checkpoint_dir!r}")
        d = Path(checkpoint_dir)
        if d.exists() and not d.is_dir():
            raise ValueError(f"checkpoint_dir {d} exists and is not a directory")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"checkpoint_dir {d} cannot be created: {exc}") from exc
        if not os.access(d, os.W_OK | os.X_OK):
            raise ValueError(f"checkpoint_dir {d} is not writable")
        return d

    def _resume_if_checkpointed(self) -> None:
        """Record the trained module's fingerprint as built, then resume from ``checkpoint_dir`` if it
        holds a checkpoint; a run that starts fresh must start at position 0."""
        self._start_fingerprint = module_fingerprint(getattr(self, self.trained_module))
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "state.json").exists():
            self.load_checkpoint(self.checkpoint_dir)
            return
        if self.position != 0:
            used = (f"an oracle that has already made {self.position} calls" if self.unit == "call"
                    else f"a counter already at {self.position}")
            raise ValueError(f"{type(self).__name__} would start at {self.unit} {self.position}, not 0: it was "
                             f"given {used} (reused from another run?); pass a fresh one, or a checkpoint_dir "
                             f"to resume")

    def train(self, until: int | None = None) -> list[dict]:
        """Run ``train_step`` until :attr:`position` reaches ``until`` (to stop early, as if the run
        were killed) or :attr:`end`; checkpoint every ``checkpoint_every`` steps and at the end.
        Returns the history (one dict per step)."""
        from tqdm.auto import tqdm

        end = self.end if until is None else min(int(until), self.end)
        if self.position < end:
            self._check_before_step()
        bar = tqdm(total=end, initial=self.position, desc=getattr(self.config, "label", type(self).__name__),
                   unit=self.unit, disable=not show_progress(self.progress), leave=False)
        while self.position < end:
            before = self.position
            entry = self.train_step()
            bar.update(self.position - before)
            bar.set_postfix(self._postfix(entry))
            if self.checkpoint_dir is not None and self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self.save_checkpoint(self.checkpoint_dir)
        bar.close()
        if self.checkpoint_dir is not None and self._saved_at != (self.step, self.position):
            self.save_checkpoint(self.checkpoint_dir)
        return self.history

    @property
    def history_arrays(self) -> dict:
        """The history as ``{key: np.ndarray over steps}``."""
        import numpy as np

        keys = self.history[0].keys() if self.history else []
        return {k: np.array([h[k] for h in self.history]) for k in keys}

    # ---- checkpoints --------------------------------------------------------------------------
    def _config_json(self) -> dict:
        return config_record(self.config)  # fields marked OMIT_DEFAULT leave the record while at their default

    def _checkpoint_identity(self) -> dict:
        ident = {}
        fp = getattr(self, "_start_fingerprint", None)
        if fp is not None:
            ident["start_weights"] = fp
        extra = self._identity()
        if not isinstance(extra, dict):
            raise TypeError(f"{type(self).__name__}._identity() must return a dict, got {type(extra).__name__}")
        ident.update(json.loads(json.dumps(extra)))
        return ident

    def save_checkpoint(self, directory) -> Path:
        """Write the run's whole state to ``directory`` (see the module docstring): new tensor files, then
        ``state.json`` switched in atomically, then the previous checkpoint's files removed."""
        from safetensors.torch import save_file, save_model

        d = self._checked_dir(directory)
        previous_format = None
        try:
            previous_format = json.loads((d / "state.json").read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            pass
        tag = f"{self.step:08d}-{secrets.token_hex(4)}"
        files = {"model": f"model-{tag}.safetensors", "state": f"state-{tag}.safetensors"}
        module = getattr(self, self.trained_module)
        if self.trainable_only:
            save_file({n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad},
                      str(d / files["model"]))
        else:
            save_model(module, str(d / files["model"]))
        tensors, opt_meta = optimizer_to_safe(self.optimizer.state_dict())
        tensors["generator"] = self.generator.get_state().cpu()
        save_file(tensors, str(d / files["state"]))
        for name in files.values():
            fsync(d / name)
        state = {"format": CHECKPOINT_FORMAT, "trainer": type(self).__name__, "identity": self._checkpoint_identity(),
                 "config": self._config_json(), "step": self.step, "history": self.history, "optimizer": opt_meta,
                 "extra": self._extra_state(), "files": files,
                 "sizes": {k: (d / v).stat().st_size for k, v in files.items()},
                 "sha256": {k: file_sha256(d / v) for k, v in files.items()}}
        tmp = d / f"state.json.{tag}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
            f.flush()
            os.fsync(f.fileno())
        fsync(d)                         # the new files' names are on disk before the switch
        os.replace(tmp, d / "state.json")  # the switch: one atomic rename
        fsync(d)
        keep = set(files.values())
        for p in d.iterdir():             # only now the previous checkpoint's files go
            stale = (VERSIONED_FILE.match(p.name) and p.name not in keep) or TEMPORARY_FILE.match(p.name) \
                or (previous_format == 1 and p.name in ("model.safetensors", "state.safetensors"))
            if stale:
                try:
                    p.unlink()
                except OSError:
                    pass
        self._saved_at = (self.step, self.position)
        return d

    def _check_identity(self, record_path: Path, state: dict) -> None:
        if state.get("trainer") != type(self).__name__:
            raise CheckpointError(f"{record_path}: checkpoint was written by {state.get('trainer')}, "
                                  f"not {type(self).__name__}")
        current = self._config_json()
        if state["config"] != current:
            diff = sorted(k for k in set(state["config"]) | set(current)
                          if state["config"].get(k, "<absent>") != current.get(k, "<absent>"))
            sides = "; ".join(f"{k}: checkpoint {state['config'].get(k, '<absent>')!r}, this run "
                              f"{current.get(k, '<absent>')!r}" for k in diff)
            raise CheckpointError(f"{record_path}: checkpoint was written with a different config ({sides})")
        if state["format"] < 2:
            return  # format 1 recorded no identity
        saved, mine = state.get("identity", {}), self._checkpoint_identity()
        for key in sorted(set(saved) | set(mine)):
            a, b = saved.get(key, "<not recorded>"), mine.get(key, "<not recorded>")
            if a != b:
                what = ("the trained module's weights as the trainer was built (another model or prior, or "
                        "one already trained in place?)" if key == "start_weights" else key)
                raise CheckpointError(f"{record_path}: checkpoint belongs to another run: {what} differs "
                                      f"(checkpoint {a!r}, this run {b!r})")

    @staticmethod
    def _verify(path: Path, state: dict, key: str) -> None:
        """``path`` exists and (format 2) has the size and SHA-256 the record gives, else a CheckpointError."""
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (named by {path.parent / 'state.json'})")
        if state["format"] >= 2:
            size = path.stat().st_size
            if size != state["sizes"][key]:
                raise CheckpointError(f"{path}: {size} bytes, the checkpoint record says {state['sizes'][key]} "
                                      f"(truncated or overwritten)")
            if file_sha256(path) != state["sha256"][key]:
                raise CheckpointError(f"{path}: contents differ from the checkpoint record's SHA-256 (corrupt)")

    @staticmethod
    def _load_file(path: Path, device: str) -> dict:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=device)
        except Exception as exc:  # safetensors' own errors (SafetensorError, OSError) name no file
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc

    def load_checkpoint(self, directory) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint`. Everything is checked first (format,
        trainer, config, identity, files); a :class:`CheckpointError` naming the file leaves the trainer
        as it was."""
        from safetensors.torch import load_model

        d = Path(directory)
        state = read_record(d)
        record = d / "state.json"
        self._check_identity(record, state)
        paths = checkpoint_files(d)
        module = getattr(self, self.trained_module)
        self._verify(paths["model"], state, "model")
        self._verify(paths["state"], state, "state")
        tensors = self._load_file(paths["state"], "cpu")
        if "generator" not in tensors:
            raise CheckpointError(f"{paths['state']}: no generator state in it")
        try:
            optimizer_state = optimizer_from_safe(tensors, state["optimizer"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{paths['state']}: optimiser state does not match {record} ({exc!r})") from exc
        saved = None
        if self.trainable_only:
            saved = self._load_file(paths["model"], str(self.device))
            trainable = {n for n, p in module.named_parameters() if p.requires_grad}
            if set(saved) != trainable:
                raise CheckpointError(f"{paths['model']}: holds other trainable parameters than this model")
        try:
            if saved is not None:
                module.load_state_dict(saved, strict=False)
            else:
                load_model(module, str(paths["model"]), device=str(self.device))
            self.optimizer.load_state_dict(optimizer_state)
            self.generator.set_state(tensors["generator"])
        except Exception as exc:  # shapes or names that do not fit, safetensors errors
            raise CheckpointError(f"{paths['model']}: does not fit this trainer's model or optimiser "
                                  f"({type(exc).__name__}: {exc})") from exc
        self.step = int(state["step"])
        self.history = list(state["history"])
        self._load_extra_state(state["extra"])
        self._saved_at = (self.step, self.position)
