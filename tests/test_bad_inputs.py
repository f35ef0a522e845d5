"""Bad input to the public functions added in the second edition raises a ValueError naming the argument.

(The first edition's functions are covered next to their numerical tests; this file gathers the
newer plumbing, LM-sizing, experiment and integration entry points in one place.)
"""
import pytest

torch = pytest.importorskip("torch")

from marabook import plumbing  # noqa: E402
from marabook.chem.reinvent import DiversityFilter, MaraTransform  # noqa: E402
from marabook.experiments import onetwo  # noqa: E402
from marabook.lm import random_models  # noqa: E402
from marabook.mara import Threshold  # noqa: E402
from marabook.rl.config import LoraSettings, RLConfig  # noqa: E402


@pytest.mark.parametrize("call, name", [
    (lambda: plumbing.default_device("nope"), "device"),
    (lambda: plumbing.pad_sequences([], 0), "seqs"),
    (lambda: Threshold.parse("p90", "nope"), "tau_scope"),
    (lambda: LoraSettings(rank=0), "rank"),
    (lambda: RLConfig(micro_batch_size=0), "micro_batch_size"),
    (lambda: RLConfig(lora={"bogus": 1}), "lora"),
    (lambda: RLConfig(kl_estimator="k9"), "kl_estimator"),
    (lambda: onetwo.time_to_target([], 0.5, within=0.0), "within"),
    (lambda: onetwo.time_to_target([], 1.5), "target"),
    (lambda: onetwo.time_to_target([], 0.5, fail_below=-0.1), "fail_below"),
    (lambda: onetwo.summarize([], fail_below=1.5), "fail_below"),
    (lambda: random_models.save_random_lm("unused", arch="gpt9"), "arch"),
    (lambda: MaraTransform(beta=-1.0, threshold=Threshold.parse(0.5)), "beta"),
    (lambda: MaraTransform(beta=0.1, threshold="top"), "tau"),
    (lambda: DiversityFilter(bucket_size=0), "bucket_size"),
    (lambda: DiversityFilter(min_score=float("nan")), "min_score"),
])
def test_named_value_error(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_trl_entry_points_name_their_arguments():
    itrl = pytest.importorskip("marabook.integrations.trl")
    with pytest.raises(ValueError, match="prompts and completion_ids"):
        itrl.reference_logprobs(None, None, ["a", "b"], [[1]])
    with pytest.raises(ValueError, match="batch_size"):
        itrl.reference_logprobs(None, None, ["a"], [[1]], batch_size=0)


def test_time_to_target_finds_the_settling_step():
    # step 10 is within reach but step 15 leaves it; from step 20 on it stays
    traj = [{"step": s, "share_1": v, "p_valid": 1.0} for s, v in [(0, 0.9), (10, 0.52), (15, 0.7), (20, 0.49),
                                                                     (25, 0.55)]]
    assert onetwo.time_to_target(traj, 0.5, within=0.1) == 20
    assert onetwo.time_to_target(traj, 0.5, within=0.01) is None
    # a run whose valid mass drops below fail_below has not settled, whatever its share
    traj[-1]["p_valid"] = 0.3
    assert onetwo.time_to_target(traj, 0.5, within=0.1) is None
