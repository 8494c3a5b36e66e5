"""Trial start-up overhead and tiny-Llama throughput, on this machine.

    .venv/bin/python benchmarks/trial_startup.py [--runs 3] [--steps 30]

Runs the tiny trial (search_spaces/trial_tiny.yaml: 1 CPU worker, ZeRO-2, quantum
attention, SuperpositionalAdamW) several times on one local Ray: the first run is cold
(fresh Ray workers, empty OS caches for the imports, an empty tokenized-data cache),
later runs are warm. Prints where the time from ``TorchTrainer.fit()`` to the first
optimizer step goes, and tokens/s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

from qstudy.config import load_trial_config
from qstudy.train import check_paths, init_ray, run_trial, worker_env

PARTS = [
    ("startup_worker_entry_s", "submit -> worker entry (Ray worker group, placement)"),
    ("startup_imports_s", "imports (deepspeed, transformers, qstudy)"),
    ("startup_data_s", "data (tokenizer, problems, tokens; cached after run 0)"),
    ("startup_model_s", "model build (+ quantum attention)"),
    ("startup_deepspeed_init_s", "deepspeed.initialize"),
    ("startup_to_first_step_s", "submit -> first optimizer step (total)"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--config", default=str(Path(__file__).resolve().parent.parent / "search_spaces" / "trial_tiny.yaml")
    )
    args = parser.parse_args()
    trial = load_trial_config(args.config, check_paths=check_paths)
    trial = trial.model_copy(update={"train": trial.train.model_copy(update={"max_steps": args.steps})})
    print(
        f"{datetime.date.today()} {platform.node()}, {trial.model.preset}, {trial.resources.num_workers} worker(s), {trial.deepspeed.preset}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        # An empty data cache: run 0 tokenizes, as a study's first trial on a node does.
        os.environ["QSTUDY_DATA_CACHE"] = str(Path(storage) / "data-cache")
        t0 = time.time()
        init_ray(env=worker_env(trial))
        print(f"ray.init: {time.time() - t0:.1f} s")
        for run in range(args.runs):
            t = time.time()
            outcome = run_trial(trial, name=f"startup-{run}", storage_path=storage)
            m = outcome["metrics"]
            rows.append((run, time.time() - t, m))
            assert outcome["status"] == "completed", m
    print(f"\n{'':55s}" + "".join(f"{'run ' + str(r) + (' (cold)' if r == 0 else ''):>14s}" for r, _, _ in rows))
    for key, label in PARTS:
        print(f"{label:55s}" + "".join(f"{m.get(key, float('nan')):14.1f}" for _, _, m in rows))
    print(f"{'whole trial wall time (fit)':55s}" + "".join(f"{wall:14.1f}" for _, wall, _ in rows))
    print(f"{'tokens/s (last step, 1 worker)':55s}" + "".join(f"{m['tokens_per_s']:14.0f}" for _, _, m in rows))
    print(f"{'step time s (last step)':55s}" + "".join(f"{m['step_time_s']:14.3f}" for _, _, m in rows))


if __name__ == "__main__":
    main()
