"""The report's interval math against scipy.stats, on fixed data."""

import math

import pytest
from scipy import stats

from qstudy.report._stats import Interval, first_reaching, mean_interval, paired_difference, verdict

ARM = [0.912, 0.944, 0.931, 0.958, 0.925]
CONTROL = [0.905, 0.921, 0.933, 0.940, 0.902]


def test_mean_interval_is_scipys_student_t_interval():
    got = mean_interval(ARM)
    low, high = stats.t.interval(0.95, len(ARM) - 1, loc=sum(ARM) / len(ARM), scale=stats.sem(ARM))
    assert got.mean == pytest.approx(sum(ARM) / 5, abs=1e-15)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert got.n == 5


def test_paired_difference_is_scipys_paired_t_interval():
    got = paired_difference(ARM, CONTROL)
    ci = stats.ttest_rel(ARM, CONTROL).confidence_interval(0.95)
    assert (got.low, got.high) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    assert got.mean == pytest.approx(sum(a - c for a, c in zip(ARM, CONTROL)) / 5, abs=1e-15)
    # Pairing matters: the unpaired (Welch) interval of the same data is another one.
    welch = stats.ttest_ind(ARM, CONTROL, equal_var=False).confidence_interval(0.95)
    assert not math.isclose(got.low, welch.low, abs_tol=1e-6)


def test_one_value_has_a_mean_and_no_interval():
    got = mean_interval([0.5])
    assert (got.mean, got.half_width, got.low, got.high, got.n) == (0.5, None, None, None, 1)
    assert got.excludes_zero() == 0


def test_refuses_what_it_cannot_average():
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])
    with pytest.raises(ValueError, match="finite values"):
        mean_interval([0.1, float("nan")])
    with pytest.raises(ValueError, match="equal counts"):
        paired_difference([1.0, 2.0], [1.0])


def test_identical_values_give_a_zero_width_interval_that_holds_zero():
    got = paired_difference([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert (got.mean, got.low, got.high) == (0.0, 0.0, 0.0)
    assert verdict(got, +1) == "not supported"


@pytest.mark.parametrize(
    "interval, sign, expected",
    [
        (Interval(0.02, 0.01, 5), +1, "holds"),
        (Interval(0.02, 0.01, 5), -1, "contradicted"),
        (Interval(-0.02, 0.01, 5), -1, "holds"),
        (Interval(0.005, 0.01, 5), +1, "not supported"),
        (Interval(0.005, None, 1), +1, "not supported"),
    ],
)
def test_verdicts(interval, sign, expected):
    assert verdict(interval, sign) == expected


def test_first_reaching_is_the_first_step_at_the_target_or_none():
    curve = [(32, 0.3), (64, 0.85), (96, 0.91), (128, 0.89), (160, 0.95)]
    assert first_reaching(curve, 0.9, "max") == 96
    assert first_reaching(curve, 0.99, "max") is None
    assert first_reaching([(1, 2.0), (2, 1.2), (3, 0.9)], 1.0, "min") == 3


def test_a_claim_that_holds_only_in_direction_says_so_and_on_which_side():
    from qstudy.report._analysis import _size_note
    from qstudy.report._render import verdict_text
    from qstudy.report._stats import Interval

    tiny = Interval(mean=-6e-7, half_width=1e-7, n=3)  # the paper: -0.009
    claim = {"verdict": "holds", **_size_note(tiny, -0.009)}
    assert verdict_text(claim) == "holds in direction only (the paper's size is larger than the interval)"
    claim = {"verdict": "holds", **_size_note(Interval(mean=0.7, half_width=0.1, n=3), 0.35)}
    assert verdict_text(claim) == "holds in direction only (the paper's size is smaller than the interval)"
    assert verdict_text({"verdict": "holds", **_size_note(tiny, -6e-7)}) == "holds"
    assert verdict_text({"verdict": "not supported"}) == "not supported"
