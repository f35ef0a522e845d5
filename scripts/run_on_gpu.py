"""Run the real-model studies of chapters 5 and 6 on one GPU, side by side, against a deadline.

    python scripts/run_on_gpu.py --stores /tmp/stores --pack $OUT/stores.tar.gz --deadline 480 \
        --onetwo-workers 7 --naming-workers 7 --revision <git revision>

On two CPU cores the 1-2 grid (60 runs x 200 steps, :mod:`marabook.experiments.onetwo_real`) and the "Name a ..."
grid (30 runs x 200 steps, :mod:`marabook.experiments.open_ended_real`) take 12-17 and about 11 CPU-hours. Here both
run at once, every worker process on the one GPU (``study(..., device="cuda")``), each into its own resumable store
(a store already holding runs, copied from a CPU machine, is resumed: only the missing runs are made). When the
1-2 grid is done, the runs a CPU made are replicated on the GPU into a third store (same configs, same seeds: the
comparison says whether the hardware changes the result beyond seed noise). Every ``--every`` seconds, and at the
deadline, the stores are packed into one tar.gz, written atomically (a machine that is taken back mid-run still
returns what finished). The SmolLM2 safetensors cache is made once, before any worker starts. ``--revision`` is
recorded next to the stores (a copy of a repository may carry stale git metadata).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tarfile
import threading
import time
import traceback
from pathlib import Path


def pack(stores: Path, dest: Path) -> int:
    """Every store under ``stores`` into ``dest`` (tar.gz, atomically); returns the number of run files packed."""
    tmp = dest.with_name(dest.name + ".tmp")
    n = 0
    with tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(stores.rglob("*.json")):
            tar.add(f, arcname=str(f.relative_to(stores)))
            n += f.name.startswith("job-")
    os.replace(tmp, dest)
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", required=True, help="directory holding onetwo/, naming/ and onetwo_replicate/")
    ap.add_argument("--pack", required=True, help="tar.gz to write the stores into")
    ap.add_argument("--deadline", type=float, required=True, help="seconds after which the stores are packed and "
                                                                  "the script exits, finished or not")
    ap.add_argument("--onetwo-workers", type=int, default=7)
    ap.add_argument("--naming-workers", type=int, default=7)
    ap.add_argument("--every", type=float, default=20.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--revision", default="unknown")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per grid (a smaller value: a quick check)")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: each study's design)")
    args = ap.parse_args(argv)
    t0 = time.time()
    stores, dest = Path(args.stores), Path(args.pack)
    stores.mkdir(parents=True, exist_ok=True)

    import torch

    from marabook.experiments import onetwo_real, open_ended_real
    from marabook.lm import SMOLLM2_ONETWO, ChatOneTwoTask, load_smollm2

    model, tok = load_smollm2(device=args.device)  # converts the GGUF once, before the workers load the cache
    # fail fast when this machine's libraries read the model differently (2026-12-04: transformers 5.17 read the
    # wrong EOS and every reward was 0 for a whole GPU lease): the reference's exact answer probabilities must match
    # those of a run already stored (made on another machine), within float rounding
    ref = ChatOneTwoTask.from_design(tok, SMOLLM2_ONETWO).exact_probs(model)
    stored = sorted((stores / "onetwo").glob("job-*.json")) if (stores / "onetwo").is_dir() else []
    if stored:
        want = json.loads(stored[0].read_text())["result"]["reference"]["p_valid"]
        if abs(ref["p_valid"] - want) > 1e-4:
            raise SystemExit(f"reference valid mass {ref['p_valid']:.6f} here, {want:.6f} in {stored[0]}: refusing")
    print(f"reference valid mass {ref['p_valid']:.6f}", flush=True)
    del model
    info = {"revision": args.revision, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
            "torch": torch.__version__, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "onetwo_workers": args.onetwo_workers, "naming_workers": args.naming_workers}
    import transformers

    info["transformers"] = transformers.__version__
    (stores / "device_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    cpu_made = sorted(int(f.stem.split("-")[1]) for f in (stores / "onetwo").glob("job-*.json")) \
        if (stores / "onetwo").is_dir() else []
    log: dict = {}

    def onetwo():
        grid = onetwo_real.configs(seeds=range(args.seeds), **({} if args.steps is None else {"steps": args.steps}))
        r = onetwo_real.study(stores / "onetwo", args.onetwo_workers, grid, device=args.device, progress=False)
        log["onetwo"] = f"{len(r.finished)} finished, {len(r.failures)} raised: {[str(f) for f in r.failures][:3]}"
        if cpu_made:
            rep = [grid[i] for i in cpu_made]
            (stores / "onetwo_replicate").mkdir(exist_ok=True)
            (stores / "onetwo_replicate" / "grid_index.json").write_text(json.dumps(cpu_made))
            r = onetwo_real.study(stores / "onetwo_replicate", args.onetwo_workers, rep, device=args.device,
                                  progress=False)
            log["replicate"] = f"{len(r.finished)} finished, {len(r.failures)} raised"

    def naming():
        grid = open_ended_real.configs(range(args.seeds), steps=args.steps)
        r = open_ended_real.study(stores / "naming", args.naming_workers, grid, device=args.device, progress=False)
        log["naming"] = f"{len(r.finished)} finished, {len(r.failures)} raised: {[str(f) for f in r.failures][:3]}"

    def guarded(fn, name):
        def go():
            try:
                fn()
            except Exception:  # noqa: BLE001 - reported in the log, the other study goes on
                log[name] = traceback.format_exc()
        return go

    threads = [threading.Thread(target=guarded(f, n), daemon=True) for f, n in ((onetwo, "onetwo"),
                                                                                 (naming, "naming"))
               if (args.onetwo_workers if n == "onetwo" else args.naming_workers) > 0]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) and time.time() - t0 < args.deadline:
        time.sleep(min(args.every, max(0.0, args.deadline - (time.time() - t0))))
        counts = {d.name: len(list(d.glob("job-*.json"))) for d in sorted(stores.iterdir()) if d.is_dir()}
        print(f"{time.time() - t0:6.0f} s  {counts}  packed {pack(stores, dest)}", flush=True)
    info["seconds"] = time.time() - t0
    info["log"] = log
    (stores / "device_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(log, indent=1), f"packed {pack(stores, dest)} run files", flush=True)
    for child in multiprocessing.active_children():  # the pools' workers may still be busy: the deadline ends them
        child.kill()
    os._exit(0)


if __name__ == "__main__":
    main()
