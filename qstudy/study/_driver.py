"""``qstudy sweep``: a study as Ray Tune over the StudySearcher, tracked in MLflow."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

from qstudy.config import TrialStatus
from qstudy.tracking import absolute_tracking_uri

__all__ = ["run_study", "study_paths"]


def study_paths(study, base_dir: str | Path | None = None) -> dict[str, str]:
    """Absolute paths of a study's output: Ray storage, Optuna storage, MLflow URI."""
    storage = study.storage_path_absolute(base_dir)
    out = Path(storage) / study.name
    return {
        "storage_path": storage,
        "output": str(out),
        "optuna_url": f"sqlite:///{out / 'optuna.db'}",
        "tracking_uri": absolute_tracking_uri(study.tracking.uri, base_dir),
    }


def run_study(
    study, source: str, address: str | None = None, printer=print, progress_interval_s: float = 15.0
) -> dict[str, Any]:
    """Runs (or resumes) a study to ``num_samples`` finished trials and prints its summary.

    A search study with ``confirm:`` then runs its confirm phase (``qstudy.study._confirm``):
    the search's top_k configurations and the control on each fresh seed, as fixed trials
    numbered after the search's, in the search's Tune run once its last trial finished,
    never stopped early (an early stop would leave an arm without the seeds its control
    has). The pick is stored with the Optuna study when the phase first starts; a resumed
    driver runs the same arms.

    Input problems (placement included) are raised as ConfigError before MLflow is
    written or a trial starts. Re-running a study continues it: finished trials are
    kept, trials a killed driver left running are re-run under their own id, and
    finished trials the MLflow store lost are logged again from their Tune results.

    The driver holds ``<output>/driver.lock`` (an OS file lock) from before it starts
    Ray until it returns: a second driver of the same study would re-run the first
    one's running trials under the same Ray Train names and close its MLflow runs.

    Returns:
        ``{"trials": [...], "best": {...} | None, "tracking_uri", "output"}``.

    Raises:
        StudyLockedError: another live driver runs this study (checked before Ray,
            Optuna or MLflow is touched).
        StoreOutOfStepError: the MLflow store lacks finished trials whose Tune results
            are gone or disagree with Optuna (checked before any run is written).
    """
    from qstudy.study._lock import DriverLock

    paths = study_paths(study)
    with DriverLock(study.name, paths["output"]):
        return _run_locked(study, paths, source, address, printer, progress_interval_s)


def _run_locked(study, paths, source: str, address, printer, progress_interval_s: float) -> dict[str, Any]:
    """The body of :func:`run_study`, run while the study's driver lock is held."""
    from qstudy.study._callbacks import TrackingCallback
    from qstudy.tracking import StudyTracker

    _preflight(study, source, address)
    Path(paths["output"]).mkdir(parents=True, exist_ok=True)
    searcher = _searcher(study, paths)
    tracker = StudyTracker(paths["tracking_uri"], study.experiment_name, study.name, objective=study.objective.metric)
    resume = _read_resume(study, searcher, tracker, paths)  # checked before the store is written
    _start_tracking(study, tracker, paths, source)
    view_key = tracker.share_view(_columns(study))
    tracking = TrackingCallback(tracker, _trial_config_of(study))
    _settle_resume(study, tracker, tracking, resume, paths, printer)
    selection = _run_phases(study, searcher, paths, [tracking], printer, progress_interval_s)
    summary = _summary(study, searcher, tracker, paths, source, _columns(study), tracking.results, selection, view_key)
    printer(summary["text"])
    tracker.finish_study(summary["best"], summary["text"], description=summary["description"])
    return summary


def _preflight(study, source: str, address: str | None) -> None:
    """Starts (or joins) Ray and raises every placement problem as a ConfigError: before
    MLflow is written or a trial starts."""
    from qstudy.plan import check_fits_on_ray
    from qstudy.train import check_placement, init_ray, raise_problems, worker_env

    # Train-only reports carry no eval metrics; ASHA skips those and acts on eval reports.
    # Tune's driver-side check would otherwise end the study at the first train report.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    init_ray(address, worker_env(study.trial))
    raise_problems(check_placement(study.trial, source, prefix="trial."))
    raise_problems(check_fits_on_ray(study, source))  # GPU memory per trial shape; CPU-only: nothing to check


