"""The study's Tune searcher: an Optuna study in SQLite is the record of every trial.

Ray's ``OptunaSearch`` keeps its Optuna study inside Tune's experiment state and tells
trials stopped early as COMPLETE (docs/stack-notes.md#optuna-through-optunasearch). qstudy instead keeps the Optuna study in
its own storage (SQLite beside the study's output, readable with Optuna's tools) and:

- numbers trials by Optuna trial number (``trial_0003``): the same id in Ray, MLflow and
  the output folders, and across a resumed driver;
- enqueues the study's baselines first (their searched values fixed, other settings as
  overrides), so every study carries its control;
- for a comparison study, enqueues each (arm, seed) as a fixed trial in the study's order
  (``StudyConfig.comparison_trials``), its overrides and arm name in user attrs
  ``qstudy.overrides`` and ``qstudy.arm`` (its seed is among the overrides);
- tells Optuna a trial's fate honestly: COMPLETE with the objective, PRUNED when the
  scheduler stopped it, FAIL when it diverged or failed (user attr ``qstudy.status``);
- on resume, re-runs trials a killed driver left RUNNING (same number, same params) and
  samples only what is missing to reach ``num_samples``;
- for a search study with ``confirm:``, once the search is finished (:meth:`start_confirm`,
  or :meth:`chain_confirm` to switch within the search's Tune run),
  runs the confirm trials as fixed trials numbered after the search's, with user attrs
  ``qstudy.arm`` (control, top_1, ...), ``qstudy.phase`` = ``confirm`` and their seed among
  ``qstudy.overrides``; search trials carry no ``qstudy.phase``. The confirm phase's pick
  is the study user attr ``qstudy.confirm`` (:meth:`confirm_selection`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from qstudy.config import OPTUNA_STATUSES, TrialStatus
from qstudy.tracking import trial_name

__all__ = [
    "StudySearcher",
    "OPTUNA_STATES",
    "ARM_ATTR",
    "ARM_KEY",
    "CONFIRM_ATTR",
    "CONFIRM_PHASE",
    "PHASE_ATTR",
    "PHASE_KEY",
    "TRIAL_ID_KEY",
    "QSTUDY_KEYS",
]

TRIAL_ID_KEY = "qstudy_trial_id"
ARM_KEY = "qstudy_arm"  # in a Tune trial's config: the arm of a comparison or confirm trial
PHASE_KEY = "qstudy_phase"  # in a Tune trial's config: "confirm" for a confirm trial, absent in the search
# Keys of a Tune trial's config that are not trial settings.
QSTUDY_KEYS = ("qstudy", TRIAL_ID_KEY, ARM_KEY, PHASE_KEY)
ARM_ATTR = "qstudy.arm"
PHASE_ATTR = "qstudy.phase"  # trial user attr: "confirm" for a confirm trial, absent for a search trial
CONFIRM_PHASE = "confirm"
CONFIRM_ATTR = "qstudy.confirm"  # study user attr: the confirm phase's arms, as JSON
_STATUS_ATTR = "qstudy.status"
# How a trial's status reaches Optuna (TrialState names; optuna is imported where it is
# used): the sampler learns from a COMPLETE trial's value, so a completed trial without a
# finite objective is told FAIL, as a diverged or failed one is. A trial told by Optuna
# alone (no qstudy.status attribute) reads back as OPTUNA_STATUSES names its state.
OPTUNA_STATES = {
    TrialStatus.COMPLETED: "COMPLETE",
    TrialStatus.PRUNED: "PRUNED",
    TrialStatus.DIVERGED: "FAIL",
    TrialStatus.FAILED: "FAIL",
}
_BASELINE_ATTR = "qstudy.baseline"
_OVERRIDES_ATTR = "qstudy.overrides"


class StudySearcher(Searcher):
    """A Tune searcher over an Optuna study in ``storage`` (see the module docstring)."""

    def __init__(
        self,
        study_name: str,
        storage_url: str,
        space: dict[str, Any],
        sampler,
        metric: str,
        mode: str,
        num_samples: int,
        baselines: list[dict[str, Any]],
        comparison: list[tuple[str, int, dict[str, Any]]] = (),
    ):
        """
        Args:
            study_name, storage_url: the Optuna study and its RDB storage (created if new).
            space: searched dotted keys -> ``optuna.distributions`` (empty for a comparison).
            sampler: the Optuna sampler.
            metric, mode: the objective.
            num_samples: the search's trials in all (baselines included; confirm trials not).
            baselines: overrides of the trials run first (a search study's controls).
            comparison: a comparison study's ``(arm, seed, overrides)``, in the order they
                run (``StudyConfig.comparison_trials``); each is one fixed trial.
        """
        import optuna

        super().__init__(metric=metric, mode=mode)
        self._space = space
        self._num_samples = num_samples
        # The trials enqueued before any is sampled, in order: (their values, user attrs).
        self._fixed = [(dict(b), {_BASELINE_ATTR: i}) for i, b in enumerate(baselines)]
        self._fixed += [(dict(overrides), {ARM_ATTR: arm}) for arm, _, overrides in comparison]
        storage = optuna.storages.RDBStorage(storage_url, engine_kwargs={"connect_args": {"timeout": 30}})
        self.study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            direction="minimize" if mode == "min" else "maximize",
            load_if_exists=True,
        )
        self._confirm: list[tuple[dict[str, Any], dict[str, Any]]] = []  # the confirm phase's fixed trials
        self._phase: str | None = None  # None: the search; CONFIRM_PHASE after start_confirm
        self._then: Callable[[], None] | None = None  # chain_confirm's hook, until it ran
        self._live: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        # Trials a killed driver left RUNNING (of either phase): re-run with their own number and params.
        self._rerun = [t for t in self.study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]

    # ------------------------------------------------------------------ phases
    def start_confirm(self, trials: list[tuple[str, int, dict[str, Any]]]) -> None:
        """Switches to the confirm phase: from now on :meth:`suggest` and :meth:`remaining`
        are about ``trials``, each ``(arm, seed, values)`` (``_confirm.confirm_trials``),
        run in order after the search's trials; values outside the space, and the seed,
        are overrides."""
        self._phase = CONFIRM_PHASE
        self._confirm = [(dict(values), {ARM_ATTR: arm, PHASE_ATTR: CONFIRM_PHASE}) for arm, _, values in trials]

    def chain_confirm(self, start: Callable[[], None]) -> None:
        """Runs the confirm phase in the search's own Tune run: once every search trial
        has finished, the next :meth:`suggest` calls ``start`` (which picks the arms and
        calls :meth:`start_confirm`) and goes on with the confirm trials. Until then a
        suggestion past the search's last trial waits (None): the pick needs every search
        trial's result. Tune reuses the search's trial processes for the confirm trials."""
        self._then = start

    @property
    def phase(self) -> str | None:
        """None during the search; ``confirm`` once the confirm phase started."""
        return self._phase

    def confirm_selection(self) -> dict[str, Any] | None:
        """The confirm phase's arms as first stored (:meth:`store_confirm_selection`), or None."""
        text = self.study.user_attrs.get(CONFIRM_ATTR)
        return None if text is None else json.loads(text)

    def store_confirm_selection(self, selection: dict[str, Any]) -> None:
        """Stores the confirm phase's arms once: a resumed driver reads them back, never picks again."""
        self.study.set_user_attr(CONFIRM_ATTR, json.dumps(selection, sort_keys=True))

    def _phase_trials(self) -> list:
        return [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get(PHASE_ATTR) == self._phase]

    def _phase_size(self) -> int:
        return self._num_samples if self._phase is None else len(self._confirm)

    def _all_started(self) -> bool:
        """Whether every trial of the current phase has been suggested (re-runs included)."""
        if any(t.user_attrs.get(PHASE_ATTR) == self._phase for t in self._rerun):
            return False
        return len(self._phase_trials()) >= self._phase_size()

    # ------------------------------------------------------------------ counts
    def finished_statuses(self) -> dict[str, str]:
        """Trial id -> qstudy status of every trial Optuna has a final state for."""
        return {
            trial_name(t.number): t.user_attrs.get(_STATUS_ATTR, OPTUNA_STATUSES[t.state.name])
            for t in self.study.get_trials(deepcopy=False)
            if t.state.name in OPTUNA_STATUSES
        }

    def finished_trials(self) -> dict[str, dict[str, Any]]:
        """Trial id -> what Optuna holds of every finished trial: ``values`` (searched
        values and overrides, as the trial ran with them), ``arm`` (a comparison or confirm
        trial's arm, else None), ``phase`` (``confirm``, or None for a search trial),
        ``status``, ``value`` (the objective, None unless completed) and ``intermediate``
        (step -> objective)."""
        statuses = self.finished_statuses()
        return {
            tid: {
                "values": _values_of(t.params, t.user_attrs),
                "arm": t.user_attrs.get(ARM_ATTR),
                "phase": t.user_attrs.get(PHASE_ATTR),
                "status": statuses[tid],
                "value": t.value,
                "intermediate": dict(t.intermediate_values),
            }
            for t in self.study.get_trials(deepcopy=False)
            if (tid := trial_name(t.number)) in statuses
        }

    def remaining(self) -> int:
        """Trials of the current phase still to run: unfinished ones to re-run plus fresh
        ones to sample (the search) or to run (the confirm phase)."""
        done = sum(t.state.name in OPTUNA_STATUSES for t in self._phase_trials())
        return max(0, self._phase_size() - done)

    # ------------------------------------------------------------------ Tune API
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # space, metric and mode are fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._then is not None and self._phase is None and self._all_started():
            if self.remaining():
                return None  # the confirm phase's pick waits for the search's last results
            start, self._then = self._then, None
            start()
        rerun = next((t for t in self._rerun if t.user_attrs.get(PHASE_ATTR) == self._phase), None)
        if rerun is not None:
            self._rerun.remove(rerun)
            number, params, attrs = rerun.number, dict(rerun.params), rerun.user_attrs
        else:
            started = len(self._phase_trials())
            if started >= self._phase_size():
                return Searcher.FINISHED
            # The n-th trial of a phase started is its n-th fixed one while there are any: a
            # resumed driver counts the trials its storage holds and enqueues none of them again.
            fixed = self._fixed if self._phase is None else self._confirm
            distributions = self._space
            if started < len(fixed):
                values, attrs = fixed[started]
                # A confirm trial's seed is the confirm seed, outside a searched seed's range: an override.
                pinned = {"seed"} if self._phase == CONFIRM_PHASE else set()
                params = {k: v for k, v in values.items() if k in self._space and k not in pinned}
                overrides = {k: v for k, v in values.items() if k not in params}
                self.study.enqueue_trial(
                    params, user_attrs={**attrs, _OVERRIDES_ATTR: json.dumps(overrides)}, skip_if_exists=False
                )
                if self._phase == CONFIRM_PHASE:  # nothing is sampled in the confirm phase
                    distributions = {k: self._space[k] for k in params}
            trial = self.study.ask(fixed_distributions=distributions)
            number, params, attrs = trial.number, dict(trial.params), trial.user_attrs
        self._live[trial_id] = number
        config = _values_of(params, attrs)
        config[TRIAL_ID_KEY] = trial_name(number)
        if ARM_ATTR in attrs:
            config[ARM_KEY] = attrs[ARM_ATTR]
        if PHASE_ATTR in attrs:
            config[PHASE_KEY] = attrs[PHASE_ATTR]
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        number = self._live.get(trial_id)
        value = result.get(self.metric)
        step = result.get("step")
        if number is None or not _finite(value) or step is None:
            return
        stored = self.study._storage.get_trial(
            self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        )
        if int(step) not in stored.intermediate_values:
            self.study._storage.set_trial_intermediate_value(stored._trial_id, int(step), float(value))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        number = self._live.pop(trial_id, None)
        if number is None:
            return
        status = status_of(result, error)
        storage = self.study._storage
        internal_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        storage.set_trial_user_attr(internal_id, _STATUS_ATTR, status)
        value = (result or {}).get(self.metric)
        state = OPTUNA_STATES[status] if status != TrialStatus.COMPLETED or _finite(value) else "FAIL"
        if state == "COMPLETE":
            self._tell(number, values=float(value))
        else:
            self._tell(number, state=TrialState[state])

    def _tell(self, number: int, **outcome) -> None:
        import optuna

        try:
            self.study.tell(number, **outcome)
        except (RuntimeError, KeyError):
            # https://github.com/optuna/optuna/issues/5141: with ask-and-tell, GridSampler.after_trial calls study.stop() once
            # the grid is covered (a RuntimeError outside study.optimize), and reads the
            # grid_id an enqueued trial (a baseline, a confirm trial) lacks (a KeyError).
            # Optuna stores the trial's state first (in a finally); the searcher, not the
            # sampler, decides when the study ends.
            if not isinstance(self.study.sampler, optuna.samplers.GridSampler):
                raise

    def save(self, checkpoint_path: str) -> None:  # the Optuna storage is the state
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


def _values_of(params: dict[str, Any], user_attrs: dict[str, Any]) -> dict[str, Any]:
    """A trial's settings: its searched values, then a baseline's other overrides."""
    values = dict(params)
    values.update(json.loads(user_attrs.get(_OVERRIDES_ATTR, "{}")))
    return values


def status_of(result: dict | None, error: bool) -> TrialStatus:
    """The status a trial ended with, from Tune's last result: the worker's own (completed,
    diverged, failed); pruned when it was stopped before its last step; failed when it
    raised or never reported."""
    if error:
        return TrialStatus.FAILED
    status = (result or {}).get("status")
    if status in (TrialStatus.COMPLETED, TrialStatus.DIVERGED, TrialStatus.FAILED):
        return TrialStatus(status)
    return TrialStatus.PRUNED if result else TrialStatus.FAILED


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
