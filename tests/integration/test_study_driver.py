"""One driver per study: `qstudy sweep` with a real local Ray, DeepSpeed on CPU, Optuna
and MLflow in SQLite."""

import datetime
import json
import os
import signal
import socket
import subprocess
import time

import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration

# Two short trials at once: enough for a study that is running when a second driver starts.
_TINY = {"num_samples": 2, "max_concurrent": 2, "trial.train.max_steps": 4, "trial.train.eval_every_steps": 2}


def _optuna_states(tmp_path, name):
    import optuna

    db = tmp_path / "runs" / name / "optuna.db"
    if not db.exists():
        return []
    try:
        return [t.state.name for t in optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials]
    except Exception:  # the first driver is still creating the study's tables
        return []


def test_a_second_driver_of_a_running_study_is_refused(tmp_path):
    path = write_study(tmp_path, "twice", **_TINY)
    first = sweep(path, tmp_path, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None and "RUNNING" not in _optuna_states(tmp_path, "twice"):
        time.sleep(1)
    assert first.poll() is None, "the first driver ended before a trial ran: " + first.communicate()[0][-4000:]

    second = sweep(path, tmp_path, start_new_session=True)
    try:
        out, _ = second.communicate(timeout=120)  # refused at once; a driver that runs takes minutes
    except subprocess.TimeoutExpired:
        for proc in (second, first):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
            proc.communicate()
        pytest.fail("the second driver of a running study was not refused")
    assert second.returncode == 2, out[-4000:]
    holder = json.loads((tmp_path / "runs" / "twice" / "driver.lock").read_text())
    since = datetime.datetime.fromisoformat(holder["started"]).strftime("%H:%M")
    assert out.splitlines()[-1] == (
        f"qstudy: error: study twice is being run by pid {first.pid} on host {socket.gethostname()} "
        f"since {since} (runs/twice/driver.lock)"
    )

    out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-4000:]
    assert "study twice: 2/2 trials" in out
    client, parents, children = study_runs(tmp_path, "twice")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["qstudy.trial_id"] for r in children) == ["trial_0000", "trial_0001"]
    assert [(r.info.status, r.data.tags["qstudy.status"]) for r in children] == [("FINISHED", "completed")] * 2
    for run in children:
        assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "eval_loss"), key=lambda m: m.step)] == [2, 4]
    assert _optuna_states(tmp_path, "twice") == ["COMPLETE", "COMPLETE"]
