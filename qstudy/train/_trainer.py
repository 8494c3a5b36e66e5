"""One trial as a Ray Train ``TorchTrainer`` run, and ``qstudy train FILE``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from qstudy.config import TrialConfig, TrialStatus
from qstudy.train._preflight import check_paths, check_placement, raise_problems

__all__ = ["build_trainer", "run_trial", "init_ray", "worker_env", "runs_in_trial_process"]


def worker_env(trial: TrialConfig) -> dict[str, str]:
    """Environment of every Ray process of a trial (docs/stack-notes.md#report-pacing-and-start-up-settings: these cut start-up and
    report pacing; DeepSpeed needs its accelerator chosen before import)."""
    env = {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1"),
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if not trial.resources.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    for name in ("TORCH_EXTENSIONS_DIR", "QSTUDY_DATA_CACHE"):  # where the workers find built ops and tokenized data
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def init_ray(address: str | None = None, env: dict[str, str] | None = None, **kwargs: Any) -> None:
    """Connects to ``address`` (or ``RAY_ADDRESS``; ``"auto"`` finds a cluster started on
    this machine with ``ray start``), else starts a new local Ray sized for this machine
    with a 512 MiB object store (plenty: trials pass no data through it).

    A new one even where a ``ray start`` cluster runs here: left to itself, ``ray.init()``
    would join the cluster recorded in ``<temp dir>/ray_current_cluster``.
    """
    import ray

    if ray.is_initialized():
        return
    for key, value in (env or {}).items():
        os.environ.setdefault(key, value)  # the driver-side Train controller reads some of them
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": dict(env or {})}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, **kwargs)
    else:
        ray.init(
            address="local", object_store_memory=512 * 1024**2, runtime_env=runtime_env, log_to_driver=False, **kwargs
        )


def runs_in_trial_process(trial: TrialConfig, storage_path: str | Path) -> bool:
    """Whether a study trains ``trial`` in its Tune trial's own process instead of a Ray
    Train worker group: a one-worker trial with ``resources.single_worker: in_trial``, whose
    checkpoints go to a local or shared folder (a URI storage keeps Ray Train, which uploads).

    Why (benchmarks/RESULTS.md, "In-trial one-worker trials"): a worker group is a Train
    controller actor, a placement group and fresh worker processes for every trial (Ray
    2.60 reuses none of them across runs), ~6 s before the worker starts and ~4 s of
    imports in it; in the trial's process, and with Tune reusing that process for the
    next trial, a trial reaches its first step in about a second. Several workers need
    the worker group (ranks, collectives, restarts), so they always have one.
    """
    return (
        trial.resources.num_workers == 1
        and trial.resources.single_worker == "in_trial"
        and "://" not in str(storage_path)
    )


def build_trainer(trial: TrialConfig, name: str, storage_path: str | Path, callbacks=None):
    """The trial's ``TorchTrainer``: N workers, gloo on CPU / NCCL on GPU, restarts from
    the last checkpoint up to ``resources.max_failures`` times."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from qstudy.train._worker import train_loop_per_worker

    res = trial.resources
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"trial": trial.model_dump(mode="json"), "submitted_at": time.time()},
        torch_config=TorchConfig(backend="nccl" if res.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=res.num_workers, use_gpu=res.use_gpu, resources_per_worker={"CPU": res.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(Path(storage_path).resolve()),
            failure_config=FailureConfig(max_failures=res.max_failures),
            # A restart needs only the newest; a 70B checkpoint is ~1 TB.
            checkpoint_config=CheckpointConfig(num_to_keep=trial.train.checkpoints_to_keep),
            worker_runtime_env={"env_vars": worker_env(trial)},
            callbacks=callbacks,
        ),
    )


def run_trial(
    trial: TrialConfig, name: str, storage_path: str | Path, source: str = "<config>", address: str | None = None
) -> dict[str, Any]:
    """Runs one trial to the end; returns its last metrics, status and checkpoint path.

    Every input problem is raised as a ConfigError before any Ray worker starts.
    """
    raise_problems(check_paths(trial, source))
    init_ray(address, worker_env(trial))
    raise_problems(check_placement(trial, source))
    result = build_trainer(trial, name, storage_path).fit()
    metrics = dict(result.metrics or {})
    if result.error is not None:
        metrics["status"] = TrialStatus.FAILED
        metrics["error"] = f"{type(result.error).__name__}: {result.error}"
    return {
        "metrics": metrics,
        "status": metrics.get("status", TrialStatus.FAILED),
        "checkpoint": result.checkpoint.path if result.checkpoint is not None else None,
        "path": result.path,
    }
