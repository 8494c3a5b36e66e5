"""Study overhead: the smoke study's wall time over the sum of its trials' training time.

    .venv/bin/python benchmarks/study_overhead.py [--config search_spaces/smoke.yaml]
        [--single-worker in_trial|worker_group] [--max-concurrent N]

Runs the study in a fresh temporary directory (its own MLflow store and Optuna storage),
then reads each trial's ``timing/train_time_s`` (steps + evals), start-up breakdown and logging
back from MLflow. Target: wall / (sum of training time / concurrency) <= 2.

``--single-worker`` sets the trials' ``resources.single_worker``: one-worker trials in the
Tune trial's process (``in_trial``, reused for the next trial) or each in a Ray Train
worker group of its own (``worker_group``), to measure the two side by side.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=str(Path(__file__).resolve().parent.parent / "search_spaces" / "smoke.yaml")
    )
    parser.add_argument("--single-worker", choices=["in_trial", "worker_group"], default=None)
    parser.add_argument("--max-concurrent", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from qstudy.config import load_study_config
    from qstudy.train import check_paths

    study = load_study_config(args.config, check_paths=check_paths)
    if args.single_worker is not None:
        resources = study.trial.resources.model_copy(update={"single_worker": args.single_worker})
        study = study.model_copy(update={"trial": study.trial.model_copy(update={"resources": resources})})
    if args.max_concurrent is not None:
        study = study.model_copy(update={"max_concurrent": args.max_concurrent})
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        t0 = time.time()
        import ray
        from mlflow import MlflowClient

        from qstudy.study import run_study
        from qstudy.train import init_ray, worker_env

        init_ray(env=worker_env(study.trial))
        ray_init_s = time.time() - t0
        t1 = time.time()
        summary = run_study(study, source=args.config, printer=lambda *_: None)
        study_s = time.time() - t1
        ray.shutdown()
        client = MlflowClient(summary["tracking_uri"])
        experiment = client.get_experiment_by_name(study.experiment_name)
        runs = {
            r.data.tags["qstudy.trial_id"]: {"metrics": r.data.metrics}
            for r in client.search_runs([experiment.experiment_id])
            if "qstudy.trial_id" in r.data.tags
        }
    metrics = [r["metrics"] for r in runs.values()]
    # MLflow keeps the cost figures under timing/ (qstudy.tracking.mlflow_metric_name).
    train = sum(m.get("timing/train_time_s", 0.0) for m in metrics)
    startup = sum(m.get("timing/startup_to_first_step_s", 0.0) for m in metrics)
    conc = study.max_concurrent
    print(
        f"{datetime.date.today()} {platform.node()} {os.cpu_count()} CPUs, {args.config}: {len(runs)} trials, "
        f"max_concurrent {conc}, single_worker {study.trial.resources.single_worker}"
    )
    print(f"ray.init                                  {ray_init_s:8.1f} s")
    print(f"study wall time (after ray.init)          {study_s:8.1f} s")
    print(f"sum of trials' training time (steps+eval) {train:8.1f} s   / concurrency {conc} = {train / conc:.1f} s")
    print(f"sum of trials' start-up (submit->step 1)  {startup:8.1f} s   / concurrency {conc} = {startup / conc:.1f} s")
    for name, run in sorted(runs.items()):
        m = run["metrics"]
        parts = ", ".join(
            f"{k.removeprefix('timing/startup_')}={m[k]:.1f}" for k in sorted(m) if k.startswith("timing/startup_")
        )
        print(f"  {name}: train {m.get('timing/train_time_s', float('nan')):.1f} s; start-up {parts}")
    rest = study_s - (train + startup) / conc
    print(f"rest (Tune, Optuna, MLflow, teardown)     {rest:8.1f} s")
    print(f"ratio wall / (training / concurrency)     {study_s / (train / conc):8.2f}")
    print(f"ratio (ray.init + wall) / (training / c)  {(ray_init_s + study_s) / (train / conc):8.2f}")


if __name__ == "__main__":
    main()
