"""The no-effect detector on real training: experiment 1's classification task, where token
0 (padding) never occurs, so ``scope: leading`` (the model's first coordinates: the
embedding row of token 0) perturbs coordinates whose gradient is always zero."""

import math

import pytest
import torch

from qstudy.config import StudyConfig
from qstudy.report._analysis import _identical, identical_curves
from qstudy.report._read import TrialRecord
from qstudy.report._timing import _Stepper

STEPS = 8


def _study() -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": "no_effect",
            "objective": {"metric": "eval_accuracy", "mode": "max"},
            "arms": {
                "control": {"optimizer.quantum_weight": 0.0},
                "leading": {"optimizer.quantum_weight": 0.9, "optimizer.scope": "leading"},
                "all": {"optimizer.quantum_weight": 0.9, "optimizer.scope": "all"},
            },
            "seeds": [0],
            "trial": {
                "model": {"preset": "llama-tiny", "dtype": "float32"},
                "quantum": {"enabled": False},
                "optimizer": {"lr": 3e-3, "weight_decay": 0.0},
                "data": {"task": "classification", "train_examples": 64, "eval_examples": 32},
                "train": {
                    "max_steps": STEPS,
                    "global_batch_size": 16,
                    "micro_batch_size": 16,
                    "gradient_clipping": 0.0,
                },
            },
        }
    )


def _train(study, arm: str) -> TrialRecord:
    """A trial's curves from STEPS real steps of the arm (no Ray: the loop of the trial's worker)."""
    from qstudy.models import build_model
    from qstudy.optim import SuperpositionalAdamW
    from qstudy.train import build_trial_data

    trial = study.trial_config({**study.arms[arm], "seed": 0})
    task = build_trial_data(trial)
    torch.manual_seed(0)
    model = build_model(trial, task)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = SuperpositionalAdamW(params, **trial.optimizer.optimizer_kwargs())
    optimizer.measure_perturbation = True
    stepper = _Stepper(trial, task, model, params, optimizer)
    losses, nonzero, perturbed = [], [], []
    for step in range(1, STEPS + 1):
        with torch.no_grad():
            batch = next(task.micro_batches(step, 0, 1))
            losses.append((step, float(model(**batch).loss)))
        stepper.step()
        stats = optimizer.perturbation_stats()
        nonzero.append((step, stats["nonzero"]))
        perturbed.append((step, stats["perturbed"]))
    values = {k: v for k, v in study.arms[arm].items()} | {"seed": 0}
    return TrialRecord(
        trial_id=arm,
        number=0,
        status="completed",
        arm=arm,
        phase="comparison",
        seed=0,
        baseline=None,
        values=values,
        objective=None,
        run_id=None,
        params={
            "optimizer.quantum_weight": str(trial.optimizer.quantum_weight),
            "optimizer.scope": trial.optimizer.scope,
        },
        final={},
        curves={"train_loss": losses, "nonzero_perturbation_coordinates": nonzero, "perturbed_coordinates": perturbed},
    )


@pytest.fixture(scope="module")
def trained():
    study = _study()
    return {arm: _train(study, arm) for arm in study.arms}


def test_scope_leading_on_an_absent_token_is_reported_identical_with_its_reason(trained):
    assert all(math.isfinite(v) for _, v in trained["leading"].curves["train_loss"])
    completed = {arm: {0: t} for arm, t in trained.items()}
    twin, reason = _identical("leading", ["control"], completed, {})
    assert twin == "control"
    assert "zero gradient at every reported step" in reason and "scope leading" in reason


def test_scope_all_moves_the_run_and_is_not_reported_identical(trained):
    assert not identical_curves(trained["all"], trained["control"])
    completed = {arm: {0: t} for arm, t in trained.items()}
    assert _identical("all", ["control", "leading"], completed, {}) == (None, None)
    assert max(v for _, v in trained["all"].curves["nonzero_perturbation_coordinates"]) > 0


def test_a_difference_beyond_the_tolerance_is_a_difference(trained):
    base = trained["control"]
    nudged = TrialRecord(
        **{
            **base.__dict__,
            "curves": {"train_loss": [(s, v + 2e-6 * max(1, abs(v))) for s, v in base.curves["train_loss"]]},
        }
    )
    assert not identical_curves(nudged, base)
    close = TrialRecord(
        **{**base.__dict__, "curves": {"train_loss": [(s, v + 1e-8) for s, v in base.curves["train_loss"]]}}
    )
    assert identical_curves(close, base)
