"""Dotted overrides of a trial config (``optimizer.quantum_weight: 0.0``): what a searched
point, a baseline or an arm sets, resolved against the TrialConfig's fields and checked by
validating the trial with them put in."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from qstudy.config._loader import Item, Problems, Unchecked, error_items, submodel, validate_partial
from qstudy.config._trial import TrialConfig

__all__ = ["apply_overrides", "field_at", "override_problems", "refused_overrides", "resolve_problem"]


def apply_overrides(trial: TrialConfig, values: dict[str, Any]) -> TrialConfig:
    """A validated copy of ``trial`` with each dotted path in ``values`` set.

    Args:
        trial: the fixed trial config (not modified).
        values: dotted path (``optimizer.quantum_weight``, ``seed``) -> value.

    Returns:
        A new TrialConfig.

    Raises:
        ValueError: listing every problem with its key, for an unknown path or a value the
            trial config refuses, e.g.
            ``optimizer.quantum_weight: input should be greater than or equal to 0, got -1``.
    """
    data = _overridden(trial, values)
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as err:
        raise Problems(validate_partial(TrialConfig, data)[1] or error_items(err, TrialConfig)) from None


def field_at(path: str):
    """(FieldInfo of the trial setting at ``path``, None) or (None, problem)."""
    parts = path.split(".")
    model: type[BaseModel] = TrialConfig
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth])
        field = model.model_fields.get(part)
        if field is None:
            if depth == 0:
                sections = [n for n, f in model.model_fields.items() if submodel(f.annotation)]
                leaves = [n for n in model.model_fields if n not in sections]
                return None, (
                    f"unknown trial setting; allowed at the top level: {', '.join(leaves)}, "
                    f"or a dotted key into {', '.join(sections)} (e.g. optimizer.lr)"
                )
            return None, f"unknown trial setting; allowed under {here}: {', '.join(model.model_fields)}"
        sub = submodel(field.annotation)
        last = depth == len(parts) - 1
        if last:
            if sub is not None:
                return (
                    None,
                    f"names the section {path}, not a setting; allowed under {path}: {', '.join(sub.model_fields)}",
                )
            return field, None
        if sub is None:
            return None, f"unknown trial setting; {'.'.join(parts[: depth + 1])} is a setting, not a section"
        model = sub
    raise AssertionError("unreachable")


def resolve_problem(path: str) -> str | None:
    return field_at(path)[1]


def override_problems(trial: TrialConfig, values: dict[str, Any], unchecked: Unchecked = frozenset()) -> list[Item]:
    """What the trial config says of itself with ``values`` set: ``(dotted key, message)``.

    ``unchecked``: the trial's own bad values; its checks that read them are skipped, so a
    problem of the fixed trial is not blamed on each value put into it.
    """
    try:
        data = _overridden(trial, values)
    except Problems as err:
        return err.items
    return validate_partial(TrialConfig, data, unchecked)[1]


def _overridden(trial: TrialConfig, values: dict[str, Any]) -> dict[str, Any]:
    """``trial`` as a mapping with each dotted path in ``values`` set; Problems for an unknown path."""
    data = trial.model_dump()
    for key, value in values.items():
        problem = resolve_problem(str(key))
        if problem:
            raise Problems([(str(key), problem)])
        *sections, leaf = str(key).split(".")
        node = data
        for part in sections:
            node = node[part]
        node[leaf] = value
    return data


def refused_overrides(trial: TrialConfig, where: str, overrides: dict[str, Any], trial_bad: Unchecked) -> list[Item]:
    """What the trial says of ``overrides`` (a baseline, an arm at ``where``), each problem
    under ``where.KEY`` when it is about one of them, else under ``where``."""
    problems = []
    for loc, message in override_problems(trial, overrides, trial_bad):
        if loc in overrides:
            problems.append((f"{where}.{loc}", message))
        else:  # another setting (or the whole trial) refuses the values put in
            problems.append((where, f"{loc}: {message}" if loc else message))
    return problems