def _searcher(study, paths):
    """The study's ``StudySearcher`` over its Optuna storage (resumed where it exists)."""
    from qstudy.study._searcher import StudySearcher
    from qstudy.study._space import build_sampler, optuna_space

    return StudySearcher(
        study_name=study.name,
        storage_url=paths["optuna_url"],
        space=optuna_space(study),
        sampler=build_sampler(study),
        metric=study.objective.metric,
        mode=study.objective.mode,
        num_samples=study.num_samples,
        baselines=[dict(b) for b in study.baselines],
        comparison=study.comparison_trials(),
    )


@dataclasses.dataclass
class _Resume:
    """What a re-run driver finds of the runs before it, read before the store is written.

    Attributes:
        finished: trial id -> status of every trial the Optuna study holds as finished
            (a re-run skips them).
        relog: :func:`~qstudy.study._relog.trial_records` of the finished trials the
            MLflow store holds no run of: logged again from their Tune results.
    """

    finished: dict[str, str]
    relog: dict[str, dict[str, Any]]


def _read_resume(study, searcher, tracker, paths) -> _Resume:
    """Reads and checks what the stores hold of earlier runs, writing nothing.

    Raises:
        StoreOutOfStepError: the store holds runs Optuna has no trial of, or lacks
            finished trials whose Tune results cannot re-log them.
    """
    from qstudy.study._relog import check_runs_known, trial_records
    from qstudy.tracking import trial_name

    # Finished trials the MLflow store has no run of (it was deleted or replaced while
    # the Optuna study remained): read back and checked before the store is written.
    finished_trials = searcher.finished_trials()
    logged = tracker.logged_trial_ids()
    check_runs_known(
        study.name, {trial_name(t.number) for t in searcher.study.get_trials(deepcopy=False)}, logged, paths
    )
    unlogged = sorted(set(finished_trials) - logged)
    records = trial_records(study.name, finished_trials, unlogged, study.objective.metric, paths) if unlogged else {}
    return _Resume(finished={trial_id: trial["status"] for trial_id, trial in finished_trials.items()}, relog=records)


def _settle_resume(study, tracker, tracking, resume: _Resume, paths, printer) -> None:
    """Brings the MLflow store in step with Optuna before any trial runs.

    Runs a killed driver left RUNNING are closed as killed, unless Optuna already holds
    the trial's fate (the driver died between telling Optuna and ending the run): then
    they end with it. The trials they ran that Optuna holds as running are re-run under
    their own ids. Finished trials the store lost are logged again.
    """
    from qstudy.study._relog import relog_trials

    for trial_id in tracker.close_orphans():
        if trial_id in resume.finished:
            tracker.end_trial(trial_id, resume.finished[trial_id])
    if resume.relog:
        relog_trials(tracking, resume.relog)
        printer(
            f"study {study.name}: re-logged {len(resume.relog)} finished trial(s) missing from "
            f"{paths['tracking_uri']} from their Tune results: {', '.join(sorted(resume.relog))}"
        )


def _start_tracking(study, tracker, paths, source: str) -> None:
    """Opens (or reopens) the study's parent run: its settings, study file and space."""
    tracker.start_study(
        params={
            "study": study.name,
            "num_samples": study.num_samples,
            "max_concurrent": study.max_concurrent,
            "objective": f"{study.objective.mode} {study.objective.metric}",
            "sampler": study.sampler.type,
            "sampler_seed": study.sampler.seed,
            "scheduler": study.scheduler.type,
            "searched": ", ".join(study.space),
            **(
                {"arms": ", ".join(study.arms), "seeds": ", ".join(map(str, study.seeds))}
                if study.is_comparison
                else {}
            ),
            **(
                {"confirm_top_k": study.confirm.top_k, "confirm_seeds": ", ".join(map(str, study.confirm.seeds))}
                if study.confirm is not None
                else {}
            ),
        },
        artifacts={
            "study.yaml": Path(source).read_text()
            if Path(source).is_file()
            else json.dumps(study.model_dump(mode="json")),
            "space.json": json.dumps({k: v.model_dump(mode="json") for k, v in study.space.items()}, indent=2),
        },
        # Where the rest of the study lives; a tag, since a resumed study may run from elsewhere.
        tags={
            "qstudy.optuna_storage": paths["optuna_url"],
            "qstudy.output": paths["output"],
            "qstudy.study_file": str(Path(source).resolve()),
        },
    )


def _trial_config_of(study):
    """values -> the full trial config they give (a dict), for the trials' runs."""
    from qstudy.config import apply_overrides

    base_trial = study.trial

    def trial_config_of(values: dict[str, Any]) -> dict[str, Any]:
        return apply_overrides(base_trial, values).model_dump(mode="json")

    return trial_config_of


