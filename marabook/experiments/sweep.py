"""One sweep runner for every grid of the book: a function applied to a list of jobs through any
``concurrent.futures.Executor``.

``run_sweep(fn, jobs)`` runs in this process; ``workers=N`` starts a local pool of N spawned processes
(one torch thread each, so N runs share the CPU without oversubscribing it); ``executor=...`` hands
the jobs to any executor you already have, for example a cluster's:

* dask.distributed: ``with Client(address) as client: run_sweep(fn, jobs, executor=client.get_executor())``
  (``pip install "marabook[cluster]"``);
* anything else with ``submit(fn, *args)`` returning an object with ``result()``: a Ray-backed executor,
  a ``ThreadPoolExecutor`` for I/O-bound jobs, or your scheduler's own.

``fn`` and the jobs must be picklable for process or cluster executors (module-level functions and
plain data). Results come back in the order of ``jobs`` whatever the executor, and every job depends
only on its own arguments and seed, so the numbers do not depend on where or in which order jobs ran.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Callable, Sequence

from marabook.config import show_progress
from marabook._validate import check_int

__all__ = ["run_sweep", "local_pool"]


def _one_thread() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # NumPy-only sweeps
        pass


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, one torch thread each (the default of :func:`run_sweep`)."""
    check_int(workers, "workers", minimum=1)
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_one_thread)


def run_sweep(fn: Callable, jobs: Sequence, *, workers: int = 1, executor: Executor | None = None,
              desc: str = "runs", progress: bool = True) -> list:
    """``[fn(job) for job in jobs]``, in this process (``workers=1``), in a local process pool
    (``workers > 1``), or on ``executor``; results in the order of ``jobs``, with a progress bar."""
    from tqdm.auto import tqdm

    jobs = list(jobs)
    if not jobs:
        raise ValueError("jobs must not be empty")
    if not callable(fn):
        raise ValueError("fn must be callable")
    check_int(workers, "workers", minimum=1)
    if executor is not None and not hasattr(executor, "submit"):
        raise ValueError("executor must have a submit(fn, *args) method (a concurrent.futures.Executor)")
    bar = tqdm(total=len(jobs), desc=desc, disable=not show_progress(progress))
    if executor is None and workers == 1:
        out = []
        for job in jobs:
            out.append(fn(job))
            bar.update(1)
        bar.close()
        return out
    own = executor is None
    pool = local_pool(workers) if own else executor
    try:
        futures = [pool.submit(fn, job) for job in jobs]
        for f in futures:  # in order; the bar advances as each finishes in turn
            f.result()
            bar.update(1)
        return [f.result() for f in futures]
    finally:
        bar.close()
        if own:
            pool.shutdown()
