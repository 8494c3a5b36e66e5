"""StudyTracker against a real MLflow SQLite store (one store per module: creating the
schema takes a second or two; each test gets its own experiment): parent and child runs,
resume, de-duplication, statuses, the run description and the UI's view and links."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from qstudy.errors import QStudyError
from qstudy.tracking import (
    StudyTracker,
    TrackingError,
    absolute_tracking_uri,
    study_links,
    ui_base_url,
)

CONFIG = {
    "seed": 0,
    "model": {"preset": "llama-tiny"},
    "quantum": {"enabled": True, "n_qubits": 4, "circuit_depth": 2},
    "optimizer": {"lr": 3e-3, "quantum_weight": 0.5},
    "train": {"max_steps": 30, "eval_every_steps": 15},
}
SEARCHED = {"optimizer.lr": 3e-3, "optimizer.quantum_weight": 0.5, "quantum.n_qubits": 4, "quantum.circuit_depth": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlruns.db"


@pytest.fixture
def new_tracker(store, request):
    """A factory: each call is a fresh driver (a new StudyTracker) on the same study."""
    experiment = request.node.name

    def make(study: str = "paper") -> StudyTracker:
        return StudyTracker(store, experiment, study)

    return make


def _runs(tracker: StudyTracker) -> list:
    return list(tracker.mlflow_client.search_runs([tracker.experiment_id]))


def _history(tracker: StudyTracker, trial_id: str, key: str) -> list[tuple[int, float]]:
    run_id = tracker.trial_runs()[trial_id]["run_id"]
    return sorted((m.step, m.value) for m in tracker.mlflow_client.get_metric_history(run_id, key))


def test_parent_and_two_trial_runs(new_tracker, tmp_path):
    tracker = new_tracker()
    parent_id = tracker.start_study(
        {"study": {"num_samples": 2, "sampler": "tpe"}, "search": {"metric": "eval_loss"}},
        {"study.yaml": "study:\n  num_samples: 2\n", "space.json": json.dumps({"optimizer.lr": "loguniform"})},
    )
    for trial_id, lr in (("t0", 1e-3), ("t1", 3e-3)):
        tracker.start_trial(
            trial_id, {**SEARCHED, "optimizer.lr": lr}, {**CONFIG, "optimizer": {"lr": lr, "quantum_weight": 0.5}}
        )
        tracker.log_metrics(trial_id, {"train_loss": 2.0, "tokens_per_s": 123.0}, step=1)
        tracker.end_trial(trial_id, "completed")

    client = MlflowClient(tracker.tracking_uri)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "paper"
    assert parent.data.tags["qstudy.role"] == "study" and parent.data.tags["qstudy.study"] == "paper"
    assert parent.data.params == {"study.num_samples": "2", "study.sampler": "tpe", "search.metric": "eval_loss"}
    assert client.download_artifacts(parent_id, "study.yaml", str(tmp_path)) and (
        tmp_path / "study.yaml"
    ).read_text() == ("study:\n  num_samples: 2\n")
    assert json.loads(Path(client.download_artifacts(parent_id, "space.json", str(tmp_path))).read_text()) == {
        "optimizer.lr": "loguniform"
    }

    runs = tracker.trial_runs()
    assert sorted(runs) == ["t0", "t1"]
    child = client.get_run(runs["t1"]["run_id"])
    assert child.info.run_name == "paper/t1"
    assert child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.tags["qstudy.trial_id"] == "t1" and child.data.tags["qstudy.status"] == "completed"
    params = child.data.params
    # The whole config dotted: every setting once, under its full name, searched or not.
    assert {k: params[k] for k in SEARCHED} == {
        "optimizer.lr": "0.003", "optimizer.quantum_weight": "0.5", "quantum.n_qubits": "4", "quantum.circuit_depth": "2"
    }  # fmt: skip
    assert params["quantum.enabled"] == "True" and params["seed"] == "0"
    assert not {"lr", "quantum_weight", "n_qubits", "circuit_depth"} & set(params)  # no short second names
    assert child.data.metrics == {"train_loss": 2.0, "timing/tokens_per_s": 123.0}
    saved = json.loads(
        Path(client.download_artifacts(runs["t1"]["run_id"], "trial_config.json", str(tmp_path))).read_text()
    )
    assert saved["optimizer"] == {"lr": 3e-3, "quantum_weight": 0.5}


def test_each_setting_is_one_param_under_its_dotted_name(new_tracker):
    tracker = new_tracker()
    tracker.start_study({}, {})
    config = {"seed": 0, "quantum": {"n_qubits": 4}, "optimizer": {"n_qubits": 2, "lr": 0.1}, "train": {"seed": 7}}
    searched = {"quantum.n_qubits": 4, "optimizer.n_qubits": 2, "optimizer.lr": 0.1, "train.seed": 7, "data.extra": 1}
    tracker.start_trial("t0", searched, config)
    params = tracker.trial_runs()["t0"]["params"]
    assert params == {
        "seed": "0",
        "quantum.n_qubits": "4",
        "optimizer.n_qubits": "2",
        "optimizer.lr": "0.1",
        "train.seed": "7",
        "data.extra": "1",
    }  # a searched key the config lacks is logged too


def test_resume_reuses_parent_and_trial_runs(new_tracker):
    first = new_tracker()
    parent_id = first.start_study({"study": {"num_samples": 2}}, {"study.yaml": "v1"})
    run_t0 = first.start_trial("t0", SEARCHED, CONFIG)
    first.end_trial("t0", "failed", error="worker died")
    first.start_trial("t1", SEARCHED, CONFIG)
    first.finish_study(None, "interrupted", status="KILLED")

    second = new_tracker()  # the re-run driver
    assert second.start_study({"study": {"num_samples": 4}}, {"study.yaml": "v2"}) == parent_id
    assert second.start_trial("t0", SEARCHED, CONFIG) == run_t0
    second.start_trial("t1", SEARCHED, CONFIG)
    second.start_trial("t2", SEARCHED, CONFIG)

    runs = _runs(second)
    parents = [r for r in runs if r.data.tags.get("qstudy.role") == "study"]
    children = sorted(r.data.tags["qstudy.trial_id"] for r in runs if "qstudy.trial_id" in r.data.tags)
    assert len(parents) == 1 and children == ["t0", "t1", "t2"]
    parent = parents[0]
    assert parent.info.status == "RUNNING" and parent.data.tags["qstudy.status"] == "running"
    # MLflow params cannot change: the first value stays, the change is named in a tag.
    assert parent.data.params["study.num_samples"] == "2"
    assert parent.data.tags["qstudy.changed_params"] == "study.num_samples"
    t0 = second.mlflow_client.get_run(run_t0)
    assert t0.info.status == "RUNNING" and t0.data.tags["qstudy.status"] == "running"
    assert "qstudy.error" not in t0.data.tags  # the failed attempt's error is gone with it


def test_trial_cannot_change_its_config(new_tracker):
    tracker = new_tracker()
    tracker.start_study({}, {})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    changed = {**CONFIG, "optimizer": {**CONFIG["optimizer"], "lr": 0.1}}
    with pytest.raises(TrackingError, match=r"trial paper/t0: .*optimizer\.lr: logged '0\.003', got '0\.1'") as err:
        tracker.start_trial("t0", {**SEARCHED, "optimizer.lr": 0.1}, changed)
    assert isinstance(err.value, QStudyError)


@pytest.mark.parametrize("restart", ["same driver", "new driver"])
def test_repeated_steps_are_logged_once(new_tracker, restart):
    tracker = new_tracker()
    tracker.start_study({}, {})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    for step in range(1, 6):
        tracker.log_metrics("t0", {"train_loss": 10.0 + step}, step=step)
    if restart == "new driver":
        tracker = new_tracker()
        tracker.start_study({}, {})
        tracker.start_trial("t0", SEARCHED, CONFIG)
    # A worker restarted from the checkpoint at step 2: steps 3..5 come again, other values.
    for step in range(3, 9):
        tracker.log_metrics("t0", {"train_loss": 20.0 + step}, step=step)

    history = _history(tracker, "t0", "train_loss")
    assert [s for s, _ in history] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [v for _, v in history] == [11.0, 12.0, 13.0, 14.0, 15.0, 26.0, 27.0, 28.0]


def test_dedup_is_per_metric(new_tracker):
    tracker = new_tracker()
    tracker.start_study({}, {})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    tracker.log_metrics("t0", {"train_loss": 1.0}, step=15)
    tracker.log_metrics("t0", {"eval_loss": 2.0, "train_loss": 9.0}, step=15)  # eval reported separately
    assert _history(tracker, "t0", "eval_loss") == [(15, 2.0)]
    assert _history(tracker, "t0", "train_loss") == [(15, 1.0)]


def test_log_metrics_keeps_numbers_only(new_tracker):
    tracker = new_tracker()
    tracker.start_study({}, {})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    tracker.log_metrics(
        "t0",
        {
            "train_loss": np.float32(0.5), "step": 3, "accuracy": 1,
            "nan_loss": float("nan"), "inf_loss": float("inf"),
            "done": True, "date": "2026-11-25", "checkpoint_path": None, "config": {"lr": 0.1},
            "acc@1": 0.25,
        },
        step=3,
    )  # fmt: skip
    metrics = tracker.trial_runs()["t0"]["metrics"]
    assert sorted(metrics) == ["acc_1", "accuracy", "inf_loss", "nan_loss", "step", "train_loss"]
    assert metrics["train_loss"] == 0.5 and metrics["step"] == 3.0 and metrics["acc_1"] == 0.25
    assert math.isnan(metrics["nan_loss"]) and math.isnan(metrics["inf_loss"])


def test_long_param_values_are_truncated_with_a_marker(new_tracker):
    tracker = new_tracker()
    tracker.start_study({"space": "x" * 7000, "layers": list(range(3))}, {})
    params = tracker.mlflow_client.get_run(tracker.parent_run_id).data.params
    assert len(params["space"]) == 6000 and params["space"].endswith("...[truncated]")
    assert params["layers"] == "[0, 1, 2]"
    tracker.start_study({"space": "x" * 7000, "layers": list(range(3))}, {})  # reuse: no error, no change
    assert "qstudy.changed_params" not in tracker.mlflow_client.get_run(tracker.parent_run_id).data.tags


def test_close_orphans_kills_running_trials_except_kept(new_tracker):
    killed_driver = new_tracker()
    killed_driver.start_study({}, {})
    for trial_id in ("t0", "t1", "t2"):
        killed_driver.start_trial(trial_id, SEARCHED, CONFIG)
    killed_driver.end_trial("t2", "completed")

    tracker = new_tracker()
    tracker.start_study({}, {})
    assert tracker.close_orphans(keep={"t1"}) == ["t0"]
    runs = tracker.trial_runs()
    assert (runs["t0"]["run_status"], runs["t0"]["status"]) == ("KILLED", "killed")
    assert (runs["t1"]["run_status"], runs["t1"]["status"]) == ("RUNNING", "running")
    assert (runs["t2"]["run_status"], runs["t2"]["status"]) == ("FINISHED", "completed")
    assert tracker.close_orphans(keep={"t1"}) == []


@pytest.mark.parametrize(
    ("status", "run_status"),
    [
        ("completed", "FINISHED"),
        ("pruned", "FINISHED"),
        ("diverged", "FINISHED"),
        ("failed", "FAILED"),
        ("killed", "KILLED"),
    ],
)
def test_end_trial_status_maps_to_mlflow_status(new_tracker, status, run_status):
    tracker = new_tracker()
    tracker.start_study({}, {})
    run_id = tracker.start_trial("t0", SEARCHED, CONFIG)
    tracker.end_trial("t0", status, error="E" * 9000 if status == "failed" else None)
    run = tracker.mlflow_client.get_run(run_id)
    assert (run.info.status, run.data.tags["qstudy.status"]) == (run_status, status)
    assert run.info.end_time is not None
    if status == "failed":
        assert len(run.data.tags["qstudy.error"]) == 8000 and run.data.tags["qstudy.error"].endswith("...[truncated]")


def test_bad_calls_name_the_problem(new_tracker):
    tracker = new_tracker()
    with pytest.raises(TrackingError, match=r"study 'paper': no parent run: call start_study first"):
        tracker.start_trial("t0", SEARCHED, CONFIG)
    tracker.start_study({}, {})
    with pytest.raises(TrackingError, match=r"trial paper/t9: no MLflow run: call start_trial first"):
        tracker.log_metrics("t9", {"train_loss": 1.0}, step=1)
    tracker.start_trial("t0", SEARCHED, CONFIG)
    with pytest.raises(TrackingError, match=r"status must be one of \['completed', .*'killed'\], got 'done'"):
        tracker.end_trial("t0", "done")
    with pytest.raises(TrackingError, match=r"status must be one of \['FINISHED', 'FAILED', 'KILLED'\], got 'ok'"):
        tracker.finish_study(None, "", status="ok")
    with pytest.raises(
        TrackingError, match=r"best must have keys trial_id, metric, value .*got keys \['eval_loss', 'trial'\]"
    ):
        tracker.finish_study({"trial": "t0", "eval_loss": 0.5}, "")


def test_finish_study_records_best_and_summary(new_tracker, tmp_path):
    tracker = new_tracker()
    parent_id = tracker.start_study({}, {})
    for trial_id in ("t0", "t1"):
        tracker.start_trial(trial_id, SEARCHED, CONFIG)
        tracker.end_trial(trial_id, "completed")
    best = {
        "trial_id": "t1",
        "metric": "eval_loss",
        "value": 0.25,
        "params": {"lr": 3e-3},
        "metrics": {"accuracy": 0.5},
    }
    tracker.finish_study(best, "trial  eval_loss\nt1     0.25\n")

    parent = tracker.mlflow_client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics == {"best_eval_loss": 0.25, "best_accuracy": 0.5}
    assert "mlflow.note.content" not in parent.data.tags  # no description given: none set
    tags = parent.data.tags
    assert (tags["qstudy.best_trial_id"], tags["qstudy.best_metric"], tags["qstudy.best.lr"]) == (
        "t1",
        "eval_loss",
        "0.003",
    )
    assert tags["qstudy.best_run_id"] == tracker.trial_runs()["t1"]["run_id"]
    summary = Path(tracker.mlflow_client.download_artifacts(parent_id, "summary.txt", str(tmp_path))).read_text()
    assert summary == "trial  eval_loss\nt1     0.25\n"


def test_the_report_section_follows_the_sweeps_description_and_outlives_a_resumed_sweep(new_tracker):
    tracker = new_tracker()
    parent_id = tracker.start_study({}, {})
    tracker.finish_study(None, "", description="## Study `paper`\n\n| trial | loss |\n|---|---|\n| t0 | 0.5 |")
    note = lambda: tracker.mlflow_client.get_run(parent_id).data.tags["mlflow.note.content"]  # noqa: E731

    tracker.set_report_description("first report")
    assert (
        note()
        == "## Study `paper`\n\n| trial | loss |\n|---|---|\n| t0 | 0.5 |\n\n## The report (`qstudy report`)\n\nfirst report"
    )
    tracker.set_report_description("second report")
    assert (
        note().count("## The report") == 1
        and note().endswith("second report")
        and note().startswith("## Study `paper`")
    )

    tracker.finish_study(None, "", description="## Study `paper`, resumed")  # a resumed sweep keeps the report
    assert note() == "## Study `paper`, resumed\n\n## The report (`qstudy report`)\n\nsecond report"
    long_table = "## Study `paper`\n\n" + "\n".join(f"| t{i} | {i} |" for i in range(2000))
    tracker.finish_study(None, "", description=long_table[:7990])
    tracker.set_report_description("report " * 300)
    text = note()
    assert len(text) <= 8000 and text.startswith("## Study `paper`") and text.rstrip().endswith("report")
    assert "the whole trial table is artifact `summary.txt`" in text


def test_sqlite_artifacts_live_beside_the_database(new_tracker, store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not where the artifacts go
    tracker = new_tracker()
    tracker.start_study({}, {"study.yaml": "x"})
    db_dir = Path(store[len("sqlite:///") :]).parent
    uri = tracker.mlflow_client.get_run(tracker.parent_run_id).info.artifact_uri
    assert uri.startswith((db_dir / "mlartifacts").as_uri() + "/")
    assert list(tmp_path.iterdir()) == []


def test_string_results_become_trial_tags_once(new_tracker):
    """The driver's TrackingCallback puts a trial's ``worker_nodes`` on its run as the tag
    ``qstudy.worker_nodes``, writing again only when it changes (a restart on new nodes)."""
    from types import SimpleNamespace

    from qstudy.study._callbacks import TrackingCallback
    from qstudy.study._searcher import TRIAL_ID_KEY

    tracker = new_tracker()
    tracker.start_study({}, {})
    writes = []
    tag_trial = tracker.tag_trial
    tracker.tag_trial = lambda tid, tags: (writes.append(dict(tags)), tag_trial(tid, tags))
    callback = TrackingCallback(tracker, lambda values: CONFIG)
    trial = SimpleNamespace(config={TRIAL_ID_KEY: "trial_0000", "optimizer.lr": 3e-3}, trial_id="x")
    callback.on_trial_start(0, [], trial)
    for step, nodes in [(1, "node-a"), (2, "node-a"), (3, "node-a,node-b")]:
        callback.on_trial_result(0, [], trial, {"step": step, "train_loss": 1.0 / step, "worker_nodes": nodes})
    run = tracker.mlflow_client.get_run(tracker.trial_runs()["trial_0000"]["run_id"])
    assert run.data.tags["qstudy.worker_nodes"] == "node-a,node-b"
    assert writes == [{"qstudy.worker_nodes": "node-a"}, {"qstudy.worker_nodes": "node-a,node-b"}]
    assert "worker_nodes" not in run.data.metrics


def test_logged_trial_ids_reads_without_writing(new_tracker):
    tracker = new_tracker()
    assert tracker.logged_trial_ids() == set() and _runs(tracker) == []  # no parent run created
    tracker.start_study({"study": "paper"}, {})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    tracker.end_trial("t0", "completed")
    assert new_tracker().logged_trial_ids() == {"t0"}  # a fresh driver, before its start_study
    assert new_tracker("other").logged_trial_ids() == set()


def test_a_comparison_trial_carries_its_arm_as_param_and_tag(new_tracker):
    """The driver's TrackingCallback hands the arm the searcher put in the Tune config to
    the tracker: param ``arm`` (compare and group by it in the UI), tag ``qstudy.arm``."""
    from types import SimpleNamespace

    from qstudy.study._callbacks import TrackingCallback
    from qstudy.study._searcher import ARM_KEY, TRIAL_ID_KEY

    tracker = new_tracker()
    tracker.start_study({}, {})
    seen = []
    callback = TrackingCallback(tracker, lambda values: (seen.append(values), {**CONFIG, **values})[1])
    config = {TRIAL_ID_KEY: "trial_0001", ARM_KEY: "sgd", "seed": 1, "qstudy": {}}
    callback.on_trial_start(0, [], SimpleNamespace(config=config, trial_id="x"))
    assert seen == [{"seed": 1}]  # the arm is not a trial setting
    run = tracker.mlflow_client.get_run(tracker.trial_runs()["trial_0001"]["run_id"])
    assert run.data.params["arm"] == "sgd" and run.data.tags["qstudy.arm"] == "sgd"
    assert run.data.params["seed"] == "1"
    # A resumed driver starts the trial again with the same arm: the same run, no conflict.
    tracker.end_trial("trial_0001", "failed")
    again = new_tracker()
    again.start_study({}, {})
    assert again.start_trial("trial_0001", {"seed": 1}, {**CONFIG, "seed": 1}, arm="sgd") == run.info.run_id
    # A search trial has no arm.
    tracker.start_trial("trial_0002", SEARCHED, CONFIG)
    plain = tracker.mlflow_client.get_run(tracker.trial_runs()["trial_0002"]["run_id"])
    assert "arm" not in plain.data.params and "qstudy.arm" not in plain.data.tags


def test_a_confirm_trial_carries_its_arm_and_phase(new_tracker):
    """A confirm trial's Tune config carries its arm and phase: param ``arm``, tags
    ``qstudy.arm`` and ``qstudy.phase``; neither is a trial setting."""
    from types import SimpleNamespace

    from qstudy.study._callbacks import TrackingCallback
    from qstudy.study._searcher import ARM_KEY, PHASE_KEY, TRIAL_ID_KEY

    tracker = new_tracker()
    tracker.start_study({}, {})
    seen = []
    callback = TrackingCallback(tracker, lambda values: (seen.append(values), {**CONFIG, **values})[1])
    config = {
        TRIAL_ID_KEY: "trial_0004",
        ARM_KEY: "top_1",
        PHASE_KEY: "confirm",
        "seed": 101,
        "qstudy": {},
    }
    callback.on_trial_start(0, [], SimpleNamespace(config=config, trial_id="x"))
    assert seen == [{"seed": 101}]
    run = tracker.mlflow_client.get_run(tracker.trial_runs()["trial_0004"]["run_id"])
    assert (run.data.params["arm"], run.data.tags["qstudy.arm"], run.data.tags["qstudy.phase"]) == (
        "top_1",
        "top_1",
        "confirm",
    )
    assert "phase" not in run.data.params


def test_objective_is_logged_first_and_groups_after_the_top_level(store):
    tracker = StudyTracker(store, "ordered", "paper", objective="eval_loss")
    tracker.start_study({}, {})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    tracker.log_metrics("t0", {"resumed_from_step": 0, "step_time_s": 0.5, "train_loss": 2.0, "eval_loss": 1.5}, step=3)
    run = tracker.mlflow_client.get_run(tracker.trial_runs()["t0"]["run_id"])
    # MLflow's compare view plots the first metric the run lists: the store keeps the order logged.
    assert list(run.data.metrics) == ["eval_loss", "train_loss", "timing/step_time_s", "trial/resumed_from_step"]
    assert tracker.mlflow_client.get_run(tracker.parent_run_id).data.tags["qstudy.objective"] == "eval_loss"


def test_experiment_is_model_development_and_shares_the_study_view(store):
    client = MlflowClient(absolute_tracking_uri(store))
    old = client.create_experiment("older", tags={"mlflow.experimentKind": "genai_development_inferred"})
    client.create_experiment("picked", tags={"mlflow.experimentKind": "genai_development"})
    tracker = StudyTracker(store, "older", "paper", objective="eval_loss")
    assert tracker.experiment_id == old
    assert (
        client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    )  # the UI's guess replaced
    StudyTracker(store, "picked", "paper")
    assert client.get_experiment_by_name("picked").tags["mlflow.experimentKind"] == "genai_development"  # a choice kept
    fresh = StudyTracker(store, "fresh", "paper")
    assert client.get_experiment(fresh.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"

    key = tracker.share_view(["optimizer.quantum_weight", "quantum.n_qubits"])
    assert key == "qstudy-paper"
    state = json.loads(client.get_experiment(old).tags["mlflow.sharedViewState.qstudy-paper"])
    assert state == {
        "searchFilter": "tags.`qstudy.study` = 'paper' AND tags.`qstudy.trial_id` LIKE '%'",
        "selectedColumns": ["params.`optimizer.quantum_weight`", "params.`quantum.n_qubits`", "metrics.`eval_loss`",
                            "tags.`qstudy.status`"],
        "runsHiddenMode": "SHOW_ALL", "orderByKey": "metrics.`eval_loss`", "orderByAsc": True,
    }  # fmt: skip
    # The filter the view applies finds the trials, not the parent run.
    tracker.start_study({}, {})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    found = client.search_runs([old], state["searchFilter"])
    assert [r.data.tags["qstudy.trial_id"] for r in found] == ["t0"]


def test_ui_links_point_at_the_ui_and_the_trials(store):
    tracker = StudyTracker(store, "links", "paper", objective="eval_loss")
    parent_id = tracker.start_study({}, {})
    for trial_id in ("t0", "t1", "t2"):
        tracker.start_trial(trial_id, SEARCHED, CONFIG)
    tracker.log_metrics("t0", {"eval_loss": 1.0}, step=1)
    tracker.log_metrics("t2", {"eval_loss": 2.0}, step=1)
    runs = tracker.trial_runs()
    eid = tracker.experiment_id
    key = tracker.share_view(list(SEARCHED))
    base = ui_base_url(store, port=5055)
    assert base == "http://127.0.0.1:5055" and ui_base_url("http://head:5000/") == "http://head:5000"
    links = tracker.ui_links(base, key)
    assert (
        links["runs"] == f"{base}/#/experiments/{eid}/runs?workflowType=machine_learning&viewStateShareKey=qstudy-paper"
    )
    assert links["study"] == f"{base}/#/experiments/{eid}/runs/{parent_id}?workflowType=machine_learning"
    # t1 logged no objective: the compare view would drop the objective for every run.
    ids = "%2C".join(f"%22{runs[t]['run_id']}%22" for t in ("t0", "t2"))
    assert links["compare"] == (
        f"{base}/#/compare-runs?runs=%5B{ids}%5D&experiments=%5B%22{eid}%22%5D&workflowType=machine_learning"
    )
    # Read back without writing, as `qstudy ui` does: the same links.
    assert study_links(store, "links", "paper", base) == {"ui": base, **links}
    assert study_links(store, "no-such-experiment", "paper", base) == {"ui": base}
    assert MlflowClient(absolute_tracking_uri(store)).get_experiment_by_name("no-such-experiment") is None


def test_the_readmes_filters_find_trials_by_their_dotted_params(store):
    import mlflow
    from mlflow.exceptions import MlflowException

    tracker = StudyTracker(store, "filters", "smoke", objective="eval_loss")
    tracker.start_study({}, {})
    for trial_id, weight in (("trial_0000", 0.0), ("trial_0001", 0.5)):
        tracker.start_trial(
            trial_id,
            {"optimizer.quantum_weight": weight},
            {**CONFIG, "optimizer": {"lr": 3e-3, "quantum_weight": weight}},
        )
        tracker.log_metrics(trial_id, {"eval_loss": 1 + weight, "step_time_s": 0.1}, step=1)
    found = tracker.mlflow_client.search_runs(
        [tracker.experiment_id],
        "tags.`qstudy.study` = 'smoke' and params.`optimizer.quantum_weight` = '0.5' and metrics.eval_loss < 9",
    )
    assert [r.data.tags["qstudy.trial_id"] for r in found] == ["trial_0001"]
    found = tracker.mlflow_client.search_runs([tracker.experiment_id], "params.\"optimizer.quantum_weight\" != '0.5'")
    assert [r.data.tags["qstudy.trial_id"] for r in found] == ["trial_0000"]
    with pytest.raises(MlflowException, match="Expected a quoted string value for parameter"):
        tracker.mlflow_client.search_runs([tracker.experiment_id], 'params."optimizer.quantum_weight" > 0.3')
    with pytest.raises(MlflowException, match="Invalid comparator '>'"):
        tracker.mlflow_client.search_runs([tracker.experiment_id], "params.\"optimizer.quantum_weight\" > '0.3'")
    mlflow.set_tracking_uri(tracker.tracking_uri)
    try:
        runs = mlflow.search_runs(
            experiment_names=["filters"],
            filter_string="tags.`qstudy.study` = 'smoke' and tags.`qstudy.trial_id` LIKE 'trial_%'",
            order_by=["metrics.eval_loss ASC"],
        )
    finally:
        mlflow.set_tracking_uri(None)
    runs = runs[runs["params.optimizer.quantum_weight"].astype(float) > 0.3]
    assert list(runs["tags.qstudy.trial_id"]) == ["trial_0001"]
    assert list(runs["metrics.timing/step_time_s"]) == [0.1]


def test_every_ended_trial_status_has_its_mlflow_run_status():
    from qstudy.config import ENDED_STATUSES
    from qstudy.tracking import TRIAL_STATUSES

    assert set(TRIAL_STATUSES) == set(ENDED_STATUSES)
    assert set(TRIAL_STATUSES.values()) <= {"FINISHED", "FAILED", "KILLED"}  # MLflow's terminal RunStatus names


def test_a_trial_run_is_named_as_tune_names_the_trial(new_tracker):
    from qstudy.tracking import trial_name, trial_run_name

    tracker = new_tracker()
    tracker.start_study({}, {})
    run_id = tracker.start_trial(trial_name(4), SEARCHED, CONFIG)
    assert tracker.mlflow_client.get_run(run_id).info.run_name == trial_run_name(tracker.study, trial_name(4))
