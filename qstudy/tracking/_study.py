"""The study in MLflow: one parent run, a nested child run per trial, reused on resume.

mlflow is imported inside the methods that need it: importing this module costs nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from qstudy.config import TrialStatus
from qstudy.tracking._naming import (
    _MAX_TAG_CHARS,
    _flatten,
    _name,
    _new_params,
    _numeric,
    _ordered,
    _prefixed,
    mlflow_metric_name,
    trial_run_name,
)
from qstudy.tracking._store import TrackingError, log_artifact, log_batch, search_runs
from qstudy.tracking._uri import _artifact_location, absolute_tracking_uri, compare_url, run_page_url, runs_page_url

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# qstudy.status of a trial -> the MLflow run status it ends with.
TRIAL_STATUSES = {
    TrialStatus.COMPLETED: "FINISHED",
    TrialStatus.PRUNED: "FINISHED",
    TrialStatus.DIVERGED: "FINISHED",
    TrialStatus.FAILED: "FAILED",
    TrialStatus.KILLED: "KILLED",
}
_STUDY_STATUSES = ("FINISHED", "FAILED", "KILLED")

_TAG_STUDY = "qstudy.study"
_TAG_ROLE = "qstudy.role"
_TAG_TRIAL = "qstudy.trial_id"
_TAG_STATUS = "qstudy.status"
_TAG_ERROR = "qstudy.error"
_TAG_ARM = "qstudy.arm"
_PARAM_ARM = "arm"
_TAG_PHASE = "qstudy.phase"
_TAG_PARENT = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
_TAG_OBJECTIVE = "qstudy.objective"
_TAG_NOTE = "mlflow.note.content"  # a run's description in the MLflow UI (markdown)
_REPORT_HEADING = "## The report (`qstudy report`)"  # where the report's part of the description starts
# What MLflow 3's UI reads to open an experiment on its runs ("Model training") rather than
# on traces (GenAI): the ExperimentKind values of mlflow/server/js (experimentKind tag).
_TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
_MODEL_DEVELOPMENT = "custom_model_development"
# A view of the runs page (columns, filter, order) the UI loads from an experiment tag
# when the URL carries viewStateShareKey=<key> (the UI's own "Share" button writes these).
_TAG_SHARED_VIEW = "mlflow.sharedViewState."
_MAX_COMPARED = 50  # runs in a compare link: its URL stays printable, the view readable


class StudyTracker:
    """Logs one study to MLflow: a parent run, one nested child run per trial.

    Call order in the study driver: :meth:`start_study`, :meth:`close_orphans` (on a
    resumed study), then per trial :meth:`start_trial`, :meth:`log_metrics` per result,
    :meth:`end_trial`; finally :meth:`finish_study`. Every method may be called again on a
    resumed study: existing runs are reused, never duplicated.

    Args:
        tracking_uri: MLflow tracking URI; a relative ``sqlite:///`` URI is made absolute
            first (Ray changes the working directory), see :func:`absolute_tracking_uri`.
        experiment: MLflow experiment name; created if missing. For a SQLite store its
            artifacts go to ``mlartifacts/`` next to the database file, not to the
            working directory.
        study: the study name: the parent run's name and the prefix of every trial run.
        objective: the study's objective metric (``eval_loss``): logged first in a trial's
            first batch that holds it, so that MLflow's compare view, which plots the first
            metric a run lists, lands on it; kept in the parent's tag ``qstudy.objective``.
        read_only: attach to an existing experiment without creating or tagging it
            (:func:`study_links`).

    Raises:
        TrackingError: the experiment exists but is deleted; read-only, it does not exist.
    """

    def __init__(
        self, tracking_uri: str, experiment: str, study: str, objective: str | None = None, read_only: bool = False
    ):
        from mlflow import MlflowClient

        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.study = study
        self.objective = objective
        # A client bound to this URI: no global mlflow.set_tracking_uri state.
        self.mlflow_client: MlflowClient = MlflowClient(self.tracking_uri)
        self.experiment_id = self._experiment_id(create=not read_only)
        self.parent_run_id: str | None = None
        self._trials: dict[str, str] = {}  # trial id -> run id
        self._last_steps: dict[str, dict[str, int]] = {}  # trial id -> metric -> last step logged

    # -- study -------------------------------------------------------------------------

    def start_study(
        self, params: Mapping[str, Any], artifacts: Mapping[str, str | bytes], tags: Mapping[str, str] | None = None
    ) -> str:
        """Start the study's parent run, or reuse it (RUNNING again) on a resumed study.

        Args:
            params: the study settings, nested or flat; logged flattened with dotted keys.
                On reuse, a param already logged keeps its first value (MLflow params cannot
                change); the keys whose value changed are listed in the tag
                ``qstudy.changed_params``.
            artifacts: artifact file name -> text or bytes, e.g. ``{"study.yaml": text,
                "space.json": json_text}``; overwritten on reuse.
            tags: set (again) on the parent run: what may change between runs of a study,
                e.g. ``qstudy.optuna_storage``.

        Returns:
            The parent run id.
        """
        parent = self._find_parent()
        if parent is None:
            parent = self.mlflow_client.create_run(
                self.experiment_id,
                tags={_TAG_STUDY: self.study, _TAG_ROLE: "study", _TAG_STATUS: "running"},
                run_name=self.study,
            )
        elif parent.info.status != "RUNNING":
            self.mlflow_client.update_run(parent.info.run_id, status="RUNNING")
        self.parent_run_id = parent.info.run_id

        new, changed = _new_params(parent.data.params, _flatten(params))
        tags = {_TAG_STATUS: "running", **(tags or {})}
        if self.objective:
            tags[_TAG_OBJECTIVE] = self.objective
        if changed:
            tags["qstudy.changed_params"] = ", ".join(sorted(changed))
        log_batch(self.mlflow_client, self.parent_run_id, params=new, tags=tags)
        for name, content in artifacts.items():
            log_artifact(self.mlflow_client, self.parent_run_id, name, content)

        self._trials, self._last_steps = {}, {}
        for run in self._child_runs():
            # Oldest first: should a store hold two runs of one trial, the first one wins.
            self._trials.setdefault(run.data.tags[_TAG_TRIAL], run.info.run_id)
        return self.parent_run_id

    def close_orphans(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Close the trial runs a killed driver left RUNNING (nothing in MLflow does).

        Args:
            keep: trial ids to leave RUNNING: the driver continues them.

        Returns:
            The trial ids closed, now KILLED with ``qstudy.status=killed``.
        """
        parent_id = self._require_parent()
        running = search_runs(
            self.mlflow_client,
            self.experiment_id,
            f"tags.`{_TAG_PARENT}` = '{parent_id}' AND attributes.status = 'RUNNING'",
        )
        closed = []
        for run in running:
            trial_id = run.data.tags.get(_TAG_TRIAL)
            if trial_id is None or trial_id in keep:
                continue
            log_batch(self.mlflow_client, run.info.run_id, tags={_TAG_STATUS: TrialStatus.KILLED})
            self.mlflow_client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(trial_id)
        return sorted(closed)

    def finish_study(
        self, best: Mapping[str, Any] | None, summary: str, status: str = "FINISHED", description: str | None = None
    ) -> None:
        """Record the best trial and the summary on the parent run and end it.

        Args:
            best: ``{"trial_id": str, "metric": str, "value": float, "params": {...},
                "metrics": {...}}`` (``params`` and ``metrics`` optional), or None when no
                trial finished. Logged as tags ``qstudy.best_trial_id``,
                ``qstudy.best_metric``, ``qstudy.best.<param>`` (tags, because a resumed
                study may find a better trial and params cannot change) and metrics
                ``best_<metric>`` at step = the number of trials so far. A confirmed best
                (a study's confirm phase) adds ``arm`` (tag ``qstudy.best_arm``; ``value``
                is then its mean over the confirm seeds), ``search_best_trial_id`` (tag
                ``qstudy.search_best_trial_id``) and ``control_value`` (metric
                ``control_<metric>``, the control's mean over the same seeds).
            summary: the summary table, saved as artifact ``summary.txt``.
            status: the parent run's final MLflow status: FINISHED, FAILED or KILLED.
            description: markdown, the parent run's description in the MLflow UI (tag
                ``mlflow.note.content``), replaced on every finish; the section an
                earlier ``qstudy report`` added stays below it (its date says when).

        Raises:
            TrackingError: unknown status, or ``best`` without trial_id, metric and value.
        """
        if status not in _STUDY_STATUSES:
            raise TrackingError(f"study {self.study!r}: status must be one of {list(_STUDY_STATUSES)}, got {status!r}")
        if best is not None and not {"trial_id", "metric", "value"} <= set(best):
            raise TrackingError(
                f"study {self.study!r}: best must have keys trial_id, metric, value (params, metrics optional), "
                f"got keys {sorted(best)}"
            )
        parent_id = self._require_parent()
        tags: dict[str, str] = {_TAG_STATUS: status.lower()}
        if description is not None:  # a report written earlier stays below the new table
            _, report_part = self._description_parts(parent_id)
            tags[_TAG_NOTE] = _description(description, report_part)
        metrics: dict[str, Any] = {}
        if best is not None:
            trial_id = str(best["trial_id"])
            tags["qstudy.best_trial_id"] = trial_id
            if trial_id in self._trials:
                tags["qstudy.best_run_id"] = self._trials[trial_id]
            tags["qstudy.best_metric"] = str(best["metric"])
            metrics[f"best_{best['metric']}"] = best["value"]
            for key, value in (best.get("metrics") or {}).items():
                metrics.setdefault(_prefixed(mlflow_metric_name(key), "best_"), value)
            tags.update({f"qstudy.best.{key}": value for key, value in _flatten(best.get("params") or {}).items()})
            if best.get("arm") is not None:  # a confirmed best: an arm's mean over the confirm seeds
                tags["qstudy.best_arm"] = str(best["arm"])
            if best.get("search_best_trial_id") is not None:
                tags["qstudy.search_best_trial_id"] = str(best["search_best_trial_id"])
            if best.get("control_value") is not None:
                metrics[f"control_{best['metric']}"] = best["control_value"]
        log_batch(self.mlflow_client, parent_id, metrics=_numeric(metrics), step=len(self._trials), tags=tags)
        log_artifact(self.mlflow_client, parent_id, "summary.txt", summary)
        self.mlflow_client.set_terminated(parent_id, status=status)

    # -- trials ------------------------------------------------------------------------

    def start_trial(
        self,
        trial_id: str,
        params: Mapping[str, Any],
        config: Mapping[str, Any],
        arm: str | None = None,
        phase: str | None = None,
    ) -> str:
        """Start the nested run ``{study}/{trial_id}``, or reuse the trial's run (RUNNING again).

        Args:
            trial_id: the trial's id, unique in the study.
            params: the searched values, keyed by their dotted path in the trial config
                (``optimizer.lr``); logged under that name, once: a searched key the config
                holds keeps the config's value (the one the trial ran with).
            config: the full trial config (nested); logged flattened with dotted keys and
                saved as artifact ``trial_config.json``. Every setting is one param under
                one name: the UI's pickers, ``params.`optimizer.quantum_weight` = '0.5'``
                and ``mlflow.search_runs`` columns name it the same way.
            arm: the trial's arm in a comparison study or a confirm phase: logged as param
                ``arm`` (to compare and group runs by in the UI) and tag ``qstudy.arm`` (to
                search by).
            phase: ``confirm`` for a confirm trial: tag ``qstudy.phase`` (a search trial
                has none).

        Returns:
            The trial's run id.

        Raises:
            TrackingError: the trial's run exists with a different value of a param: a
                trial id cannot change its config (its metrics would mix two configs).
        """
        parent_id = self._require_parent()
        flat_config = _flatten(config)
        wanted = {**_flatten(params), **flat_config}
        arm_tags = {} if arm is None else {_TAG_ARM: str(arm)}
        if phase is not None:
            arm_tags[_TAG_PHASE] = str(phase)
        if arm is not None:
            wanted[_PARAM_ARM] = str(arm)
        run_id = self._trials.get(trial_id)
        if run_id is None:
            run = self.mlflow_client.create_run(
                self.experiment_id,
                tags={
                    _TAG_PARENT: parent_id,
                    _TAG_STUDY: self.study,
                    _TAG_TRIAL: trial_id,
                    _TAG_STATUS: TrialStatus.RUNNING,
                    **arm_tags,
                },
                run_name=trial_run_name(self.study, trial_id),
            )
            run_id = self._trials[trial_id] = run.info.run_id
            self._last_steps[trial_id] = {}
            new = wanted
        else:
            run = self.mlflow_client.get_run(run_id)
            new, changed = _new_params(run.data.params, wanted)
            if changed:
                details = ", ".join(
                    f"{key}: logged {run.data.params[key]!r}, got {wanted[key]!r}" for key in sorted(changed)
                )
                raise TrackingError(
                    f"trial {self.study}/{trial_id}: its MLflow run {run_id} holds other param values "
                    f"({details}); a trial id cannot change its config: use a new study name"
                )
            if run.info.status != "RUNNING":
                self.mlflow_client.update_run(run_id, status="RUNNING")
            if _TAG_ERROR in run.data.tags:  # the error of an earlier attempt
                self.mlflow_client.delete_tag(run_id, _TAG_ERROR)
            self._last_steps[trial_id] = self._logged_steps(run)
        log_batch(self.mlflow_client, run_id, params=new, tags={_TAG_STATUS: TrialStatus.RUNNING, **arm_tags})
        log_artifact(
            self.mlflow_client, run_id, "trial_config.json", json.dumps(config, indent=2, sort_keys=True, default=str)
        )
        return run_id

    def log_metrics(self, trial_id: str, metrics: Mapping[str, Any], step: int) -> None:
        """Log one result of a trial at ``step``, in one ``log_batch`` call.

        Steps repeated after a worker restart (between the last checkpoint and the failure)
        are logged once: a metric at a step at or below the last step logged for it is
        skipped, so the first values are kept. The de-duplication is per metric, not per
        result, so an eval metric reported separately at an already-logged step still
        lands. Values: ints and floats (numpy scalars too); NaN is logged as NaN and ±inf
        as NaN too (a diverged trial's loss is evidence, and its ``qstudy.status`` says
        why; a SQL store would clamp inf to 1.8e308 and flatten the charts); strings,
        bools, None and other types are skipped. Names are :func:`mlflow_metric_name`'s
        (``step_time_s`` -> ``timing/step_time_s``); outside MLflow's alphabet a
        character becomes ``_``. The objective comes first in the batch, then the
        top-level metrics, then the prefixed ones.

        Raises:
            TrackingError: the trial has no run (:meth:`start_trial` first).
        """
        run_id = self._run_id(trial_id)
        if trial_id not in self._last_steps:  # a trial of an earlier driver, not restarted here
            self._last_steps[trial_id] = self._logged_steps(self.mlflow_client.get_run(run_id))
        last = self._last_steps[trial_id]
        step = int(step)
        named = {mlflow_metric_name(key): value for key, value in _numeric(metrics).items()}
        fresh = {key: value for key, value in _ordered(named, self.objective) if step > last.get(key, -sys.maxsize)}
        if not fresh:
            return
        log_batch(self.mlflow_client, run_id, metrics=fresh, step=step)
        last.update(dict.fromkeys(fresh, step))

    def tag_trial(self, trial_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a trial's run, e.g. ``qstudy.worker_nodes`` (the Ray nodes its
        workers ran on). Raises TrackingError if the trial has no run."""
        log_batch(self.mlflow_client, self._run_id(trial_id), tags=tags)

    def end_trial(self, trial_id: str, status: str, error: str | None = None) -> None:
        """End a trial's run: tag ``qstudy.status`` and set the MLflow run status.

        Args:
            trial_id: the trial's id.
            status: completed, pruned, diverged (MLflow FINISHED), failed (FAILED) or
                killed (KILLED).
            error: the failure's text, kept (truncated to 8000 characters) in the tag
                ``qstudy.error``.

        Raises:
            TrackingError: unknown status, or the trial has no run.
        """
        if status not in TRIAL_STATUSES:
            raise TrackingError(
                f"trial {self.study}/{trial_id}: status must be one of {[str(s) for s in TRIAL_STATUSES]}, got {status!r}"
            )
        run_id = self._run_id(trial_id)
        tags = {_TAG_STATUS: status}
        if error is not None:
            tags[_TAG_ERROR] = error
        log_batch(self.mlflow_client, run_id, tags=tags)
        self.mlflow_client.set_terminated(run_id, status=TRIAL_STATUSES[status])

    def logged_trial_ids(self) -> set[str]:
        """The trial ids the store holds a run of, read without writing anything (usable
        before :meth:`start_study`): empty when the store has no run of this study."""
        parent = self._find_parent()
        if parent is None:
            return set()
        return {run.data.tags[_TAG_TRIAL] for run in self._child_runs(parent.info.run_id)}

    def trial_runs(self) -> dict[str, dict[str, Any]]:
        """The study's trial runs as stored now (one search).

        Returns:
            trial id -> ``{"run_id", "status" (the qstudy.status tag), "run_status"
            (MLflow's), "params", "metrics" (latest value of each)}``.
        """
        self._require_parent()
        runs: dict[str, dict[str, Any]] = {}
        for run in self._child_runs():
            runs.setdefault(
                run.data.tags[_TAG_TRIAL],
                {
                    "run_id": run.info.run_id,
                    "status": run.data.tags.get(_TAG_STATUS),
                    "run_status": run.info.status,
                    "params": dict(run.data.params),
                    "metrics": dict(run.data.metrics),
                    "tags": dict(run.data.tags),
                },
            )
        return runs

    # -- the MLflow UI -----------------------------------------------------------------

    def share_view(self, params: list[str]) -> str:
        """Store the study's view of the runs page as an experiment tag; return its key.

        The view lists the study's trial runs (not the parent with its trials folded
        under it), ordered by the objective, with a column per param of ``params``, the
        objective and ``qstudy.status``. MLflow's UI loads it for a URL with
        ``viewStateShareKey=<key>`` (:func:`runs_page_url`); it is the state its own
        "Share" button stores (``mlflow.sharedViewState.<key>``), as plain JSON.

        Args:
            params: the params to show, as logged: the searched keys
                (``optimizer.quantum_weight``), or a comparison's ``arm`` and ``seed``.
        """
        key = _view_key(self.study)
        columns = [f"params.`{_name(name)}`" for name in params]
        if self.objective:
            columns.append(f"metrics.`{mlflow_metric_name(self.objective)}`")
        columns.append(f"tags.`{_TAG_STATUS}`")
        state: dict[str, Any] = {
            "searchFilter": _trials_filter(self.study),
            "selectedColumns": columns,
            "runsHiddenMode": "SHOW_ALL",  # the charts show every trial, not the first 10
        }
        if self.objective:
            state.update(orderByKey=f"metrics.`{mlflow_metric_name(self.objective)}`", orderByAsc=True)
        self.mlflow_client.set_experiment_tag(self.experiment_id, _TAG_SHARED_VIEW + key, json.dumps(state))
        return key

    def ui_links(self, base_url: str, view_key: str | None = None) -> dict[str, str]:
        """The study's pages in the MLflow UI at ``base_url`` (:func:`ui_base_url`).

        Returns:
            ``{"runs": runs page of the study's trials, "compare": compare view of the
            trials that logged the objective (all trials when none did or no objective
            is known; the first 50), "study": the parent run's page}``; ``compare`` is
            missing when the study has no trial run, ``study`` before :meth:`start_study`.
        """
        links = {"runs": runs_page_url(base_url, self.experiment_id, view_key)}
        if self.parent_run_id is not None:
            links["study"] = run_page_url(base_url, self.experiment_id, self.parent_run_id)
        runs = self.trial_runs() if self.parent_run_id is not None else {}
        objective = mlflow_metric_name(self.objective) if self.objective else None
        compared = [r["run_id"] for _, r in sorted(runs.items()) if objective in r["metrics"]] or [
            r["run_id"] for _, r in sorted(runs.items())
        ]
        if compared:
            links["compare"] = compare_url(base_url, self.experiment_id, compared[:_MAX_COMPARED])
        return links

    # -- reading a study back (the report) ---------------------------------------------

    def open_study(self) -> str:
        """Attach to the study's parent run and its trial runs without writing anything.

        Returns:
            The parent run id.

        Raises:
            TrackingError: the store holds no run of the study.
        """
        parent = self._find_parent()
        if parent is None:
            raise TrackingError(
                f"study {self.study!r}: the MLflow store {self.tracking_uri} (experiment {self.experiment!r}) holds "
                "no run of it: run `qstudy sweep` on the study first"
            )
        self.parent_run_id = parent.info.run_id
        for run in self._child_runs():
            self._trials.setdefault(run.data.tags[_TAG_TRIAL], run.info.run_id)
        return self.parent_run_id

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of every logged value of a metric, by step (first value per step)."""
        seen: dict[int, float] = {}
        for m in sorted(self.mlflow_client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
            seen.setdefault(int(m.step), float(m.value))
        return sorted(seen.items())

    def study_metric_history(self, key: str) -> list[tuple[int, float]]:
        """A metric of the parent run, as :meth:`metric_history`."""
        return self.metric_history(self._require_parent(), key)

    def log_study_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log metrics on the parent run (the report's own measurements) at ``step``."""
        log_batch(self.mlflow_client, self._require_parent(), metrics=_numeric(metrics), step=int(step))

    def set_report_description(self, section: str) -> None:
        """Put ``section`` (markdown, from ``qstudy report``) at the end of the parent run's
        description, in place of the one an earlier report put there; the sweep's part is
        kept (and a later ``finish_study`` keeps the report's)."""
        parent_id = self._require_parent()
        sweep_part, _ = self._description_parts(parent_id)
        self.mlflow_client.set_tag(parent_id, _TAG_NOTE, _description(sweep_part, section))

    def _description_parts(self, run_id: str) -> tuple[str, str | None]:
        """A run's description as it is now, split as :func:`_description_parts` does."""
        return _description_parts(self.mlflow_client.get_run(run_id).data.tags.get(_TAG_NOTE, ""))

    def log_study_artifacts(self, files: Mapping[str, str | bytes]) -> None:
        """Save files on the parent run: artifact path (``report/report.md``) -> text or bytes."""
        parent_id = self._require_parent()
        for name, content in files.items():
            log_artifact(self.mlflow_client, parent_id, name, content)

    # -- helpers -----------------------------------------------------------------------

    def _experiment_id(self, create: bool = True) -> str:
        experiment = self.mlflow_client.get_experiment_by_name(self.experiment)
        if experiment is None and not create:
            raise TrackingError(f"MLflow store {self.tracking_uri} has no experiment {self.experiment!r}")
        if experiment is None:
            return self.mlflow_client.create_experiment(
                self.experiment,
                artifact_location=_artifact_location(self.tracking_uri, self.experiment),
                tags={_TAG_EXPERIMENT_KIND: _MODEL_DEVELOPMENT},
            )
        if experiment.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow experiment {self.experiment!r} is deleted in {self.tracking_uri}: "
                f"restore it (mlflow experiments restore --experiment-id {experiment.experiment_id}) or use another name"
            )
        # An experiment of an older qstudy, or one the UI guessed a kind for
        # (``..._inferred``): a kind a user picked in the UI is kept.
        kind = experiment.tags.get(_TAG_EXPERIMENT_KIND)
        if create and (kind is None or kind.endswith("_inferred")):
            self.mlflow_client.set_experiment_tag(experiment.experiment_id, _TAG_EXPERIMENT_KIND, _MODEL_DEVELOPMENT)
        return experiment.experiment_id

    def _require_parent(self) -> str:
        if self.parent_run_id is None:
            raise TrackingError(f"study {self.study!r}: no parent run: call start_study first")
        return self.parent_run_id

    def _run_id(self, trial_id: str) -> str:
        run_id = self._trials.get(trial_id)
        if run_id is None:
            raise TrackingError(f"trial {self.study}/{trial_id}: no MLflow run: call start_trial first")
        return run_id

    def _find_parent(self) -> Run | None:
        # The study name is matched here rather than in the filter string: a quote in the
        # name cannot break the query. An experiment holds few studies.
        for run in search_runs(self.mlflow_client, self.experiment_id, f"tags.`{_TAG_ROLE}` = 'study'"):
            if run.data.tags.get(_TAG_STUDY) == self.study:
                return run
        return None

    def _child_runs(self, parent_id: str | None = None) -> Iterator[Run]:
        for run in search_runs(
            self.mlflow_client, self.experiment_id, f"tags.`{_TAG_PARENT}` = '{parent_id or self.parent_run_id}'"
        ):
            if _TAG_TRIAL in run.data.tags:
                yield run

    def _logged_steps(self, run: Run) -> dict[str, int]:
        """Metric -> last step logged in an existing run (one history call per metric)."""
        return {
            key: max(m.step for m in history)
            for key in run.data.metrics
            if (history := self.mlflow_client.get_metric_history(run.info.run_id, key))
        }


def _description_parts(text: str) -> tuple[str, str | None]:
    """A parent run's description split into the sweep's part and the report's section (or None)."""
    sweep_part, marker, report_part = ("\n\n" + text).partition("\n\n" + _REPORT_HEADING)
    return sweep_part.strip(), (report_part.strip() if marker else None)


def _description(sweep_part: str, report_part: str | None) -> str:
    """The description from its parts. MLflow keeps 8000 characters of a tag: where both
    do not fit, the sweep's part is cut at a line and says where the rest is."""
    if report_part is None:
        return sweep_part[:_MAX_TAG_CHARS]
    tail = "\n\n" + _REPORT_HEADING + "\n\n" + report_part.strip()
    if len(sweep_part) + len(tail) > _MAX_TAG_CHARS:
        cut = "\n\n(cut here to fit the report below: the whole trial table is artifact `summary.txt`)"
        room = max(0, _MAX_TAG_CHARS - len(tail) - len(cut))
        sweep_part = sweep_part[:room].rsplit("\n", 1)[0] + cut if room else ""
    return (sweep_part + tail).lstrip()[:_MAX_TAG_CHARS]


def _view_key(study: str) -> str:
    return f"qstudy-{study}"


def _trials_filter(study: str) -> str:
    """MLflow's search filter for the study's trial runs (its parent run has no trial id).
    A study name is ``[A-Za-z0-9_.-]+``: nothing to quote."""
    return f"tags.`{_TAG_STUDY}` = '{study}' AND tags.`{_TAG_TRIAL}` LIKE '%'"


def study_links(tracking_uri: str, experiment: str, study: str, base_url: str) -> dict[str, str]:
    """The UI links of a study, read from the store without writing to it.

    Returns:
        ``{"ui": base_url}`` and, when the store holds the experiment,
        :meth:`StudyTracker.ui_links`'s (with the study's shared view when stored).
    """
    try:
        tracker = StudyTracker(tracking_uri, experiment, study, read_only=True)
    except TrackingError:
        return {"ui": base_url}
    experiment_tags = tracker.mlflow_client.get_experiment(tracker.experiment_id).tags
    view_key = _view_key(study) if _TAG_SHARED_VIEW + _view_key(study) in experiment_tags else None
    parent = tracker._find_parent()
    if parent is not None:
        tracker.parent_run_id = parent.info.run_id
        tracker.objective = parent.data.tags.get(_TAG_OBJECTIVE)
    return {"ui": base_url, **tracker.ui_links(base_url, view_key)}
