"""Studies: Ray Tune over an Optuna study of the trial config, tracked in MLflow."""

from qstudy.study._driver import run_study, study_paths
from qstudy.study._lock import StudyLockedError
from qstudy.study._relog import StoreOutOfStepError

__all__ = ["StoreOutOfStepError", "StudyLockedError", "run_study", "study_paths"]
