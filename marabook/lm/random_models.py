"""Random-weight causal LMs with real architectures and Qwen's vocabulary size, built locally.

``save_random_lm(path, "qwen2")`` writes a Qwen2 (or Llama) of any size (default: 2 layers, hidden size
32) with the real Qwen2.5 vocabulary size of 151,936 logits, plus a byte-level BPE tokenizer with Qwen's
special tokens and a ChatML chat template, to a directory that :func:`marabook.lm.load_causal_lm` loads
like a hub checkpoint (``MODEL_ID`` = the directory). Nothing is downloaded. The tests run the chapters'
GPU code paths through these; ``scripts/bench_lm.py`` measures the trainers on one with Qwen2.5-0.5B's
dimensions.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["QWEN_VOCAB", "QWEN25_DIMS", "build_tokenizer", "save_random_lm"]

QWEN_VOCAB = 151_936
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer (the recipe of GPT-2 and Qwen) trained on the texts of the book's tasks,
    with Qwen's special tokens (``<|endoftext|>`` pad, ``<|im_start|>``, ``<|im_end|>`` eos) and a ChatML
    chat template. Like a real Qwen checkpoint, it has fewer tokens than the model has logits."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from marabook.lm import NAME_CATEGORIES, ONE_TWO_QUESTIONS, NameTask

    texts = [q + s for q in ONE_TWO_QUESTIONS for s in (" Answer with one digit.", " Reply with the digit only.")]
    texts += [NameTask.question(c) + " Reply with one word." for c in NAME_CATEGORIES]
    texts += [" ".join(ws) for ws in NAME_CATEGORIES.values()] + ["user assistant system 0 1 2 3 4 5 6 7 8 9"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS[:3], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts * 20, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML
    return tok


#: Qwen2.5 dimensions (hidden, layers, MLP width, attention heads, key/value heads) by size.
QWEN25_DIMS = {"0.5b": (896, 24, 4864, 14, 2), "1.5b": (1536, 28, 8960, 12, 2), "3b": (2048, 36, 11008, 16, 2)}


def save_random_lm(path, arch: str = "qwen2", hidden: int = 32, layers: int = 2, intermediate: int | None = None,
                   heads: int = 4, kv_heads: int = 2, seed: int = 0) -> Path:
    """Write a random-weight ``arch`` ("qwen2" or "llama") causal LM and its tokenizer to ``path``.
    ``save_random_lm(path, "qwen2", *QWEN25_DIMS["0.5b"])`` has Qwen2.5-0.5B's shapes."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from marabook._validate import check_int

    for name, v in (("hidden", hidden), ("layers", layers), ("heads", heads), ("kv_heads", kv_heads)):
        check_int(v, name, minimum=1)
    if arch not in ("qwen2", "llama"):
        raise ValueError(f"arch must be 'qwen2' or 'llama', got {arch!r}")
    tok = build_tokenizer()
    common = dict(vocab_size=QWEN_VOCAB, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                  max_position_embeddings=2048, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.pad_token_id, tie_word_embeddings=True)
    cfg = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch](**common)
    with torch.random.fork_rng(devices=[]):  # seeded weights, the global RNG left as it was
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
