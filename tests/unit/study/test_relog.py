"""Finished trials that the MLflow store lost are read back from Tune's results, checked
against Optuna, and logged as the live study logs them; otherwise the study is refused."""

import json

import pytest

from qstudy.study._relog import StoreOutOfStepError, check_runs_known, relog_trials, trial_records


def _paths(tmp_path):
    return {
        "output": str(tmp_path / "runs" / "s"),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "optuna_url": f"sqlite:///{tmp_path / 'runs' / 's' / 'optuna.db'}",
    }


def _write_trial(tmp_path, run, trial_id, rows, base=None, error=None, tail=""):
    folder = tmp_path / "runs" / "s" / "tune" / run / trial_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    if base is not None:
        (folder / "params.json").write_text(json.dumps({"qstudy": {"trial": base}, "optimizer.lr": 0.5}))
    if error is not None:
        (folder / "error.txt").write_text(error)
    return folder


def _finished(status="completed", value=2.0, intermediate=None):
    return {
        "values": {"optimizer.lr": 0.5},
        "status": status,
        "value": value,
        "intermediate": {2: 3.0, 4: 2.0} if intermediate is None else intermediate,
    }


ROWS = [
    {"step": 1, "train_loss": 4.0},
    {"step": 2, "train_loss": 3.5, "eval_loss": 3.0},
    {"step": 3, "train_loss": 3.0},
    {"step": 4, "train_loss": 2.5, "eval_loss": 2.0, "status": "completed"},
]


def test_results_of_every_driver_run_are_read_oldest_first(tmp_path):
    # A driver killed after step 2, then a re-run that restarted from the step-2
    # checkpoint; the killed driver's last line was cut short.
    first = _write_trial(tmp_path, "tune-20261201-100000", "trial_0000", ROWS[:2], tail='{"step": 3, "trai')
    last = _write_trial(tmp_path, "tune-20261201-110000", "trial_0000", ROWS[2:], base={"optimizer": {"lr": 1e-3}})
    records = trial_records("s", {"trial_0000": _finished()}, ["trial_0000"], "eval_loss", _paths(tmp_path))
    record = records["trial_0000"]
    assert record["results"] == ROWS
    assert record["folders"] == [str(first), str(last)]
    assert record["config"]["optimizer"]["lr"] == 0.5  # the base the trial ran with, its value applied
    assert record["status"] == "completed" and record["error"] is None


def test_a_failed_trial_keeps_its_error_text(tmp_path):
    _write_trial(tmp_path, "tune-20261201-100000", "trial_0001", [], error="Traceback ...\nTimeoutError: no result")
    records = trial_records(
        "s", {"trial_0001": _finished("failed", None, {})}, ["trial_0001"], "eval_loss", _paths(tmp_path)
    )
    assert records["trial_0001"]["error"] == "Traceback ...\nTimeoutError: no result"
    assert records["trial_0001"]["config"] is None  # no params.json: the study's trial config is used


def test_missing_results_refuse_the_study_naming_both_stores_and_the_way_out(tmp_path):
    paths = _paths(tmp_path)
    _write_trial(tmp_path, "tune-20261201-100000", "trial_0001", ROWS[:2])
    finished = {"trial_0000": _finished(), "trial_0001": _finished()}
    with pytest.raises(StoreOutOfStepError) as refused:
        trial_records("s", finished, ["trial_0000", "trial_0001"], "eval_loss", paths)
    assert str(refused.value) == (
        f"study s: the MLflow store {paths['tracking_uri']} holds no run of trial_0000, trial_0001, which the Optuna "
        f"study {paths['optuna_url']} holds as finished, and their Tune results cannot re-log them faithfully "
        f"(trial_0000: no Tune results under {tmp_path / 'runs' / 's' / 'tune'}; "
        "trial_0001: Optuna holds eval_loss at step 4, result.json has no eval_loss at that step). "
        "To keep the study, point tracking.uri at the store it was logged to; to start it afresh, remove "
        f"{tmp_path / 'runs' / 's'} (its Optuna study and Ray results) or give the study a new name"
    )


@pytest.mark.parametrize(
    "finished, problem",
    [
        (_finished(intermediate={2: 3.5, 4: 2.0}), "Optuna holds eval_loss=3.5 at step 2, result.json has 3.0"),
        (_finished(value=1.5, intermediate={}), "Optuna holds the final eval_loss=1.5, result.json ends with 2.0"),
    ],
)
def test_results_that_disagree_with_optuna_are_refused(tmp_path, finished, problem):
    _write_trial(tmp_path, "tune-20261201-100000", "trial_0000", ROWS)
    with pytest.raises(StoreOutOfStepError, match=rf"\(trial_0000: {problem}\)"):
        trial_records("s", {"trial_0000": finished}, ["trial_0000"], "eval_loss", _paths(tmp_path))


