"""YAML loading and validation that reports every problem at once, naming file, key and value.

Pydantic runs a model's own (cross-field) validator only when all its fields validated, so
one typo hides every cross check around it. ``validate_partial`` goes further: each nested
model is validated on its own, a value that fails is left out (its default or a placeholder
stands in, and its location is marked unchecked), and each model's cross checks
(``ConfigModel.cross_problems``) then run on what did validate, skipping only the checks
that read an unchecked value.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from qstudy.config._errors import ConfigError

__all__ = [
    "ConfigModel",
    "Problems",
    "error_items",
    "format_validation_error",
    "list_indices",
    "load_yaml",
    "submodel",
    "touches",
    "validate",
    "validate_partial",
]

M = TypeVar("M", bound=BaseModel)
Item = tuple[str, str]  # (dotted key, message)
Unchecked = frozenset[tuple[str, ...]]  # locations of values that failed their own checks

_PARTIAL = "qstudy.config.partial"  # validation-context key of the _Partial below


class Problems(ValueError):
    """Several problems found by one check, each ``(dotted key relative to it, message)``.

    Raised inside validators, where pydantic wraps it and ``error_items`` unpacks each item
    onto its own keyed line; ``apply_overrides`` raises it too. Built directly it reads as
    one ValueError listing them.
    """

    def __init__(self, items: list[Item]):
        self.items = list(items)
        super().__init__("\n".join(f"{key}: {message}" if key else message for key, message in self.items))


@dataclasses.dataclass
class _Partial:
    """What a partial validation tells the cross checks of the model it validates."""

    model: type[BaseModel]
    unchecked: Unchecked
    built: set[int]  # ids of nested models already validated (and cross-checked) on their own
    problems: list[Item] = dataclasses.field(default_factory=list)


class ConfigModel(BaseModel):
    """A config model: unknown keys refused, assignments validated, and its cross-field checks
    in ``cross_problems``, which its validator raises as one ``Problems`` and which
    ``validate_partial`` also runs when some of its values failed."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        """Problems between fields, as ``(dotted key, message)``.

        Args:
            unchecked: locations of values that failed (and were replaced by their default):
                a check that reads one of them (``touches``) is meaningless and is skipped.
        """
        return []

    @model_validator(mode="after")
    def _run_cross_checks(self, info: ValidationInfo) -> ConfigModel:
        partial = (info.context or {}).get(_PARTIAL)
        if partial is not None and id(self) in partial.built:
            return self  # pydantic >= 2.12 reruns after-validators on instances passed in
        if partial is not None and type(self) is partial.model:
            partial.problems += self.cross_problems(partial.unchecked)
            return self
        problems = self.cross_problems(frozenset())
        if problems:
            raise Problems(problems)
        return self


def touches(unchecked: Unchecked, *keys: str) -> bool:
    """True if any dotted field path in ``keys``, or a section above it, is unchecked."""
    locs = [tuple(key.split(".")) for key in keys]
    return any(loc[: len(bad)] == bad for loc in locs for bad in unchecked)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a YAML mapping; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: must be a mapping of keys to values, got {type(data).__name__}"])
    return data


def validate(model: type[M], data: dict[str, Any], source: str | Path) -> M:
    """Validates ``data`` against ``model``; raises one ConfigError listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = validate_partial(model, data)[1] or error_items(err, model)
        raise ConfigError([format_line(source, key, message) for key, message in problems]) from None


def validate_partial(
    model: type[M],
    data: Any,
    unchecked: Unchecked = frozenset(),
    placeholders: dict[str, Any] | None = None,
) -> tuple[M | None, list[Item], Unchecked]:
    """Validates all of ``data`` that can be validated, and lists every problem.

    Nested models (a model field, or a dict of models) are validated on their own first; a
    value that fails is left out, so its default (or ``placeholders[field]``) stands in;
    then the model's own fields, then its cross checks, which skip what failed.

    Args:
        model: the config model.
        data: its raw input (a YAML mapping).
        unchecked: locations already known to be bad (their checks are skipped).
        placeholders: stand-ins for required fields that fail (``{"num_samples": 1}``).

    Returns:
        ``(instance, problems, bad)``: the model built from what validated (None if a
        required value is missing); every problem as ``(dotted key, message)``, the fields'
        problems in field order, then the cross checks'; and the locations of every value
        with a problem. The instance is for more cross checks, never for use: it holds
        defaults where the input was wrong.
    """
    if not isinstance(data, dict):
        try:
            return model.model_validate(data), [], frozenset(unchecked)
        except ValidationError as err:
            return None, error_items(err, model), frozenset(unchecked) | {()}
    data, bad, built = dict(data), set(unchecked), set()
    field_items: list[tuple[int, Item]] = []
    order = {name: i for i, name in enumerate(model.model_fields)}

    def note(loc: tuple[str, ...], items: list[Item]) -> None:
        field_items.extend((order.get(loc[0], len(order)), item) for item in items)

    def sub_partial(sub, value, loc) -> Any:
        """The nested model at ``loc`` built on its own, or None."""
        instance, items, marks = validate_partial(sub, value, _under(unchecked, loc))
        note(loc, [(".".join((*loc, key)) if key else ".".join(loc), message) for key, message in items])
        bad.update(loc + mark for mark in marks)
        if instance is None:
            bad.add(loc)
        else:
            built.add(id(instance))
        return instance

    # 1. Nested models, each on its own.
    for name, field in model.model_fields.items():
        value = data.get(name)
        sub, entries = submodel(_unless_none(field.annotation)), _dict_of_models(field.annotation)
        if sub is not None and isinstance(value, dict):
            instance = sub_partial(sub, value, (name,))
            if instance is None:
                _prune(data, name, placeholders)
            else:
                data[name] = instance
        elif entries is not None and isinstance(value, dict):
            kept = {}
            for key, entry in value.items():
                instance = sub_partial(entries, entry, (name, str(key))) if isinstance(entry, dict) else entry
                if instance is not None:
                    kept[key] = instance
            data[name] = kept
        elif (items := _list_of_models(field.annotation)) is not None and isinstance(value, list):
            # A bad entry is left out (marked unchecked at its index): the others keep their
            # order, so a check reading them maps them back past the marked indices.
            good = []
            for i, entry in enumerate(value):
                instance = sub_partial(items, entry, (name, str(i))) if isinstance(entry, dict) else entry
                if instance is not None:
                    good.append(instance)
            data[name] = good
    # 2. The model's own fields: a value that fails is left out, then the model is built again.
    for attempt in range(2):
        partial = _Partial(model, frozenset(bad), built)
        try:
            instance = model.model_validate(data, context={_PARTIAL: partial})
        except ValidationError as err:
            if attempt:
                return None, _ordered(field_items), frozenset(bad)  # a required value is missing
            for problem in err.errors(include_url=False):
                loc = tuple(str(part) for part in problem["loc"])
                note(loc or ("",), _problem_items(problem, model))
                if not loc:
                    return None, _ordered(field_items), frozenset(bad | {()})
                if _dict_of_models(_annotation(model, loc[0])) is not None and len(loc) > 1:
                    data[loc[0]].pop(loc[1], None)  # one bad entry of a dict of models
                    bad.add(loc[:2])
                else:
                    _prune(data, loc[0], placeholders)
                    bad.add(loc[:1])
            continue
        cross = partial.problems
        # A value a cross check refused is bad for the checks above this model too. (Its key
        # is a field path; only the top model's keys can hold a dotted space entry, and
        # nothing reads the top model's marks.)
        bad.update(tuple(key.split(".")) for key, _ in cross)
        return instance, _ordered(field_items) + cross, frozenset(bad)
    raise AssertionError("unreachable")


