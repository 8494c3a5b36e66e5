"""Studies: Ray Tune over an Optuna study of the trial config, tracked in MLflow."""

from qstudy.study._driver import run_study, study_paths

__all__ = ["run_study", "study_paths"]
