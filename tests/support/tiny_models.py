"""Tiny random-weight causal LMs with real architectures and Qwen's vocabulary size, built locally.

``save_tiny_model(path, "qwen2")`` writes a 2-layer Qwen2 (or Llama) with hidden size 32 and the real
Qwen2.5 vocabulary size of 151,936 logits, plus a byte-level BPE tokenizer with Qwen's special tokens and
a ChatML chat template, to a directory that :func:`marabook.lm.load_causal_lm` loads like a hub checkpoint
(``MODEL_ID`` = the directory). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

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


def save_tiny_model(path, arch: str = "qwen2", hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a random-weight ``arch`` ("qwen2" or "llama") causal LM and its tokenizer to ``path``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tok = build_tokenizer()
    common = dict(vocab_size=QWEN_VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id,
                  tie_word_embeddings=True)
    cfg = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch](**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
