"""The 1-2 sweep of chapter 5 at a chosen size, stored with provenance for the chapter's
"Results at full scale" section.

    python scripts/run_onetwo.py                                 # 10 seeds x 4 betas x 2 methods x 2 KLs
    python scripts/run_onetwo.py --seeds 5 --steps 200 --out onetwo_200steps.json
    python scripts/run_onetwo.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --seeds 3  # Colab / GPU

The experiment is marabook.experiments.onetwo (the chapter calls the same functions); this script is
``python -m marabook.experiments.onetwo``. Writes marabook/data/results/onetwo_sweep.json by default.
"""

from marabook.experiments.onetwo import main

if __name__ == "__main__":
    main()
