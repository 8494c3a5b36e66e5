"""The study summary printed at the end: a comparison study's table shows each trial's arm
and seed, and no single trial is called best."""

import optuna

from qstudy.config import StudyConfig
from qstudy.study._driver import _columns, _summary
from qstudy.study._searcher import StudySearcher
from qstudy.tracking import StudyTracker


def test_a_comparison_summary_has_arm_and_seed_columns_and_no_best(tmp_path):
    study = StudyConfig.model_validate(
        {
            "name": "cmp",
            "arms": {"sgd": {"optimizer.quantum_weight": 0.5}, "control": {}},
            "seeds": [4, 5],
            "trial": {"optimizer": {"quantum_weight": 0.0}},
        }
    )
    columns = _columns(study)
    assert columns == ["arm", "seed", "optimizer.quantum_weight"]
    paths = {
        "optuna_url": f"sqlite:///{tmp_path / 'optuna.db'}",
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "output": str(tmp_path),
    }
    searcher = StudySearcher(
        "cmp",
        paths["optuna_url"],
        {},
        optuna.samplers.TPESampler(seed=0),
        "eval_loss",
        "min",
        study.num_samples,
        [],
        study.comparison_trials(),
    )
    for i, value in enumerate([2.0, 1.5, 2.5, 1.25]):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"eval_loss": value, "step": 6, "status": "completed"})
    tracker = StudyTracker(paths["tracking_uri"], "cmp", "cmp")
    tracker.start_study({}, {})
    summary = _summary(study, searcher, tracker, paths, "cmp.yaml", columns, {})
    assert [(r["trial"], r["arm"], r["seed"], r["eval_loss"]) for r in summary["trials"]] == [
        ("trial_0000", "control", 4, 2.0),
        ("trial_0001", "sgd", 4, 1.5),
        ("trial_0002", "control", 5, 2.5),
        ("trial_0003", "sgd", 5, 1.25),
    ]
    assert summary["best"] is None  # trial_0003 is the lowest: one lucky seed, not an answer
    lines = summary["text"].splitlines()
    header = next(line for line in lines if line.startswith("trial"))
    assert header.split() == ["trial", "status", "arm", "seed", "quantum_weight", "step", "eval_loss", "elapsed_s"]
    assert lines[lines.index(header) + 2].split()[:5] == ["trial_0001", "completed", "sgd", "4", "0.5"]
    assert "arms: sgd, control x seeds 4, 5; compare each arm with control seed for seed" in summary["text"]
    # The same as markdown, the parent run's description; links relative to the UI.
    md = summary["description"]
    assert "| trial | status | `arm` | `seed` | `optimizer.quantum_weight` | step | eval_loss |" in md.splitlines()
    assert "| trial_0001 | completed | sgd | 4 | 0.5 | - | 1.5 |" in md.splitlines()  # no result, no step
    assert "**arms: sgd, control x seeds 4, 5; compare each arm with control seed for seed" in md
    eid = tracker.experiment_id
    assert f"- [the study's trials](/#/experiments/{eid}/runs?workflowType=machine_learning)" in md.splitlines()
    # The terminal gets the UI's links at 127.0.0.1:5000 (what `qstudy ui` serves).
    assert f"  runs:    http://127.0.0.1:5000/#/experiments/{eid}/runs?workflowType=machine_learning" in lines
    assert summary["links"]["study"] == (
        f"http://127.0.0.1:5000/#/experiments/{eid}/runs/{tracker.parent_run_id}?workflowType=machine_learning"
    )


# ---------------------------------------------------------------- the pieces, on fake records


def _trial(number, state="COMPLETE", value=None, params=None, **user_attrs):
    """An Optuna FrozenTrial as the summary reads it."""
    from types import SimpleNamespace

    return SimpleNamespace(
        number=number, state=SimpleNamespace(name=state), value=value, params=params or {}, user_attrs=user_attrs
    )


