"""The checkpoints of a one-worker trial trained in its Tune trial's process, without a Ray
cluster: numbered in report order, the newest resumed, only the newest kept, and nothing
half-written or unreported ever resumed from."""

import json

import pytest

from qstudy.train._checkpoint import FINAL_STATUS, ended_metrics, report_final_status
from qstudy.train._session import TrialProcessSession


@pytest.fixture
def tune_reports(monkeypatch):
    import ray.tune

    reports = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics: reports.append(metrics))
    return reports


def _write(session, step, reported=True):
    with session.checkpoint_directory(step) as (directory, report):
        with open(f"{directory}/shard", "w") as f:
            f.write(str(step))
        if reported:
            report({"step": step})


def _step_of(checkpoint) -> int:
    with checkpoint.as_directory() as directory, open(f"{directory}/shard") as f:
        return int(f.read())


def test_checkpoints_are_numbered_in_report_order_and_the_newest_is_resumed(tmp_path, tune_reports):
    session = TrialProcessSession(tmp_path / "trial", keep=3)
    assert session.get_checkpoint() is None
    for step in (2, 4, 6):
        _write(session, step)
    assert sorted(p.name for p in (tmp_path / "trial").iterdir()) == [
        "checkpoint_000001",
        "checkpoint_000002",
        "checkpoint_000003",
    ]
    assert _step_of(session.get_checkpoint()) == 6
    assert [r["step"] for r in tune_reports] == [2, 4, 6]
    assert tune_reports[-1]["checkpoint_path"] == str(tmp_path / "trial" / "checkpoint_000003")
    # A retried trial (a new session on the same folder) resumes from the same one.
    assert _step_of(TrialProcessSession(tmp_path / "trial", keep=3).get_checkpoint()) == 6


def test_only_the_newest_keep_checkpoints_are_kept(tmp_path, tune_reports):
    session = TrialProcessSession(tmp_path / "trial", keep=2)
    for step in range(1, 6):
        _write(session, step)
    assert sorted(p.name for p in (tmp_path / "trial").iterdir()) == ["checkpoint_000004", "checkpoint_000005"]
    assert _step_of(session.get_checkpoint()) == 5


def test_an_unreported_or_failed_write_is_never_resumed_from(tmp_path, tune_reports):
    session = TrialProcessSession(tmp_path / "trial", keep=3)
    _write(session, 2)
    _write(session, 4, reported=False)
    with pytest.raises(OSError), session.checkpoint_directory(6):
        raise OSError("disk full")
    assert [p.name for p in (tmp_path / "trial").iterdir()] == ["checkpoint_000001"]
    assert _step_of(session.get_checkpoint()) == 2


def test_a_folder_a_killed_process_left_half_written_is_removed(tmp_path, tune_reports):
    session = TrialProcessSession(tmp_path / "trial", keep=3)
    _write(session, 2)
    (tmp_path / "trial" / "checkpoint_000002.partial").mkdir()  # killed while writing
    again = TrialProcessSession(tmp_path / "trial", keep=3)
    assert [p.name for p in (tmp_path / "trial").iterdir()] == ["checkpoint_000001"]
    assert _step_of(again.get_checkpoint()) == 2


def test_a_status_only_final_checkpoint_is_the_newest_and_hands_its_metrics_on(tmp_path, tune_reports):
    session = TrialProcessSession(tmp_path / "trial", keep=3)
    _write(session, 2)
    metrics = {"step": 3, "train_loss": float("nan"), "status": "diverged"}
    report_final_status(session, metrics)
    newest = session.get_checkpoint()
    with newest.as_directory() as directory:
        assert sorted(p.name for p in (tmp_path / "trial" / "checkpoint_000002").iterdir()) == [FINAL_STATUS]
        assert json.load(open(f"{directory}/{FINAL_STATUS}"))["status"] == "diverged"
    assert ended_metrics(newest)["step"] == 3
    assert tune_reports[-1]["status"] == "diverged"
