"""Where a trial's run reports its results and keeps its checkpoints.

Two sessions, one protocol (``rank``, ``world_size``, ``get_checkpoint``, ``report``,
``checkpoint_directory``, ``status_directory``):

- :class:`TrainWorkerSession`: a rank of a Ray Train ``TorchTrainer`` run. Results go
  through ``ray.train.report``; Ray Train keeps the checkpoints and hands the newest to a
  restarted worker group.
- :class:`TrialProcessSession`: the one rank of a one-worker study trial that runs in its
  Tune trial's own process (``resources.single_worker: in_trial``). Results go through
  ``ray.tune.report``; the checkpoints are kept here, in the trial's storage folder, in
  report order, so a retried trial or a study run again finds the newest.

Runs inside the process that trains: ray is imported by the methods that use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["TrainWorkerSession", "TrialProcessSession"]

Report = Callable[[dict[str, Any]], None]


class TrainWorkerSession:
    """A rank of a Ray Train run: ``ray.train``'s context, report and checkpoints."""

    def __init__(self):
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()

    def get_checkpoint(self):
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, Any]) -> None:
        import ray.train

        ray.train.report(metrics)

    @contextlib.contextmanager
    def checkpoint_directory(self, step: int) -> Iterator[tuple[str, Report]]:
        """Yields the folder every rank writes step ``step``'s checkpoint into, and the
        function that reports it.

        On a local or shared file system the checkpoint is written straight into the run's
        storage folder and reported in place (``CheckpointUploadMode.NO_UPLOAD``): staged in
        the node's ``/tmp`` first, it would need a second copy there (~1 TB at 70B) and a
        copy of every byte. Every rank writes its shards into the same folder, named by the
        step, so the ranks agree on it by construction.
        """
        import ray.train
        from pyarrow.fs import LocalFileSystem
        from ray.train import Checkpoint, CheckpointUploadMode

        storage = ray.train.get_context().get_storage()
        name = f"checkpoint_step{step:08d}"
        if isinstance(storage.storage_filesystem, LocalFileSystem):
            directory = storage.build_checkpoint_path_from_name(name)
            os.makedirs(directory, exist_ok=True)
            checkpoint = Checkpoint(directory, filesystem=storage.storage_filesystem)
            yield (
                directory,
                lambda metrics: ray.train.report(
                    metrics,
                    checkpoint=checkpoint,
                    checkpoint_dir_name=name,
                    checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD,
                ),
            )
            return
        with tempfile.TemporaryDirectory(prefix="qstudy-ckpt-") as directory:  # remote storage: Ray uploads it
            yield (
                directory,
                lambda metrics: ray.train.report(
                    metrics, checkpoint=Checkpoint.from_directory(directory), checkpoint_dir_name=name
                ),
            )

    @contextlib.contextmanager
    def status_directory(self) -> Iterator[tuple[str, Report]]:
        """Yields a folder for a small status-only checkpoint, and the function that reports
        it (Ray copies it into the run's storage)."""
        import ray.train
        from ray.train import Checkpoint

        with tempfile.TemporaryDirectory(prefix="qstudy-final-") as directory:
            yield directory, lambda metrics: ray.train.report(metrics, checkpoint=Checkpoint.from_directory(directory))


# A kept checkpoint: checkpoint_<report number>; the newest has the highest number. A
# folder that a killed process left half-written keeps its ".partial" suffix.
_KEPT = re.compile(r"checkpoint_(\d{6})")
_PARTIAL = ".partial"


class TrialProcessSession:
    """The one rank of a study trial run in its Tune trial's process.

    Metrics go to Tune (``ray.tune.report``: the scheduler, the searcher and the study's
    MLflow callback see them as they see a Ray Train run's). Checkpoints are folders
    ``checkpoint_000001``, ``checkpoint_000002``, ... of ``directory`` (the trial's
    storage folder, stable across Tune runs of the study): each is written as
    ``<name>.partial``, reported, then renamed, and only the newest ``keep`` are kept.
    The newest is what :meth:`get_checkpoint` resumes from. A folder still ``.partial``
    was never reported: a process killed while writing it left it, and it is removed.

    Args:
        directory: the trial's checkpoint folder, on a local or shared file system.
        keep: how many checkpoints to keep (``train.checkpoints_to_keep``).
    """

    rank = 0
    world_size = 1

    def __init__(self, directory: str | Path, keep: int):
        self.directory = Path(directory)
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"checkpoint_*{_PARTIAL}"):
            shutil.rmtree(stale, ignore_errors=True)

    def _kept(self) -> list[Path]:
        """The kept checkpoints, oldest first."""
        kept = [p for p in self.directory.iterdir() if _KEPT.fullmatch(p.name) and p.is_dir()]
        return sorted(kept, key=lambda p: p.name)

    def get_checkpoint(self):
        """The newest kept checkpoint (a ``ray.train.Checkpoint``), or None."""
        from ray.train import Checkpoint

        kept = self._kept()
        return Checkpoint.from_directory(str(kept[-1])) if kept else None

    def report(self, metrics: dict[str, Any]) -> None:
        import ray.tune

        ray.tune.report(metrics)

    @contextlib.contextmanager
    def checkpoint_directory(self, step: int | None = None) -> Iterator[tuple[str, Report]]:
        """Yields the folder of the next checkpoint (``step`` is in the metrics already) and
        the function that reports it: the report goes out before the folder is renamed into
        place, so a kill between the two repeats steps (the tracker drops repeated steps)
        instead of losing their results."""
        kept = self._kept()
        number = int(_KEPT.fullmatch(kept[-1].name).group(1)) + 1 if kept else 1
        final = self.directory / f"checkpoint_{number:06d}"
        partial = final.with_name(final.name + _PARTIAL)
        partial.mkdir()
        reported = []

        def report(metrics: dict[str, Any]) -> None:
            self.report({**metrics, "checkpoint_path": str(final)})
            reported.append(True)

        try:
            yield str(partial), report
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if not reported:  # written but never reported: not a checkpoint to resume from
            shutil.rmtree(partial, ignore_errors=True)
            return
        os.replace(partial, final)
        for old in self._kept()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    status_directory = checkpoint_directory