def _ordered(field_items: list[tuple[int, Item]]) -> list[Item]:
    return [item for _, item in sorted(field_items, key=lambda pair: pair[0])]


def _prune(data: dict[str, Any], name: str, placeholders: dict[str, Any] | None) -> None:
    data.pop(name, None)
    if placeholders and name in placeholders:
        data[name] = placeholders[name]


def _under(unchecked: Unchecked, loc: tuple[str, ...]) -> Unchecked:
    """The unchecked locations below ``loc``, relative to it."""
    return frozenset(bad[len(loc) :] for bad in unchecked if bad[: len(loc)] == loc and len(bad) > len(loc))


def _annotation(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields.get(name)
    return None if field is None else field.annotation


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The model class of a section's annotation (``ModelConfig``), else None (a setting)."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unless_none(annotation: Any) -> Any:
    """``X`` of an optional ``X | None`` annotation (a section that may be left out), else the annotation."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(annotation) else annotation


def _dict_of_models(annotation: Any) -> type[BaseModel] | None:
    """The value model of a ``dict[str, Model]`` annotation, else None."""
    if typing.get_origin(annotation) is not dict:
        return None
    return submodel(typing.get_args(annotation)[1])


def _list_of_models(annotation: Any) -> type[BaseModel] | None:
    """The item model of a ``list[Model]`` annotation, else None."""
    if typing.get_origin(annotation) is not list:
        return None
    return submodel(typing.get_args(annotation)[0])


def list_indices(unchecked: Unchecked, name: str, kept: int) -> list[int]:
    """The original indices of the ``kept`` entries of a list of models whose bad entries
    ``validate_partial`` left out (marked ``(name, index)`` in ``unchecked``)."""
    indices, i = [], 0
    while len(indices) < kept:
        if (name, str(i)) not in unchecked:
            indices.append(i)
        i += 1
    return indices


def error_items(err: ValidationError, model: type[BaseModel]) -> list[Item]:
    """Each problem of a pydantic error as ``(dotted key, what is wrong, got VALUE)``."""
    return [item for problem in err.errors(include_url=False) for item in _problem_items(problem, model)]


def _problem_items(problem: dict[str, Any], model: type[BaseModel]) -> list[Item]:
    key = ".".join(str(part) for part in problem["loc"])
    raised = (problem.get("ctx") or {}).get("error")
    if isinstance(raised, Problems):
        return [(".".join(part for part in (key, sub) if part), message) for sub, message in raised.items]
    kind = problem["type"]
    if kind == "extra_forbidden":
        owner = _model_at(model, problem["loc"][:-1])
        allowed = ", ".join(owner.model_fields) if owner else "see the documentation"
        return [(key, f"unknown key; allowed keys here: {allowed}")]
    message = problem["msg"]
    if message.startswith("Value error, "):
        return [(key, message[len("Value error, ") :])]
    if kind == "missing":
        return [(key, "required key is missing")]
    message = message[0].lower() + message[1:]
    return [(key, f"{message}, got {problem.get('input')!r}")]


def format_line(source: str | Path, key: str, message: str) -> str:
    """``source: dotted.key: message`` (``source: message`` for the file as a whole)."""
    return f"{source}: {key}: {message}" if key else f"{source}: {message}"


def format_validation_error(
    err: ValidationError, source: str | Path, model: type[BaseModel], prefix: str = ""
) -> list[str]:
    """One line per problem: ``source: dotted.key: what is wrong, got VALUE``."""
    return [
        format_line(source, f"{prefix}{key}" if key else prefix.rstrip("."), message)
        for key, message in error_items(err, model)
    ]


def _model_at(model: type[BaseModel], loc) -> type[BaseModel] | None:
    """The pydantic model that owns the keys at ``loc`` (None past a dict or list)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
        for arg in typing.get_args(current) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None
