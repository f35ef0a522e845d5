"""The PMO study of issue 29: REINVENT, REINVENT + diversity filter, MARA and MARA + filter on PMO's tasks.

    python scripts/run_pmo_study.py --store results/pmo_store --workers 2              # run or resume the grid
    python scripts/run_pmo_study.py --store results/pmo_store --collect \
        --out marabook/data/results/pmo_study.json                                      # store what it holds so far
    python scripts/run_pmo_study.py --store /tmp/pmo --tasks median1 --seeds 0 --budget 640   # a quick look

The experiment is marabook.experiments.pmo (the tasks, methods and MARA's tau are chosen and justified in its
docstring); this script is ``python -m marabook.experiments.pmo``. The default grid is 11 tasks x 4 methods x 5
seeds = 220 runs of 10,000 oracle calls each: a resumable sweep, every finished run kept in --store (one
directory per task, method and seed) and skipped on a restart; --tasks, --methods and --seeds run any part of it
into the same store. Writes results/pmo_study.json by default (pass --out to update the shipped file).
"""

from marabook.experiments.pmo import main

if __name__ == "__main__":
    main()
