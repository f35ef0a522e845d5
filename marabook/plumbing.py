"""What every trainer of the book shares: device choice, padding, the loop, checkpoints.

Both trainers (:class:`marabook.rl.Trainer` for language models, chapter 5, and
:class:`marabook.chem.ReinventTrainer` for SMILES, chapter 8) subclass :class:`TrainLoop`, which owns

* ``train(until)``: call ``train_step()`` until the run's position (optimiser steps for RL, oracle
  calls for REINVENT) reaches ``until`` or the configured end, with a tqdm bar and periodic checkpoints;
* ``save_checkpoint`` / ``load_checkpoint``: one format for every trainer, a directory with
  ``model.safetensors`` (the trained weights; only the trainable ones, e.g. LoRA adapters, when
  ``trainable_only``), ``state.safetensors`` (optimiser moments, random
  generator state: tensors only) and ``state.json`` (config, step, history, everything else), written
  last so that a half-written checkpoint is never read. Nothing is pickled.

A subclass provides ``train_step()``, ``position`` (the quantity ``until`` refers to), ``end`` (where
a full run stops), ``label``, and the parts of its state that are not common: ``_extra_state()`` and
``_load_extra_state(state)`` (JSON), plus the names of the module and optimiser it trains.

Torch is imported only inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from marabook.config import show_progress
from marabook._validate import check_int

__all__ = ["default_device", "autocast_dtype", "pad_sequences", "TrainLoop", "optimizer_to_safe",
           "optimizer_from_safe", "PRECISIONS"]

#: Accepted ``precision`` settings: ``"auto"`` lets :func:`autocast_dtype` decide from the device.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def default_device(device=None):
    """The ``torch.device`` to run on: ``device`` when given, else CUDA when a GPU is visible, else CPU.

    The one place marabook decides where models run (both trainers, model loading, the chapters).
    """
    import torch

    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must name a torch device, got {device!r}") from exc
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


# ------------------------------------------------------------------------------------ checkpoints
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


class TrainLoop:
    """Shared loop and checkpointing of marabook's trainers (see the module docstring).

    Attributes a subclass sets in ``__init__``: ``config`` (a dataclass), ``device``, ``generator``
    (a ``torch.Generator``), ``optimizer``, ``step``, ``history``, ``checkpoint_dir``,
    ``checkpoint_every``, ``progress``; and ``trained_module`` (the name of the module it trains).
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

    # ---- the loop -----------------------------------------------------------------------------
    def _init_loop(self, checkpoint_dir, checkpoint_every: int, progress: bool) -> None:
        check_int(checkpoint_every, "checkpoint_every", minimum=0)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = bool(progress)
        self.step = 0
        self.history: list[dict] = []

    def _resume_if_checkpointed(self) -> None:
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "state.json").exists():
            self.load_checkpoint(self.checkpoint_dir)

    def train(self, until: int | None = None) -> list[dict]:
        """Run ``train_step`` until :attr:`position` reaches ``until`` (to stop early, as if the run
        were killed) or :attr:`end`; checkpoint every ``checkpoint_every`` steps and at the end.
        Returns the history (one dict per step)."""
        from tqdm.auto import tqdm

        end = self.end if until is None else min(int(until), self.end)
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
        if self.checkpoint_dir is not None:
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
        return json.loads(json.dumps(asdict(self.config)))

    def save_checkpoint(self, directory) -> Path:
        """Write the run's whole state to ``directory`` (safetensors + JSON, see the module docstring)."""
        from safetensors.torch import save_file, save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        module = getattr(self, self.trained_module)
        if self.trainable_only:
            save_file({n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad},
                      str(d / "model.safetensors"))
        else:
            save_model(module, str(d / "model.safetensors"))
        tensors, opt_meta = optimizer_to_safe(self.optimizer.state_dict())
        tensors["generator"] = self.generator.get_state().cpu()
        save_file(tensors, str(d / "state.safetensors"))
        state = {"format": 1, "trainer": type(self).__name__, "config": self._config_json(), "step": self.step,
                 "history": self.history, "optimizer": opt_meta, "extra": self._extra_state()}
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(d / "state.json")  # the state file appears last: a half-written checkpoint is ignored
        return d

    def load_checkpoint(self, directory) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (the configs must match)."""
        from safetensors.torch import load_file, load_model

        d = Path(directory)
        state = json.loads((d / "state.json").read_text())
        if state.get("trainer") != type(self).__name__:
            raise ValueError(f"checkpoint in {d} was written by {state.get('trainer')}, not {type(self).__name__}")
        if state["config"] != self._config_json():
            raise ValueError(f"checkpoint in {d} was written with a different config: {state['config']}")
        module = getattr(self, self.trained_module)
        if self.trainable_only:
            saved = load_file(str(d / "model.safetensors"), device=str(self.device))
            trainable = {n for n, p in module.named_parameters() if p.requires_grad}
            if set(saved) != trainable:
                raise ValueError(f"checkpoint in {d} holds other trainable parameters than this model")
            module.load_state_dict(saved, strict=False)
        else:
            load_model(module, str(d / "model.safetensors"), device=str(self.device))
        tensors = load_file(str(d / "state.safetensors"))
        self.optimizer.load_state_dict(optimizer_from_safe(tensors, state["optimizer"]))
        self.generator.set_state(tensors["generator"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self._load_extra_state(state["extra"])
