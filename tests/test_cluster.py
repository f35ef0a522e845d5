"""Scale-out: the sweep API takes any ``concurrent.futures.Executor``; a dask.distributed cluster is one.

A tiny two-job 1-2 sweep runs on a local dask cluster (two worker processes) and in the package's own local
process pool; every run depends only on its config and seed, so both give the same numbers (timings aside).
"""

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
distributed = pytest.importorskip("distributed")  # the `cluster` extra, installed by `make`

from marabook import rl  # noqa: E402
from marabook.experiments import onetwo  # noqa: E402


def _numbers(results):
    """Everything a run reports except how long it took."""
    def strip(d):
        return {k: v for k, v in d.items() if not k.startswith("seconds")}
    return [{"config": r["config"], "final": strip(r["final"]), "history": [strip(h) for h in r["history"]]}
            for r in results]


def test_sweep_on_a_dask_local_cluster_equals_the_local_pool():
    configs = [rl.RLConfig(beta=0.03, mara_tau=tau, steps=2, group_size=4, prompts_per_step=2, max_new_tokens=4,
                           seed=s) for tau, s in ((None, 0), (1.0, 1))]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = onetwo.sweep(configs, executor=client.get_executor(), progress=False)
    local = onetwo.sweep(configs, workers=2, progress=False)
    assert len(on_dask) == len(local) == 2
    assert _numbers(on_dask) == _numbers(local)
    assert on_dask[0]["history"][-1]["loss"] != on_dask[1]["history"][-1]["loss"]  # two different runs
