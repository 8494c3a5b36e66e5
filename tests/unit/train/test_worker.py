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
    (metrics, kwargs), = reports
    assert metrics == {"step": 12}
    assert kwargs["checkpoint_upload_mode"] == CheckpointUploadMode.NO_UPLOAD
    assert kwargs["checkpoint_dir_name"] == "checkpoint_step00000012"
    assert kwargs["checkpoint"].path == directory and (tmp_path / "run" / "checkpoint_step00000012" / "shard").exists()
