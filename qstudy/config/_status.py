"""A trial's status: one vocabulary from the worker's reports to the MLflow runs.

The worker reports it (``status`` in every report), the study driver reads it from Tune's
results and Optuna's trials, the report filters on it, and each library's own states map
onto it next to the code that talks to that library: Optuna's ``TrialState`` in
``qstudy.study._searcher``, Tune's trial states in ``qstudy.study._callbacks``, MLflow's
run statuses in ``qstudy.tracking``. A ``StrEnum``: each member is its string, so the
values written to MLflow tags, Optuna user attributes and JSON stay the plain words.
"""

from enum import StrEnum

__all__ = ["ENDED_STATUSES", "OPTUNA_STATUSES", "TrialStatus"]


class TrialStatus(StrEnum):
    RUNNING = "running"  # between its first and its last report
    COMPLETED = "completed"  # reached train.max_steps
    DIVERGED = "diverged"  # a non-finite loss, or a step DeepSpeed skipped: ended there
    PRUNED = "pruned"  # stopped before its last step (ASHA)
    FAILED = "failed"  # raised, or ended without a result
    KILLED = "killed"  # left running by a killed driver, closed when the study resumed


ENDED_STATUSES = tuple(status for status in TrialStatus if status is not TrialStatus.RUNNING)

# An Optuna trial's final state (``TrialState.name``) -> the status it stands for, where
# qstudy recorded none (a trial told by Optuna alone). By name, so config needs no optuna.
OPTUNA_STATUSES = {"COMPLETE": TrialStatus.COMPLETED, "PRUNED": TrialStatus.PRUNED, "FAIL": TrialStatus.FAILED}
