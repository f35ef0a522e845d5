"""Chapter 8's stored comparison: REINVENT vs REINVENT+MARA (tau 0.80, 0.85) vs REINVENT + diversity
filter on the two offline tasks, several seeds, the full 10,000-call oracle budget.

    python scripts/run_reinvent.py --budget 10000 --seeds 5 --workers 14 --device cuda
    python scripts/run_reinvent.py --budget 640 --seeds 2 --workers 2 --out /tmp/x.json   # quick look

Stored results were made one task per call on a GPU machine and merged:

    python scripts/run_reinvent.py --tasks product --out a.json --device cuda --workers 14
    python scripts/run_reinvent.py --tasks multi_mode --out b.json --device cuda --workers 14
    python scripts/run_reinvent.py --merge a.json b.json

Writes marabook/data/results/reinvent.json (runs: summary metrics, per-step history, top molecules; provenance).
Chapter 8 now reads the larger study of scripts/run_reinvent_study.py (three tasks, three sigmas), which contains
this grid at sigma = 128; this script remains for a one-sigma grid on your own settings.
"""

from marabook.experiments.molecules import main

if __name__ == "__main__":
    main()
