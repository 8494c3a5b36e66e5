"""A finished study read back from its MLflow store and its Optuna storage (never Ray's folders)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from qstudy.config import OPTUNA_STATUSES
from qstudy.tracking import trial_name

__all__ = ["CURVE_METRICS", "StudyRecord", "TrialRecord", "read_study"]

# Per-step metrics the report reads as curves (those a trial logged).
CURVE_METRICS = (
    "eval_accuracy",
    "eval_loss",
    "train_loss",
    "mean_train_loss",
    "gsm8k_accuracy",
    "perturbation_to_adam_ratio",
    "perturbed_coordinates",
    "nonzero_perturbation_coordinates",
)
_ARM_ATTR, _PHASE_ATTR, _STATUS_ATTR = "qstudy.arm", "qstudy.phase", "qstudy.status"


@dataclasses.dataclass
class TrialRecord:
    """One trial as the stores hold it."""

    trial_id: str
    number: int
    status: str  # completed / diverged / pruned / failed / killed / running
    arm: str | None  # a comparison study's (or a confirm phase's) arm; None for a searched trial
    phase: str  # "comparison", "search" or "confirm"
    seed: int | None
    baseline: int | None  # a search study's baseline index (0: the control), else None
    values: dict[str, Any]  # searched values and overrides (Optuna's record)
    objective: float | None  # Optuna's value (completed trials)
    run_id: str | None  # the MLflow run (None: the store lost it)
    params: dict[str, str]  # every MLflow param (the flattened trial config)
    final: dict[str, float]  # last value of each MLflow metric
    curves: dict[str, list[tuple[int, float]]]  # CURVE_METRICS the run logged: (step, value)


@dataclasses.dataclass
class StudyRecord:
    name: str
    metric: str
    mode: str
    parent_run_id: str
    trials: list[TrialRecord]

    def arm_trials(self, phase: str) -> dict[str, list[TrialRecord]]:
        """Arm -> its trials of ``phase`` (every status), in trial order."""
        arms: dict[str, list[TrialRecord]] = {}
        for t in self.trials:
            if t.arm is not None and t.phase == phase:
                arms.setdefault(t.arm, []).append(t)
        return arms


def read_study(study, paths: dict[str, str], tracker) -> StudyRecord:
    """Every trial of ``study`` from Optuna (state, values, arm) joined with its MLflow run
    (params, metric curves, status tag).

    Raises:
        ReportError: the Optuna storage has no such study (it never ran here).
    """
    import optuna

    from qstudy.report._errors import ReportError

    try:
        optuna_study = optuna.load_study(study_name=study.name, storage=paths["optuna_url"])
    except KeyError as err:  # optuna: "Record does not exist."
        raise ReportError(
            f"study {study.name}: no Optuna study in {paths['optuna_url']}: run `qstudy sweep` on it first ({err})"
        ) from None
    parent_run_id = tracker.open_study()
    runs = tracker.trial_runs()
    trials = []
    for t in sorted(optuna_study.get_trials(deepcopy=False), key=lambda t: t.number):
        trial_id = trial_name(t.number)
        run = runs.get(trial_id, {})
        attrs = t.user_attrs
        values = {**t.params, **json.loads(attrs.get("qstudy.overrides", "{}"))}
        arm = attrs.get(_ARM_ATTR)
        phase = attrs.get(_PHASE_ATTR) or ("comparison" if arm is not None else "search")
        status = run.get("status") or attrs.get(_STATUS_ATTR) or OPTUNA_STATUSES.get(t.state.name, t.state.name.lower())
        seed = values.get("seed", run.get("params", {}).get("seed"))
        curves = {}
        if run:
            for key in CURVE_METRICS:
                if key in run["metrics"]:
                    curves[key] = tracker.metric_history(run["run_id"], key)
        trials.append(
            TrialRecord(
                trial_id=trial_id,
                number=t.number,
                status=status,
                arm=arm,
                phase=phase,
                seed=None if seed is None else int(seed),
                baseline=attrs.get("qstudy.baseline"),
                values=values,
                objective=t.value,
                run_id=run.get("run_id"),
                params=dict(run.get("params", {})),
                final=dict(run.get("metrics", {})),
                curves=curves,
            )
        )
    return StudyRecord(study.name, study.objective.metric, study.objective.mode, parent_run_id, trials)
