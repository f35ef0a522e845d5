"""Chapter 8's stored study: when does MARA help in chemistry?

Three tasks (product reward, four-drug similarity, three MOSES modes of unequal prior support) x
{REINVENT, MARA tau=0.80, MARA tau=0.85, REINVENT + diversity filter} x sigma in {64, 128, 256} x 5 seeds,
each run to the paper's 10,000-call budget. About 30 s per run on one CPU core:

    python scripts/run_reinvent_study.py --workers 2                        # the stored file, ~50 min
    python scripts/run_reinvent_study.py --budget 640 --seeds 1 --out /tmp/x.json   # a quick look

Writes marabook/data/results/reinvent_study.json (runs: summary metrics, per-step score/validity and MARA's
anchor score; provenance).
"""

from marabook.experiments.molecules import study_main

if __name__ == "__main__":
    study_main()
