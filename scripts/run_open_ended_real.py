"""Chapter 6's "Name a ..." study on the real SmolLM2-135M-Instruct, stored with provenance.

    python scripts/run_open_ended_real.py --store results/open_ended_smollm2_store --workers 2      # run or resume
    python scripts/run_open_ended_real.py --store results/open_ended_smollm2_store --collect \
        --out marabook/data/results/open_ended_smollm2.json                                         # collect

The experiment is marabook.experiments.open_ended_real (the chapter calls the same functions); reading and the CLI
are marabook.experiments.open_ended_real_report. 30 runs x 200 steps, about 10.8 CPU-hours on one thread each: a
resumable sweep (--store), or ``--device cuda`` on a GPU (scripts/run_on_gpu.py runs it beside the 1-2 grid).
"""

from marabook.experiments.open_ended_real_report import main

if __name__ == "__main__":
    main()
