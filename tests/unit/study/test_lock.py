"""One driver per study: the output folder's flock, its message, and its takeover."""

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from qstudy.study._lock import DriverLock, StudyLockedError, _since


def test_a_second_holder_is_refused_with_the_holders_pid_host_and_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "qstudy_runs" / "smoke"
    with DriverLock("smoke", out) as first:
        assert first.held
        holder = json.loads((out / "driver.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        # flock locks belong to an open file, so a second open in this process conflicts too.
        with pytest.raises(StudyLockedError) as refused:
            DriverLock("smoke", out).acquire()
        since = datetime.datetime.fromisoformat(holder["started"]).strftime("%H:%M")
        assert str(refused.value) == (
            f"study smoke is being run by pid {os.getpid()} on host {socket.gethostname()} "
            f"since {since} (qstudy_runs/smoke/driver.lock)"
        )
    assert not first.held
    with DriverLock("smoke", out) as again:  # released on exit: free for the next driver
        assert again.held
    assert (out / "driver.lock").exists()  # kept: deleting a lock file races with its next opener


def test_outside_the_working_directory_the_lock_file_is_named_absolute(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = tmp_path / "runs" / "s"
    with DriverLock("s", out), pytest.raises(StudyLockedError, match=rf"\({out / 'driver.lock'}\)$"):
        DriverLock("s", out).acquire()


def test_a_lock_left_by_a_killed_driver_is_taken_over(tmp_path):
    out = tmp_path / "runs" / "smoke"
    script = textwrap.dedent(
        f"""
        import time
        from qstudy.study._lock import DriverLock
        DriverLock("smoke", {str(out)!r}).acquire()
        print("held", flush=True)
        time.sleep(600)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(StudyLockedError, match=f"study smoke is being run by pid {child.pid} on host "):
            DriverLock("smoke", out).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with DriverLock("smoke", out) as taken:  # the kernel dropped the dead driver's lock
        assert taken.held
        assert json.loads((out / "driver.lock").read_text())["pid"] == os.getpid()


def test_a_start_on_another_day_shows_its_date():
    now = datetime.datetime.now().astimezone()
    assert _since(now.isoformat()) == f"{now:%H:%M}"
    earlier = now - datetime.timedelta(days=3)
    assert _since(earlier.isoformat()) == f"{earlier:%Y-%m-%d %H:%M}"
    assert _since(None) == "?"


def test_sweep_of_a_locked_study_exits_2_before_ray_optuna_or_mlflow(tmp_path, monkeypatch, capsys):
    import qstudy.train
    from qstudy.cli import main

    def no_ray(*args, **kwargs):
        raise AssertionError("the refused driver started Ray")

    monkeypatch.setattr(qstudy.train, "init_ray", no_ray)
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "smoke.yaml"
    study.write_text(
        "name: smoke\nobjective: {metric: eval_loss, mode: min}\nnum_samples: 2\n"
        "space: {optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}}\n"
        "trial: {train: {max_steps: 4, eval_every_steps: 2}}\n"
        "tracking: {uri: sqlite:///mlruns.db}\nstorage_path: qstudy_runs\n"
    )
    with DriverLock("smoke", tmp_path / "qstudy_runs" / "smoke"):
        assert main(["sweep", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"qstudy: error: study smoke is being run by pid {os.getpid()} on host {socket.gethostname()} since "
    )
    assert err.rstrip().endswith("(qstudy_runs/smoke/driver.lock)")
    assert sorted(p.name for p in (tmp_path / "qstudy_runs" / "smoke").iterdir()) == ["driver.lock"]
    assert not (tmp_path / "mlruns.db").exists()
