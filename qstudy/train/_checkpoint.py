"""A trial's checkpoints: what a worker writes and reports through its session
(``qstudy.train._session``) and reads back when it is restarted or a study re-runs the trial.

Two kinds, told apart by their files:

- a DeepSpeed checkpoint (``engine.save_checkpoint``, tag :data:`CHECKPOINT_TAG`): every
  rank's shards, one RNG state file per rank, and the loop's :class:`TrainingState` as
  DeepSpeed's ``client_state``. Written every ``train.checkpoint_every_steps`` (default:
  with every eval) and at the last step; a restart resumes from it.
- a status-only final checkpoint: the single file :data:`FINAL_STATUS`, the metrics of a
  trial that ended without a DeepSpeed checkpoint (it diverged, or completed with
  ``train.checkpoint_every_steps`` 0). A run's ``Result.metrics`` are those of its last
  checkpoint, so such a trial still ends with its result, and a re-run hands it on.

Runs in the process that trains; the session owns where checkpoints go.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_TAG",
    "FINAL_STATUS",
    "TrainingState",
    "ended_metrics",
    "load_checkpoint",
    "report_checkpoint",
    "report_final_status",
]

CHECKPOINT_TAG = "qstudy"  # the DeepSpeed tag (sub-folder) of every rank's shards
FINAL_STATUS = "final_status.json"  # the only file of a status-only final checkpoint
_RNG_STATE = "rng_state_rank{rank}.pt"  # per rank: dropout and sampling continue as if never stopped


@dataclasses.dataclass
class TrainingState:
    """The loop's state a DeepSpeed checkpoint carries besides the engine's (its ``client_state``).

    Attributes:
        step: the last optimizer step taken.
        initial: the ``initial_*`` metrics of the untrained model, reported in every result.
        metrics: the metrics reported with the checkpoint: a trial restored at its last
            step reports them again.
        train_loss_sum: Σ ``train_loss`` over the steps so far (``mean_train_loss``).
    """

    step: int
    initial: dict[str, Any]
    metrics: dict[str, Any]
    train_loss_sum: float

    def client_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "initial": self.initial,
            "metrics": self.metrics,
            "train_loss_sum": self.train_loss_sum,
        }

    @classmethod
    def from_client_state(cls, state: dict[str, Any]) -> TrainingState:
        return cls(
            step=int(state["step"]),
            initial=dict(state.get("initial", {})),
            metrics=dict(state.get("metrics", {})),
            train_loss_sum=float(state.get("train_loss_sum", 0.0)),
        )


def load_checkpoint(engine, checkpoint, rank: int) -> TrainingState:
    """Loads a DeepSpeed checkpoint (a ``ray.train.Checkpoint``) into ``engine`` and
    ``rank``'s RNG state; returns the loop's state saved with it."""
    with checkpoint.as_directory() as directory:
        _, client_state = engine.load_checkpoint(directory, tag=CHECKPOINT_TAG)
        _restore_rng_state(directory, rank)
    return TrainingState.from_client_state(client_state)


def report_checkpoint(session, engine, state: TrainingState, metrics: dict[str, Any]) -> None:
    """Reports ``metrics`` with a DeepSpeed checkpoint of every rank's shard at ``state.step``.

    Every rank calls it: each writes its shards and its RNG state into the step's folder
    (``session.checkpoint_directory``, ``qstudy.train._session``).
    """
    with session.checkpoint_directory(state.step) as (directory, report):
        engine.save_checkpoint(directory, tag=CHECKPOINT_TAG, client_state=state.client_state())
        torch.save(_rng_state(), os.path.join(directory, _RNG_STATE.format(rank=session.rank)))
        report(metrics)


def report_final_status(session, metrics: dict[str, Any]) -> None:
    """Reports the final metrics with a status-only checkpoint holding only them
    (:data:`FINAL_STATUS`, written by rank 0)."""
    with session.status_directory() as (directory, report):
        if session.rank == 0:
            with open(os.path.join(directory, FINAL_STATUS), "w") as f:
                json.dump(metrics, f)
        report(metrics)


def ended_metrics(checkpoint) -> dict[str, Any] | None:
    """The metrics of a status-only final checkpoint; None for none or a DeepSpeed one."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, FINAL_STATUS)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng_state(directory: str, rank: int) -> None:
    path = os.path.join(directory, _RNG_STATE.format(rank=rank))
    if not os.path.exists(path):  # a checkpoint written with another worker count
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