def _run_phases(study, searcher, paths, callbacks, printer, progress_interval_s: float) -> dict[str, Any] | None:
    """Runs the search's remaining trials and, for a study with ``confirm:``, then the
    confirm phase's, in one Tune run: the searcher switches phase once every search trial
    has finished (``StudySearcher.chain_confirm``), so the confirm trials reuse the search's
    warm trial processes instead of starting a second Tune run of fresh ones. Returns the
    confirm phase's arms (None: no confirm phase, or the search did not finish)."""
    from qstudy.study._callbacks import ProgressCallback

    columns = _columns(study)
    to_run = searcher.remaining()
    if study.confirm is not None:
        if to_run:
            searcher.chain_confirm(lambda: _start_confirm(study, searcher, printer))
            # Tune's cap on suggestions; the searcher ends the run at the phase's real size.
            to_run += (study.confirm.top_k + 1) * len(study.confirm.seeds)
        else:  # the search finished in an earlier run
            _start_confirm(study, searcher, printer)
            to_run = searcher.remaining()
    if to_run:
        progress = ProgressCallback(
            study.objective.metric,
            columns,
            progress_interval_s,
            printer,
            confirm_columns=_confirm_columns(columns) if study.confirm is not None else None,
        )
        suffix = "-confirm" if searcher.phase is not None else ""
        _fit(study, searcher, paths, to_run, _scheduler(study), [*callbacks, progress], suffix=suffix)
    if study.confirm is None:
        return None
    if searcher.phase is None:
        printer(
            f"study {study.name}: the search is not finished ({searcher.remaining()} of {study.num_samples} "
            "trials left): the confirm phase starts when it is; run the study again to continue it"
        )
        return None
    return searcher.confirm_selection()


def _scheduler(study):
    """The study's Tune scheduler: ASHA over the search's trials for a study that asks
    for it (the confirm phase's trials, in the same Tune run, each reach the last step on
    every seed: an early stop would leave an arm without the seeds its control has)."""
    if study.scheduler.type != "asha":
        return None
    from qstudy.study._asha import SearchOnlyASHA

    return SearchOnlyASHA(
        time_attr="step",
        grace_period=study.scheduler.grace_period,
        reduction_factor=study.scheduler.reduction_factor,
        max_t=study.asha_max_t(),
    )


def _fit(study, searcher, paths, num_samples: int, scheduler, callbacks, suffix: str = "") -> None:
    """One Tune run of at most ``num_samples`` trials over ``searcher`` (its phases)."""
    _build_tuner(study, searcher, paths, num_samples, scheduler, callbacks, suffix).fit()


