"""One trial: a Ray Train TorchTrainer whose workers fine-tune a Llama under DeepSpeed
with SuperpositionalAdamW and the quantum attention layer."""

from qstudy.train._deepspeed_config import deepspeed_config, zero_stage
from qstudy.train._preflight import check_paths, check_placement, raise_problems
from qstudy.train._task import Task, build_task
from qstudy.train._trainer import build_trainer, init_ray, run_trial, worker_env

__all__ = [
    "Task",
    "build_task",
    "build_trainer",
    "check_paths",
    "check_placement",
    "deepspeed_config",
    "init_ray",
    "raise_problems",
    "run_trial",
    "worker_env",
    "zero_stage",
]
