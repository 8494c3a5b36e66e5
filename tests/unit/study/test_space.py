"""A study's space and sampler as the Optuna objects the searcher is given."""

import optuna

from qstudy.config import StudyConfig
from qstudy.study._space import build_sampler, optuna_space


def _study(space, **over):
    return StudyConfig.model_validate({"name": "s", "num_samples": 3, "space": space, "trial": {}, **over})


def test_each_entry_is_its_optuna_distribution():
    study = _study(
        {
            "optimizer.lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
            "quantum.n_qubits": {"type": "int", "low": 2, "high": 8, "step": 2},
            "optimizer.response": {"type": "categorical", "choices": ["sin", "circuit"]},
            "optimizer.quantum_weight": {"type": "float", "low": 0, "high": 1, "step": 0.5},
        },
        sampler={"type": "random", "seed": 7},
    )
    assert optuna_space(study) == {
        "optimizer.lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
        "quantum.n_qubits": optuna.distributions.IntDistribution(2, 8, step=2),
        "optimizer.response": optuna.distributions.CategoricalDistribution(["sin", "circuit"]),
        "optimizer.quantum_weight": optuna.distributions.FloatDistribution(0.0, 1.0, step=0.5),
    }
    assert isinstance(build_sampler(study), optuna.samplers.RandomSampler)


def test_each_sampler_type_builds_its_sampler():
    space = {"optimizer.quantum_weight": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1}}
    expected = {
        "tpe": optuna.samplers.TPESampler,
        "gp": optuna.samplers.GPSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "random": optuna.samplers.RandomSampler,
        "qmc": optuna.samplers.QMCSampler,
        "grid": optuna.samplers.GridSampler,
    }
    for kind, cls in expected.items():
        sampler = build_sampler(_study(space, sampler={"type": kind, "seed": 3}))
        assert type(sampler) is cls, kind
    tpe = build_sampler(_study(space, sampler={"type": "tpe", "n_startup_trials": 2}))
    assert tpe._n_startup_trials == 2


def test_a_grid_sampler_walks_every_grid_point():
    study = _study(
        {
            "optimizer.quantum_weight": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
            "seed": {"type": "categorical", "choices": [0, 1]},
        },
        sampler={"type": "grid"},
    )
    sampler = build_sampler(study)
    assert isinstance(sampler, optuna.samplers.GridSampler)
    assert sampler._search_space == {"optimizer.quantum_weight": [0.0, 0.1, 0.2], "seed": [0, 1]}
