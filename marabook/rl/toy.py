"""A one-token "language model" and a character tokenizer: the bandits of chapters 1-4 behind the
LM interface, so :class:`marabook.rl.Trainer` runs on them can be checked against closed forms."""

from __future__ import annotations

import numpy as np

__all__ = ["TokenBanditLM", "SymbolTokenizer"]


def _torch_module_base():
    import torch

    return torch.nn.Module


class _Output:
    def __init__(self, logits, past_key_values):
        self.logits = logits
        self.past_key_values = past_key_values


class TokenBanditLM(_torch_module_base()):
    """A context-free "language model": the same next-token logits at every position.

    With ``max_new_tokens=1`` its completions are single tokens and ``pi(y) = softmax(logits)[y]``,
    so :class:`Trainer` runs on it reduce to the token bandits of chapters 1-4 and their results
    can be checked against the closed-form targets (chapter 5 does, and so do the tests). It has
    the Hugging Face call signature the trainer uses (``input_ids``, ``attention_mask``,
    ``position_ids``, ``past_key_values``, ``use_cache``; returns ``.logits``).
    """

    def __init__(self, logits):
        import torch

        super().__init__()
        t = torch.as_tensor(np.asarray(logits, dtype=np.float64), dtype=torch.float32)
        if t.ndim != 1 or t.numel() < 2 or not bool(torch.isfinite(t).all()):
            raise ValueError("logits must be a finite 1-D array with at least 2 entries")
        self.logits = torch.nn.Parameter(t.clone())

    @classmethod
    def from_probs(cls, probs) -> "TokenBanditLM":
        """The model whose next-token distribution is ``probs`` (strictly positive, sums to 1)."""
        p = np.asarray(probs, dtype=float)
        if p.ndim != 1 or np.any(p <= 0) or abs(p.sum() - 1) > 1e-6:
            raise ValueError("probs must be a strictly positive 1-D distribution summing to 1")
        return cls(np.log(p / p.sum()))

    def probs(self) -> np.ndarray:
        """The current next-token distribution as a NumPy array."""
        import torch

        with torch.no_grad():
            return torch.softmax(self.logits.double(), 0).cpu().numpy()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, **kwargs):
        b, t = input_ids.shape
        return _Output(self.logits.expand(b, t, -1), past_key_values)


class SymbolTokenizer:
    """A tokenizer whose tokens are the characters of ``symbols`` plus an EOS token (the last id).

    Implements the slice of the Hugging Face tokenizer interface :class:`Trainer` uses:
    ``tokenizer(text, add_special_tokens=False)["input_ids"]``, ``decode(ids,
    skip_special_tokens=True)``, ``eos_token_id`` and ``pad_token_id``.
    """

    def __init__(self, symbols: str):
        if not isinstance(symbols, str) or len(symbols) == 0 or len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be a non-empty string of distinct characters")
        self.symbols = symbols
        self.eos_token_id = len(symbols)
        self.pad_token_id = len(symbols)
        self._index = {c: i for i, c in enumerate(symbols)}

    def __len__(self) -> int:
        return len(self.symbols) + 1

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        try:
            return {"input_ids": [self._index[c] for c in text]}
        except KeyError as exc:
            raise ValueError(f"text contains a character outside symbols: {exc}") from None

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(self.symbols[i] for i in ids if i != self.eos_token_id or not skip_special_tokens)
