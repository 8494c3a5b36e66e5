"""One-worker study trials trained in their Tune trial's process (real Ray, Tune, DeepSpeed,
MLflow): they train exactly as the same trials in a Ray Train worker group, the process is
reused for the next trial, and a trial whose process is killed resumes from its newest
checkpoint where it stopped."""

import os
import signal
import time

import psutil
import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration

BASELINES = [{"optimizer.quantum_weight": 0.0}, {"optimizer.quantum_weight": 0.5}]


def _history(client, run, key):
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}


def _by_weight(children):
    return {r.data.params["optimizer.quantum_weight"]: r for r in children}


def _run(tmp_path, name, **over):
    path = write_study(tmp_path, name, num_samples=2, max_concurrent=1, baselines=BASELINES, **over)
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert f"study {name}: 2/2 trials" in out
    return study_runs(tmp_path, name)


def test_in_trial_trials_train_as_worker_group_trials_and_reuse_their_process(tmp_path):
    client, _, in_trial = _run(tmp_path, "intrial")
    _, _, grouped = _run(tmp_path, "grouped", **{"trial.resources.single_worker": "worker_group"})
    assert len(in_trial) == len(grouped) == 2
    for weight, run in _by_weight(in_trial).items():
        other = _by_weight(grouped)[weight]
        assert run.data.tags["qstudy.status"] == other.data.tags["qstudy.status"] == "completed"
        losses, expected = _history(client, run, "train_loss"), _history(client, other, "train_loss")
        assert sorted(losses) == sorted(expected) == list(range(1, 7))
        for step in expected:
            assert losses[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"qw {weight} step {step}"
        assert run.data.metrics["eval_loss"] == pytest.approx(other.data.metrics["eval_loss"], rel=1e-6)
    # The second trial ran in the first one's process: its imports were already done there.
    imports = sorted(r.data.metrics["timing/startup_imports_s"] for r in in_trial)
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


def test_a_killed_trial_process_resumes_exactly_where_it_stopped(tmp_path):
    """The trial's process SIGKILLed after a checkpoint: Tune retries the trial
    (resources.max_failures 1), which resumes from its newest checkpoint and logs the same
    per-step losses as the trial run uninterrupted (fp32, CPU)."""
    over = {
        "num_samples": 1,
        "max_concurrent": 1,
        "baselines": [{"optimizer.quantum_weight": 0.5}],
        "trial.train.max_steps": 30,
        "trial.train.eval_every_steps": 15,
        "trial.train.checkpoint_every_steps": 5,
        "trial.optimizer.response": "gaussian",
        "trial.optimizer.scope": "all",
        "trial.optimizer.warmup_steps": 20,
        "trial.resources.max_failures": 1,
    }
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole_dir.mkdir()
    killed_dir.mkdir()
    proc = sweep(write_study(whole_dir, "whole", **over), whole_dir)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]

    proc = sweep(write_study(killed_dir, "killed", **over), killed_dir)
    checkpoints = killed_dir / "runs" / "killed" / "trial_0000"
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

    whole_client, _, (whole,) = study_runs(whole_dir, "whole")
    killed_client, _, (resumed,) = study_runs(killed_dir, "killed")
    assert resumed.data.tags["qstudy.status"] == "completed"
    assert 5 <= resumed.data.metrics["trial/resumed_from_step"] < 30
    assert resumed.data.metrics["trial/resumed_from_step"] % 5 == 0
    expected, got = _history(whole_client, whole, "train_loss"), _history(killed_client, resumed, "train_loss")
    assert sorted(got) == sorted(expected) == list(range(1, 31))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), f"step {step}"
    assert resumed.data.metrics["eval_loss"] == pytest.approx(whole.data.metrics["eval_loss"], rel=1e-6)
    assert resumed.data.metrics["mean_train_loss"] == pytest.approx(sum(expected.values()) / 30, rel=1e-6)
