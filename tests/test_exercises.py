"""Self-check helpers: expected answers match hand computations; right and wrong answers are told apart."""

import math

import numpy as np
import pytest

from marabook import exercises

HAND = {
    "2.3": 4 / 3,                                   # off-support mass 1 - 0.75 beta reaches 0
    "3.1": 0.05 / math.log(20),                     # eq. (3.2)
    "4.2": [1.0, 1.0 + 0.1 * math.log(10), 0.0],    # anchor = sample 0
    "5.2": [-0.00035 / (0.0007 + 1e-4)] * 3 + [0.00105 / (0.0007 + 1e-4)],
    "6.1": 2 / (10 * (1 - 0.9 ** 3)),
    "6.2": [0.98 + 0.02 * math.log(0.18 / 0.05), 0.98, 0.98 + 0.02 * math.log(0.18 / 0.03), 0.86],
    "7.1": math.exp(128 * 0.05),
    "8.1": [0.86 + 2 / 128, 0.86, 0.5],
    "9.1": 0.6 * (1 - 100 / (2 * 10_000)),          # trapezoid: the first 100-molecule interval rises from 0
}


@pytest.mark.parametrize("ex", sorted(HAND))
def test_expected_answers_match_hand_computation(ex):
    np.testing.assert_allclose(exercises.EXERCISES[ex].expected(), HAND[ex], rtol=1e-3)


def test_band_width_in_range_stated_by_chapter_3():
    # the chapter's solution: from about 0.07 to about 0.25, about half a decade
    assert 0.45 < float(exercises.EXERCISES["3.3"].expected()) < 0.65


@pytest.mark.parametrize("ex", sorted(exercises.EXERCISES))
def test_right_and_wrong_answers(ex, capsys):
    want = np.asarray(exercises.EXERCISES[ex].expected(), dtype=float)
    assert exercises.check(ex, want.tolist()) is True
    assert "correct" in capsys.readouterr().out
    wrong = (want * 1.3 + 0.5).tolist()
    assert exercises.check(ex, wrong) is False
    out = capsys.readouterr().out
    assert "not quite" in out and "Hint" in out
    assert exercises.check(ex) is None
    assert "expects" in capsys.readouterr().out


def test_bad_input():
    with pytest.raises(ValueError, match="exercise"):
        exercises.check("9.9", 1.0)
    with pytest.raises(ValueError, match="answer"):
        exercises.check("3.1", "a lot")
    assert exercises.check("4.2", 1.0) is False  # wrong shape is reported, not raised
