import json, time, torch
torch.set_num_threads(1)
from marabook.lm import load_smollm2
from marabook.experiments import open_ended_real as R
m, tok = load_smollm2(device="cpu")
t0 = time.time()
rows = []
for f in R.FORMATS:
    rows += R.measure_candidates(m, tok, [f], R.CATEGORIES, n_samples=64, sample_tokens=6, seed=0)
    json.dump(rows, open("/tmp/oe/candidates.json", "w"))
    print(f["name"], f"{time.time()-t0:.0f}s", flush=True)
    for r in rows[-len(R.CATEGORIES):]:
        print(f"  {r['category']:11s} valid {r['p_valid']:.3f} reach {r['reachable']:2d} top {r['top']} {r['top_share']:.2f} eff {r['effective']:.1f} sampled {r['valid_rate']:.2f}/{r['lenient_rate']:.2f} mnt {r['max_new_tokens']}", flush=True)
print("done", time.time()-t0)
