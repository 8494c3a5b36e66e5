"""The Tune trainable of a study: one sampled point -> one trial (a Ray Train run, or a
one-worker trial trained in the Tune trial's process).

Module-level and importable (not ``__main__``): docs/stack-notes.md#importable-trial-functions records trial start to
worker entry falling from 49 s to 32 s that way.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from qstudy.study._searcher import QSTUDY_KEYS, TRIAL_ID_KEY
from qstudy.tracking import trial_run_name

__all__ = ["run_study_trial", "trial_config", "trial_resources"]

_DRAIN_TIMEOUT_S = 30.0


def run_study_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. ``config`` holds the sampled dotted keys, the trial id
    and, under ``qstudy``, the study's fixed trial config, paths and time limit.

    A one-worker trial trains right here, in the Tune trial's process
    (``qstudy.train.runs_in_trial_process``); any other runs its TorchTrainer.
    """
    from qstudy.train import run_in_trial_process, runs_in_trial_process

    study = config["qstudy"]
    trial = trial_config(config)
    name = trial_run_name(study["name"], config[TRIAL_ID_KEY])
    # A stable name and storage path: a retried or resumed trial finds its checkpoints.
    storage_path = study["storage_path"]
    in_trial = runs_in_trial_process(trial, storage_path)
    if in_trial:
        submitted_at = time.time()
        checkpoint_dir = str(Path(storage_path) / name)
        target = lambda: run_in_trial_process(trial, checkpoint_dir, submitted_at)  # noqa: E731
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        from qstudy.train import build_trainer

        target = build_trainer(trial, name=name, storage_path=storage_path, callbacks=[TuneReportCallback()]).fit

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except BaseException as err:  # re-raised in the trial's own thread below
            outcome["error"] = err

    runner = threading.Thread(target=run, name=f"trial-{config[TRIAL_ID_KEY]}", daemon=True)
    runner.start()
    runner.join(timeout=study["trial_timeout_s"])
    if runner.is_alive():
        # Tune ends the actor of a trial that raised (it is never reused): that ends a
        # run still going in this process, or the Train controller it owns, and with it
        # the workers and their placement groups.
        raise TimeoutError(f"{name}: no result within trial_timeout_s={study['trial_timeout_s']:g}")
    if "error" in outcome:
        raise outcome["error"]
    if in_trial:
        return
    result = outcome["result"]
    _drain_reports()
    if result.error is not None:
        raise result.error


def trial_config(config: dict[str, Any]):
    """The TrialConfig of a Tune trial's ``config``: the study's fixed trial with the
    trial's sampled, baseline or arm values applied."""
    from qstudy.config import TrialConfig, apply_overrides

    values = {k: v for k, v in config.items() if k not in QSTUDY_KEYS}
    return apply_overrides(TrialConfig.model_validate(config["qstudy"]["trial"]), values)


def trial_resources(config: dict[str, Any]):
    """What a Tune trial reserves: a trial trained in its own process reserves its
    worker's CPUs and GPU; a TorchTrainer's driver reserves nothing, its workers reserve
    theirs in their own placement group. Tune refuses a bundle of {"CPU": 0} alone ("empty
    head and zero worker bundles"); a token of memory makes it non-empty and needs no
    custom resource on the cluster."""
    from ray.tune import PlacementGroupFactory

    from qstudy.train import runs_in_trial_process, worker_bundle

    trial = trial_config(config)
    if runs_in_trial_process(trial, config["qstudy"]["storage_path"]):
        return PlacementGroupFactory([worker_bundle(trial)])
    return PlacementGroupFactory([{"CPU": 0, "memory": 1024**2}])


def _drain_reports() -> None:
    """Waits until Tune has taken the Train run's last report.

    docs/stack-notes.md#the-last-report-at-trial-end: about 1 trial in 16 stayed RUNNING for good when the trial function
    returned while the last Train→Tune report was still blocked in the size-1 queue's
    ``put``; waiting for the queue to drain avoided it.
    """
    from ray.train._internal.session import get_session

    session = get_session()
    queue = getattr(session, "_inter_actor_queue", None) if session is not None else None
    if queue is None:
        return
    deadline = time.monotonic() + _DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if queue.empty():
                return
        except Exception:  # the queue actor is gone: nothing left to drain
            return
        time.sleep(0.05)