def test_relogged_trials_are_logged_like_live_ones(tmp_path):
    from qstudy.study._callbacks import TrackingCallback
    from qstudy.tracking import StudyTracker

    # The step-2 eval is reported again after a restart: kept once, first value.
    rows = [*ROWS[:2], {"step": 2, "eval_loss": 9.0}, *ROWS[2:]]
    folder = _write_trial(tmp_path, "tune-20261201-100000", "trial_0000", rows)
    _write_trial(tmp_path, "tune-20261201-100000", "trial_0001", [], error="boom")
    finished = {"trial_0000": _finished(), "trial_0001": _finished("failed", None, {})}
    records = trial_records("s", finished, ["trial_0000", "trial_0001"], "eval_loss", _paths(tmp_path))

    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlruns.db'}", "s", "s")
    tracker.start_study({"study": "s"}, {})
    config = {"optimizer": {"lr": 0.5}, "seed": 0}
    tracking = TrackingCallback(tracker, lambda values: config)
    relog_trials(tracking, records)

    runs = tracker.trial_runs()
    assert {t: (r["status"], r["run_status"]) for t, r in runs.items()} == {
        "trial_0000": ("completed", "FINISHED"),
        "trial_0001": ("failed", "FAILED"),
    }
    assert runs["trial_0000"]["params"] == {"optimizer.lr": "0.5", "seed": "0"}  # each setting once, dotted
    history = tracker.mlflow_client.get_metric_history(runs["trial_0000"]["run_id"], "eval_loss")
    assert sorted((m.step, m.value) for m in history) == [(2, 3.0), (4, 2.0)]
    assert len(tracker.mlflow_client.get_metric_history(runs["trial_0000"]["run_id"], "train_loss")) == 4
    tags = tracker.mlflow_client.get_run(runs["trial_0000"]["run_id"]).data.tags
    assert tags["qstudy.relogged_from"] == str(folder)
    assert tracker.mlflow_client.get_run(runs["trial_0001"]["run_id"]).data.tags["qstudy.error"] == "boom"
    assert tracking.results["trial_0000"]["step"] == 4  # the summary's latest values


def test_runs_the_optuna_study_does_not_know_are_refused(tmp_path):
    """The Optuna study deleted while the store remains: new trials would reuse old ids."""
    paths = _paths(tmp_path)
    check_runs_known("s", {"trial_0000", "trial_0001"}, {"trial_0000"}, paths)  # a store behind Optuna is fine
    with pytest.raises(StoreOutOfStepError) as err:
        check_runs_known("s", {"trial_0000"}, {"trial_0000", "trial_0001", "trial_0002"}, paths)
    assert str(err.value) == (
        f"study s: the MLflow store {paths['tracking_uri']} holds runs of trial_0001, trial_0002, which the Optuna "
        f"study {paths['optuna_url']} has no trial of (it was deleted or replaced); new trials would reuse their ids. "
        "To keep the study, restore its Optuna storage; to start it afresh, give the study a new name or point "
        "tracking.uri at another store"
    )


def test_a_relogged_comparison_trial_keeps_its_arm(tmp_path):
    from qstudy.study._callbacks import TrackingCallback
    from qstudy.tracking import StudyTracker

    _write_trial(tmp_path, "tune-20261201-100000", "trial_0001", ROWS)
    finished = {"trial_0001": {**_finished(), "values": {"optimizer.lr": 0.5, "seed": 1}, "arm": "sgd"}}
    records = trial_records("s", finished, ["trial_0001"], "eval_loss", _paths(tmp_path))
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlruns.db'}", "s", "s")
    tracker.start_study({"study": "s"}, {})
    relog_trials(TrackingCallback(tracker, lambda values: {"optimizer": {"lr": 0.5}, "seed": 1}), records)
    run = tracker.mlflow_client.get_run(tracker.trial_runs()["trial_0001"]["run_id"])
    assert run.data.params["arm"] == "sgd" and run.data.tags["qstudy.arm"] == "sgd"


def test_a_relogged_confirm_trial_keeps_its_arm_and_phase(tmp_path):
    from qstudy.study._callbacks import TrackingCallback
    from qstudy.tracking import StudyTracker

    # The confirm phase's Tune run is named tune-<time>-confirm.
    _write_trial(tmp_path, "tune-20261201-100000-confirm", "trial_0004", ROWS)
    finished = {
        "trial_0004": {**_finished(), "values": {"optimizer.lr": 0.5, "seed": 101}, "arm": "top_1", "phase": "confirm"}
    }
    records = trial_records("s", finished, ["trial_0004"], "eval_loss", _paths(tmp_path))
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlruns.db'}", "s", "s")
    tracker.start_study({"study": "s"}, {})
    relog_trials(TrackingCallback(tracker, lambda values: {"optimizer": {"lr": 0.5}, "seed": 101}), records)
    run = tracker.mlflow_client.get_run(tracker.trial_runs()["trial_0004"]["run_id"])
    assert (run.data.params["arm"], run.data.tags["qstudy.arm"], run.data.tags["qstudy.phase"]) == (
        "top_1",
        "top_1",
        "confirm",
    )
