"""Real-size language models through the one trainer (issue: Qwen-class models on a Colab GPU).

Everything runs on CPU with tiny random-weight Qwen2 and Llama models that have the real Qwen vocabulary
size (151,936 logits) and a chat template (marabook.lm.random_models): micro-batching, memory-lean
log-probs, LoRA, gradient checkpointing, precision by device, what the task sees, and the chapter-5 and
chapter-6 code paths with MODEL_ID pointing at a local directory.
"""

import copy
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from marabook import checkpoints, lm, plumbing, rl  # noqa: E402
from marabook.experiments import onetwo, open_ended  # noqa: E402
from marabook.lm.random_models import save_random_lm  # noqa: E402
from marabook.rl import sequences  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: save_random_lm(root / arch, arch) for arch in ("qwen2", "llama")}


@pytest.fixture(scope="module")
def qwen(tiny_dirs):
    return lm.load_causal_lm(tiny_dirs["qwen2"], device="cpu")


# ------------------------------------------------------------------------------- memory-lean log-probs
def test_chunked_log_softmax_equals_the_naive_one(qwen, monkeypatch):
    model, tok = qwen
    task = lm.OneTwoTask.for_chat_model(tok)
    ids, mask = rl.encode_prompts(tok, task.prompts)
    comp = torch.randint(0, 400, (len(task.prompts), 5), generator=torch.Generator().manual_seed(0))
    cmask = torch.ones_like(comp)
    with torch.no_grad():
        full = torch.cat([ids, comp], 1)
        logits = model(input_ids=full, attention_mask=torch.cat([mask, cmask], 1),
                       position_ids=sequences._position_ids(torch.cat([mask, cmask], 1))).logits
        naive = torch.log_softmax(logits[:, ids.shape[1] - 1:-1].float(), -1).gather(-1, comp[..., None])[..., 0]
        # one row of 151,936 x 5 logits per chunk (the production limit is 64 M logits per chunk)
        monkeypatch.setattr(sequences, "LOGSOFTMAX_CHUNK_ELEMENTS", 5 * 151_936)
        chunked = rl.token_logprobs(model, ids, mask, comp, cmask, dedupe=False)
    # each row's log-softmax does not depend on which rows share its chunk: equal to the last bit
    assert torch.equal(chunked, naive)


# ------------------------------------------------------------------------------- micro-batching
@pytest.mark.parametrize("kl,mara_tau", [("reverse", None), ("reverse", 1.0), ("k3_loss", None), ("forward", 1.0)])
def test_micro_batched_update_equals_the_full_batch_update(kl, mara_tau):
    """Gradient accumulation over micro-batches of 5 (uneven: 24 = 5+5+5+5+4) gives the full-batch gradient.

    The two differ only in the order float32 sums are taken (per-chunk partial sums); each gradient entry's
    rounding is ~1e-7 of the terms it sums, and no term exceeds the largest gradient entry by much, so
    entries agree to 1e-5 of the largest one (a 100x margin). The gradients are compared, not the weights
    after Adam: its first step, g / (|g| + 1e-8), magnifies the rounding of entries that cancel to ~1e-8.
    """
    model, tok = lm.load_reference_lm()
    task = lm.OneTwoTask.for_reference_lm()
    kl, est = ("reverse", "k3_loss") if kl == "k3_loss" else (kl, None)
    base = dict(beta=0.05, kl=kl, kl_estimator=est, mara_tau=mara_tau, group_size=8, prompts_per_step=3, steps=1, lr=1e-2,
                max_new_tokens=4, seed=5)
    grads, entries = [], []
    for mb in (None, 5):
        t = rl.Trainer(copy.deepcopy(model), tok, task, rl.RLConfig(**base, micro_batch_size=mb), ref_model=model,
                       device="cpu", progress=False)
        t._optimizer_step = lambda: float("nan")  # keep the accumulated gradient, take no step
        entries.append(t.train_step())
        grads.append([p.grad.clone() for p in t.policy.parameters()])
    scale = max(float(g.abs().max()) for g in grads[0])
    assert scale > 1e-3  # the batch carries signal
    for g_full, g_micro in zip(*grads):
        torch.testing.assert_close(g_micro, g_full, rtol=0, atol=1e-5 * scale)
    for key in ("reward", "shaped_reward", "kl", "loss", "pg_loss", "kl_loss", "sft_loss", "entropy"):
        assert entries[1][key] == pytest.approx(entries[0][key], rel=1e-5, abs=1e-6), key


