"""The cross-field checks of a study file: the space against the trial config it searches,
baselines, trial counts, objective and scheduler, and (from their own modules) arms,
confirm and claims. Each check that reads a value which failed its own validation (in
``unchecked``) is skipped, so one run lists every real problem and no echo of one."""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING, Any, Literal

from qstudy.config._arms import comparison_problems
from qstudy.config._claims import claim_problems
from qstudy.config._confirm import confirm_problems
from qstudy.config._loader import Item, Unchecked, touches
from qstudy.config._overrides import field_at, override_problems, refused_overrides, resolve_problem
from qstudy.config._sections import OBJECTIVE_METRICS
from qstudy.config._space import ParamSpec

if TYPE_CHECKING:
    from qstudy.config._study import StudyConfig

__all__ = ["study_problems"]


def study_problems(study: StudyConfig, unchecked: Unchecked) -> list[Item]:
    """Cross-field problems as ``(dotted key, message)``; checks that read an unchecked value skip it."""
    trial_bad = frozenset(loc[1:] for loc in unchecked if loc[:1] == ("trial",))
    grid = not touches(unchecked, "sampler.type") and study.sampler.type == "grid"
    space_bad: dict[str, Unchecked] = {}  # entry -> its bad values, relative to it
    for loc in unchecked:
        if loc[:1] == ("space",) and len(loc) > 1:
            space_bad[loc[1]] = space_bad.get(loc[1], frozenset()) | {loc[2:]}
    # An entry (or the space) with a problem of its own: the checks of the whole space are skipped.
    space_ok = not any(loc[:1] == ("space",) for loc in unchecked)
    problems: list[Item] = []
    # Arms given (even bad ones): a comparison study, which searches nothing.
    comparison = bool(study.arms) or touches(unchecked, "arms")
    if not study.space and space_ok and not comparison:
        example = "optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}"
        problems.append(
            (
                "space",
                f"must name at least one searched setting, e.g. {example}, or compare named arms (arms: and seeds:)",
            )
        )
    trial_ok = not touches(unchecked, "trial")
    problems += comparison_problems(study, unchecked, trial_ok, trial_bad)
    train_examples = None if touches(unchecked, "trial.data.train_examples") else study.trial.data.train_examples
    problems += claim_problems(study.claims, study.arms, OBJECTIVE_METRICS, train_examples, unchecked)
    if not touches(unchecked, "objective.metric", "trial.data.task", "trial.data.generate_examples"):
        problems += _objective_problems(study)
    scheduler = study.scheduler
    if (
        not touches(unchecked, "scheduler.type", "scheduler.grace_period", "trial.train.max_steps")
        and scheduler.type == "asha"
        and scheduler.grace_period > study.trial.train.max_steps
    ):
        problems.append(
            (
                "scheduler.grace_period",
                f"must be <= trial.train.max_steps = {study.trial.train.max_steps} "
                f"(ASHA's time is the optimizer step), got {scheduler.grace_period}",
            )
        )
    space_problems = _space_problems(study, grid, trial_ok, trial_bad, space_bad)
    problems += space_problems
    space_ok = space_ok and not space_problems
    for i, baseline in enumerate(study.baselines):
        if not touches(unchecked, f"baselines.{i}"):
            problems += _baseline_problems(study, i, baseline, grid and space_ok, trial_ok, trial_bad)
    if not touches(unchecked, "num_samples", "baselines") and not comparison:
        problems += _count_problems(study, grid and space_ok, not touches(unchecked, "max_concurrent"))
    if study.confirm is not None:
        problems += confirm_problems(study, comparison, unchecked)
    return problems


def _objective_problems(study: StudyConfig) -> list[Item]:
    metric, data = study.objective.metric, study.trial.data
    if metric == "eval_accuracy" and data.task != "classification":
        return [
            (
                "objective.metric",
                f"eval_accuracy is reported only for data.task classification, got trial.data.task {data.task!r}",
            )
        ]
    if metric == "gsm8k_accuracy" and (data.task == "classification" or data.generate_examples == 0):
        return [
            (
                "objective.metric",
                "gsm8k_accuracy is reported only for GSM8K tasks with data.generate_examples > 0, "
                f"got trial.data.task {data.task!r}, generate_examples {data.generate_examples}",
            )
        ]
    return []


