"""One trial: a Ray Train TorchTrainer whose workers fine-tune a Llama under DeepSpeed
with SuperpositionalAdamW and the quantum attention layer (a study's one-worker trial
trains in its Tune trial's process instead: ``runs_in_trial_process``)."""

from qstudy.train._checkpoint import CHECKPOINT_TAG, FINAL_STATUS, ended_metrics
from qstudy.train._deepspeed_config import deepspeed_config, zero_stage
from qstudy.train._preflight import check_paths, check_placement, raise_problems, worker_bundle
from qstudy.train._task import TrialData, build_trial_data
from qstudy.train._trainer import (
    build_trainer,
    init_ray,
    run_trial,
    runs_in_trial_process,
    worker_env,
)
from qstudy.train._worker import run_in_trial_process

__all__ = [
    "CHECKPOINT_TAG",
    "FINAL_STATUS",
    "TrialData",
    "build_trainer",
    "build_trial_data",
    "check_paths",
    "check_placement",
    "deepspeed_config",
    "ended_metrics",
    "init_ray",
    "raise_problems",
    "run_in_trial_process",
    "run_trial",
    "runs_in_trial_process",
    "worker_bundle",
    "worker_env",
    "zero_stage",
]
