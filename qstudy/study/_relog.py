"""Re-logging finished trials that the MLflow store lost, from the study's Tune results.

The Optuna study (``<output>/optuna.db``) decides which trials a re-run skips, MLflow is
only written to. So when the MLflow store was deleted or replaced while the Optuna study
remained, a re-run found every trial finished and logged nothing but an empty parent run.

What the live driver logs for a trial comes from two places, both still on disk:

- its settings: the trial's Optuna params and the baseline overrides in its user attrs
  (what the searcher handed Tune), which give its params and ``trial_config.json``;
- every result Tune saw, in order: Tune's ``result.json`` in the trial's folder of each
  driver run that ran it (``<output>/tune/tune-<time>/<trial id>/``), and Tune's
  ``error.txt`` beside it for a failed trial.

Replaying those results through the same ``TrackingCallback`` methods the live study
calls gives the same params, per-step metrics, tags, status and config artifact. Before
anything is written the results are checked against what Optuna recorded live (every
intermediate objective value at its step and, for a completed trial, the final value);
where they are missing or disagree, the study is refused instead of being half re-logged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qstudy.config import TrialStatus
from qstudy.errors import QStudyError
from qstudy.study._callbacks import _error_text as _error_tail

__all__ = ["StoreOutOfStepError", "check_runs_known", "relog_trials", "trial_records"]

_RELOGGED_TAG = "qstudy.relogged_from"


class StoreOutOfStepError(QStudyError):
    """The MLflow store lacks trials the Optuna study holds, and they cannot be re-logged."""


def trial_records(
    study: str,
    finished: dict[str, dict[str, Any]],
    trial_ids: list[str],
    metric: str,
    paths: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """Reads and checks what re-logging ``trial_ids`` needs, writing nothing.

    Args:
        study: the study's name, for the error message.
        finished: :meth:`StudySearcher.finished_trials`: trial id -> ``values``,
            ``status``, ``value``, ``intermediate``.
        trial_ids: the finished trials the MLflow store holds no run of.
        metric: the study's objective.
        paths: :func:`study_paths` of the study.

    Returns:
        trial id -> ``{"values", "status", "config" (the trial config it ran with, or
        None), "results" (Tune results, oldest first), "error" (text or None),
        "folders" (the trial folders read)}``.

    Raises:
        StoreOutOfStepError: some trial's results are missing or disagree with Optuna;
            the message names the trials, the two stores and how to start afresh.
    """
    output = Path(paths["output"])
    # Driver runs are named tune-%Y%m%d-%H%M%S: sorted names are chronological.
    runs = sorted(p for p in (output / "tune").glob("tune-*") if p.is_dir())
    records, problems = {}, []
    for trial_id in trial_ids:
        trial = finished[trial_id]
        folders = [run / trial_id for run in runs if (run / trial_id).is_dir()]
        results = [row for folder in folders for row in _results(folder / "result.json")]
        error = (
            _error_tail(str(folders[-1] / "error.txt")) if folders and trial["status"] == TrialStatus.FAILED else None
        )
        problem = _disagreement(trial, results, metric) if folders else f"no Tune results under {output / 'tune'}"
        if problem:
            problems.append(f"{trial_id}: {problem}")
        config = _trial_config(folders[-1] / "params.json", trial["values"]) if folders else None
        records[trial_id] = {
            **trial,
            "config": config,
            "results": results,
            "error": error,
            "folders": [str(f) for f in folders],
        }
    if problems:
        raise StoreOutOfStepError(
            f"study {study}: the MLflow store {paths['tracking_uri']} holds no run of {', '.join(trial_ids)}, "
            f"which the Optuna study {paths['optuna_url']} holds as finished, and their Tune results cannot "
            f"re-log them faithfully ({'; '.join(problems)}). To keep the study, point tracking.uri at the store "
            f"it was logged to; to start it afresh, remove {output} (its Optuna study and Ray results) or give "
            f"the study a new name"
        )
    return records


def check_runs_known(study: str, known: set[str], logged: set[str], paths: dict[str, str]) -> None:
    """Refuses a study whose MLflow store holds trial runs its Optuna study has no trial of.

    That happens when the Optuna study was deleted or replaced while the store remained:
    Optuna would number new trials from 0 again, and their runs would collide with the
    old ones of the same ids.

    Args:
        study: the study's name, for the message.
        known: trial ids the Optuna study holds, in any state.
        logged: trial ids the MLflow store holds a run of.
        paths: :func:`study_paths` of the study.

    Raises:
        StoreOutOfStepError: naming the trials, the two stores and how to go on.
    """
    unknown = sorted(logged - known)
    if unknown:
        raise StoreOutOfStepError(
            f"study {study}: the MLflow store {paths['tracking_uri']} holds runs of {', '.join(unknown)}, which the "
            f"Optuna study {paths['optuna_url']} has no trial of (it was deleted or replaced); new trials would reuse "
            f"their ids. To keep the study, restore its Optuna storage; to start it afresh, give the study a new name "
            f"or point tracking.uri at another store"
        )


def relog_trials(tracking, records: dict[str, dict[str, Any]]) -> None:
    """Logs each record as the live study would have: start, every result, end.

    Args:
        tracking: the driver's ``TrackingCallback`` (its tracker's study started).
        records: :func:`trial_records`.
    """
    for trial_id, record in sorted(records.items()):
        tracking.start(trial_id, record["values"], record["config"], arm=record.get("arm"), phase=record.get("phase"))
        for result in record["results"]:
            tracking.result(trial_id, result)
        tracking.tracker.tag_trial(trial_id, {_RELOGGED_TAG: ", ".join(record["folders"])})
        tracking.end(trial_id, record["status"], error=record["error"])


def _trial_config(params_path: Path, values: dict[str, Any]) -> dict[str, Any] | None:
    """The trial config the trial ran with: the study's trial config as Tune handed it to
    the trial (``params.json``), ``values`` applied; None without a readable params.json
    (then the study file's trial config is used, as for a live trial)."""
    from qstudy.config import TrialConfig, apply_overrides

    try:
        base = json.loads(params_path.read_text())["qstudy"]["trial"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return apply_overrides(TrialConfig.model_validate(base), values).model_dump(mode="json")


def _results(path: Path) -> list[dict[str, Any]]:
    """Tune's result.json: one JSON object per line. A last line cut short by a killed
    driver is dropped (its result never reached the callbacks' later lines either)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise StoreOutOfStepError(f"{path}:{number}: not a JSON result line, got {line[:80]!r}") from None
    return rows


def _disagreement(trial: dict[str, Any], results: list[dict[str, Any]], metric: str) -> str | None:
    """Why ``results`` are not the results Optuna saw live, or None when they agree."""
    seen: dict[int, Any] = {}
    for r in results:  # the first value at a step, as Optuna and MLflow keep it after a restart
        if r.get("step") is not None and r.get(metric) is not None:
            seen.setdefault(int(r["step"]), r[metric])
    for step, value in sorted(trial["intermediate"].items()):
        if step not in seen:
            return f"Optuna holds {metric} at step {step}, result.json has no {metric} at that step"
        if seen[step] != value:
            return f"Optuna holds {metric}={value!r} at step {step}, result.json has {seen[step]!r}"
    if trial["status"] == TrialStatus.COMPLETED and (not results or results[-1].get(metric) != trial["value"]):
        last = results[-1].get(metric) if results else None
        return f"Optuna holds the final {metric}={trial['value']!r}, result.json ends with {last!r}"
    return None
