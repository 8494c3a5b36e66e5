"""Names: a trial's id and run name (the same in Ray, Optuna, MLflow and the output
folders), a param's short title in tables, and params and metrics as MLflow names them (a
config flattened to dotted params, a worker's metric names grouped under prefixes, values
cut to what MLflow keeps)."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

# MLflow's limits on a value (mlflow/utils/validation.py): MLflow would truncate silently or refuse.
_MAX_PARAM_CHARS = 6000
_MAX_TAG_CHARS = 8000
_TRUNCATED = "...[truncated]"
# Names MLflow accepts for params and metrics on every platform (a colon not on Windows).
_BAD_NAME_CHARS = re.compile(r"[^/\w.\- ]")

# Metric groups: MLflow's chart view puts each prefix before "/" in a section of its own
# ("system/" in "System metrics"), the rest first in "Model metrics". Tune, Optuna and the
# worker keep the plain names; only the MLflow store uses these (mlflow_metric_name).
_TIMING_NAMES = ("tokens_per_s",)
_TRIAL_FACTS = ("resumed_from_step", "model_parameters", "aer_parity")


def trial_name(number: int) -> str:
    """A trial's id from its Optuna trial number: ``3`` -> ``trial_0003``."""
    return f"trial_{number:04d}"


def trial_number(trial_id: str) -> int:
    """The Optuna trial number of a trial id (:func:`trial_name`'s inverse)."""
    return int(trial_id.rsplit("_", 1)[1])


def trial_run_name(study: str, trial_id: str) -> str:
    """A trial's name in Ray Tune, its MLflow run's and its checkpoint folder's under the storage path: ``{study}/{trial_id}``."""
    return f"{study}/{trial_id}"


def short_names(keys) -> dict[str, str]:
    """Dotted key -> its last part where that is unique among ``keys``, else the key:
    ``optimizer.lr`` is titled ``lr`` unless another key ends in ``.lr``."""
    keys = list(keys)
    lasts = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (last if lasts.count(last) == 1 else k) for k, last in zip(keys, lasts)}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> {"dotted.key": str value}; lists as JSON, the rest with str()."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{dotted}."))
        elif isinstance(value, (list, tuple)):
            flat[_name(dotted)] = _truncate(json.dumps(value, default=str), _MAX_PARAM_CHARS)
        else:
            flat[_name(dotted)] = _truncate(str(value), _MAX_PARAM_CHARS)
    return flat


def mlflow_metric_name(key: str) -> str:
    """The name a trial's metric has in MLflow: start-up and cost figures under a prefix.

    ==========================================================  ==========================
    worker / Tune name                                           MLflow name
    ==========================================================  ==========================
    ``startup_*``, ``*_time_s``, ``*_time_share``, ``tokens_per_s``  ``timing/<name>``
    ``gpu_*`` (``gpu_max_memory_allocated_gib``)                 ``system/<name>``
    ``resumed_from_step``, ``model_parameters``, ``aer_parity``   ``trial/<name>``
    the rest (``eval_loss``, ``train_loss``, ``lr``, ...)          unchanged
    ==========================================================  ==========================

    Names already holding a ``/`` are kept (``timing/control/step_s``).
    """
    if "/" in key:
        return key
    if key.startswith("startup_") or key.endswith(("_time_s", "_time_share")) or key in _TIMING_NAMES:
        return f"timing/{key}"
    if key.startswith("gpu_"):
        return f"system/{key}"
    if key in _TRIAL_FACTS:
        return f"trial/{key}"
    return key


def _prefixed(name: str, prefix: str) -> str:
    """``prefix`` on the last part: ``timing/step_time_s`` -> ``timing/best_step_time_s``."""
    group, sep, last = name.rpartition("/")
    return f"{group}{sep}{prefix}{last}"


def _ordered(metrics: Mapping[str, float], objective: str | None) -> list[tuple[str, float]]:
    """The objective first, then the top-level names, then the prefixed ones (each sorted)."""
    first = mlflow_metric_name(objective) if objective else None
    return sorted(metrics.items(), key=lambda item: (item[0] != first, "/" in item[0], item[0]))


def _new_params(logged: Mapping[str, str], wanted: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The params not logged yet, and the keys logged with another value."""
    new = {k: v for k, v in wanted.items() if k not in logged}
    changed = [k for k, v in wanted.items() if k in logged and logged[k] != v]
    return new, changed


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The int/float entries, ±inf as NaN; bools, strings, None and the rest dropped.

    MLflow's SQL stores keep NaN but clamp ±inf to ±1.8e308, which flattens every chart
    the value appears in; the UI's charts skip NaN.
    """
    return {
        key: float(value) if math.isfinite(value) else math.nan
        for key, value in metrics.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy scalars too, not np.bool_
    }


def _name(key: str) -> str:
    return _BAD_NAME_CHARS.sub("_", key)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_TRUNCATED)] + _TRUNCATED
