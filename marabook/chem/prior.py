"""The SMILES prior: a GRU language model in REINVENT's architecture (book chapter 7).

Embedding -> stacked GRU -> linear layer over the SMILES vocabulary, trained by maximum likelihood on
the shipped MOSES subset (``scripts/train_prior.py``). REINVENT uses 3 GRU layers of 512 units; the
shipped prior is scaled down (see its ``config.json``) so that pretraining and the RL chapters fit a
2-core CPU. Weights ship as safetensors with the vocabulary (JSON), the config and a measured report.

The same class is the REINVENT *agent*: the agent is a copy of the prior that RL fine-tunes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from marabook.config import show_progress
from marabook._validate import check_int
from marabook.chem.tokenizer import SmilesTokenizer
from marabook.plumbing import default_device, pad_sequences

__all__ = ["SmilesGRU", "load_prior", "PRIOR_DIR", "pretrain_prior", "collate_ids"]

PRIOR_DIR = Path(__file__).resolve().parent.parent / "data" / "smiles_prior"

#: SHA-256 of a weights file -> SHA-256 of the vocabulary it was trained with, for priors saved before
#: :meth:`SmilesGRU.save_pretrained` recorded the vocabulary in the weights' metadata (the shipped prior).
_KNOWN_VOCABS = {"9cca70ab3b01aadd19908767fd0fa1c73538fa526947a39259b596a337e98095":
                 "98d39c775d045df50b94c77c64f32f638a35437c06c455a3e3f8464f52bfc397"}


def _vocab_sha(tokens) -> str:
    return hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()


def _file_sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def collate_ids(seqs, pad_id: int = 0) -> torch.Tensor:
    """Right-pad a list of id lists into a LongTensor (B, T) (:func:`marabook.plumbing.pad_sequences`)."""
    if len(seqs) == 0:
        raise ValueError("seqs must not be empty")
    return pad_sequences(seqs, pad_id)[0]


class SmilesGRU(nn.Module):
    """GRU language model over SMILES tokens.

    ``log_likelihood`` and ``sample`` are the two operations REINVENT needs: the sequence log-probability
    ``log pi(y) = sum_t log pi(y_t | y_<t)`` (start token given, end token included), and batched
    ancestral sampling driven by an explicit seed.
    """

    def __init__(self, tokenizer: SmilesTokenizer, embedding_dim: int = 128, hidden_size: int = 384,
                 num_layers: int = 2, dropout: float = 0.0, max_length: int = 100):
        super().__init__()
        if not isinstance(tokenizer, SmilesTokenizer):
            raise ValueError("tokenizer must be a SmilesTokenizer")
        for name, v in (("embedding_dim", embedding_dim), ("hidden_size", hidden_size),
                        ("num_layers", num_layers), ("max_length", max_length)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.tokenizer = tokenizer
        self.config = {"embedding_dim": embedding_dim, "hidden_size": hidden_size, "num_layers": num_layers,
                       "dropout": dropout, "max_length": max_length, "vocab_size": len(tokenizer)}
        self.embedding = nn.Embedding(len(tokenizer), embedding_dim, padding_idx=tokenizer.pad_id)
        self.gru = nn.GRU(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, len(tokenizer))
        never = torch.zeros(len(tokenizer), dtype=torch.bool)
        never[[tokenizer.pad_id, tokenizer.bos_id]] = True  # never generated: pi is a distribution over strings
        self.register_buffer("_never", never, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(self, ids: torch.Tensor, hidden=None):
        """Logits (B, T, V) for next-token prediction (padding and start token masked to -inf), and the
        final hidden state."""
        self.gru.flatten_parameters()  # cuDNN wants one weight chunk; copies (the agent) lose it
        out, hidden = self.gru(self.embedding(ids), hidden)
        return self.head(out).masked_fill(self._never, float("-inf")), hidden

    # ------------------------------------------------------------------ likelihoods
    def encode(self, smiles) -> torch.Tensor:
        """Padded id tensor (B, T) of ``smiles`` (with start/end ids) on the model's device."""
        if isinstance(smiles, str):
            raise ValueError("smiles must be a list of strings, not one string")
        return collate_ids([self.tokenizer.encode(s) for s in smiles], self.tokenizer.pad_id).to(self.device)

    def log_likelihood(self, ids: torch.Tensor) -> torch.Tensor:
        """``log pi(y)`` per row of a padded id tensor (B, T) that starts with the start id: the sum of
        the log-probabilities of every token after the start token up to and including the end token
        (padding after it contributes nothing). Differentiable."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.shape[1] < 2:
            raise ValueError("ids must be a LongTensor of shape (B, T) with T >= 2")
        ids = ids.to(self.device)
        logits, _ = self(ids[:, :-1])
        logp = torch.log_softmax(logits.float(), dim=-1)
        target = ids[:, 1:]
        tok = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return torch.where(target != self.tokenizer.pad_id, tok, torch.zeros_like(tok)).sum(dim=1)

    def smiles_log_likelihood(self, smiles, batch_size: int = 512) -> np.ndarray:
        """``log pi(y)`` of SMILES strings (no gradient), as a NumPy array."""
        out = []
        with torch.no_grad():
            for i in range(0, len(smiles), batch_size):
                out.append(self.log_likelihood(self.encode(smiles[i:i + batch_size])).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_ids(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0,
                   max_length: int | None = None):
        """Sample ``n`` sequences in one batch. Returns ``(ids, log_probs)``: ids (n, T) start with the
        start id and are padded after the end id; ``log_probs`` (n,) is ``log pi(y)`` at temperature 1
        of the sampled tokens (the same number :meth:`log_likelihood` gives for those ids). Sequences
        that hit ``max_length`` without an end token are kept as they are (they decode to truncated,
        usually invalid, SMILES)."""
        check_int(n, "n", minimum=1)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        max_length = self.config["max_length"] if max_length is None else check_int(max_length, "max_length")
        dev = self.device
        tok = torch.full((n,), self.tokenizer.bos_id, dtype=torch.long, device=dev)
        hidden = None
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        logp_sum = torch.zeros(n, device=dev)
        out = [tok]
        for _ in range(max_length):
            logits, hidden = self(tok.unsqueeze(1), hidden)
            logits = logits[:, 0].float()
            logp = torch.log_softmax(logits, dim=-1)
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, self.tokenizer.pad_id), nxt)
            logp_sum += torch.where(done, torch.zeros_like(logp_sum), logp.gather(1, nxt[:, None]).squeeze(1))
            out.append(nxt)
            done |= nxt == self.tokenizer.eos_id
            tok = nxt
            if bool(done.all()):
                break
        return torch.stack(out, dim=1), logp_sum

    def sample(self, n: int, seed: int | None = None, *, batch_size: int = 1024, temperature: float = 1.0,
               max_length: int | None = None, generator: torch.Generator | None = None) -> list[str]:
        """``n`` sampled SMILES strings (same seed, same strings on the same device). Pass either
        ``seed`` (a fresh generator) or an existing ``generator``."""
        check_int(n, "n", minimum=1)
        check_int(batch_size, "batch_size", minimum=1)
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(0 if seed is None else int(seed))
        was_training = self.training
        self.eval()
        out = []
        try:
            for i in range(0, n, batch_size):
                ids, _ = self.sample_ids(min(batch_size, n - i), generator=generator, temperature=temperature,
                                         max_length=max_length)
                out.extend(self.tokenizer.decode(r) for r in ids.cpu().tolist())
        finally:
            self.train(was_training)
        return out

    # ------------------------------------------------------------------ persistence
    def clone(self) -> "SmilesGRU":
        """An independent copy (the REINVENT agent starts as a clone of the prior)."""
        return copy.deepcopy(self)

    def save_pretrained(self, path, report: dict | None = None) -> Path:
        """Write ``model.safetensors``, ``vocab.json``, ``config.json`` (and ``report.json``)."""
        from safetensors.torch import save_file

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(p / "model.safetensors"), metadata={"vocab_sha256": _vocab_sha(self.tokenizer.tokens)})
        self.tokenizer.save(p / "vocab.json")
        (p / "config.json").write_text(json.dumps(self.config, indent=1))
        if report is not None:
            (p / "report.json").write_text(json.dumps(report, indent=1))
        return p

    @classmethod
    def from_pretrained(cls, path, device=None) -> "SmilesGRU":
        """Load a model written by :meth:`save_pretrained`. Refuses, naming the files, a vocabulary that is
        not the one the weights were trained with (other tokens, or the same tokens in another order: it
        would load and sample garbage), a vocabulary or config of another size, and unreadable files."""
        from safetensors import safe_open

        p = Path(path)
        weights, vocab, config = p / "model.safetensors", p / "vocab.json", p / "config.json"
        for f in (weights, vocab, config):
            if not f.exists():
                raise ValueError(f"path {p} has no {f.name}")
        try:
            tok = SmilesTokenizer.load(vocab)
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{vocab}: not a readable SMILES vocabulary ({type(exc).__name__}: {exc})") from exc
        try:
            cfg = json.loads(config.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{config}: not readable JSON ({exc})") from exc
        if not isinstance(cfg, dict):
            raise ValueError(f"{config}: not a model config (a JSON {type(cfg).__name__})")
        try:
            with safe_open(str(weights), "pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors' own errors name no file
            raise ValueError(f"{weights}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
        expected = meta.get("vocab_sha256") or _KNOWN_VOCABS.get(_file_sha(weights))
        if expected is not None and expected != _vocab_sha(tok.tokens):
            raise ValueError(f"{vocab} is not the vocabulary {weights} was trained with (other tokens, or the "
                             f"same tokens in another order); the prior would sample garbage")
        vocab_size = cfg.pop("vocab_size", None)
        if vocab_size is not None and vocab_size != len(tok):
            raise ValueError(f"{config} says vocab_size {vocab_size}, but {vocab} has {len(tok)} tokens")
        emb = state.get("embedding.weight")
        if emb is not None and emb.shape[0] != len(tok):
            raise ValueError(f"{weights} was trained with a vocabulary of {emb.shape[0]} tokens, but {vocab} has "
                             f"{len(tok)}: a prior of another vocabulary")
        try:
            model = cls(tok, **cfg)
        except TypeError as exc:
            raise ValueError(f"{config}: not a SmilesGRU config ({exc})") from exc
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{weights} does not fit the model {config} describes ({exc})") from exc
        return model.to(default_device(device)).eval()


def load_prior(path=None, device=None) -> SmilesGRU:
    """The shipped SMILES prior (``marabook/data/smiles_prior``), or one saved at ``path``."""
    return SmilesGRU.from_pretrained(PRIOR_DIR if path is None else path, device=device)


def pretrain_prior(smiles, *, tokenizer: SmilesTokenizer | None = None, epochs: float = 1.0,
                   batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device=None, model_kwargs=None,
                   progress: bool = True, log_every: int = 100):
    """Maximum-likelihood pretraining of a :class:`SmilesGRU` on ``smiles`` (Adam, gradient clipping at
    1, learning rate decayed linearly to 10%). Returns ``(model, history)``; ``history`` lists
    ``(step, mean token NLL)``."""
    from tqdm.auto import tqdm

    from marabook.chem.oracles import check_smiles_list

    smiles = check_smiles_list(smiles, "smiles")
    if len(smiles) == 0:
        raise ValueError("smiles must not be empty")
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    check_int(batch_size, "batch_size", minimum=1)
    tokenizer = tokenizer or SmilesTokenizer.from_smiles(smiles)
    torch.manual_seed(seed)
    dev = default_device(device)
    model = SmilesGRU(tokenizer, **(model_kwargs or {})).to(dev)
    encoded = [tokenizer.encode(s) for s in smiles]
    rng = np.random.default_rng(seed)
    steps_per_epoch = math.ceil(len(encoded) / batch_size)
    total = int(round(epochs * steps_per_epoch))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - 0.9 * min(s / max(total, 1), 1.0))
    history, running = [], []
    order = np.array([], dtype=np.int64)
    model.train()
    for step in tqdm(range(total), disable=not show_progress(progress), desc="pretraining prior"):
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(encoded))])
        idx, order = order[:batch_size], order[batch_size:]
        ids = collate_ids([encoded[i] for i in idx], tokenizer.pad_id).to(dev)
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1),
                               ignore_index=tokenizer.pad_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == total:
            history.append((step + 1, float(np.mean(running))))
            running = []
    return model.eval(), history
