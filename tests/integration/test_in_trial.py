"""One-worker study trials trained in their Tune trial's process (real Ray, Tune, DeepSpeed,
MLflow): they train exactly as the same trials in a Ray Train worker group, the process is
reused for the next trial, and a trial whose process is killed resumes from its newest
checkpoint where it stopped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration

WORKER = Path(__file__).resolve().parent / "_in_trial_worker.py"

# Long enough to kill a trial between checkpoints; gaussian noise on every coordinate, so
# a resumed trial only matches if the noise, Adam's moments and the warm-up all continue.
TRIAL = {
    "trial.train.max_steps": 30,
    "trial.train.eval_every_steps": 15,
    "trial.train.checkpoint_every_steps": 5,
    "trial.optimizer.response": "gaussian",
    "trial.optimizer.scope": "all",
    "trial.optimizer.warmup_steps": 20,
    "trial.resources.max_failures": 1,
}


def _history(client, run, key):
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}


def _by_weight(children):
    return {r.data.params["optimizer.quantum_weight"]: r for r in children}


def _run(tmp_path, name, **over):
    """A study of two one-worker trials (λ 0 and 0.5), one at a time, in ``tmp_path/name``."""
    cwd = tmp_path / name
    cwd.mkdir()
    baselines = [{"optimizer.quantum_weight": 0.0}, {"optimizer.quantum_weight": 0.5}]
    path = write_study(cwd, name, num_samples=2, max_concurrent=1, baselines=baselines, **TRIAL, **over)
    proc = sweep(path, cwd)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert f"study {name}: 2/2 trials" in out
    return study_runs(cwd, name)


@pytest.fixture(scope="module")
def in_trial(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("in_trial"), "intrial")


def test_in_trial_trials_train_as_worker_group_trials_and_reuse_their_process(in_trial, tmp_path):
    client, _, children = in_trial
    grouped_client, _, grouped = _run(tmp_path, "grouped", **{"trial.resources.single_worker": "worker_group"})
    assert len(children) == len(grouped) == 2
    for weight, run in _by_weight(children).items():
        other = _by_weight(grouped)[weight]
        assert run.data.tags["qstudy.status"] == other.data.tags["qstudy.status"] == "completed"
        losses, expected = _history(client, run, "train_loss"), _history(grouped_client, other, "train_loss")
        assert sorted(losses) == sorted(expected) == list(range(1, 31))
        for step in expected:
            assert losses[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"qw {weight} step {step}"
        assert run.data.metrics["eval_loss"] == pytest.approx(other.data.metrics["eval_loss"], rel=1e-6)
    # The second trial ran in the first one's process: its imports were already done there.
    imports = sorted(r.data.metrics["timing/startup_imports_s"] for r in children)
    assert imports[0] < 0.5 < imports[1], imports
    # A worker group's trial starts its own worker process, whose imports it pays every time.
    assert all(r.data.metrics["timing/startup_imports_s"] > 0.5 for r in grouped)
    assert all(r.data.metrics["timing/startup_worker_entry_s"] > 0.5 for r in grouped)


def _trial_processes(root_pid):
    """The live Tune trial actor processes under ``root_pid`` (the sweep and the Ray it started)."""
    found = []
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            title = " ".join(child.cmdline())  # Ray's process title: ray::<actor class or name>.<method>
            if "ImplicitFunc" in title or "run_study_trial" in title:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_killed_trial_process_resumes_exactly_where_it_stopped(in_trial, tmp_path):
    """The trial's process SIGKILLed after a checkpoint: Tune retries the trial
    (resources.max_failures 1), which resumes from its newest checkpoint and logs the same
    per-step losses as the same trial run uninterrupted (λ 0.5 of ``in_trial``; fp32, CPU)."""
    client, _, children = in_trial
    whole = _by_weight(children)["0.5"]
    path = write_study(
        tmp_path, "killed", num_samples=1, max_concurrent=1, baselines=[{"optimizer.quantum_weight": 0.5}], **TRIAL
    )
    proc = sweep(path, tmp_path)
    checkpoints = tmp_path / "runs" / "killed" / "trial_0000"
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if checkpoints.is_dir() and any(p.name.startswith("checkpoint_") for p in checkpoints.iterdir()):
            pids = _trial_processes(proc.pid)
            if pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=900)
    assert killed is not None, "no checkpoint appeared before the trial ended"
    assert proc.returncode == 0, out[-4000:]

    killed_client, _, (resumed,) = study_runs(tmp_path, "killed")
    assert resumed.data.tags["qstudy.status"] == "completed"
    assert 5 <= resumed.data.metrics["trial/resumed_from_step"] < 30
    assert resumed.data.metrics["trial/resumed_from_step"] % 5 == 0
    expected, got = _history(client, whole, "train_loss"), _history(killed_client, resumed, "train_loss")
    assert sorted(got) == sorted(expected) == list(range(1, 31))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"step {step}"
    assert resumed.data.metrics["eval_loss"] == pytest.approx(whole.data.metrics["eval_loss"], rel=1e-6)
    assert resumed.data.metrics["mean_train_loss"] == pytest.approx(sum(expected.values()) / 30, rel=1e-6)


def test_a_finished_trial_frees_its_engine_and_model_for_the_next(tmp_path):
    """Two trials one after the other in one process, as a reused Tune trial process runs
    them: each trial's DeepSpeed engine and model are gone before the next starts (a GPU
    process would otherwise hold the last trial's model and optimizer states), and the
    second trial, the same config, repeats the first one's losses."""
    trial = Path(__file__).resolve().parents[2] / "search_spaces" / "trial_tiny.yaml"
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(trial), str(tmp_path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["freed"] == [[True, True], [True, True, True, True]]
    first, second = result["losses"]
    assert first and first.keys() == second.keys()
    for step in first:
        assert second[step] == pytest.approx(first[step], rel=1e-6, abs=1e-7), f"step {step}"
