"""A study's search space and sampler as Optuna objects: config describes them, this builds them."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from qstudy.config import ParamSpec, StudyConfig

__all__ = ["build_sampler", "optuna_distribution", "optuna_space"]


def optuna_distribution(spec: ParamSpec) -> optuna.distributions.BaseDistribution:
    """The ``optuna.distributions`` object of one searched setting."""
    if spec.type == "categorical":
        return CategoricalDistribution(spec.choices)
    if spec.type == "int":
        return IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step or 1)
    return FloatDistribution(float(spec.low), float(spec.high), log=spec.log, step=spec.step)


def optuna_space(study: StudyConfig) -> dict[str, Any]:
    """The searched settings as ``optuna.distributions``, keyed by dotted path."""
    return {key: optuna_distribution(spec) for key, spec in study.space.items()}


def build_sampler(study: StudyConfig) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of ``sampler:``, its parameter names the dotted paths."""
    cfg = study.sampler
    startup = {} if cfg.n_startup_trials is None else {"n_startup_trials": cfg.n_startup_trials}
    if cfg.type == "tpe":
        return optuna.samplers.TPESampler(seed=cfg.seed, **startup)
    if cfg.type == "gp":
        return optuna.samplers.GPSampler(seed=cfg.seed, **startup)
    if cfg.type == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=cfg.seed, **startup)
    if cfg.type == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    if cfg.type == "qmc":
        return optuna.samplers.QMCSampler(seed=cfg.seed)
    return optuna.samplers.GridSampler({key: spec.grid_values() for key, spec in study.space.items()}, seed=cfg.seed)
