"""The 1-2 study of chapter 5 on the real SmolLM2-135M-Instruct, stored with provenance (section 5.10).

    python scripts/run_onetwo_real.py --store results/onetwo_smollm2_store --workers 2     # run or resume the grid
    python scripts/run_onetwo_real.py --store results/onetwo_smollm2_store --collect \
        --out marabook/data/results/onetwo_smollm2.json                                    # what it holds

The experiment is marabook.experiments.onetwo_real (the chapter calls the same functions); this script is
``marabook-onetwo-real`` / ``python -m marabook.experiments.onetwo_real``. The full grid is 60 runs x 200 steps
(about 3.4 s per step per worker on a CPU core): a resumable sweep, finished runs kept in --store and skipped on a
restart (the shipped file says ``partial`` until every run of the grid is in). Writes results/onetwo_smollm2.json by default (pass --out to update a shipped result).
"""

from marabook.experiments.onetwo_real import main

if __name__ == "__main__":
    main()