def _build_tuner(study, searcher, paths, num_samples: int, scheduler, callbacks, suffix: str = ""):
    """The ``tune.Tuner`` of one phase: each trial a :func:`run_study_trial` (its
    TorchTrainer, or a one-worker trial in the trial's process), at most ``max_concurrent``
    at once, named ``{study}/{trial id}``."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from qstudy.study._searcher import TRIAL_ID_KEY
    from qstudy.study._trial_fn import run_study_trial, trial_resources
    from qstudy.tracking import trial_run_name
    from qstudy.train import runs_in_trial_process

    in_trial = runs_in_trial_process(study.trial, paths["storage_path"]) and not any(
        key.startswith("resources.") for key in study.overridden_keys()
    )
    retries = study.trial_retries
    if in_trial:
        # No worker group to restart: Tune's retries (from the trial's newest checkpoint) stand
        # in for resources.max_failures, as many attempts as a TorchTrainer trial would get.
        retries = (retries + 1) * (study.trial.resources.max_failures + 1) - 1
    return tune.Tuner(
        tune.with_resources(run_study_trial, trial_resources),
        param_space={
            "qstudy": {
                "name": study.name,
                "trial": study.trial.model_dump(mode="json"),
                "storage_path": paths["storage_path"],
                "trial_timeout_s": study.trial_timeout_s,
            }
        },
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=study.max_concurrent),
            scheduler=scheduler,
            metric=study.objective.metric,
            mode=study.objective.mode,
            num_samples=num_samples,
            max_concurrent_trials=study.max_concurrent,
            trial_name_creator=lambda t: trial_run_name(study.name, t.config.get(TRIAL_ID_KEY, t.trial_id)),
            trial_dirname_creator=lambda t: str(t.config.get(TRIAL_ID_KEY, t.trial_id)),
            # A trial trained in its Tune trial's process leaves that process warm (imports,
            # compiled kernels) for the next: reused, a trial reaches its first step in about
            # a second. Only where every trial trains so: a TorchTrainer's driver is not
            # reused (Ray Train keeps per-run state in the Tune session).
            reuse_actors=in_trial,
        ),
        run_config=tune.RunConfig(
            # tune-<time>[-confirm]: sorted names stay chronological (qstudy.study._relog reads them so).
            name=f"tune-{datetime.datetime.now():%Y%m%d-%H%M%S}{suffix}",
            storage_path=str(Path(paths["output"]) / "tune"),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=retries),
            verbose=0,
        ),
    )


def _start_confirm(study, searcher, printer) -> dict[str, Any]:
    """Switches ``searcher`` to the confirm phase; returns its arms, picked and stored the
    first time (from the finished search), read back on every later run."""
    from qstudy.study._confirm import confirm_trials, select_confirm
    from qstudy.tracking import trial_name

    selection = searcher.confirm_selection()
    if selection is None:
        finished = searcher.finished_trials()
        control_id = trial_name(0)  # baselines[0] is enqueued first
        control_values = finished.get(control_id, {}).get("values", study.baselines[0])
        selection, note = select_confirm(
            finished, (control_id, control_values), study.confirm.top_k, study.objective.mode
        )
        searcher.store_confirm_selection(selection)
        if note:
            printer(f"study {study.name}: {note}")
    searcher.start_confirm(confirm_trials(selection, study.confirm.seeds))
    return selection


def _confirm_columns(columns: list[str]) -> list[str]:
    """The confirm trials' table: arm and seed first, then the search's columns."""
    return ["arm", "seed", *(c for c in columns if c not in ("arm", "seed"))]


def _columns(study) -> list[str]:
    """The searched keys, then keys only baselines set (e.g. optimizer.response); for a
    comparison study the arm, the seed, then the keys the arms set."""
    columns = ["arm", "seed"] if study.is_comparison else list(study.space)
    for overrides in [*study.baselines, *study.arms.values()]:
        columns += [k for k in overrides if k not in columns]
    return columns


def _summary(
    study, searcher, tracker, paths, source: str, columns, results, selection=None, view_key: str | None = None
) -> dict[str, Any]:
    """The closing summary: the trial table(s), the best line, where everything is, the
    links to the study in the MLflow UI; and the same as markdown, the parent run's
    description in the UI.

    ``selection``: the confirm phase's arms when it ran (None: no confirm phase, or the
    search is not finished); the confirm trials then get their own table, and the best is
    the confirmed one (``_confirm.rank_confirmed``), not the search's luckiest trial.

    Returns:
        ``{"trials": [...], "best": {...} | None, "text", "description" (markdown),
        "links" (:meth:`StudyTracker.ui_links`), "tracking_uri", "output"}``; a confirm
        trial's row has ``"phase": "confirm"`` and its ``arm``.
    """
    from qstudy.study._callbacks import format_table
    from qstudy.study._confirm import confirm_trials, rank_confirmed, top_arms
    from qstudy.tracking import is_server_uri, ui_base_url

    metric = study.objective.metric
    runs = tracker.trial_runs()
    rows = _trial_rows(searcher.study.get_trials(deepcopy=False), runs, results, metric)
    search = [r for r in rows if "phase" not in r]
    confirm = [r for r in rows if "phase" in r]
    best = _best_trial(study, search)
    uri = paths["tracking_uri"]
    links = tracker.ui_links(ui_base_url(uri), view_key)
    if is_server_uri(uri):
        ui = f"the tracking server {uri} (experiment {study.experiment_name!r})"
    else:
        ui = f"qstudy ui {source}    (serves the store on 127.0.0.1:5000), then open"
    lines = [
        "",
        f"study {study.name}: {len([r for r in search if r['status'] != 'running'])}/{study.num_samples} trials",
        format_table(search, metric, columns),
        "",
    ]
    if selection is not None:
        outcomes = [
            {"arm": r.get("arm"), "seed": r.get("seed"), "status": r["status"], "value": r[metric]} for r in confirm
        ]
        ranked = rank_confirmed(selection, outcomes, study.objective.mode)
        arms = top_arms(selection)
        picks = ", ".join(f"{arm} = {selection[arm]['from_trial']}" for arm in [*arms, "control"])
        planned = len(confirm_trials(selection, study.confirm.seeds))
        lines.append(
            f"confirm: {len([r for r in confirm if r['status'] != 'running'])}/{planned} trials on fresh "
            f"seeds {', '.join(map(str, study.confirm.seeds))} ({picks})"
        )
        if len(arms) < study.confirm.top_k:
            lines.append(
                f"  (top_k is {study.confirm.top_k}: the search completed only {len(arms)} distinct "
                "configuration(s) besides the control)"
            )
        if confirm:
            lines.append(format_table(confirm, metric, _confirm_columns(columns)))
        lines.append("")
        lines.append(_confirmed_line(ranked, best, metric))
        if ranked:
            best = _confirmed_best(ranked[0], best, metric)
    else:
        lines.append(_best_line(study, best, metric))
    verdict = lines[-1]
    lines += [
        f"MLflow store: {uri}",
        f"Optuna storage: {paths['optuna_url']}",
        f"Ray output: {paths['output']}",
        f"MLflow UI: {ui}",
        *(f"  {name + ':':9s}{links[name]}" for name in ("runs", "compare", "study") if name in links),
    ]
    description = _description(study, search, confirm, columns, runs, tracker, paths, source, verdict, view_key)
    return {
        "trials": rows,
        "best": best,
        "text": "\n".join(lines),
        "description": description,
        "links": links,
        "tracking_uri": uri,
        "output": paths["output"],
    }


def _trial_rows(trials, runs: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]], metric: str):
    """One row per Optuna trial, by number: its status, settings, arm and phase, and its
    last step, objective and elapsed time.

    Args:
        trials: the Optuna study's ``FrozenTrial`` s.
        runs: :meth:`StudyTracker.trial_runs` (the MLflow store's last metrics of each).
        results: this driver's last Tune result of each trial it ran (newer than the store's).
        metric: the objective: Optuna's value of the trial, else its last reported one.
    """
    from qstudy.study._searcher import ARM_ATTR, PHASE_ATTR
    from qstudy.tracking import trial_name

    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        tid = trial_name(t.number)
        run = runs.get(tid, {})
        latest = {**run.get("metrics", {}), **results.get(tid, {})}
        rows.append(
            {
                "trial": tid,
                "status": t.user_attrs.get("qstudy.status", t.state.name.lower()),
                **{k: v for k, v in t.params.items()},
                **json.loads(t.user_attrs.get("qstudy.overrides", "{}")),
                **({"arm": t.user_attrs[ARM_ATTR]} if ARM_ATTR in t.user_attrs else {}),
                **({"phase": t.user_attrs[PHASE_ATTR]} if PHASE_ATTR in t.user_attrs else {}),
                "step": latest.get("step"),
                metric: t.value if t.value is not None else latest.get(metric),
                "elapsed_s": latest.get("time_total_s"),
            }
        )
    return rows


def _best_trial(study, search: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The search's best completed trial (``trial_id``, ``metric``, ``value``, searched
    ``params``); None when none completed, or for a comparison study: the best of arms x
    seeds is mostly the luckiest seed; its arms are compared with the control over the seeds."""
    metric = study.objective.metric
    complete = [r for r in search if r["status"] == TrialStatus.COMPLETED and r[metric] is not None]
    if not complete or study.is_comparison:
        return None
    pick = min if study.objective.mode == "min" else max
    b = pick(complete, key=lambda r: r[metric])
    return {"trial_id": b["trial"], "metric": metric, "value": b[metric], "params": {k: b.get(k) for k in study.space}}


