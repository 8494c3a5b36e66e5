"""A comparison study end to end (real Ray, Optuna, MLflow): arms x seeds run once each,
paired by seed, resumable; then `qstudy report` on it: every number of report.json
recomputed here from MLflow's API, figures that decode and are not blank, failed and
diverged trials listed and kept out of the averages."""

import json
import subprocess
import sys

import pytest
from _studies import study_runs, sweep, write_comparison
from scipy import stats

pytestmark = pytest.mark.integration

SEEDS = [0, 1]
ARMS = {
    "control": {},
    # Token 0 (padding) never occurs in the classification task: scope leading perturbs its
    # embedding row only, whose gradient is 0, so this arm must equal the control.
    "leading": {"optimizer.quantum_weight": 1.0, "optimizer.scope": "leading"},
    "all": {"optimizer.quantum_weight": 1.0, "optimizer.scope": "all"},
    "diverges": {"optimizer.lr": 1.0e30},
    # A 2-layer model: the worker refuses the circuit on layer 7 when it builds the model.
    "fails": {"quantum.enabled": True, "quantum.layers": [7]},
}
ORDER = ["control", "all", "diverges", "fails", "leading"]  # the file's order (the YAML is written key-sorted)
TARGET = 1.385  # eval_loss; ln 4 = 1.386 is chance for 4 classes: some seeds reach it in 8 steps, some may not


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    path = write_comparison(
        tmp_path,
        "rep",
        arms=ARMS,
        seeds=SEEDS,
        **{
            "objective": {"metric": "eval_loss", "mode": "min"},
            "trial.quantum": {"enabled": False, "n_qubits": 2, "circuit_depth": 1},
            "trial.data": {"task": "classification", "train_examples": 64, "eval_examples": 64},
            "trial.train": {
                "max_steps": 8,
                "global_batch_size": 16,
                "micro_batch_size": 16,
                "eval_every_steps": 2,
                "log_every_steps": 2,
                "gradient_clipping": 0.0,
            },
            "trial.optimizer": {"lr": 3e-3, "weight_decay": 0.0, "quantum_weight": 0.0},
            "claims": [
                {
                    "text": "λ = 1 with scope all ends lower",
                    "measure": "final",
                    "metric": "eval_loss",
                    "arm": "all",
                    "paper": 1.2,
                    "paper_control": 1.3,
                },
                {
                    "text": "scope all reaches chance loss sooner",
                    "measure": "steps_to_target",
                    "metric": "eval_loss",
                    "target": TARGET,
                    "arm": "all",
                    "paper": 2,
                    "paper_control": 4,
                },
                {
                    "text": "scope all costs 10% per step",
                    "measure": "time_per_step",
                    "arm": "all",
                    "paper_change": 0.10,
                },
            ],
        },
    )
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-4000:]
    report = subprocess.run(
        [sys.executable, "-m", "qstudy.cli", "report", str(path), "--timing-rounds", "3", "--timing-steps", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    folder = tmp_path / "runs" / "rep" / "report"
    return {
        "tmp": tmp_path,
        "path": path,
        "sweep_out": out,
        "out": report.stdout,
        "folder": folder,
        "json": json.loads((folder / "report.json").read_text()),
    }


def _mlflow(tmp_path):
    """Per arm, seed -> (status, eval_loss curve) straight from MLflow's API."""
    client, parents, children = study_runs(tmp_path, "rep")
    by_arm = {}
    for run in children:
        curve = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval_loss"))
        by_arm.setdefault(run.data.tags["qstudy.arm"], {})[int(run.data.params["seed"])] = (
            run.data.tags["qstudy.status"],
            curve,
        )
    return client, parents[0], by_arm


def _ci(values):
    mean = sum(values) / len(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, low, high


def test_arms_by_seeds_run_once_each_paired_by_seed_and_resume(reported):
    out, tmp_path = reported["sweep_out"], reported["tmp"]
    assert "study rep: 10/10 trials" in out
    header = next(line for line in out.splitlines() if line.startswith("trial ") and "arm" in line)
    assert header.split()[:4] == ["trial", "status", "arm", "seed"]
    assert "no single trial is called best" in out
    client, parents, children = study_runs(tmp_path, "rep")
    assert len(parents) == 1 and parents[0].data.params["arms"] == ", ".join(sorted(ARMS))  # the file's order
    by_pair = {}
    for run in children:
        arm = run.data.params["arm"]
        assert run.data.tags["qstudy.arm"] == arm
        assert float(run.data.params["optimizer.quantum_weight"]) == (1.0 if arm in ("leading", "all") else 0.0)
        by_pair[arm, int(run.data.params["seed"])] = run
    assert sorted(by_pair) == sorted((arm, seed) for arm in ARMS for seed in SEEDS)  # each pair once
    # Seeds-major, control first.
    assert [by_pair[arm, seed].data.tags["qstudy.trial_id"] for seed in SEEDS for arm in ORDER] == [
        f"trial_{i:04d}" for i in range(10)
    ]
    metrics = {pair: run.data.metrics for pair, run in by_pair.items()}
    for seed in SEEDS:  # paired: the arm starts from the control's model on the control's data
        control, arm = metrics["control", seed], metrics["all", seed]
        assert arm["initial_eval_loss"] == pytest.approx(control["initial_eval_loss"], rel=1e-6, abs=1e-7)
        assert arm["eval_loss"] != control["eval_loss"]  # λ reached the optimizer
    # The seed reaches the model's init: the two seeds start from different models.
    assert metrics["control", 0]["initial_eval_loss"] != pytest.approx(
        metrics["control", 1]["initial_eval_loss"], rel=1e-6
    )

    # Resumable as a search study: a second sweep finds every pair done and runs nothing.
    again = sweep(reported["path"], tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-4000:]
    assert "study rep: 10/10 trials" in out
    _, parents, children = study_runs(tmp_path, "rep")
    assert len(parents) == 1 and len(children) == 10
    import optuna

    trials = optuna.load_study(study_name="rep", storage=f"sqlite:///{tmp_path / 'runs' / 'rep' / 'optuna.db'}").trials
    state = {"diverges": "FAIL", "fails": "FAIL"}
    assert [(t.user_attrs["qstudy.arm"], t.state.name) for t in trials] == [
        (arm, state.get(arm, "COMPLETE")) for seed in SEEDS for arm in ORDER
    ]


def test_every_number_equals_mlflow_recomputed(reported):
    report = reported["json"]
    client, parent, by_arm = _mlflow(reported["tmp"])
    arms = report["arms"]["comparison"]
    assert list(arms) == ORDER
    control = {seed: curve[-1][1] for seed, (status, curve) in by_arm["control"].items() if status == "completed"}
    for name in ("control", "leading", "all"):
        finals = {seed: curve[-1][1] for seed, (status, curve) in by_arm[name].items() if status == "completed"}
        assert sorted(finals) == SEEDS
        got = arms[name]
        assert got["n"] == 2 and got["final_per_seed"] == {str(s): v for s, v in finals.items()}
        mean, low, high = _ci(list(finals.values()))
        if low != low:  # NaN: both seeds equal (no spread); the report gives a zero-width interval
            low = high = mean
        assert (got["final"]["mean"], got["final"]["low"], got["final"]["high"]) == (
            pytest.approx(mean, abs=1e-12),
            pytest.approx(low, abs=1e-12),
            pytest.approx(high, abs=1e-12),
        )
        if name != "control":
            diffs = [finals[s] - control[s] for s in SEEDS]
            mean, low, high = _ci(diffs)
            if low != low:
                low = high = mean
            assert (got["difference"]["mean"], got["difference"]["low"], got["difference"]["high"]) == (
                pytest.approx(mean, abs=1e-12),
                pytest.approx(low, abs=1e-12),
                pytest.approx(high, abs=1e-12),
            )
        # Steps to the target, censored at the last evaluation when never reached.
        (target,) = got["to_target"]
        for seed in SEEDS:
            curve = by_arm[name][seed][1]
            first = next((step for step, value in curve if value <= TARGET), None)
            assert target["per_seed"][str(seed)] == {"step": first or curve[-1][0], "reached": first is not None}
    # The paired timing: logged on the parent run, the ratios recomputed from it.
    timing = {
        arm: [
            m.value
            for m in sorted(client.get_metric_history(parent.info.run_id, f"timing/{arm}/step_s"), key=lambda m: m.step)
        ]
        for arm in ("control", "leading", "all")
    }
    # A failed or diverged arm has no cost to compare: it is not timed.
    assert not client.get_metric_history(parent.info.run_id, "timing/fails/step_s")
    assert all(len(v) == 3 and all(x > 0 for x in v) for v in timing.values())
    ratios = [a / c for a, c in zip(timing["all"], timing["control"])]
    mean, low, high = _ci(ratios)
    assert arms["all"]["time_per_step_ratio"] == {
        "mean": pytest.approx(mean, abs=1e-12),
        "low": pytest.approx(low, abs=1e-12),
        "high": pytest.approx(high, abs=1e-12),
        "n": 3,
    }
    (final_claim, steps_claim, time_claim) = report["claims"]
    assert final_claim["difference"] == arms["all"]["difference"]
    assert time_claim["change"]["mean"] == pytest.approx(mean - 1, abs=1e-12)
    assert {final_claim["verdict"], steps_claim["verdict"], time_claim["verdict"]} <= {
        "holds",
        "not supported",
        "contradicted",
    }


def test_no_effect_is_detected_and_explained(reported):
    arms = reported["json"]["arms"]["comparison"]
    assert arms["leading"]["identical_to"] == "control"
    assert "scope leading" in arms["leading"]["identical_reason"]
    assert arms["all"]["identical_to"] is None
    assert "identical to control" in reported["out"]
    # Why λ could matter at most a little: the perturbation beside the Adam step, in numbers.
    assert arms["all"]["diagnostics"]["nonzero_perturbation_coordinates"] > 0
    assert 0 < arms["all"]["diagnostics"]["perturbation_to_adam_ratio"] < 1
    assert arms["leading"]["diagnostics"]["nonzero_perturbation_coordinates"] == 0


def test_failed_and_diverged_trials_are_listed_not_averaged(reported):
    report = reported["json"]
    listed = {(t["arm"], t["seed"]): t["status"] for t in report["not_completed"]}
    assert listed == {
        ("diverges", 0): "diverged",
        ("diverges", 1): "diverged",
        ("fails", 0): "failed",
        ("fails", 1): "failed",
    }
    for name in ("diverges", "fails"):
        arm = report["arms"]["comparison"][name]
        assert arm["n"] == 0 and arm["final"] is None and arm["trials"] == 2
    md = (reported["folder"] / "report.md").read_text()
    assert "## Trials not completed (not averaged in)" in md and "diverged" in md and "failed" in md


def test_figures_decode_are_not_blank_and_are_on_the_parent_run(reported):
    import matplotlib.image

    folder, report = reported["folder"], reported["json"]
    assert {"curves.png", "final.png"} <= set(report["figures"])
    for name in report["figures"]:
        pixels = matplotlib.image.imread(folder / "figures" / name)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
        assert pixels[..., :3].std() > 0.05, f"{name} is blank"
    client, parent, _ = _mlflow(reported["tmp"])
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.json", "report/figures"} <= logged
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report/figures")} == {
        f"report/figures/{n}" for n in report["figures"]
    }
    # The parent run's page tells the story: the sweep's description, then the report's arm table and verdicts.
    note = parent.data.tags["mlflow.note.content"]
    assert note.index("## Study") < note.index("## The report (`qstudy report`)") < note.index("| arm | n |")
    assert all(f"| {name} |" in note for name in report["arms"]["comparison"])
