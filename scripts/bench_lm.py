"""Seconds per step and peak memory: marabook's rl.Trainer vs TRL's GRPOTrainer, same model, same work.

    python scripts/bench_lm.py                          # CPU: a scaled-down Qwen2 (well under a minute)
    python scripts/bench_lm.py --model smollm2 --new-tokens 4 --store    # CPU: the real SmolLM2-135M-Instruct
    python scripts/bench_lm.py --model smollm2 --new-tokens 16 --store
    python scripts/bench_lm.py --model HuggingFaceTB/SmolLM2-360M-Instruct --device cuda   # any local dir or hub id
    python scripts/bench_lm.py --size 0.5b --device cuda --steps 6 --store   # GPU: Qwen2.5-0.5B's shapes
    python scripts/bench_lm.py --size 1.5b --device cuda --steps 6 --store

Both trainers get the same model -- by default a random-weight Qwen2 (marabook.lm.random_models, the real
151,936-token vocabulary); with --model a real one: "smollm2" (the pretrained SmolLM2-135M-Instruct the
package loads offline, marabook.lm.load_smollm2), a local directory or a hub id -- and the same step: 4 prompts x 8 completions of up to --new-tokens tokens, GRPO advantages (divide by the group
std), k3 in the loss with beta = 0.01, Adam at lr 1e-6, bf16 on a GPU that supports it, fp32 on CPU. Each
trainer runs in its own process, so its peak memory is its own (CUDA: torch.cuda.max_memory_allocated;
CPU: the process's peak resident memory). The first step is a warm-up and is not timed. For marabook the
time of a step is also split into its parts (sampling, reward, reference forward, policy forward+backward,
optimiser). --store writes marabook/data/results/bench_lm_<size or model>_<device>[_<new tokens>].json with
provenance: on purpose *into the installed package* (marabook.provenance.RESULTS_DIR), unlike the other
commands, which default to ./results/, because chapter 5 and lm.sizing.measured_table read these stored
benchmarks from there (the file is written atomically: an interrupted run leaves the previous one whole);
without --store nothing is written. TRL comes from the extra: pip install "marabook[trl]".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"cpu-small": (64, 2, 128, 4, 2), "0.5b": None, "1.5b": None}
PROMPTS, GROUP, BETA, LR = 4, 8, 0.01, 1e-6


def _peak_memory_gb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def _task(tok):
    from marabook import lm

    return lm.OneTwoTask.for_chat_model(tok)


def worker_marabook(model_dir, device, steps, new_tokens):
    import torch

    from marabook import lm, rl

    model, tok = lm.load_causal_lm(model_dir, device=device)
    task = _task(tok)
    cfg = rl.RLConfig(beta=BETA, kl="reverse", kl_estimator="k3_loss", advantage="grpo", group_size=GROUP, prompts_per_step=PROMPTS,
                      steps=steps + 1, lr=LR, max_new_tokens=new_tokens, max_grad_norm=1.0, seed=0)
    trainer = rl.Trainer(model, tok, task, cfg, device=device, progress=False)
    trainer.train_step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.train(until=steps + 1)
    if device == "cuda":
        torch.cuda.synchronize()
    timed = trainer.history[1:]
    tokens = sum(h["completion_tokens"] for h in timed) / steps
    parts = {k[len("seconds_"):]: sum(h[k] for h in timed) / steps for k in timed[0] if k.startswith("seconds_")}
    return {"seconds_per_step": (time.perf_counter() - t0) / steps, "peak_memory_gb": _peak_memory_gb(device),
            "mean_completion_tokens": tokens, "seconds_by_part": parts}


def worker_trl(model_dir, device, steps, new_tokens):
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from marabook import lm

    model, tok = lm.load_causal_lm(model_dir, device=device)
    task = _task(tok)
    ds = Dataset.from_dict({"prompt": [task.prompts[i % len(task.prompts)] for i in range(PROMPTS * (steps + 1))]})
    bf16 = device == "cuda" and torch.cuda.get_device_capability(0)[0] >= 8

    class Clock(TrainerCallback):
        def __init__(self):
            self.t = []

        def on_step_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            self.t.append(time.perf_counter())

    def reward(prompts, completions, **kw):
        return task.reward(prompts, completions)

    args = GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=PROMPTS * GROUP,
                      num_generations=GROUP, max_completion_length=new_tokens, learning_rate=LR, beta=BETA,
                      max_steps=steps + 1, temperature=1.0, top_k=0, top_p=1.0, seed=0, logging_steps=1000,
                      report_to="none", save_strategy="no", use_cpu=device == "cpu", bf16=bf16,
                      lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                      disable_tqdm=True)
    clock = Clock()
    trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, reward_funcs=[reward],
                          callbacks=[clock])
    trainer.train()
    return {"seconds_per_step": (clock.t[-1] - clock.t[0]) / steps, "peak_memory_gb": _peak_memory_gb(device)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="cpu-small")
    ap.add_argument("--model", default=None,
                    help='a real model instead of a random Qwen2: "smollm2" (shipped, offline), a directory or a hub id')
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=None, help="default: 64 on cuda, 16 on cpu")
    ap.add_argument("--trainers", nargs="+", default=["marabook", "trl"])
    ap.add_argument("--store", action="store_true",
                    help="write the result into the package's stored results (marabook/data/results), on purpose")
    ap.add_argument("--worker", choices=["marabook", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--revision", default=None, help="the git revision to record (a device copy's may be stale)")
    args = ap.parse_args(argv)
    new_tokens = args.new_tokens or (64 if args.device == "cuda" else 16)
    if args.worker:
        fn = worker_marabook if args.worker == "marabook" else worker_trl
        print("RESULT " + json.dumps(fn(args.model_dir, args.device, args.steps, new_tokens)))
        return
    from marabook.lm.random_models import QWEN25_DIMS, save_random_lm

    dims = SIZES[args.size] or QWEN25_DIMS[args.size]
    results = {}
    with tempfile.TemporaryDirectory() as d:
        if args.model is None:
            save_random_lm(d, "qwen2", *dims)
            label, what = args.size, f"{args.size} Qwen2 shapes {dims}"
        elif args.model == "smollm2":
            from marabook import lm

            lm.load_smollm2(device="cpu")  # converts the shipped GGUF once; the workers load the cached copy
            d, label, what = str(lm.smollm2_cache_dir()), "smollm2-135m", "SmolLM2-135M-Instruct (pretrained)"
        else:
            d, what = args.model, args.model
            label = Path(args.model).name.lower() if Path(args.model).is_dir() else args.model.split("/")[-1].lower()
        for name in args.trainers:
            cmd = [sys.executable, __file__, "--worker", name, "--model-dir", d, "--device", args.device,
                   "--steps", str(args.steps), "--new-tokens", str(new_tokens)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode != 0 or not line:
                results[name] = {"error": (out.stderr or out.stdout)[-2000:]}
            else:
                results[name] = json.loads(line[-1][7:])
    print(f"{what}, {PROMPTS} prompts x {GROUP} completions, <= {new_tokens} new tokens, "
          f"{args.steps} timed steps on {args.device}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:>9}: failed: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'}")
        else:
            print(f"{name:>9}: {r['seconds_per_step']:.3f} s/step, peak memory {r['peak_memory_gb']:.2f} GiB")
            if "seconds_by_part" in r:
                print(" " * 11 + ", ".join(f"{k} {v:.3f} s" for k, v in r["seconds_by_part"].items()))
    ok = [n for n in ("marabook", "trl") if n in results and "error" not in results[n]]
    if len(ok) == 2:
        m, t = results["marabook"], results["trl"]
        print(f"marabook / TRL: time {m['seconds_per_step'] / t['seconds_per_step']:.2f}x, "
              f"peak memory {m['peak_memory_gb'] / t['peak_memory_gb']:.2f}x")
    if args.store:
        from marabook.provenance import RESULTS_DIR, atomic_write_text, save_json

        cmd = "python scripts/bench_lm.py " + " ".join(sys.argv[1:] if argv is None else argv)
        suffix = "" if args.model is None else f"_{new_tokens}"
        model = {"size": args.size, "dims": list(dims)} if args.model is None else {"model": what}
        out = save_json(RESULTS_DIR / f"bench_lm_{label}_{args.device}{suffix}.json",
                        {**model, "prompts": PROMPTS, "group": GROUP, "new_tokens": new_tokens, "steps": args.steps,
                         "results": results}, command=cmd)
        if args.revision:
            data = json.loads(Path(out).read_text())
            data["provenance"]["git_revision"] = args.revision
            atomic_write_text(out, json.dumps(data, indent=1))
        print("wrote", out)


if __name__ == "__main__":
    main()
