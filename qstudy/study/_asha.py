"""ASHA over a study's search trials only, for a Tune run that also holds its confirm phase."""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler

from qstudy.study._searcher import CONFIRM_PHASE, PHASE_KEY

__all__ = ["SearchOnlyASHA"]


def _confirm_trial(trial) -> bool:
    return trial.config.get(PHASE_KEY) == CONFIRM_PHASE


class SearchOnlyASHA(ASHAScheduler):
    """Ray's ASHA for the search's trials; a confirm trial is never added to a bracket,
    ranked or stopped: each confirm arm reaches the last step on every seed, as its
    control does, or the paired comparison would miss seeds."""

    def on_trial_add(self, tune_controller, trial) -> None:
        if not _confirm_trial(trial):
            super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result) -> str:
        if _confirm_trial(trial):
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        if not _confirm_trial(trial):
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if not _confirm_trial(trial):
            super().on_trial_remove(tune_controller, trial)