def test_gradient_checkpointing_same_update_and_refused_with_dropout(qwen):
    model, tok = qwen
    task = lm.OneTwoTask.for_chat_model(tok)
    cfg = dict(beta=0.05, group_size=4, prompts_per_step=2, steps=1, lr=1e-3, max_new_tokens=3, seed=1)
    out = []
    for ckpt in (False, True):
        policy = copy.deepcopy(model)
        rl.Trainer(policy, tok, task, rl.RLConfig(**cfg, gradient_checkpointing=ckpt), ref_model=model,
                   device="cpu", progress=False).train_step()
        out.append(policy)
    for p, q in zip(out[0].parameters(), out[1].parameters()):  # recomputation repeats the same float ops
        torch.testing.assert_close(p, q, rtol=0, atol=1e-9)
    gpt2, gtok = lm.load_reference_lm()  # GPT-2's config has dropout 0.1: training mode would change the policy
    with pytest.raises(ValueError, match="drops out"):
        rl.Trainer(copy.deepcopy(gpt2), gtok, lm.OneTwoTask.for_reference_lm(),
                   rl.RLConfig(gradient_checkpointing=True), ref_model=gpt2, device="cpu", progress=False)


# ------------------------------------------------------------------------------- precision
def test_autocast_dtype_follows_the_device(monkeypatch):
    assert plumbing.autocast_dtype("cpu") is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # T4
    assert plumbing.autocast_dtype("cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert plumbing.autocast_dtype("cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # H100
    assert plumbing.autocast_dtype("cuda") is torch.bfloat16
    assert plumbing.autocast_dtype("cuda", "fp32") is None
    assert plumbing.autocast_dtype("cuda", "fp16") is torch.float16
    with pytest.raises(ValueError, match="precision"):
        plumbing.autocast_dtype("cpu", "bf16")
    with pytest.raises(ValueError, match="precision"):
        plumbing.autocast_dtype("cpu", "fp8")
    with pytest.raises(ValueError, match="precision"):
        rl.RLConfig(precision="half")


# ------------------------------------------------------------------------------- what the task sees
def test_special_tokens_inside_a_completion_reach_the_task(qwen):
    """A completion "1" followed by another special token before EOS must not score as a clean "1".

    With the first edition's decoding (skip_special_tokens=True) this completion read "1" and scored 1,
    and MARA paid it a bonus for its low reference probability."""
    _, tok = qwen
    one = tok("1", add_special_tokens=False)["input_ids"]
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    comp = torch.tensor([one + [im_start, tok.eos_token_id], one + [tok.eos_token_id, tok.pad_token_id]])
    mask = rl.completion_mask(comp, tok.eos_token_id)
    texts = rl.decode_completions(tok, comp, mask)
    assert texts == ["1<|im_start|>", "1"]
    task = lm.OneTwoTask.for_chat_model(tok)
    assert task.reward([task.prompts[0]] * 2, texts) == [0.0, 1.0]
    assert sequences.completion_token_ids(comp, mask, tok.eos_token_id) == [one + [im_start], one]


def test_trainer_passes_completion_ids_to_tasks_that_take_them(qwen):
    model, tok = qwen

    class Recording(lm.OneTwoTask):
        seen = []

        def reward(self, prompts, completions, completion_ids=None):
            self.seen.append(completion_ids)
            return super().reward(prompts, completions)

    task = Recording.for_chat_model(tok)
    t = rl.Trainer(copy.deepcopy(model), tok, task, rl.RLConfig(group_size=2, prompts_per_step=1, steps=1,
                   max_new_tokens=3), ref_model=model, device="cpu", progress=False)
    t.train_step()
    ids = task.seen[-1]
    assert len(ids) == 2 and all(isinstance(r, list) and tok.eos_token_id not in r for r in ids)


# ------------------------------------------------------------------------------- LoRA
def test_lora_trains_only_adapters_and_the_reference_stays_fixed(tiny_dirs, tmp_path):
    pytest.importorskip("peft")
    model, tok = lm.load_causal_lm(tiny_dirs["qwen2"], device="cpu")
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    task = lm.OneTwoTask.for_chat_model(tok)
    # forward KL: the random model never answers validly (all rewards 0, and k1 = 0 while policy = reference),
    # but the SFT term on reference samples has a nonzero per-sample gradient, so the adapters must move
    cfg = rl.RLConfig(beta=0.05, kl="forward", group_size=4, prompts_per_step=2, steps=2, lr=5e-2, max_new_tokens=3,
                      seed=2, lora={"rank": 4, "alpha": 8})
    t = rl.Trainer(model, tok, task, cfg, device="cpu", progress=False, checkpoint_dir=tmp_path / "ck")
    assert t.ref is None  # no second copy of the model
    ids, mask = rl.encode_prompts(tok, task.prompts)
    comp = torch.tensor([tok("1", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]] * len(task.prompts))
    cmask = torch.ones_like(comp)
    with torch.no_grad(), t.reference() as ref:
        ref_before = rl.sequence_logprobs(ref, ids, mask, comp, cmask)
    t.train()
    with torch.no_grad(), t.reference() as ref:
        ref_after = rl.sequence_logprobs(ref, ids, mask, comp, cmask)
    with torch.no_grad():
        policy_after = rl.sequence_logprobs(t.policy, ids, mask, comp, cmask)
    assert torch.equal(ref_before, ref_after)            # adapters off = the untouched base model
    assert float((policy_after - ref_after).abs().max()) > 1e-4  # the adapters moved the policy
    changed = {n for n, p in t.policy.named_parameters() if "lora_" in n}
    assert changed and all(p.requires_grad == ("lora_" in n) for n, p in t.policy.named_parameters())
    for n, p in t.policy.get_base_model().named_parameters():
        if "lora_" not in n:
            key = n.replace(".base_layer", "")
            assert torch.equal(p, base_before[key]), n
    from safetensors.torch import load_file

    saved = load_file(str(checkpoints.checkpoint_files(tmp_path / "ck")["model"]))
    assert saved and all("lora_" in k for k in saved)     # the checkpoint holds the adapters only


# ------------------------------------------------------------------------------- chapters 5 and 6 paths
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_chapter5_path_with_a_local_model_id(arch, tiny_dirs, tmp_path):
    """What chapter 5 runs when MODEL_ID is set: load by id (here a directory), the chat task, micro-batches,
    LoRA, checkpoint and resume to the same numbers."""
    pytest.importorskip("peft")
    MODEL_ID = str(tiny_dirs[arch])
    cfg = rl.RLConfig(beta=0.02, kl="forward", mara_tau=1.0, group_size=4, prompts_per_step=2, steps=4, lr=1e-2,
                      max_new_tokens=3, seed=1, micro_batch_size=3, lora={"rank": 2, "alpha": 4})

    def one_run(ckpt=None, until=None):
        model, tok = lm.load_causal_lm(MODEL_ID, device="cpu")
        task = lm.OneTwoTask.for_chat_model(tok)
        t = rl.Trainer(model, tok, task, cfg, device="cpu", progress=False, checkpoint_dir=ckpt)
        return t.train(until=until)

    whole = one_run()
    one_run(tmp_path / "ck", until=2)                      # killed after 2 steps
    resumed = one_run(tmp_path / "ck")
    assert [h["loss"] for h in resumed] == [h["loss"] for h in whole]
    model, tok = lm.load_causal_lm(MODEL_ID, device="cpu")
    result = onetwo.run(cfg, model=model, tokenizer=tok, task=lm.OneTwoTask.for_chat_model(tok), answers=("1", "2"))
    assert np.isfinite(result["final"]["p_valid"]) and len(result["history"]) == 4


def test_chapter6_path_with_a_local_model_id(tiny_dirs):
    pytest.importorskip("peft")
    model, tok = lm.load_causal_lm(tiny_dirs["llama"], device="cpu")
    train = lm.NameTask(("color",), chat_tokenizer=tok)
    evals = {"in": lm.NameTask(("color",), chat_tokenizer=tok), "out": lm.NameTask(("animal",), chat_tokenizer=tok)}
    cfg = open_ended.configs(0, steps=2)["MARA-rev"]
    cfg = dataclasses.replace(cfg, micro_batch_size=8, lora={"rank": 2}, group_size=4)
    r = open_ended.run(cfg, model=model, tokenizer=tok, train_task=train, eval_tasks=evals, n_eval=4)
    assert set(r["eval"]) == {"in", "out"} and all(np.isfinite(r["eval"][k]["reward"]) for k in r["eval"])


# ------------------------------------------------------------------------------- what fits where
def test_parameter_count_from_config_matches_the_published_qwen_sizes():
    from transformers import Qwen2Config

    from marabook.lm import sizing

    published = {(896, 24, 4864, 14): 0.494e9, (1536, 28, 8960, 12): 1.54e9, (2048, 36, 11008, 16): 3.09e9}
    for (h, n, inter, heads), size in published.items():
        cfg = Qwen2Config(hidden_size=h, num_hidden_layers=n, intermediate_size=inter, num_attention_heads=heads,
                          num_key_value_heads=2, vocab_size=151_936, tie_word_embeddings=True)
        assert sizing.dims_from_config("q", cfg).params == pytest.approx(size, rel=0.01)  # biases left out: < 1%


def test_plans_follow_the_memory_arithmetic():
    from marabook.lm import sizing

    small, big = sizing.QWEN25["Qwen/Qwen2.5-0.5B-Instruct"], sizing.QWEN25["Qwen/Qwen2.5-3B-Instruct"]
    t4, h100 = sizing.GPUS[0], sizing.GPUS[-1]
    # more of anything costs more memory; LoRA and checkpointing cost less
    base = dict(lora=False, micro_batch=8, seq_len=256)
    m = sizing.memory_gb(small, **base)
    assert sizing.memory_gb(small, **{**base, "micro_batch": 16}) > m > sizing.memory_gb(small, **{**base, "lora": True})
    assert sizing.memory_gb(small, **base, checkpointing=True) < m
    # full fine-tuning of 3B needs 16 bytes x 3.09e9 = 46 GiB for weights and optimiser alone: never on a T4
    p = sizing.plan(big, t4)
    assert p.lora and p.precision == "fp16" and p.fits and p.memory_gb <= 0.9 * t4.memory_gb
    assert not sizing.plan(small, h100).lora and sizing.plan(small, h100).precision == "bf16"
    assert sizing.plan(big, sizing.GPU("tiny", 2.0)).fits is False
    cfg = rl.RLConfig(**p.settings)  # a plan is a valid set of trainer settings
    assert cfg.lora.rank == 16 and cfg.precision == "fp16"
    assert len(sizing.plan_table()) == len(sizing.QWEN25) * len(sizing.GPUS)
    with pytest.raises(ValueError, match="micro_batch"):
        sizing.memory_gb(small, lora=False, micro_batch=0, seq_len=10)
    with pytest.raises(ValueError, match="precision"):
        sizing.memory_gb(small, lora=False, micro_batch=1, seq_len=10, precision="int4")


def test_settings_for_changes_nothing_without_a_gpu():
    from marabook.lm import sizing

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert sizing.settings_for("Qwen/Qwen2.5-0.5B-Instruct") == ({}, None, None)  # no download: no GPU, no plan
    assert sizing.settings_for(None) == ({}, None, None)
