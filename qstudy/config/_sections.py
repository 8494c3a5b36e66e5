"""The study's small sections: what it optimises (objective), how Optuna suggests trials
(sampler), which trials Tune stops early (scheduler), where MLflow records it (tracking)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qstudy.config._loader import ConfigModel, Item, Unchecked, touches

__all__ = ["OBJECTIVE_METRICS", "SAMPLERS", "ObjectiveConfig", "SamplerConfig", "SchedulerConfig", "TrackingConfig"]

SAMPLERS = ("tpe", "gp", "cmaes", "random", "grid", "qmc")
# Metrics a trial reports that can be an objective, with their natural direction.
OBJECTIVE_METRICS = {
    "eval_loss": "min",
    "train_loss": "min",
    "mean_train_loss": "min",  # mean of every step's training loss over the run: the paper's GSM8K measure
    "eval_accuracy": "max",
    "gsm8k_accuracy": "max",
}


class ObjectiveConfig(ConfigModel):
    metric: str = Field(
        "eval_loss",
        description="reported metric to optimise: eval_loss, train_loss, mean_train_loss, eval_accuracy (data.task classification) "
        "or gsm8k_accuracy (GSM8K tasks with data.generate_examples > 0)",
    )
    mode: Literal["min", "max"] = Field("min", description="min for losses, max for accuracies")

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        if touches(unchecked, "metric"):
            return []
        natural = OBJECTIVE_METRICS.get(self.metric)
        if natural is None:
            return [("metric", f"must be one of {', '.join(OBJECTIVE_METRICS)}, got {self.metric!r}")]
        if not touches(unchecked, "mode") and self.mode != natural:
            kind = "a loss" if natural == "min" else "an accuracy"
            return [("mode", f"{self.metric} is {kind}: use {natural}, got {self.mode!r}")]
        return []


class SamplerConfig(ConfigModel):
    type: Literal[SAMPLERS] = Field(
        "tpe",
        description="Optuna sampler: tpe (default, mixed spaces), gp (few expensive trials), cmaes (continuous), "
        "random, grid (every point of a finite space), qmc (quasi-random cover)",
    )
    seed: int = Field(0, ge=0, description="sampler seed: same seed, same suggestions in the same order")
    n_startup_trials: int | None = Field(
        None, ge=0, description="random trials before tpe/gp/cmaes start modelling (None: Optuna's default)"
    )

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        if touches(unchecked, "type") or self.n_startup_trials is None or self.type in ("tpe", "gp", "cmaes"):
            return []
        return [("n_startup_trials", f"only tpe, gp and cmaes have start-up trials, got sampler.type {self.type!r}")]


class SchedulerConfig(ConfigModel):
    type: Literal["asha", "none"] = Field(
        "none", description="asha stops weak trials early (saves compute, biases against slow starters); none runs all"
    )
    grace_period: int = Field(
        1, ge=1, description="asha: optimizer steps a trial makes before it can be stopped (ASHA's time is `step`)"
    )
    reduction_factor: float = Field(2, gt=1, description="asha: 1/reduction_factor of the trials go on at each rung")
    max_t: int | None = Field(
        None, ge=1, description="asha: the last rung, in optimizer steps; None: trial.train.max_steps"
    )

    def cross_problems(self, unchecked: Unchecked) -> list[Item]:
        problems = []
        if self.type == "none" and not touches(unchecked, "type"):
            # A value that failed is not in model_fields_set: it was left out.
            for key in sorted(self.model_fields_set - {"type"}):
                problems.append((key, "only used by scheduler.type asha, got type 'none'"))
        if touches(unchecked, "grace_period", "max_t"):
            return problems
        if self.max_t is not None and self.grace_period > self.max_t:
            problems.append(
                ("grace_period", f"must be <= max_t, got grace_period={self.grace_period}, max_t={self.max_t}")
            )
        return problems


class TrackingConfig(ConfigModel):
    uri: str = Field(
        "sqlite:///mlruns.db",
        description="MLflow tracking URI; a relative sqlite path is made absolute against the launch directory",
    )
    experiment: str | None = Field(None, description="MLflow experiment (None: the study name)")
