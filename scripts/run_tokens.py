"""Chapter 4's token experiment at full scale, stored with provenance for its "Results at full scale".

    python scripts/run_tokens.py                       # 10 seeds, 20,000 sampled steps (a few CPU minutes)
    python scripts/run_tokens.py --seeds 20 --steps 50000 --out tokens_big.json

The experiment is marabook.experiments.tokens (the chapter calls the same functions); this script is
``python -m marabook.experiments.tokens``. Writes marabook/data/results/tokens_full.json by default.
"""

from marabook.experiments.tokens import main

if __name__ == "__main__":
    main()
