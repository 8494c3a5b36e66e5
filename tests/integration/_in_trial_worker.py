"""One process of ``test_in_trial.py``: two tiny trials trained one after the other by
``run_in_trial_process``, as a reused Tune trial process does. Prints, as JSON, whether
each finished trial's DeepSpeed engine and model were freed before the next began, and
each trial's reported losses.

Run as ``python _in_trial_worker.py TRIAL_YAML OUT_DIR``. Reports go to a list here
instead of a Tune session (there is none in this process); deepspeed is imported here only.
"""

from __future__ import annotations

import gc
import json
import sys
import weakref


def main(trial_path: str, out_dir: str) -> None:
    import ray.tune

    import qstudy.train._worker as worker
    from qstudy.config import load_trial_config

    reports: list[dict] = []
    ray.tune.report = lambda metrics: reports.append(metrics)  # no Tune session in this process
    trial = load_trial_config(trial_path)
    alive: list[weakref.ref] = []
    initialize = worker.TrialRun.initialize_deepspeed

    def initialize_and_watch(self, model, ds_config):
        initialize(self, model, ds_config)
        alive.extend([weakref.ref(self.engine), weakref.ref(self.engine.module)])

    worker.TrialRun.initialize_deepspeed = initialize_and_watch
    freed, losses = [], []
    for index in range(2):
        reports.clear()
        worker.run_in_trial_process(trial, f"{out_dir}/trial_{index}")
        gc.collect()
        freed.append([ref() is None for ref in alive])
        losses.append({r["step"]: r["train_loss"] for r in reports if "train_loss" in r})
    print(json.dumps({"freed": freed, "losses": losses}))


if __name__ == "__main__":
    main(*sys.argv[1:])
