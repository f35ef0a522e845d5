"""Chapter 5.10's TRL check on the real model, stored with provenance:

    python scripts/run_onetwo_real_trl.py --store results/trl_onetwo_smollm2_store \\
        --out marabook/data/results/trl_onetwo_smollm2.json

TRL's GRPOTrainer on SmolLM2-135M-Instruct and the chosen 1-2 task, vanilla and with MARA
(marabook.integrations.trl.mara_reward), 2 seeds x 60 steps, exact share of "1" every 10 steps: the experiment is
marabook.experiments.onetwo_real_trl. Resumable with --store (finished runs are kept and skipped).
"""

from marabook.experiments.onetwo_real_trl import main

if __name__ == "__main__":
    main()
