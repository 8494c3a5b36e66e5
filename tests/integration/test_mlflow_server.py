"""StudyTracker through a real `mlflow server` (the cluster setup: one server on the head
node, SQLite behind it) and the `qstudy ui` command on a local SQLite store."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient

from qstudy.tracking import StudyTracker, ui_command

pytestmark = pytest.mark.integration

CONFIG = {"seed": 0, "quantum": {"n_qubits": 4, "circuit_depth": 2}, "optimizer": {"lr": 3e-3, "quantum_weight": 0.5}}
SEARCHED = {"optimizer.lr": 3e-3, "optimizer.quantum_weight": 0.5}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _server(command: list[str], port: int, log: Path, cwd: Path, timeout_s: float = 60.0) -> Iterator[str]:
    """Run an MLflow server; stop it and only it (its own session: the uvicorn worker it
    spawns goes with it) on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after {timeout_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the process group this test created, nothing else
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_study_through_a_tracking_server(tmp_path):
    port = _free_port()
    db = f"sqlite:///{tmp_path}/server.db"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", db, "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with _server(command, port, tmp_path / "server.log", cwd=tmp_path) as url:
        driver = StudyTracker(url, "qstudy", "paper")
        parent_id = driver.start_study({"study": {"num_samples": 2}}, {"study.yaml": "study: {}\n"})
        for trial_id in ("t0", "t1"):
            driver.start_trial(trial_id, SEARCHED, CONFIG)
            for step in (1, 2, 3):
                driver.log_metrics(trial_id, {"train_loss": float(step), "eval_loss": math.nan}, step=step)
        driver.end_trial("t0", "completed")
        # The driver is killed here, t1 still RUNNING; the re-run resumes through the server.

        rerun = StudyTracker(url, "qstudy", "paper")
        assert rerun.start_study({"study": {"num_samples": 2}}, {"study.yaml": "study: {}\n"}) == parent_id
        assert rerun.close_orphans() == ["t1"]
        rerun.start_trial("t1", SEARCHED, CONFIG)
        for step in (2, 3, 4):  # restarted from the step-1 checkpoint
            rerun.log_metrics("t1", {"train_loss": 10.0 + step}, step=step)
        rerun.end_trial("t1", "diverged")
        rerun.finish_study({"trial_id": "t0", "metric": "train_loss", "value": 3.0}, "summary table")

        runs = rerun.trial_runs()
        assert {t: (r["status"], r["run_status"]) for t, r in runs.items()} == {
            "t0": ("completed", "FINISHED"),
            "t1": ("diverged", "FINISHED"),
        }
        assert runs["t0"]["params"]["optimizer.lr"] == "0.003" and runs["t0"]["params"]["quantum.n_qubits"] == "4"
        assert math.isnan(runs["t0"]["metrics"]["eval_loss"])
        client = MlflowClient(url)
        history = client.get_metric_history(runs["t1"]["run_id"], "train_loss")
        assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0)]
        config = Path(client.download_artifacts(runs["t1"]["run_id"], "trial_config.json", str(tmp_path)))
        assert json.loads(config.read_text()) == CONFIG
        all_runs = client.search_runs([rerun.experiment_id])
        assert len(all_runs) == 3  # one parent, one run per trial
        assert client.get_run(parent_id).data.metrics == {"best_train_loss": 3.0}

    # The server wrote where it was told: its SQLite file and artifact folder.
    stored = MlflowClient(db).search_runs([rerun.experiment_id])
    assert sorted(r.info.run_name for r in stored) == ["paper", "paper/t0", "paper/t1"]
    assert sorted(p.name for p in (tmp_path / "artifacts").rglob("*.*")) == [
        "study.yaml", "summary.txt", "trial_config.json", "trial_config.json"
    ]  # fmt: skip


def test_ui_command_serves_a_local_store(tmp_path):
    store = f"sqlite:///{tmp_path}/mlruns.db"
    tracker = StudyTracker(store, "qstudy", "paper")
    tracker.start_study({}, {"study.yaml": "study: {}\n"})
    tracker.start_trial("t0", SEARCHED, CONFIG)
    tracker.log_metrics("t0", {"train_loss": 0.5}, step=1)
    tracker.end_trial("t0", "completed")
    tracker.finish_study(None, "summary")

    port = _free_port()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with _server(ui_command(store, port=port), port, tmp_path / "ui.log", cwd=elsewhere) as url:
        client = MlflowClient(url)
        (run,) = client.search_runs([tracker.experiment_id], "attributes.run_name = 'paper/t0'")
        assert run.data.metrics == {"train_loss": 0.5}
        # Artifacts sit beside the database; the UI finds them from any directory.
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["trial_config.json"]
        text = Path(client.download_artifacts(tracker.parent_run_id, "study.yaml", str(tmp_path))).read_text()
        assert text == "study: {}\n"
