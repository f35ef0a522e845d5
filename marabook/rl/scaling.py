"""Fitting real-size models into a GPU: LoRA adapters and gradient checkpointing (book chapter 5).

:class:`marabook.rl.Trainer` uses these when :class:`~marabook.rl.RLConfig` asks for ``lora`` or
``gradient_checkpointing``; ``micro_batch_size`` and the precision are handled in the trainer itself and
:func:`marabook.plumbing.autocast_dtype`. :mod:`marabook.lm.sizing` says which settings a model needs on a GPU.
"""

from __future__ import annotations

from marabook.rl.config import LoraSettings

__all__ = ["add_lora", "AdaptersOff", "enable_checkpointing", "TrainingMode"]


def enable_checkpointing(model) -> None:
    """Hugging Face gradient checkpointing. It only acts in training mode, which the trainer switches on
    around its gradient passes; a model with dropout would then be scored by another function than the one
    it sampled from, so that is refused (set the model config's dropout values to 0 first)."""
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise ValueError("gradient_checkpointing needs a Hugging Face model (gradient_checkpointing_enable)")
    cfg = getattr(model, "config", None)
    drops = {k: v for k, v in (vars(cfg) if cfg is not None else {}).items()
             if ("dropout" in k or "pdrop" in k) and isinstance(v, (int, float)) and v > 0}
    if drops:
        raise ValueError(f"gradient_checkpointing trains in training mode, where this model drops out {drops}; "
                         "set those config values to 0")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the older name is deprecated)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class TrainingMode:
    """Training mode around the gradient passes only (Hugging Face checkpoints activations only then, and
    turns off the key/value cache the sampler needs); with checkpointing off, nothing changes."""

    def __init__(self, model, on: bool):
        self.model, self.on = model, on

    def __enter__(self):
        if self.on:
            self.model.train()

    def __exit__(self, *exc):
        if self.on:
            self.model.eval()
        return False


def add_lora(model, lora: LoraSettings, seed: int):
    """Wrap ``model`` with trainable LoRA adapters (peft); the base weights are frozen. The adapters'
    random initialisation is drawn from ``seed`` in a forked RNG (same seed, same adapters; the global
    torch RNG is left as it was)."""
    import torch

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError('lora needs peft: pip install "marabook[lm]" (or pip install peft)') from exc
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                     target_modules=lora.target_modules)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, cfg)


class AdaptersOff:
    """``with AdaptersOff(peft_model) as ref:`` the base model (adapters disabled) as the reference."""

    def __init__(self, model):
        self.model, self._ctx = model, None

    def __enter__(self):
        self._ctx = self.model.disable_adapter()
        self._ctx.__enter__()
        return self.model

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
