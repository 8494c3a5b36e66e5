"""A search-space entry: one searched setting, mirroring an ``optuna.distributions`` class.

``{type: float, low: 1e-5, high: 1e-2, log: true}`` is a FloatDistribution, ``{type: int,
low: 2, high: 8, step: 2}`` an IntDistribution, ``{type: categorical, choices: [...]}`` a
CategoricalDistribution; a finite entry (categorical, int, float with step) is also a grid
for ``sampler.type grid``. ``qstudy.study`` builds the Optuna objects; this module only
describes and checks them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from qstudy.config._loader import ConfigModel, Item, Unchecked, touches

__all__ = ["ParamSpec"]


def _number(value: Any) -> Any:
    """Accepts an int or float (numeric strings too: PyYAML reads ``1e-5`` as a string)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    raise ValueError(f"must be a number, got {value!r}")


Number = Annotated[int | float | None, BeforeValidator(_number)]


class ParamSpec(ConfigModel):
    """One searched setting, mirroring ``optuna.distributions``."""

    type: Literal["float", "int", "categorical"] = Field(
        description="float (FloatDistribution), int (IntDistribution) or categorical (CategoricalDistribution)"
    )
    low: Number = Field(None, description="float/int: smallest value (inclusive)")
    high: Number = Field(None, description="float/int: largest value (inclusive)")
    log: bool = Field(False, description="float/int: sample log-uniformly (needs low > 0); for scales like lr")
    step: Number = Field(None, description="float/int: spacing of the values (makes a float space a finite grid)")
    choices: list[Any] | None = Field(None, description="categorical: the values (str, int, float, bool or null)")

    @field_validator("choices")
    @classmethod
    def _scalar_choices(cls, choices: list[Any] | None) -> list[Any] | None:
        for value in choices or ():
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"must be str, int, float, bool or null (Optuna's rule), got {value!r}")
        return choices

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        # A value that failed its own validation is None here (log: False): the checks below
        # treat None as "not given", so each skips a value in `unchecked` explicitly.
        problems: list[Item] = []
        if self.type == "categorical":
            if not self.choices and not touches(unchecked, "choices"):
                problems.append(
                    ("choices", f"type categorical needs a non-empty list of choices, got {self.choices!r}")
                )
            for key in ("low", "high", "step"):
                if getattr(self, key) is not None:
                    problems.append((key, f"not used by type categorical (use choices), got {getattr(self, key)!r}"))
            if self.log:
                problems.append(("log", "not used by type categorical, got True"))
            return problems
        if self.choices is not None:
            problems.append(("choices", f"only for type categorical, got type {self.type!r}"))
        for key in ("low", "high"):
            value = getattr(self, key)
            if touches(unchecked, key):
                continue
            if value is None:
                problems.append((key, f"required for type {self.type}"))
            elif self.type == "int" and not isinstance(value, int):
                problems.append((key, f"must be an integer for type int, got {value!r}"))
            elif not math.isfinite(value):
                problems.append((key, f"must be finite, got {value!r}"))
        if self.step is not None:
            if self.type == "int" and not isinstance(self.step, int):
                problems.append(("step", f"must be an integer for type int, got {self.step!r}"))
            elif not self.step > 0:
                problems.append(("step", f"must be > 0, got {self.step!r}"))
        if problems or touches(unchecked, "low", "high", "step"):
            return problems  # the range checks below need a valid low, high and step
        low, high, step = self.low, self.high, self.step
        if high < low:
            problems.append(("high", f"must be >= low, got low={low!r}, high={high!r}"))
        if self.log and low <= 0:
            problems.append(("low", f"must be > 0 with log: true, got {low!r}"))
        if self.log and step is not None and not (self.type == "int" and step == 1):
            problems.append(("step", f"cannot be combined with log: true (Optuna's rule), got {step!r}"))
        if step is not None and high >= low and not problems:
            n = round((high - low) / step)
            if abs(low + n * step - high) > 1e-9 * max(1.0, abs(high)):
                problems.append(
                    ("high", f"high - low must be a multiple of step, got low={low!r}, high={high!r}, step={step!r}")
                )
        return problems

    @property
    def is_finite(self) -> bool:
        """True if the space has finitely many values (a grid): categorical, int, float with step."""
        return self.type != "float" or self.step is not None

    def grid_values(self) -> list[Any]:
        """Every value of a finite space, in order (for Optuna's GridSampler)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            raise ValueError("a float space without step has no finite grid")
        n = round((self.high - self.low) / self.step)
        # Rounded so 0.1 * 3 is 0.3: grid points become MLflow params and YAML values.
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def bounds(self) -> list[tuple[str, Any]]:
        """The values that bound what the space can produce, each with its key: low, high or choices.i."""
        if self.type == "categorical":
            return [(f"choices.{i}", value) for i, value in enumerate(self.choices)]
        return [("low", self.low), ("high", self.high)]

    def contains(self, value: Any) -> bool:
        """True if ``value`` is a point of the space (categorical: one of the choices)."""
        if self.type == "categorical":
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high
