"""A search study with a confirm phase end to end: after the search, its best
configuration and the control run again on fresh seeds, as trials of the same Optuna
study and child runs of the same MLflow parent run; a second sweep runs nothing new."""

import json

import optuna
import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration


def test_the_best_configuration_and_the_control_run_again_on_the_fresh_seeds(tmp_path):
    # 2 search trials (the control, 1 sampled), then top_1 and the control on seeds 7 and 8:
    # the ranking itself is tests/unit/study/test_confirm.py's; this is the machinery.
    path = write_study(
        tmp_path,
        "confirmed",
        num_samples=2,
        confirm={"top_k": 1, "seeds": [7, 8]},
        **{"trial.optimizer": {"lr": 3e-3, "quantum_weight": 0.0, "scope": "all"}},
    )
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert "study confirmed: 2/2 trials" in out

    storage = f"sqlite:///{tmp_path / 'runs' / 'confirmed' / 'optuna.db'}"
    study = optuna.load_study(study_name="confirmed", storage=storage)
    trials = study.trials
    search, confirm = trials[:2], trials[2:]
    assert all("qstudy.phase" not in t.user_attrs for t in search)
    assert all(t.state.name == "COMPLETE" for t in trials)
    selection = json.loads(study.user_attrs["qstudy.confirm"])
    assert sorted(selection) == ["control", "top_1"] and selection["control"]["from_trial"] == "trial_0000"
    assert selection["top_1"]["from_trial"] == "trial_0001"  # the control is never a top arm
    assert [
        (
            t.number,
            t.user_attrs["qstudy.arm"],
            t.user_attrs["qstudy.phase"],
            json.loads(t.user_attrs["qstudy.overrides"])["seed"],
        )
        for t in confirm
    ] == [
        (2, "control", "confirm", 7),
        (3, "top_1", "confirm", 7),
        (4, "control", "confirm", 8),
        (5, "top_1", "confirm", 8),
    ]
    assert confirm[1].params == search[1].params  # top_1 runs the search's configuration
    assert all(max(t.intermediate_values) == 6 for t in confirm)  # each to its last step

    client, parents, children = study_runs(tmp_path, "confirmed")
    assert len(parents) == 1 and len(children) == 6
    runs = {run.data.tags["qstudy.trial_id"]: run for run in children}
    for number, arm, seed in [(2, "control", 7), (3, "top_1", 7), (4, "control", 8), (5, "top_1", 8)]:
        run = runs[f"trial_{number:04d}"]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert (run.data.tags["qstudy.arm"], run.data.params["arm"], run.data.tags["qstudy.phase"]) == (
            arm,
            arm,
            "confirm",
        )
        assert int(run.data.params["seed"]) == seed
        assert run.data.tags["qstudy.status"] == "completed"
    for number in range(2):
        assert "qstudy.phase" not in runs[f"trial_{number:04d}"].data.tags
    # The seed reaches the model: the control and top_1 start from the same model on a seed, not across seeds.
    initial = {n: runs[f"trial_{n:04d}"].data.metrics["initial_eval_loss"] for n in range(2, 6)}
    assert initial[2] == pytest.approx(initial[3], rel=1e-6, abs=1e-7)
    assert initial[2] != pytest.approx(initial[4], rel=1e-6)

    top_1 = [t.value for t in confirm if t.user_attrs["qstudy.arm"] == "top_1"]
    assert "confirm: 4/4 trials on fresh seeds 7, 8" in out
    assert (
        f"confirmed best: top_1 ({selection['top_1']['from_trial']}'s configuration) mean eval_loss="
        f"{sum(top_1) / 2:.4g} over seeds 7, 8" in out
    )
    assert f"the search's best trial was trial_{min(search, key=lambda t: t.value).number:04d}" in out
    assert parents[0].data.tags["qstudy.best_arm"] == "top_1"
    assert parents[0].data.metrics["best_eval_loss"] == pytest.approx(sum(top_1) / 2)

    # One Tune run held both phases, and the confirm trials ran in the search's warm trial
    # processes (Tune keeps at least one cached across the wait for the search's last result).
    tune_runs = sorted(p.name for p in (tmp_path / "runs" / "confirmed" / "tune").glob("tune-*"))
    assert len(tune_runs) == 1 and not tune_runs[0].endswith("-confirm")
    pids = {
        folder.name: json.loads((folder / "result.json").read_text().splitlines()[0])["pid"]
        for folder in (tmp_path / "runs" / "confirmed" / "tune" / tune_runs[0]).glob("trial_*")
    }
    assert sorted(pids) == [f"trial_{n:04d}" for n in range(6)]
    search_pids = {pids["trial_0000"], pids["trial_0001"]}
    assert {pids[f"trial_{n:04d}"] for n in range(2, 6)} & search_pids

    # A second sweep of the finished study runs nothing and keeps the selection.
    again = sweep(path, tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-4000:]
    assert "study confirmed: 2/2 trials" in out and "confirm: 4/4 trials" in out
    study = optuna.load_study(study_name="confirmed", storage=storage)
    assert len(study.trials) == 6 and json.loads(study.user_attrs["qstudy.confirm"]) == selection
    assert sorted(p.name for p in (tmp_path / "runs" / "confirmed" / "tune").glob("tune-*")) == tune_runs
    _, parents, children = study_runs(tmp_path, "confirmed")
    assert len(parents) == 1 and len(children) == 6
