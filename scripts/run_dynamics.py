"""Chapter 5's "target versus dynamics" grid, stored with provenance.

    python scripts/run_dynamics.py            # 2 methods x 4 betas x 2 group sizes x 5 seeds, 300 steps (CPU)

Every run is the chapter's 1-2 training (reverse KL, k1 in the reward, RLOO, lr 3e-3) with the exact answer
probabilities evaluated every 20 steps, so each run's path can be set beside its closed-form target. The
experiment is marabook.experiments.onetwo (dynamics_configs, dynamics_sweep, dynamics_summary). Writes
marabook/data/results/onetwo_dynamics.json by default.
"""

from marabook.experiments.onetwo import dynamics_main

if __name__ == "__main__":
    dynamics_main()