def _confirmed_best(top: dict[str, Any], search_best: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    """The study's best once the confirm phase ran: its best arm (``rank_confirmed``'s
    first), its mean over the fresh seeds and the control's, and the search's best trial."""
    return {
        "trial_id": top["from_trial"],
        "metric": metric,
        "value": top["mean"],
        "params": {k: v for k, v in top["values"].items() if k != "seed"},
        "arm": top["arm"],
        "seeds": top["seeds"],
        "control_value": top["control_mean"],
        "search_best_trial_id": search_best["trial_id"] if search_best else None,
    }


_DESCRIPTION_ROWS = 25  # a row with its link is ~150 characters; MLflow keeps 8000 of a tag


def _description(
    study, search, confirm, columns, runs, tracker, paths, source: str, verdict: str, view_key: str | None
) -> str:
    """The parent run's description (markdown, MLflow renders it on the run's page): the
    trial table(s) linked to the trials' runs, the best trial or the confirmed best against
    the control, and where the rest of the study is. Links are relative to the UI, so
    they hold on any host and port."""
    from qstudy.tracking import run_page_url, trial_name

    metric = study.objective.metric
    links = tracker.ui_links("", view_key)
    run_ids = {tid: run["run_id"] for tid, run in runs.items()}

    def table(rows, cols) -> list[str]:
        head = ["trial", "status", *(f"`{c}`" for c in cols), "step", metric]
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in sorted(rows, key=lambda r: r["trial"]):
            tid = r["trial"]
            cell = f"[{tid}]({run_page_url('', tracker.experiment_id, run_ids[tid])})" if tid in run_ids else tid
            values = [_md(r.get(c)) for c in [*cols, "step", metric]]
            out.append("| " + " | ".join([cell, str(r["status"]), *values]) + " |")
        return out

    lines = [f"## Study `{study.name}`: {study.objective.mode} `{metric}`", ""]
    if study.is_comparison:
        lines.append(f"Arms {', '.join(f'`{a}`' for a in study.arms)} x seeds {', '.join(map(str, study.seeds))}.")
    else:
        lines.append(
            f"Searched: {', '.join(f'`{k}`' for k in study.space)} ({study.sampler.type} sampler, "
            f"{study.scheduler.type} scheduler, {study.num_samples} trials)."
        )
    shown = search
    if len(search) > _DESCRIPTION_ROWS:  # the best trials and the control
        pick = sorted(
            (r for r in search if r.get(metric) is not None),
            key=lambda r: r[metric],
            reverse=study.objective.mode == "max",
        )[:_DESCRIPTION_ROWS]
        shown = pick + [r for r in search if r["trial"] == trial_name(0) and r not in pick]
    lines += ["", *table(shown, columns), ""]
    if len(shown) < len(search):
        lines += [f"({len(search) - len(shown)} more trials on the runs page: the {len(shown)} best are shown)", ""]
    if confirm:
        lines += ["Confirm trials (fresh seeds):", "", *table(confirm, _confirm_columns(columns)), ""]
    lines.append(f"**{verdict}**")
    control = next((r for r in search if r["trial"] == trial_name(0)), None) if study.baselines else None
    if control is not None and not confirm:
        lines.append(f"\nControl (the first baseline, {trial_name(0)}): {metric} = {_md(control.get(metric))}.")
    lines += [
        "",
        f"- [the study's trials]({links['runs']})",
        *([f"- [compare the trials]({links['compare']})"] if "compare" in links else []),
        f"- the report's figures: artifacts `report/` of this run, written by `qstudy report {source}`",
        "- study file: artifact `study.yaml`; searched space: artifact `space.json`",
        f"- Optuna storage: `{paths['optuna_url']}`; Ray output: `{paths['output']}`",
    ]
    return "\n".join(lines)


def _md(value) -> str:
    """A table cell: numbers as in the text table, ``|`` escaped."""
    from qstudy.study._callbacks import _fmt

    return _fmt(value).replace("|", "\\|")


def _confirmed_line(ranked: list[dict[str, Any]], search_best, metric: str) -> str:
    """The confirmed best, its mean and the control's over the same seeds, the other arms'
    means, and the search's best trial (which the confirmed best need not be)."""
    searched = (
        f"the search's best trial was {search_best['trial_id']} ({metric}={search_best['value']:.4g})"
        if search_best
        else "the search completed no trial"
    )
    if not ranked:
        return f"confirmed best: none (no top arm completed on a seed the control completed on); {searched}"
    top, rest = ranked[0], ranked[1:]
    seeds = ", ".join(map(str, top["seeds"]))
    line = (
        f"confirmed best: {top['arm']} ({top['from_trial']}'s configuration) mean {metric}={top['mean']:.4g} "
        f"over seeds {seeds}, control mean {metric}={top['control_mean']:.4g} over the same seeds; {searched}"
    )
    if rest:
        line += "; " + ", ".join(
            f"{r['arm']} mean {r['mean']:.4g} (control {r['control_mean']:.4g}, seeds "
            f"{', '.join(map(str, r['seeds']))})"
            for r in rest
        )
    return line


def _best_line(study, best, metric: str) -> str:
    if study.is_comparison:
        return (
            f"arms: {', '.join(study.arms)} x seeds {', '.join(map(str, study.seeds))}; compare each arm with "
            "control seed for seed (no single trial is called best)"
        )
    return f"best: {best['trial_id']} {metric}={best['value']:.4g} {best['params']}" if best else "best: none completed"
