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

A failing job does not lose the others: every job runs, a failed one's slot holds a :class:`JobFailure`
record (job index, arguments, exception type and message, traceback), and the returned
:class:`SweepResults` counts them (:meth:`SweepResults.summary`); with ``raise_on_error=True`` a
:class:`SweepError` listing every failure is raised after all jobs ran (its ``results`` keep the finished
ones). With ``store=<directory>`` every finished result is written there as it arrives (one JSON file per
job, written atomically), and a rerun of the same sweep skips the jobs already stored: a sweep killed half
way resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import traceback as _traceback
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from marabook.config import show_progress
from marabook._validate import check_int

__all__ = ["run_sweep", "local_pool", "JobFailure", "SweepResults", "SweepError", "STORE_SCHEMA", "split_failures",
           "failure_counts", "read_store"]

#: Version of the per-job files a sweep ``store`` holds (checked when a sweep resumes).
STORE_SCHEMA = 1


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


@dataclasses.dataclass(frozen=True)
class JobFailure:
    """A job that raised: where it was in ``jobs``, its arguments, the exception's type name and message,
    and the formatted traceback (the worker's own where the executor passes it on)."""

    index: int
    job: Any
    error: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        job = repr(self.job)
        job = job if len(job) <= 200 else job[:197] + "..."
        return f"job {self.index} {job}: {self.error}: {self.message}"

    @classmethod
    def of(cls, index: int, job, exc: BaseException) -> "JobFailure":
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(index, job, type(exc).__name__, str(exc), tb)


class SweepResults(list):
    """``run_sweep``'s answer: the results in the order of the jobs, a failed job's slot holding its
    :class:`JobFailure`. ``failures`` and ``finished`` pick them apart; ``summary()`` counts them."""

    @property
    def failures(self) -> list:
        return [r for r in self if isinstance(r, JobFailure)]

    @property
    def finished(self) -> list:
        """The results of the jobs that finished (failed jobs left out)."""
        return [r for r in self if not isinstance(r, JobFailure)]

    def summary(self) -> dict:
        """``{"jobs", "finished", "failed", "failures": [one line per failure]}``."""
        fails = self.failures
        return {"jobs": len(self), "finished": len(self) - len(fails), "failed": len(fails),
                "failures": [str(f) for f in fails]}

    def raise_failures(self) -> "SweepResults":
        """Raise a :class:`SweepError` listing every failure, if there is one; else return ``self``."""
        if self.failures:
            raise SweepError(self)
        return self


def split_failures(results, key: Callable | None = None, fields=()) -> tuple[list, Any]:
    """``(finished, failures)``: the results that are not :class:`JobFailure` records, and those that are, each
    in order; with ``key``, ``(finished, failure_counts(failures, key))``. Any list of results works (a
    :class:`SweepResults`, a stored list, a hand-made one): summaries read ``finished`` and *count* the
    failures, never average them. ``fields``: keys every finished result must have (a result of another
    version raises :class:`marabook.provenance.ResultsFileError` naming the run and the field)."""
    if isinstance(results, (str, bytes, dict)):
        raise ValueError(f"results must be a list of run results, got {type(results).__name__}")
    results = list(results)
    done, fails = [r for r in results if not isinstance(r, JobFailure)], [r for r in results if isinstance(r, JobFailure)]
    if fields:
        from marabook.provenance import need

        for i, r in enumerate(done):
            need(r, *fields, where=f"run {i}")
    return done, (fails if key is None else failure_counts(fails, key))


def failure_counts(failures, key: Callable) -> dict:
    """``{key(failure.job): number of failures}``: how many jobs raised per summary row, ``key`` reading the
    row's key from a failed job's arguments. A failure whose arguments ``key`` cannot read raises a ValueError
    naming it (``results`` mixing sweeps)."""
    out: dict = {}
    for f in failures:
        try:
            k = key(f.job)
        except (TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"results: cannot tell which row the failed {f} belongs to ({exc!r})") from None
        out[k] = out.get(k, 0) + 1
    return out


class SweepError(RuntimeError):
    """Some jobs of a sweep failed; raised after every job ran. ``results`` (a :class:`SweepResults`) keeps
    the finished results, ``failures`` lists every :class:`JobFailure`."""

    def __init__(self, results: SweepResults):
        self.results = results
        self.failures = results.failures
        lines = "\n".join(f"  {f}" for f in self.failures)
        super().__init__(f"{len(self.failures)} of {len(results)} sweep jobs failed (the other results are "
                         f"kept in this error's .results):\n{lines}")


# ------------------------------------------------------------------------------------ the store
def _json_default(value):
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _job_key(job) -> str:
    from marabook.checkpoints import settings_fingerprint

    return settings_fingerprint(job)