def _space_problems(
    study: StudyConfig, grid: bool, trial_ok: bool, trial_bad: Unchecked, space_bad: dict[str, Unchecked]
) -> list[Item]:
    problems = []
    # An entry that could not be built at all (no valid type) still names a setting to check.
    dropped = [key for key in space_bad if key not in study.space]
    for key in [*study.space, *dropped]:
        where = f"space.{key}"
        problem = resolve_problem(key)
        if problem:
            problems.append((where, problem))
            continue
        spec, bad = study.space.get(key), space_bad.get(key, frozenset())
        if spec is None:
            continue
        if not touches(bad, "type"):
            problem = _kind_problem(key, spec)
            if problem:
                problems.append((f"{where}.type", problem))
                continue
        if grid and not bad and not spec.is_finite:
            problems.append(
                (
                    where,
                    "sampler.type grid needs a finite space: categorical, int, or float with step, "
                    f"got type float without step (low={spec.low!r}, high={spec.high!r})",
                )
            )
        if not trial_ok or touches(bad, "choices"):
            continue
        # Each end of the range (each choice) put into the fixed trial: what would the trial say?
        for bound, value in spec.bounds():
            if touches(bad, bound.split(".")[0]):
                continue
            for loc, message in override_problems(study.trial, {key: value}, trial_bad):
                if loc != key:  # another setting (or the whole trial) refuses this value
                    message = f"with {key}={value!r}: {loc + ': ' if loc else ''}{message}"
                problems.append((f"{where}.{bound}", message))
    return problems


def _baseline_problems(
    study: StudyConfig, i: int, baseline: dict[str, Any], grid: bool, trial_ok: bool, trial_bad: Unchecked
) -> list[Item]:
    where = f"baselines.{i}"
    if not baseline:
        return [(where, "an empty baseline is no control; set e.g. optimizer.quantum_weight: 0.0")]
    problems = []
    for key, value in baseline.items():
        problem = resolve_problem(str(key))
        spec = study.space.get(key)
        if problem:
            problems.append((f"{where}.{key}", problem))
        elif spec is not None and spec.type == "categorical" and spec.choices and not spec.contains(value):
            # Optuna refuses a fixed categorical value outside the choices.
            problems.append((f"{where}.{key}", f"must be one of the space's choices {spec.choices!r}, got {value!r}"))
    if grid:
        missing = [key for key in study.space if key not in baseline]
        if missing:
            problems.append(
                (
                    where,
                    "sampler.type grid runs a baseline only if it sets every searched key "
                    f"(Optuna's GridSampler), missing: {', '.join(missing)}",
                )
            )
    if trial_ok and not any(key.startswith(f"{where}.") and "unknown trial setting" in m for key, m in problems):
        problems += refused_overrides(study.trial, where, baseline, trial_bad)
    return problems


def _count_problems(study: StudyConfig, grid: bool, max_concurrent_ok: bool) -> list[Item]:
    n, n_baselines = study.num_samples, len(study.baselines)
    problems = []
    if n < n_baselines:
        problems.append(
            (
                "num_samples",
                f"must be >= the number of baselines ({n_baselines}), which run first and count as trials, got {n}",
            )
        )
    if max_concurrent_ok and study.max_concurrent > n:
        problems.append(("max_concurrent", f"must be <= num_samples ({n}), got {study.max_concurrent}"))
    size = study.grid_size() if grid and study.space else None
    if size is not None and n > size + n_baselines:
        problems.append(
            (
                "num_samples",
                f"sampler.type grid has {size} points + {n_baselines} baselines "
                f"= {size + n_baselines} trials at most, got {n}",
            )
        )
    return problems


def _kind_problem(path: str, spec: ParamSpec) -> str | None:
    """A type mismatch between a space and the setting it searches."""
    field, _ = field_at(path)
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        kind = "bool"
    elif annotation is int:
        kind = "int"
    elif annotation is float:
        kind = "float"
    elif annotation is str or typing.get_origin(annotation) is Literal:
        kind = "str"
    else:
        return (
            f"{path} is a {getattr(annotation, '__name__', annotation)} setting and cannot be searched "
            "(Optuna samples single values); set it under trial: or in baselines"
        )
    allowed = {
        "bool": ("categorical",),
        "str": ("categorical",),
        "int": ("int", "categorical"),
        "float": ("float", "int", "categorical"),
    }[kind]
    if spec.type not in allowed:
        return f"{path} takes {kind} values: use type {' or '.join(allowed)}, got {spec.type!r}"
    return None
