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


# How each way a trial can end reaches Optuna and MLflow: Tune's last result (or its
# error) -> the qstudy status the study records -> the Optuna state the sampler learns
# from, and the status the trial's MLflow run ends with.
OUTCOMES = [
    # (Tune's last result, error, qstudy status, Optuna state, objective value, MLflow run status)
    ({"eval_loss": 1.5, "step": 6, "status": "completed"}, False, "completed", "COMPLETE", 1.5, "FINISHED"),
    ({"eval_loss": float("nan"), "step": 6, "status": "completed"}, False, "completed", "FAIL", None, "FINISHED"),
    (
        {"eval_loss": 1.9, "step": 3, "status": "running"},
        False,
        "pruned",
        "PRUNED",
        None,
        "FINISHED",
    ),  # ASHA stopped it
    ({"train_loss": float("nan"), "step": 2, "status": "diverged"}, False, "diverged", "FAIL", None, "FINISHED"),
    ({"eval_loss": 1.9, "step": 3, "status": "running"}, True, "failed", "FAIL", None, "FAILED"),  # the worker raised
    (None, False, "failed", "FAIL", None, "FAILED"),  # ended without a single report
]


@pytest.mark.parametrize("result,error,status,state,value,run_status", OUTCOMES)
def test_each_trial_outcome_is_one_status_one_optuna_state_and_one_mlflow_status(
    make_searcher, result, error, status, state, value, run_status
):
    from qstudy.config import TrialStatus
    from qstudy.study._searcher import OPTUNA_STATES, status_of
    from qstudy.tracking import TRIAL_STATUSES

    assert status_of(result, error) == status
    assert isinstance(status_of(result, error), TrialStatus)
    searcher = make_searcher()
    searcher.suggest("tune_0")
    searcher.on_trial_complete("tune_0", result, error=error)
    (trial,) = searcher.study.get_trials()
    assert trial.state.name == state
    assert trial.user_attrs["qstudy.status"] == status
    assert trial.value == value
    assert searcher.finished_statuses() == {"trial_0000": status}
    assert searcher.finished_trials()["trial_0000"]["status"] == status
    assert TRIAL_STATUSES[status] == run_status  # what StudyTracker.end_trial sets on the run
    assert OPTUNA_STATES[status] == state or (status == "completed" and value is None)  # no objective: FAIL


@pytest.mark.parametrize(
    "tune_state,last_result,shown",
    [
        ("TERMINATED", {"eval_loss": 1.5, "step": 6, "status": "completed"}, "completed"),
        ("TERMINATED", {"eval_loss": 1.9, "step": 3, "status": "running"}, "pruned"),
        ("TERMINATED", {"train_loss": float("nan"), "step": 2, "status": "diverged"}, "diverged"),
        ("TERMINATED", {}, "failed"),  # ended without a report
        ("ERROR", {"eval_loss": 1.9, "step": 3, "status": "running"}, "failed"),
        ("RUNNING", {"eval_loss": 1.9, "step": 3, "status": "running"}, "running"),
        ("PENDING", {}, "pending"),
        ("PAUSED", {"step": 3}, "paused"),
    ],
)
def test_tunes_trial_state_shows_as_the_status_the_study_records(tune_state, last_result, shown):
    from qstudy.study._callbacks import tune_status

    assert tune_status(tune_state, last_result) == shown


def test_the_trial_id_the_searcher_hands_tune_is_the_one_tracking_names_runs_by(make_searcher):
    from qstudy.tracking import trial_name, trial_number

    searcher = make_searcher()
    ids = [searcher.suggest(f"tune_{i}")[TRIAL_ID_KEY] for i in range(3)]
    assert ids == [trial_name(n) for n in range(3)] == ["trial_0000", "trial_0001", "trial_0002"]
    assert [trial_number(i) for i in ids] == [t.number for t in searcher.study.get_trials()]


def test_the_trial_tables_title_each_column_by_its_short_name():
    from qstudy.study._callbacks import format_table
    from qstudy.tracking import short_names

    columns = ["optimizer.lr", "scheduler.lr", "quantum.n_qubits"]
    rows = [{"trial": "trial_0000", "status": "completed", "optimizer.lr": 0.1, "eval_loss": 1.0}]
    header = format_table(rows, "eval_loss", columns).splitlines()[0].split()
    assert header == ["trial", "status", *short_names(columns).values(), "step", "eval_loss", "elapsed_s"]
    assert header[2:5] == ["optimizer.lr", "scheduler.lr", "n_qubits"]


def test_a_trial_without_a_recorded_status_takes_its_optuna_state(make_searcher):
    searcher = make_searcher()
    for state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL):
        trial = searcher.study.ask()  # told by Optuna alone: no qstudy.status attribute
        searcher.study.tell(trial, 1.0 if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    searcher.study.ask()  # still running: not finished
    assert searcher.finished_statuses() == {
        "trial_0000": "completed",
        "trial_0001": "pruned",
        "trial_0002": "failed",
    }


def test_every_finished_optuna_state_reads_back_as_a_trial_status():
    from qstudy.config import OPTUNA_STATUSES, TrialStatus

    assert set(OPTUNA_STATUSES) == {state.name for state in optuna.trial.TrialState if state.is_finished()}
    assert all(isinstance(status, TrialStatus) for status in OPTUNA_STATUSES.values())
