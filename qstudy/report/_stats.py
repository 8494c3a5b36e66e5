"""Intervals over seeds: Student-t means, paired differences, censored times to a target.

Every interval here is a two-sided 95% Student-t interval over independent units (seeds,
or timing rounds): ``mean ± t(0.975, n-1) · sd / √n``. One unit gives a mean and no
interval (``half_width`` None): the report says "n = 1" rather than invent one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

__all__ = ["Interval", "first_reaching", "mean_interval", "paired_difference", "verdict"]

LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """``mean`` with its 95% interval ``[low, high]`` over ``n`` units (None bounds: n < 2)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def excludes_zero(self) -> int:
        """+1 if the interval lies above 0, -1 below, 0 if it holds 0 (or has no width)."""
        if self.half_width is None:
            return 0
        if self.low > 0:
            return 1
        if self.high < 0:
            return -1
        return 0

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` and its 95% Student-t interval (scipy's t quantile).

    Raises:
        ValueError: no values, or a non-finite one (a diverged trial is listed, not averaged).
    """
    from scipy import stats

    values = [float(v) for v in values]
    if not values:
        raise ValueError("an interval needs at least one value, got none")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"an interval needs finite values, got {values}")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, None, n)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n), n)


def paired_difference(arm: Sequence[float], control: Sequence[float]) -> Interval:
    """Mean of ``arm[i] - control[i]`` over paired units (the same seed) with its interval:
    the paired t interval, the one ``scipy.stats.ttest_rel(arm, control).confidence_interval()``
    gives."""
    if len(arm) != len(control):
        raise ValueError(f"paired values need equal counts, got {len(arm)} and {len(control)}")
    return mean_interval([a - c for a, c in zip(arm, control)])


def first_reaching(curve: Sequence[tuple[int, float]], target: float, mode: str) -> int | None:
    """The first step of ``curve`` (``(step, value)`` sorted by step) whose value reaches
    ``target`` (``>=`` for mode max, ``<=`` for min); None if it never does (censored)."""
    for step, value in curve:
        if (value >= target) if mode == "max" else (value <= target):
            return step
    return None


def verdict(measured: Interval, claimed_sign: int) -> str:
    """holds / not supported / contradicted, for a claimed effect of sign ``claimed_sign``
    (+1: the arm's value is higher than the control's, -1: lower) and the measured
    difference arm - control."""
    side = measured.excludes_zero()
    if side == 0:
        return "not supported"
    return "holds" if side == claimed_sign else "contradicted"
