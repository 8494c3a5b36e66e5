"""A comparison study end to end: arms x seeds through Tune, Optuna and MLflow, each pair
run once, arm and control paired by seed (same initial model and data)."""

import pytest
from _studies import study_runs, sweep, write_comparison

pytestmark = pytest.mark.integration


def test_two_arms_by_two_seeds_run_once_each_and_pair_by_seed(tmp_path):
    # The arm changes only the optimizer (λ; scope all so every coordinate is perturbed
    # and the final loss must move): its initial model and data are the control's.
    path = write_comparison(
        tmp_path, "cmp", arms={"control": {}, "sgd": {"optimizer.quantum_weight": 1.0}}, seeds=[0, 1],
        **{"trial.optimizer": {"lr": 3e-3, "quantum_weight": 0.0, "scope": "all"}},
    )
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert "study cmp: 4/4 trials" in out
    header = next(line for line in out.splitlines() if line.startswith("trial ") and "arm" in line)
    assert header.split()[:4] == ["trial", "status", "arm", "seed"]
    assert "no single trial is called best" in out

    client, parents, children = study_runs(tmp_path, "cmp")
    assert len(parents) == 1 and parents[0].data.params["arms"] == "control, sgd"
    assert len(children) == 4
    by_pair = {}
    for run in children:
        assert run.data.tags["qstudy.status"] == "completed"
        arm = run.data.params["arm"]
        assert run.data.tags["qstudy.arm"] == arm
        assert float(run.data.params["optimizer.quantum_weight"]) == (1.0 if arm == "sgd" else 0.0)
        by_pair[arm, int(run.data.params["seed"])] = run
    assert sorted(by_pair) == [("control", 0), ("control", 1), ("sgd", 0), ("sgd", 1)]  # each pair once
    # Seeds-major, control first.
    assert [by_pair[p].data.tags["qstudy.trial_id"] for p in [("control", 0), ("sgd", 0), ("control", 1), ("sgd", 1)]] == [
        "trial_0000", "trial_0001", "trial_0002", "trial_0003"]

    metrics = {pair: run.data.metrics for pair, run in by_pair.items()}
    for seed in (0, 1):
        control, arm = metrics["control", seed], metrics["sgd", seed]
        assert arm["initial_eval_loss"] == pytest.approx(control["initial_eval_loss"], rel=1e-6, abs=1e-7)
        assert arm["eval_loss"] != control["eval_loss"]  # the arm's λ reached its optimizer
    # The seed reaches the model's init: the two seeds start from different models.
    assert metrics["control", 0]["initial_eval_loss"] != pytest.approx(metrics["control", 1]["initial_eval_loss"], rel=1e-6)

    # Resumable as a search study: a second sweep finds every pair done and runs nothing.
    again = sweep(path, tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-4000:]
    assert "study cmp: 4/4 trials" in out
    _, parents, children = study_runs(tmp_path, "cmp")
    assert len(parents) == 1 and len(children) == 4

    import optuna

    trials = optuna.load_study(study_name="cmp", storage=f"sqlite:///{tmp_path / 'runs' / 'cmp' / 'optuna.db'}").trials
    assert [(t.user_attrs["qstudy.arm"], t.state.name) for t in trials] == [
        ("control", "COMPLETE"), ("sgd", "COMPLETE"), ("control", "COMPLETE"), ("sgd", "COMPLETE")]
