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
