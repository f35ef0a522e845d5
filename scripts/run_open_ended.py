"""Chapter 6's comparison on the book's 125k-parameter toy model, stored with provenance (chapter 6 itself now runs
on SmolLM2-135M-Instruct: scripts/run_open_ended_real.py; this toy version is kept for quick experiments).

    python scripts/run_open_ended.py                  # 5 seeds x 6 trainers, about 5 CPU minutes
    python scripts/run_open_ended.py --seeds 10 --out open_ended_10.json

Same calls as the chapter: marabook.experiments.open_ended (this script is ``python -m
marabook.experiments.open_ended``, or the ``marabook-open-ended`` command). Writes
marabook/data/results/open_ended.json by default.
"""

from marabook.experiments.open_ended import main

if __name__ == "__main__":
    main()
