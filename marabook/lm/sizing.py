"""What fits where: training settings for a model on a GPU, from memory arithmetic (chapter 5).

:func:`plan` picks full fine-tuning or LoRA, the micro-batch size, gradient checkpointing and the precision
for a model (its dimensions, :class:`ModelDims`) on a GPU (its memory and compute capability), so that the
chapters' GPU settings are computed, not guessed. The arithmetic (:func:`memory_gb`) counts, in bytes:

* weights: full fine-tuning keeps fp32 weights, fp32 gradients and Adam's two fp32 moments (16 bytes per
  parameter) and a reference copy in the compute precision (2 bytes, or 4 in fp32); LoRA keeps one copy of
  the base weights in the compute precision (adapters are a fraction of a percent) and no reference copy;
* activations of one micro-batch for the backward pass: about ``34 * s * h`` bytes per token and layer in
  half precision (Korthikanti et al. 2022, without sequence parallelism), ``2 * s * h`` with gradient
  checkpointing (only each layer's input is kept), doubled in fp32;
* logits of one micro-batch (``s * vocab`` per sequence, in the compute precision) plus the float32
  log-softmax chunk of :mod:`marabook.rl.sequences` (at most 256 MB);
* a fixed 1.5 GB for the CUDA context, allocator fragmentation and the sampler's key/value cache.

These are estimates: ``scripts/bench_lm.py`` measures peak memory on a real GPU, and the chapter says which
rows of its table were measured and which computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from marabook._validate import check_int, check_number
from marabook.tables import Table

__all__ = ["ModelDims", "GPU", "QWEN25", "GPUS", "memory_gb", "plan", "plan_table", "dims_from_config", "table", "settings_for", "measured_table"]

_GB = 1024 ** 3


@dataclass(frozen=True)
class ModelDims:
    """The dimensions that set training memory: parameters, hidden size, layers, vocabulary."""

    name: str
    params: float
    hidden: int
    layers: int
    vocab: int = 151_936


@dataclass(frozen=True)
class GPU:
    """A GPU by its memory (GiB) and compute capability (bf16 is native from 8.0)."""

    name: str
    memory_gb: float
    capability: tuple = (8, 0)

    @property
    def precision(self) -> str:
        return "bf16" if self.capability[0] >= 8 else "fp16"


#: Qwen2.5 instruct models (hidden size and layers from their published configs).
QWEN25 = {
    "Qwen/Qwen2.5-0.5B-Instruct": ModelDims("Qwen2.5-0.5B", 0.494e9, 896, 24),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelDims("Qwen2.5-1.5B", 1.54e9, 1536, 28),
    "Qwen/Qwen2.5-3B-Instruct": ModelDims("Qwen2.5-3B", 3.09e9, 2048, 36),
}
#: GPUs a reader is likely to have (Colab's free T4, an L4, A100s, an H100).
GPUS = (GPU("T4 (Colab free)", 15.0, (7, 5)), GPU("L4", 22.5, (8, 9)), GPU("A100 40GB", 39.5, (8, 0)),
        GPU("H100 80GB", 79.0, (9, 0)))


def memory_gb(dims: ModelDims, *, lora: bool, micro_batch: int, seq_len: int, precision: str = "bf16",
              checkpointing: bool = False) -> float:
    """Estimated peak GPU memory (GiB) of one training step (see the module docstring for each term)."""
    check_int(micro_batch, "micro_batch", minimum=1)
    check_int(seq_len, "seq_len", minimum=1)
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"precision must be 'bf16', 'fp16' or 'fp32', got {precision!r}")
    half = 2 if precision in ("bf16", "fp16") else 4
    weights = dims.params * (half if lora else 16 + half)
    per_token_layer = (2 if checkpointing else 34) * dims.hidden * (half / 2)
    activations = micro_batch * seq_len * dims.layers * per_token_layer
    logits = micro_batch * seq_len * dims.vocab * half + min(micro_batch * seq_len * dims.vocab * 4, 2 ** 28)
    return (weights + activations + logits) / _GB + 1.5


@dataclass(frozen=True)
class Plan:
    """Settings for :class:`marabook.rl.RLConfig` and the memory they are estimated to need."""

    model: str
    gpu: str
    lora: bool
    micro_batch_size: int
    gradient_checkpointing: bool
    precision: str
    memory_gb: float
    fits: bool

    @property
    def settings(self) -> dict:
        """The :class:`~marabook.rl.RLConfig` keyword arguments of this plan."""
        return {"micro_batch_size": self.micro_batch_size, "gradient_checkpointing": self.gradient_checkpointing,
                "precision": self.precision, "lora": {"rank": 16, "alpha": 32} if self.lora else None}


def plan(dims: ModelDims, gpu: GPU, *, batch: int = 32, seq_len: int = 256, headroom: float = 0.9) -> Plan:
    """The cheapest settings that fit ``headroom`` of the GPU's memory, in this order of preference: full
    fine-tuning before LoRA, no checkpointing before checkpointing, the largest micro-batch (a power of two
    up to ``batch``). ``fits`` is False when even LoRA with checkpointing and micro-batch 1 does not fit."""
    check_int(batch, "batch", minimum=1)
    check_number(headroom, "headroom", positive=True)
    budget = gpu.memory_gb * headroom
    sizes = [m for m in (64, 32, 16, 8, 4, 2, 1) if m <= batch]
    for lora in (False, True):
        for ckpt in (False, True):
            for mb in sizes:
                need = memory_gb(dims, lora=lora, micro_batch=mb, seq_len=seq_len, precision=gpu.precision,
                                 checkpointing=ckpt)
                if need <= budget and (mb >= min(8, batch) or (lora and ckpt)):
                    return Plan(dims.name, gpu.name, lora, mb, ckpt, gpu.precision, need, True)
    need = memory_gb(dims, lora=True, micro_batch=1, seq_len=seq_len, precision=gpu.precision, checkpointing=True)
    return Plan(dims.name, gpu.name, True, 1, True, gpu.precision, need, False)


def plan_table(models=None, gpus=GPUS, **kw) -> list[Plan]:
    """:func:`plan` for every model x GPU (default: the Qwen2.5 instruct models and :data:`GPUS`)."""
    models = QWEN25 if models is None else models
    models = list(models.values()) if isinstance(models, dict) else list(models)
    return [plan(m, g, **kw) for m in models for g in gpus]


def dims_from_config(name: str, config) -> ModelDims:
    """:class:`ModelDims` from a Hugging Face model config (``AutoConfig.from_pretrained(MODEL_ID)``)."""
    h, n, v = config.hidden_size, config.num_hidden_layers, config.vocab_size
    inter = getattr(config, "intermediate_size", 4 * h)
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head = h // config.num_attention_heads
    per_layer = h * h + 2 * h * kv * head + h * h + 3 * h * inter  # attention (q, k, v, o) and a gated MLP
    tied = getattr(config, "tie_word_embeddings", False)
    params = n * per_layer + v * h * (1 if tied else 2)
    return ModelDims(name, float(params), h, n, v)


def table(plans) -> Table:
    """The plans as a table (:class:`~marabook.tables.Table`): model, GPU, fine-tuning, micro-batch,
    checkpointing, precision, memory."""
    cols = ["model", "GPU", "fine-tuning", "micro-batch", "checkpointing", "precision", "est. GiB"]
    cells = [[p.model, p.gpu, "LoRA" if p.lora else "full", str(p.micro_batch_size),
              "yes" if p.gradient_checkpointing else "no", p.precision,
              f"{p.memory_gb:.1f}" + ("" if p.fits else " (does not fit)")] for p in plans]
    return Table(cols, cells)

def settings_for(model_id, *, batch: int = 32, seq_len: int = 256):
    """``(settings, load_dtype, plan)`` for training ``model_id`` on this machine's GPU.

    ``settings`` are :class:`~marabook.rl.RLConfig` keyword arguments from :func:`plan` for the detected
    GPU (memory, compute capability) and the model's config (read with ``AutoConfig``); ``load_dtype`` is
    the dtype to load the model in (half precision under LoRA, else None: fp32 weights for full
    fine-tuning). Without ``model_id`` or without a GPU: ``({}, None, None)``, the chapters' CPU defaults.
    """
    import torch

    if model_id is None or not torch.cuda.is_available():
        return {}, None, None
    from transformers import AutoConfig

    props = torch.cuda.get_device_properties(0)
    gpu = GPU(props.name, props.total_memory / _GB, torch.cuda.get_device_capability(0))
    p = plan(dims_from_config(str(model_id), AutoConfig.from_pretrained(str(model_id))), gpu, batch=batch,
             seq_len=seq_len)
    dtype = (torch.float16 if gpu.precision == "fp16" else torch.bfloat16) if p.lora else None
    return p.settings, dtype, p


def measured_table() -> str:
    """Every stored ``scripts/bench_lm.py`` result (``bench_lm_*.json`` in the package's results), one line
    per trainer: seconds per step and peak memory, with the command, revision, device and date."""
    from marabook.provenance import RESULTS_DIR, describe, load_json

    lines = []
    for path in sorted(RESULTS_DIR.glob("bench_lm_*.json")):
        data = load_json(path)
        res = data["results"]
        lines.append(describe(data["provenance"]))
        model = res["model"] if "model" in res else f"{res['size']} Qwen2 shapes {tuple(res['dims'])}"
        lines.append(f"  {model}, {res['prompts']} prompts x {res['group']} completions, <= {res['new_tokens']} new tokens")
        for name, r in res["results"].items():
            lines.append(f"  {name:>9}: " + ("failed" if "error" in r else
                                             f"{r['seconds_per_step']:.3f} s/step, peak {r['peak_memory_gb']:.2f} GiB"))
        ok = [res["results"].get(n, {}) for n in ("marabook", "trl")]
        if all("seconds_per_step" in r for r in ok):
            lines.append(f"  marabook / TRL: time {ok[0]['seconds_per_step'] / ok[1]['seconds_per_step']:.2f}x, "
                         f"peak memory {ok[0]['peak_memory_gb'] / ok[1]['peak_memory_gb']:.2f}x")
        parts = ok[0].get("seconds_by_part")
        if parts:
            lines.append("  marabook's step: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))
    return "\n".join(lines) if lines else "no stored benchmark"
