"""Pieces of the per-worker loop that need no Ray cluster."""


def test_checkpoints_are_written_in_place_on_the_run_storage(tmp_path, monkeypatch):
    """On a local or shared file system the ranks write the DeepSpeed checkpoint straight
    into the run's folder and report it in place: nothing is staged in the node's /tmp."""
    from types import SimpleNamespace

    import ray.train
    from pyarrow.fs import LocalFileSystem
    from ray.train import CheckpointUploadMode

    from qstudy.train import _worker

    storage = SimpleNamespace(
        storage_filesystem=LocalFileSystem(),
        build_checkpoint_path_from_name=lambda name: str(tmp_path / "run" / name),
    )
    reports = []
    monkeypatch.setattr(ray.train, "get_context", lambda: SimpleNamespace(get_storage=lambda: storage))
    monkeypatch.setattr(ray.train, "report", lambda metrics, **kwargs: reports.append((metrics, kwargs)))
    with _worker._checkpoint_directory(12) as (directory, report):
        assert directory == str(tmp_path / "run" / "checkpoint_step00000012")
        (tmp_path / "run" / "checkpoint_step00000012" / "shard").write_text("x")
        report({"step": 12})
    ((metrics, kwargs),) = reports
    assert metrics == {"step": 12}
    assert kwargs["checkpoint_upload_mode"] == CheckpointUploadMode.NO_UPLOAD
    assert kwargs["checkpoint_dir_name"] == "checkpoint_step00000012"
    assert kwargs["checkpoint"].path == directory and (tmp_path / "run" / "checkpoint_step00000012" / "shard").exists()


def test_learning_rate_warms_up_then_holds_or_decays_linearly_to_zero():
    import pytest

    from qstudy.config import TrialConfig
    from qstudy.train._worker import learning_rate

    def lrs(**optimizer):
        trial = TrialConfig.model_validate({"optimizer": {"lr": 1.0, **optimizer}, "train": {"max_steps": 10}})
        return [learning_rate(trial, step) for step in range(1, 11)]

    assert lrs() == [1.0] * 10
    assert lrs(warmup_steps=4) == [0.25, 0.5, 0.75] + [1.0] * 7
    # transformers' get_linear_schedule_with_warmup over 10 steps, 1-based: 1/w, ..., 1, then (T - s + 1)/(T - w)
    assert lrs(warmup_steps=2, lr_schedule="linear") == pytest.approx(
        [0.5, 1.0, *[(10 - s + 1) / 8 for s in range(3, 11)]]
    )
    assert lrs(lr_schedule="linear")[0] == 1.0 and lrs(lr_schedule="linear")[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrialConfig.model_validate({"optimizer": {"lr_schedule": "cosine"}})
