"""StudySearcher over a real Optuna SQLite storage (no Ray cluster): a comparison study's
(arm, seed) trials are enqueued once each, in order, and a resumed driver enqueues none again."""

import json

import optuna
import pytest

from qstudy.study._searcher import ARM_KEY, TRIAL_ID_KEY, StudySearcher

COMPARISON = [
    ("control", 0, {"seed": 0}),
    ("sgd", 0, {"optimizer.quantum_weight": 0.5, "seed": 0}),
    ("control", 1, {"seed": 1}),
    ("sgd", 1, {"optimizer.quantum_weight": 0.5, "seed": 1}),
]


@pytest.fixture
def make_searcher(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"

    def make() -> StudySearcher:
        return StudySearcher(
            study_name="cmp",
            storage_url=url,
            space={},
            sampler=optuna.samplers.TPESampler(seed=0),
            metric="eval_loss",
            mode="min",
            num_samples=len(COMPARISON),
            baselines=[],
            comparison=COMPARISON,
        )

    return make


def _settings(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in (TRIAL_ID_KEY, ARM_KEY)}


def _complete(searcher: StudySearcher, tune_id: str, value: float) -> None:
    searcher.on_trial_complete(tune_id, {"eval_loss": value, "step": 6, "status": "completed"})


def test_each_arm_and_seed_is_one_fixed_trial_in_order(make_searcher):
    searcher = make_searcher()
    configs = [searcher.suggest(f"tune_{i}") for i in range(4)]
    assert [(c[TRIAL_ID_KEY], c[ARM_KEY]) for c in configs] == [
        ("trial_0000", "control"),
        ("trial_0001", "sgd"),
        ("trial_0002", "control"),
        ("trial_0003", "sgd"),
    ]
    assert [_settings(c) for c in configs] == [overrides for _, _, overrides in COMPARISON]
    assert searcher.suggest("tune_4") == StudySearcher.FINISHED
    trials = searcher.study.get_trials()
    assert [t.user_attrs["qstudy.arm"] for t in trials] == ["control", "sgd", "control", "sgd"]
    assert [json.loads(t.user_attrs["qstudy.overrides"]) for t in trials] == [o for _, _, o in COMPARISON]
    assert [t.params for t in trials] == [{}] * 4  # nothing sampled
    for i, value in enumerate([2.0, 1.5, 2.1, 1.6]):
        _complete(searcher, f"tune_{i}", value)
    finished = searcher.finished_trials()
    assert [(tid, t["arm"], t["values"]["seed"], t["value"]) for tid, t in sorted(finished.items())] == [
        ("trial_0000", "control", 0, 2.0),
        ("trial_0001", "sgd", 0, 1.5),
        ("trial_0002", "control", 1, 2.1),
        ("trial_0003", "sgd", 1, 1.6),
    ]


def test_a_resumed_searcher_reruns_the_running_trial_and_enqueues_nothing_again(make_searcher):
    first = make_searcher()
    for i in range(3):
        first.suggest(f"tune_{i}")
    _complete(first, "tune_0", 2.0)
    _complete(first, "tune_1", 1.5)
    # The driver dies here: trial_0002 (control, seed 1) is RUNNING, trial_0003 never started.

    second = make_searcher()
    assert second.remaining() == 2
    rerun, fresh = second.suggest("tune_a"), second.suggest("tune_b")
    assert (rerun[TRIAL_ID_KEY], rerun[ARM_KEY], _settings(rerun)) == ("trial_0002", "control", {"seed": 1})
    assert (fresh[TRIAL_ID_KEY], fresh[ARM_KEY], _settings(fresh)) == (
        "trial_0003",
        "sgd",
        {"optimizer.quantum_weight": 0.5, "seed": 1},
    )
    assert second.suggest("tune_c") == StudySearcher.FINISHED
    _complete(second, "tune_a", 2.1)
    _complete(second, "tune_b", 1.6)

    third = make_searcher()
    assert third.remaining() == 0 and third.suggest("tune_x") == StudySearcher.FINISHED
    trials = third.study.get_trials()
    pairs = [(t.user_attrs["qstudy.arm"], json.loads(t.user_attrs["qstudy.overrides"])["seed"]) for t in trials]
    assert pairs == [("control", 0), ("sgd", 0), ("control", 1), ("sgd", 1)]  # each pair once
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4


def test_a_search_study_still_enqueues_its_baselines_first(tmp_path):
    space = {"optimizer.quantum_weight": optuna.distributions.FloatDistribution(0.0, 1.0)}
    searcher = StudySearcher(
        study_name="search",
        storage_url=f"sqlite:///{tmp_path / 'optuna.db'}",
        space=space,
        sampler=optuna.samplers.RandomSampler(seed=0),
        metric="eval_loss",
        mode="min",
        num_samples=2,
        baselines=[{"optimizer.quantum_weight": 0.0, "optimizer.response": "none"}],
    )
    baseline, sampled = searcher.suggest("t0"), searcher.suggest("t1")
    assert _settings(baseline) == {"optimizer.quantum_weight": 0.0, "optimizer.response": "none"}
    assert ARM_KEY not in baseline and ARM_KEY not in sampled
    assert 0.0 <= sampled["optimizer.quantum_weight"] <= 1.0
    assert searcher.study.get_trials()[0].user_attrs["qstudy.baseline"] == 0
