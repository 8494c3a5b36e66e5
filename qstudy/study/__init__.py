"""Studies: Ray Tune over an Optuna study of the trial config, tracked in MLflow."""

from qstudy.study._driver import run_study, study_paths
from qstudy.study._lock import StudyLockedError

__all__ = ["StudyLockedError", "run_study", "study_paths"]
