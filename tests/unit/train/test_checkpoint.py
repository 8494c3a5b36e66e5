"""The checkpoint protocol of a trial's workers, without a Ray cluster: where a DeepSpeed
checkpoint is written, what it carries, and the status-only final checkpoint."""

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qstudy.train._checkpoint import (
    CHECKPOINT_TAG,
    FINAL_STATUS,
    TrainingState,
    ended_metrics,
    load_checkpoint,
    report_checkpoint,
    report_final_status,
)
from qstudy.train._session import TrainWorkerSession


class _Checkpoint:
    """A ``ray.train.Checkpoint`` of a local folder."""

    def __init__(self, directory):
        self.directory = str(directory)

    def as_directory(self):
        return contextlib.nullcontext(self.directory)


class _Engine:
    """Saves and loads a DeepSpeed ``client_state`` as JSON under its tag, as the engine does."""

    def __init__(self):
        self.calls = []

    def save_checkpoint(self, directory, tag, client_state):
        self.calls.append(("save", tag))
        (Path(directory) / tag).mkdir()
        (Path(directory) / tag / "client_state.json").write_text(json.dumps(client_state))

    def load_checkpoint(self, directory, tag):
        self.calls.append(("load", tag))
        return None, json.loads((Path(directory) / tag / "client_state.json").read_text())


@pytest.fixture
def local_storage(tmp_path, monkeypatch):
    """A Ray Train context of rank 1 of 2 whose run storage is ``tmp_path/run``; reports are collected."""
    import ray.train
    from pyarrow.fs import LocalFileSystem

    storage = SimpleNamespace(
        storage_filesystem=LocalFileSystem(),
        build_checkpoint_path_from_name=lambda name: str(tmp_path / "run" / name),
    )
    reports = []
    context = SimpleNamespace(get_storage=lambda: storage, get_world_rank=lambda: 1, get_world_size=lambda: 2)
    monkeypatch.setattr(ray.train, "get_context", lambda: context)
    monkeypatch.setattr(ray.train, "report", lambda metrics, **kwargs: reports.append((metrics, kwargs)))
    return reports


def test_checkpoints_are_written_in_place_on_the_run_storage(tmp_path, local_storage):
    """On a local or shared file system the ranks write the DeepSpeed checkpoint straight
    into the run's folder and report it in place: nothing is staged in the node's /tmp."""
    from ray.train import CheckpointUploadMode

    with TrainWorkerSession().checkpoint_directory(12) as (directory, report):
        assert directory == str(tmp_path / "run" / "checkpoint_step00000012")
        (tmp_path / "run" / "checkpoint_step00000012" / "shard").write_text("x")
        report({"step": 12})
    ((metrics, kwargs),) = local_storage
    assert metrics == {"step": 12}
    assert kwargs["checkpoint_upload_mode"] == CheckpointUploadMode.NO_UPLOAD
    assert kwargs["checkpoint_dir_name"] == "checkpoint_step00000012"
    assert kwargs["checkpoint"].path == directory and (tmp_path / "run" / "checkpoint_step00000012" / "shard").exists()


def test_a_checkpoint_carries_the_loop_state_and_the_rng_of_its_rank(tmp_path, local_storage):
    """What a restarted rank reads back is what it saved: step, initial metrics, reported
    metrics, the loss sum, and its RNG, so dropout and sampling go on as if never stopped."""
    engine = _Engine()
    state = TrainingState(step=6, initial={"initial_eval_loss": 3.5}, metrics={"step": 6}, train_loss_sum=12.25)
    torch.manual_seed(7)
    report_checkpoint(TrainWorkerSession(), engine, state, metrics={"step": 6, "eval_loss": 2.0})
    expected = torch.rand(3)  # the draws after the save
    folder = tmp_path / "run" / "checkpoint_step00000006"
    assert sorted(p.name for p in folder.iterdir()) == [CHECKPOINT_TAG, "rng_state_rank1.pt"]
    assert local_storage[0][0] == {"step": 6, "eval_loss": 2.0}

    torch.manual_seed(0)  # a restarted worker: another RNG state
    loaded = load_checkpoint(engine, _Checkpoint(folder), rank=1)
    assert loaded == state
    assert torch.equal(torch.rand(3), expected)
    assert engine.calls == [("save", "qstudy"), ("load", "qstudy")]


def test_a_checkpoint_of_another_worker_count_keeps_the_rng_and_defaults_missing_state(tmp_path):
    """Rank 2 of a restart on more workers finds no RNG file of its own; a client state
    without the newer keys reads as none."""
    (tmp_path / CHECKPOINT_TAG).mkdir()
    (tmp_path / CHECKPOINT_TAG / "client_state.json").write_text(json.dumps({"step": 4}))
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    loaded = load_checkpoint(_Engine(), _Checkpoint(tmp_path), rank=2)
    assert loaded == TrainingState(step=4, initial={}, metrics={}, train_loss_sum=0.0)
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.parametrize("rank, files", [(0, [FINAL_STATUS]), (1, [])])
def test_a_final_status_checkpoint_holds_only_the_metrics_written_by_rank_0(monkeypatch, rank, files):
    import ray.train

    seen = []

    def report(metrics, checkpoint):
        folder = Path(checkpoint.path)
        seen.append((metrics, sorted(p.name for p in folder.iterdir()), ended_metrics(_Checkpoint(folder))))

    context = SimpleNamespace(get_world_rank=lambda: rank, get_world_size=lambda: 2)
    monkeypatch.setattr(ray.train, "get_context", lambda: context)
    monkeypatch.setattr(ray.train, "report", report)
    metrics = {"step": 3, "train_loss": float("nan"), "status": "diverged"}
    report_final_status(TrainWorkerSession(), metrics)
    ((reported, names, ended),) = seen
    assert reported is metrics and names == files
    if rank == 0:
        assert ended["status"] == "diverged" and ended["step"] == 3
    else:
        assert ended is None


def test_only_a_status_only_checkpoint_has_ended_metrics(tmp_path):
    assert ended_metrics(None) is None
    (tmp_path / CHECKPOINT_TAG).mkdir()  # a DeepSpeed checkpoint
    assert ended_metrics(_Checkpoint(tmp_path)) is None
    (tmp_path / FINAL_STATUS).write_text(json.dumps({"status": "completed", "step": 8}))
    assert ended_metrics(_Checkpoint(tmp_path)) == {"status": "completed", "step": 8}


def test_the_protocol_is_public_from_qstudy_train():
    import qstudy.train

    assert (qstudy.train.CHECKPOINT_TAG, qstudy.train.FINAL_STATUS) == ("qstudy", "final_status.json")
    assert qstudy.train.ended_metrics is ended_metrics
