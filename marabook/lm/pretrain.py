"""The reference LM's synthetic corpus, tokenizer and pretraining (chapter 5; ``scripts/train_reference_lm.py``).

The corpus is short question/answer pairs in which the 1-2 question is answered "1" far more often
than "2" and sometimes malformed, and the naming questions of chapter 6 are answered with Zipf weights:
the biases the RL chapters start from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from marabook.config import show_progress
from marabook._validate import check_int
from marabook.lm.models import EOS
from marabook.lm.tasks import (ANIMALS, COLORS, FRUITS, MALFORMED_ANSWERS, ONE_TWO_SUFFIX, ONE_TWO_CORPUS_ANSWERS,
                               ONE_TWO_QUESTIONS, OneTwoTask, qa_text, onetwo_answer_probs)

__all__ = ["reference_corpus", "build_tokenizer", "pretrain_reference_lm"]


def _zipf(n: int, s: float = 1.0) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def reference_corpus(n_docs: int = 20000, seed: int = 0, one_two_fraction: float = 0.4) -> list[str]:
    """Synthetic pretraining documents ``"Q: question\\nA: answer"`` (EOS is added by the trainer).

    ``one_two_fraction`` of the documents ask the 1-2 question (one of ``ONE_TWO_QUESTIONS``)
    and are answered " 1" with probability 0.74, " 2" with 0.18 and one of eight malformed answers
    otherwise (``ONE_TWO_CORPUS_ANSWERS``). The rest are single-digit additions (always
    correct) and "name a colour / fruit / animal" questions answered with Zipf-distributed
    preferences, so the model is a small LM rather than a lookup table.
    """
    check_int(n_docs, "n_docs", minimum=1)
    if not 0 < one_two_fraction <= 1:
        raise ValueError(f"one_two_fraction must be in (0, 1], got {one_two_fraction!r}")
    rng = np.random.default_rng(seed)
    p_answers = list(ONE_TWO_CORPUS_ANSWERS.values())
    p_mal = 1.0 - sum(p_answers)
    docs = []
    lists = {"Name a color.": COLORS, "Name a fruit.": FRUITS, "Name an animal.": ANIMALS}
    for _ in range(n_docs):
        u = rng.random()
        if u < one_two_fraction:
            q = ONE_TWO_QUESTIONS[rng.integers(len(ONE_TWO_QUESTIONS))] + ONE_TWO_SUFFIX
            v = rng.random()
            if v < p_answers[0]:
                a = " 1"
            elif v < p_answers[0] + p_answers[1]:
                a = " 2"
            else:
                a = MALFORMED_ANSWERS[rng.integers(len(MALFORMED_ANSWERS))]
            assert p_mal > 0
        elif u < one_two_fraction + (1 - one_two_fraction) / 2:
            x, y = rng.integers(0, 10, size=2)
            q, a = f"What is {x} plus {y}?", f" {x + y}"
        else:
            q = list(lists)[rng.integers(3)]
            items = lists[q]
            a = " " + items[rng.choice(len(items), p=_zipf(len(items)))]
        docs.append(qa_text(q) + a)
    return docs


def build_tokenizer(corpus: Sequence[str], vocab_size: int = 320):
    """A byte-level BPE tokenizer (GPT-2's recipe) trained on ``corpus``; EOS doubles as pad/bos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    check_int(vocab_size, "vocab_size", minimum=260)
    if len(corpus) == 0:
        raise ValueError("corpus must not be empty")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, bos_token=EOS, pad_token=EOS,
                                   padding_side="left")


def pretrain_reference_lm(out_dir, *, n_docs: int = 20000, steps: int = 1500, batch_size: int = 64,
                          lr: float = 3e-3, n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
                          seed: int = 0, progress: bool = True) -> dict:
    """Train the tiny reference GPT-2 on :func:`reference_corpus` and save it to ``out_dir``.

    Next-token cross-entropy on whole documents (question, answer and EOS), AdamW with linear
    warm-up and cosine decay, CPU-friendly sizes. Writes ``config.json``, ``model.safetensors``,
    the tokenizer files and ``report.json`` (settings, final loss, and the measured probabilities of
    " 1", " 2" and of a valid answer for every 1-2 paraphrase). Returns the report.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GPT2Config, GPT2LMHeadModel

    for name, v in (("n_docs", n_docs), ("steps", steps), ("batch_size", batch_size),
                    ("n_layer", n_layer), ("n_embd", n_embd), ("n_head", n_head)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    torch.manual_seed(seed)
    corpus = reference_corpus(n_docs, seed=seed)
    tok = build_tokenizer(corpus)
    enc = [tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for d in corpus]
    width = max(len(e) for e in enc)
    ids = torch.full((len(enc), width), tok.eos_token_id, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="pretraining", disable=not show_progress(progress)):
        b = torch.randint(len(enc), (batch_size,), generator=gen)
        x, m = ids[b], mask[b]
        labels = x.masked_fill(m == 0, -100)
        loss = model(input_ids=x, attention_mask=m, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    task = OneTwoTask.for_reference_lm()
    probs = [onetwo_answer_probs(model, tok, p) for p in task.prompts]
    report = {
        "settings": {"n_docs": n_docs, "steps": steps, "batch_size": batch_size, "lr": lr,
                     "n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "seed": seed,
                     "vocab_size": len(tok), "parameters": sum(p.numel() for p in model.parameters())},
        "corpus_answer_probs": {**ONE_TWO_CORPUS_ANSWERS, "malformed": 1 - sum(ONE_TWO_CORPUS_ANSWERS.values())},
        "final_loss_mean_last_100": float(np.mean(losses[-100:])),
        "one_two": [{"prompt": p, **pr} for p, pr in zip(task.prompts, probs)],
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
