"""One driver per study, and an MLflow store that agrees with the Optuna study: `qstudy
sweep` with a real local Ray, DeepSpeed on CPU, Optuna and MLflow in SQLite."""

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration

# Two short trials at once: enough for a study that is running when a second driver
# starts, and for a finished study whose store can be taken away.
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
        assert [
            m.step for m in sorted(client.get_metric_history(run.info.run_id, "eval_loss"), key=lambda m: m.step)
        ] == [2, 4]
    assert _optuna_states(tmp_path, "twice") == ["COMPLETE", "COMPLETE"]


_SNAPSHOT = """
import json, sys
sys.path.insert(0, sys.argv[3])
from _studies import study_runs
from pathlib import Path
tmp_path, name = Path(sys.argv[1]), sys.argv[2]
client, parents, children = study_runs(tmp_path, name)
trials = {}
for run in children:
    run_id = run.info.run_id
    config = client.download_artifacts(run_id, "trial_config.json", str(tmp_path / "artifacts" / run_id))
    trials[run.data.tags["qstudy.trial_id"]] = {
        "run": [run.info.run_name, run.info.status],
        "params": dict(run.data.params),
        "tags": {k: v for k, v in run.data.tags.items() if k.startswith("qstudy.")},
        "metrics": {k: sorted([m.step, m.value] for m in client.get_metric_history(run_id, k)) for k in run.data.metrics},
        "config": json.loads(open(config).read()),
    }
print(json.dumps({"parents": [dict(run.data.tags) for run in parents], "trials": trials}))
"""


def _snapshot(tmp_path, name):
    """What the MLflow store holds of the study: the parent runs' tags and, per trial, run
    name and status, params, tags, every metric's history and the config artifact.

    Read in a fresh process: MLflow keeps one SQLAlchemy engine per URI for the life of a
    process, and its pooled connection would go on reading a deleted database file.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT, str(tmp_path), name, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_study_whose_mlflow_store_was_deleted_is_logged_again(tmp_path):
    path = write_study(tmp_path, "lost", **_TINY)
    out, _ = sweep(path, tmp_path).communicate(timeout=900)
    assert "study lost: 2/2 trials" in out, out[-4000:]
    logged = _snapshot(tmp_path, "lost")["trials"]
    assert sorted(logged) == ["trial_0000", "trial_0001"]
    tune_runs = sorted((tmp_path / "runs" / "lost" / "tune").iterdir())

    (tmp_path / "mlruns.db").unlink()
    shutil.rmtree(tmp_path / "mlartifacts")
    again = sweep(path, tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-4000:]
    store = _snapshot(tmp_path, "lost")
    relogged = store["trials"]
    assert sorted(relogged) == sorted(logged)
    for trial_id, record in relogged.items():
        source = record["tags"].pop("qstudy.relogged_from")
        assert source == str(tune_runs[0] / trial_id)
    assert relogged == logged
    assert "study lost: re-logged 2 finished trial(s) missing from" in out
    assert sorted((tmp_path / "runs" / "lost" / "tune").iterdir()) == tune_runs  # no trial ran again
    assert len(store["parents"]) == 1 and store["parents"][0]["qstudy.best_trial_id"] in logged

    # The other way round: the Optuna study lost while the store remains. New trials would
    # reuse the old runs' ids: refused before any run is written.
    optuna_db = tmp_path / "runs" / "lost" / "optuna.db"
    kept, before = optuna_db.read_bytes(), _snapshot(tmp_path, "lost")
    optuna_db.unlink()
    refused = sweep(path, tmp_path)
    out, _ = refused.communicate(timeout=600)
    assert refused.returncode == 2, out[-4000:]
    assert out.splitlines()[-1] == (
        f"qstudy: error: study lost: the MLflow store sqlite:///{tmp_path / 'mlruns.db'} holds runs of trial_0000, "
        f"trial_0001, which the Optuna study sqlite:///{optuna_db} has no trial of (it was deleted or replaced); new "
        "trials would reuse their ids. To keep the study, restore its Optuna storage; to start it afresh, give the "
        "study a new name or point tracking.uri at another store"
    )
    assert _snapshot(tmp_path, "lost") == before
    optuna_db.write_bytes(kept)

    # Without the Tune results there is nothing faithful to log from: refused, and the
    # new store gets no runs.
    (tmp_path / "mlruns.db").unlink()
    shutil.rmtree(tmp_path / "runs" / "lost" / "tune")
    refused = sweep(path, tmp_path)
    out, _ = refused.communicate(timeout=600)
    assert refused.returncode == 2, out[-4000:]
    message = out.splitlines()[-1]
    assert message.startswith(
        f"qstudy: error: study lost: the MLflow store sqlite:///{tmp_path / 'mlruns.db'} holds no run of "
        f"trial_0000, trial_0001, which the Optuna study sqlite:///{tmp_path / 'runs' / 'lost' / 'optuna.db'} "
        "holds as finished, and their Tune results cannot re-log them faithfully (trial_0000: no Tune results under "
    )
    assert message.endswith(
        f"to start it afresh, remove {tmp_path / 'runs' / 'lost'} (its Optuna study and Ray results) "
        "or give the study a new name"
    )
    assert _snapshot(tmp_path, "lost") == {"parents": [], "trials": {}}
