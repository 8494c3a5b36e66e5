"""Studies end to end: `qstudy sweep` with a real local Ray, DeepSpeed on CPU, Optuna in
SQLite and an MLflow SQLite store."""

import os
import signal
import time

import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration


def test_three_trial_study_end_to_end(tmp_path):
    path = write_study(tmp_path, "e2e")
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert "study e2e: 3/3 trials" in out and "MLflow UI: qstudy ui" in out

    client, parents, children = study_runs(tmp_path, "e2e")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.info.run_name for r in children) == ["e2e/trial_0000", "e2e/trial_0001", "e2e/trial_0002"]
    for run in children:
        assert run.data.tags["qstudy.status"] == "completed"
        assert run.info.status == "FINISHED"
        assert len(run.data.tags["qstudy.worker_nodes"]) == 56  # one Ray node id (hex)
        assert "optimizer.quantum_weight" in run.data.params and "optimizer.lr" in run.data.params
        assert "quantum_weight" not in run.data.params  # one name per setting, the dotted one
        assert "timing/step_time_s" in run.data.metrics and "step_time_s" not in run.data.metrics
        history = client.get_metric_history(run.info.run_id, "eval_loss")
        assert [m.step for m in history] == sorted({m.step for m in history})  # once per step
        assert {3, 6} <= {m.step for m in history}
        assert client.get_metric_history(run.info.run_id, "train_loss")
    baseline = [r for r in children if r.info.run_name == "e2e/trial_0000"][0]
    assert float(baseline.data.params["optimizer.quantum_weight"]) == 0.0  # the AdamW control ran first
    best = parents[0].data.tags.get("qstudy.best_trial_id")
    assert best in {r.data.tags["qstudy.trial_id"] for r in children}

    import optuna

    ot = optuna.load_study(study_name="e2e", storage=f"sqlite:///{tmp_path / 'runs' / 'e2e' / 'optuna.db'}")
    assert [t.state.name for t in ot.trials] == ["COMPLETE"] * 3


def test_killed_driver_resumes_without_duplicates(tmp_path):
    path = write_study(
        tmp_path, "resume", num_samples=4, **{"trial.train.max_steps": 10, "trial.train.eval_every_steps": 5}
    )
    proc = sweep(path, tmp_path, start_new_session=True)
    optuna_db = tmp_path / "runs" / "resume" / "optuna.db"
    deadline = time.monotonic() + 600
    import optuna

    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        if optuna_db.exists():
            try:
                trials = optuna.load_study(study_name="resume", storage=f"sqlite:///{optuna_db}").trials
            except Exception:
                trials = []
            if any(t.state.name == "COMPLETE" for t in trials) and any(t.state.name == "RUNNING" for t in trials):
                os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
                killed = True
                break
        time.sleep(1)
    proc.communicate(timeout=60)
    assert killed, "the study ended before it could be interrupted"

    again = sweep(path, tmp_path)
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out[-4000:]
    assert "study resume: 4/4 trials" in out

    _, parents, children = study_runs(tmp_path, "resume")
    assert len(parents) == 1
    ids = [r.data.tags["qstudy.trial_id"] for r in children]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4
    states = {
        r.data.tags["qstudy.trial_id"]: (
            r.info.status,
            r.data.tags["qstudy.status"],
            r.data.tags.get("qstudy.error", "")[-600:],
        )
        for r in children
    }
    assert all(s[:2] == ("FINISHED", "completed") for s in states.values()), states
    trials = optuna.load_study(study_name="resume", storage=f"sqlite:///{optuna_db}").trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)


def test_asha_prunes_and_a_diverging_trial_does_not_stop_the_study(tmp_path):
    path = write_study(
        tmp_path,
        "asha",
        num_samples=4,
        max_concurrent=1,
        scheduler={"type": "asha", "grace_period": 2, "reduction_factor": 2},
        space={"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        baselines=[{"optimizer.lr": 1e-2}, {"optimizer.lr": 1e-4}, {"optimizer.lr": 1e30}],
        **{"trial.train.max_steps": 8, "trial.train.eval_every_steps": 2, "trial.train.log_every_steps": 2},
    )
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    _, _, children = study_runs(tmp_path, "asha")
    statuses = {r.data.tags["qstudy.trial_id"]: r.data.tags["qstudy.status"] for r in children}
    assert statuses["trial_0002"] == "diverged"
    assert "pruned" in statuses.values()
    import optuna

    trials = optuna.load_study(
        study_name="asha", storage=f"sqlite:///{tmp_path / 'runs' / 'asha' / 'optuna.db'}"
    ).trials
    states = {t.number: t.state.name for t in trials}
    assert states[2] == "FAIL"
    assert "PRUNED" in states.values()
    assert len(trials) == 4


def test_bad_study_file_touches_nothing(tmp_path):
    path = write_study(
        tmp_path,
        "bad",
        sampler={"type": "annealing"},
        space={"optimizer.quantum_weight": {"type": "float", "low": 2.0, "high": 1.0}},
    )
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"{path}: sampler.type:" in out and "annealing" in out
    assert f"{path}: space.optimizer.quantum_weight.high: must be >= low" in out
    assert not (tmp_path / "mlruns.db").exists()
    assert not (tmp_path / "runs").exists()


def test_a_stuck_trial_ends_as_failed_and_the_study_goes_on(tmp_path):
    # A 2 s limit: no trial can even start its workers in time, so each ends as failed.
    path = write_study(tmp_path, "stuck", num_samples=2, max_concurrent=1, trial_timeout_s=2)
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out[-4000:]  # every trial failed
    assert "study stuck: 2/2 trials" in out
    _, parents, children = study_runs(tmp_path, "stuck")
    assert len(parents) == 1 and len(children) == 2
    assert all(r.data.tags["qstudy.status"] == "failed" and r.info.status == "FAILED" for r in children)
    assert any("trial_timeout_s=2" in r.data.tags.get("qstudy.error", "") for r in children)
    import optuna

    trials = optuna.load_study(
        study_name="stuck", storage=f"sqlite:///{tmp_path / 'runs' / 'stuck' / 'optuna.db'}"
    ).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