def read_store(store, pattern: str = "job-*.json") -> list:
    """The results a :func:`run_sweep` ``store`` holds so far (``job-<index>.json``; ``pattern``: where a study keeps
    one store per run, e.g. ``"*/*/seed-*/job-00000.json"``), in path order: what a sweep stopped part-way has to
    show. A damaged file, or one of another schema, is refused by name."""
    if not isinstance(store, (str, os.PathLike)) or not Path(store).is_dir():
        raise ValueError(f"store must be a sweep's store directory, got {store!r}")
    out = []
    for f in sorted(Path(store).glob(pattern)):
        try:
            data = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"store file {f} is not readable JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("schema") != STORE_SCHEMA or not isinstance(data.get("result"), dict):
            raise ValueError(f"store file {f} is not a finished job of schema {STORE_SCHEMA}")
        out.append(data["result"])
    return out


class _Store:
    """One JSON file per finished job, ``job-<index>.json``, written to a temporary file, fsynced and renamed."""

    def __init__(self, directory):
        if not isinstance(directory, (str, os.PathLike)) or str(directory) == "":
            raise ValueError(f"store must be a directory path, got {directory!r}")
        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"store {self.dir} exists and is not a directory")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"store {self.dir} cannot be created: {exc}") from exc

    def path(self, index: int) -> Path:
        return self.dir / f"job-{index:05d}.json"

    def get(self, index: int, job):
        """``(True, result)`` for a job stored by this same sweep, ``(False, None)`` when not stored yet."""
        p = self.path(index)
        if not p.exists():
            return False, None
        try:
            data = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"store file {p} is not readable JSON ({exc}); delete it to rerun that job") from exc
        for key in ("schema", "index", "job_key", "result"):
            if not isinstance(data, dict) or key not in data:
                raise ValueError(f"store file {p} has no {key!r} field: not a sweep store file")
        if data["schema"] != STORE_SCHEMA:
            raise ValueError(f"store file {p} has schema {data['schema']!r}, this marabook writes {STORE_SCHEMA}")
        if data["index"] != index or data["job_key"] != _job_key(job):
            raise ValueError(f"store file {p} holds job {data['index']} of another sweep (its arguments differ "
                             f"from job {index}'s); use another store directory")
        return True, data["result"]

    def put(self, index: int, job, result) -> None:
        from marabook.provenance import atomic_write_text

        try:
            text = json.dumps({"schema": STORE_SCHEMA, "index": index, "job_key": _job_key(job), "result": result},
                              default=_json_default)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"store: the result of job {index} is not JSON data ({exc}); run without a store, "
                             f"or return plain data (dicts, lists, numbers, strings, NumPy arrays)") from exc
        atomic_write_text(self.path(index), text)


def run_sweep(fn: Callable, jobs: Sequence, *, workers: int = 1, executor: Executor | None = None,
              desc: str = "runs", progress: bool = True, raise_on_error: bool = False,
              store=None) -> SweepResults:
    """``[fn(job) for job in jobs]``, in this process (``workers=1``), in a local process pool
    (``workers > 1``), or on ``executor``; results in the order of ``jobs``, with a progress bar.

    Every job runs whatever the others do: a job that raises leaves a :class:`JobFailure` in its slot
    (``raise_on_error=True``: a :class:`SweepError` listing all failures after the last job). ``store``: a
    directory where each finished result is saved as JSON as soon as it arrives; rerunning the same sweep
    with the same ``store`` skips the stored jobs (their results come back as JSON data: NumPy arrays as
    lists), and refuses a store written by a sweep with other jobs."""
    from tqdm.auto import tqdm

    jobs = list(jobs)
    if not jobs:
        raise ValueError("jobs must not be empty")
    if not callable(fn):
        raise ValueError("fn must be callable")
    check_int(workers, "workers", minimum=1)
    if executor is not None and not hasattr(executor, "submit"):
        raise ValueError("executor must have a submit(fn, *args) method (a concurrent.futures.Executor)")
    if not isinstance(raise_on_error, bool):
        raise ValueError(f"raise_on_error must be True or False, got {raise_on_error!r}")
    db = _Store(store) if store is not None else None
    out = SweepResults([None] * len(jobs))
    todo = []
    for i, job in enumerate(jobs):
        done, result = db.get(i, job) if db is not None else (False, None)
        if done:
            out[i] = result
        else:
            todo.append(i)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, disable=not show_progress(progress))

    def finish(i, result):
        if db is not None:
            db.put(i, jobs[i], result)
        out[i] = result

    try:
        if executor is None and workers == 1:
            for i in todo:
                try:
                    result = fn(jobs[i])
                except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                    out[i] = JobFailure.of(i, jobs[i], exc)
                else:
                    finish(i, result)
                bar.update(1)
        elif todo:
            own = executor is None
            pool = local_pool(workers) if own else executor
            try:
                futures = {i: pool.submit(fn, jobs[i]) for i in todo}
                for i, f in futures.items():  # in order; the bar advances as each finishes in turn
                    try:
                        result = f.result()
                    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                        out[i] = JobFailure.of(i, jobs[i], exc)
                    else:
                        finish(i, result)
                    bar.update(1)
            finally:
                if own:
                    pool.shutdown()
    finally:
        bar.close()
    if raise_on_error:
        out.raise_failures()
    return out