def test_a_row_takes_optunas_value_and_fate_and_the_newest_of_the_store_and_this_drivers_results():
    from qstudy.study._driver import _trial_rows

    trials = [
        _trial(1, value=None, params={"optimizer.lr": 0.1}, **{"qstudy.status": "diverged"}),
        _trial(0, value=1.5, params={"optimizer.lr": 0.01}, **{"qstudy.overrides": '{"optimizer.response": "none"}'}),
        _trial(2, state="RUNNING", **{"qstudy.arm": "top_1", "qstudy.phase": "confirm"}),
    ]
    runs = {
        "trial_0001": {"metrics": {"step": 4, "eval_loss": 9.0, "time_total_s": 30.0}},
        "trial_0002": {"metrics": {"step": 2, "eval_loss": 3.0, "time_total_s": 10.0}},
    }
    results = {"trial_0002": {"step": 6, "eval_loss": 2.5, "time_total_s": 25.0}}  # newer than the store's
    rows = _trial_rows(trials, runs, results, "eval_loss")
    assert rows == [
        {
            "trial": "trial_0000",
            "status": "complete",
            "optimizer.lr": 0.01,
            "optimizer.response": "none",
            "step": None,
            "eval_loss": 1.5,
            "elapsed_s": None,
        },
        {
            "trial": "trial_0001",
            "status": "diverged",
            "optimizer.lr": 0.1,
            "step": 4,
            "eval_loss": 9.0,
            "elapsed_s": 30.0,
        },
        {
            "trial": "trial_0002",
            "status": "running",
            "arm": "top_1",
            "phase": "confirm",
            "step": 6,
            "eval_loss": 2.5,
            "elapsed_s": 25.0,
        },
    ]


def _search_study(metric="eval_loss", mode="min"):
    return StudyConfig.model_validate(
        {
            "name": "s",
            "num_samples": 4,
            "space": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}},
            "objective": {"metric": metric, "mode": mode},
            "trial": {"data": {"task": "classification"}},
        }
    )


ROWS = [
    {"trial": "trial_0000", "status": "completed", "optimizer.lr": 0.01, "eval_loss": 2.0},
    {"trial": "trial_0001", "status": "failed", "optimizer.lr": 0.9, "eval_loss": 0.5},  # lower, but failed
    {"trial": "trial_0002", "status": "completed", "optimizer.lr": 0.03, "eval_loss": 1.25},
    {"trial": "trial_0003", "status": "completed", "optimizer.lr": 0.05, "eval_loss": None},
    {"trial": "trial_0004", "status": "pruned", "optimizer.lr": 0.2, "eval_loss": 3.0},
]


def test_the_best_trial_is_the_best_completed_one_in_the_objectives_direction():
    from qstudy.study._driver import _best_line, _best_trial

    study = _search_study()
    best = _best_trial(study, ROWS)
    assert best == {"trial_id": "trial_0002", "metric": "eval_loss", "value": 1.25, "params": {"optimizer.lr": 0.03}}
    assert _best_line(study, best, "eval_loss") == "best: trial_0002 eval_loss=1.25 {'optimizer.lr': 0.03}"
    accuracy = [{**{k: v for k, v in r.items() if k != "eval_loss"}, "eval_accuracy": r["eval_loss"]} for r in ROWS]
    assert _best_trial(_search_study("eval_accuracy", "max"), accuracy)["trial_id"] == "trial_0000"
    nothing = [r for r in ROWS if r["status"] != "completed" or r["eval_loss"] is None]
    assert _best_trial(study, nothing) is None
    assert _best_line(study, None, "eval_loss") == "best: none completed"


def test_the_confirmed_best_is_the_top_ranked_arm_with_the_searchs_best_beside_it():
    from qstudy.study._driver import _confirmed_best, _confirmed_line

    ranked = [
        {
            "arm": "top_2",
            "from_trial": "trial_0002",
            "values": {"optimizer.lr": 0.03, "seed": 101},
            "mean": 1.3,
            "control_mean": 2.1,
            "seeds": [101, 102],
        },
        {
            "arm": "top_1",
            "from_trial": "trial_0001",
            "values": {"optimizer.lr": 0.01},
            "mean": 1.5,
            "control_mean": 2.1,
            "seeds": [101, 102],
        },
    ]
    search_best = {"trial_id": "trial_0001", "metric": "eval_loss", "value": 1.0, "params": {"optimizer.lr": 0.01}}
    assert _confirmed_best(ranked[0], search_best, "eval_loss") == {
        "trial_id": "trial_0002",
        "metric": "eval_loss",
        "value": 1.3,
        "params": {"optimizer.lr": 0.03},  # the seed is the confirm trial's, not the configuration's
        "arm": "top_2",
        "seeds": [101, 102],
        "control_value": 2.1,
        "search_best_trial_id": "trial_0001",
    }
    assert _confirmed_best(ranked[0], None, "eval_loss")["search_best_trial_id"] is None
    assert _confirmed_line(ranked, search_best, "eval_loss") == (
        "confirmed best: top_2 (trial_0002's configuration) mean eval_loss=1.3 over seeds 101, 102, control mean "
        "eval_loss=2.1 over the same seeds; the search's best trial was trial_0001 (eval_loss=1); "
        "top_1 mean 1.5 (control 2.1, seeds 101, 102)"
    )
    assert _confirmed_line([], None, "eval_loss") == (
        "confirmed best: none (no top arm completed on a seed the control completed on); the search completed no trial"
    )
