"""YAML loading with every problem reported at once, naming file, key and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from qstudy.config._errors import ConfigError

__all__ = ["load_yaml", "validate", "format_validation_error"]

M = TypeVar("M", bound=BaseModel)


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
        raise ConfigError(format_validation_error(err, source, model)) from None


def format_validation_error(err: ValidationError, source: str | Path, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per problem: ``source: dotted.key: what is wrong, got VALUE``."""
    lines = []
    for problem in err.errors(include_url=False):
        loc = ".".join(str(part) for part in problem["loc"])
        key = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        kind = problem["type"]
        if kind == "extra_forbidden":
            owner = _model_at(model, problem["loc"][:-1])
            allowed = ", ".join(owner.model_fields) if owner else "see the documentation"
            lines.append(f"{source}: {key}: unknown key; allowed keys here: {allowed}")
            continue
        message = problem["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
            lines.append(f"{source}: {key}: {message}" if key else f"{source}: {message}")
            continue
        message = message[0].lower() + message[1:]
        if kind == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            lines.append(f"{source}: {key}: {message}, got {problem.get('input')!r}")
    return lines


def _model_at(model: type[BaseModel], loc) -> type[BaseModel] | None:
    """The pydantic model that owns the keys at ``loc`` (None past a dict or list)."""
    import typing

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
