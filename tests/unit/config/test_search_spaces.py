"""Every file shipped in search_spaces/ loads, says how to run it, and carries its control.

A file with a study key (``trial:``, ``space:``, ...) is a study (``qstudy sweep``);
any other is a trial config (``qstudy train``).
"""

import math
from pathlib import Path

import pytest

from qstudy.config import (
    StudyConfig,
    apply_overrides,
    is_study_file,
    load_study_config,
    load_trial_config,
    load_yaml,
)
from qstudy.train import check_paths

SEARCH_SPACES = Path(__file__).resolve().parents[3] / "search_spaces"
FILES = sorted(SEARCH_SPACES.glob("*.yaml"))
STUDIES = [path for path in FILES if is_study_file(load_yaml(path))]


def _has_paths(study: StudyConfig) -> bool:
    data = study.trial.data
    return study.trial.model.path is not None or data.train_path is not None or data.eval_path is not None


def _is_adamw(trial) -> bool:
    return trial.optimizer.quantum_weight == 0.0 or trial.optimizer.response == "none"


def _control_trials(study: StudyConfig) -> list:
    """The trial configs a study runs as fixed trials: its baselines or its arms."""
    if study.is_comparison:
        return [apply_overrides(study.trial, overrides) for overrides in study.arms.values()]
    return [apply_overrides(study.trial, baseline) for baseline in study.baselines]


def test_the_shipped_files_are_there():
    names = {path.name for path in FILES}
    assert {
        "smoke.yaml",
        "paper_gsm8k_llama1b.yaml",
        "paper_text_classification.yaml",
        "ablation_response.yaml",
        "trial_tiny.yaml",
    } <= names
    assert {path.name for path in STUDIES} == names - {"trial_tiny.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_file_loads_and_starts_with_its_command(path):
    first = path.read_text().splitlines()[0]
    rel = f"search_spaces/{path.name}"
    if path in STUDIES:
        # Cluster paths do not exist here: those studies are loaded with the path checks off.
        study = load_study_config(path, check_paths=None)
        if not _has_paths(study):
            load_study_config(path, check_paths=check_paths)
        assert study.name == path.stem
        assert first.startswith(f"# qstudy sweep {rel}")
    else:
        load_trial_config(path, check_paths=check_paths)
        assert first.startswith(f"# qstudy train {rel}")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_study_carries_a_true_control(path):
    """AdamW with SDPA attention (no quantum attention, λ = 0) as a fixed trial, and where
    the study's trials use the quantum attention, AdamW with it too: so the optimizer's
    and the attention's effects can be told apart."""
    study = load_study_config(path, check_paths=None)
    fixed = _control_trials(study)
    assert any(_is_adamw(t) and not t.quantum.enabled for t in fixed), f"{path.name}: no AdamW + SDPA control"
    if study.trial.quantum.enabled:
        assert any(_is_adamw(t) and t.quantum.enabled for t in fixed), f"{path.name}: no AdamW + quantum attention arm"
    if study.is_comparison:
        control = apply_overrides(study.trial, study.arms["control"])
        assert _is_adamw(control) and not control.quantum.enabled, f"{path.name}: arms.control is not AdamW + SDPA"


def test_smoke_study_fits_a_laptop():
    study = load_study_config(SEARCH_SPACES / "smoke.yaml", check_paths=check_paths)
    trial = study.trial
    assert study.num_samples == 4 and study.max_concurrent == 2
    assert study.baselines == [
        {"quantum.enabled": False, "optimizer.quantum_weight": 0.0},
        {"optimizer.quantum_weight": 0.0},
    ]
    assert trial.optimizer.scope == "all"  # scope leading perturbs coordinates with no gradient here
    assert set(study.space) == {"optimizer.quantum_weight", "quantum.n_qubits", "quantum.circuit_depth"}
    assert (study.space["quantum.n_qubits"].low, study.space["quantum.n_qubits"].high) == (2, 4)
    assert (study.space["quantum.circuit_depth"].low, study.space["quantum.circuit_depth"].high) == (1, 2)
    assert (trial.model.preset, trial.data.task, trial.deepspeed.preset) == ("llama-tiny", "synthetic_gsm8k", "zero2")
    assert (trial.resources.num_workers, trial.resources.use_gpu) == (1, False)
    assert trial.train.max_steps <= 20
    assert study.tracking.uri == "sqlite:///mlruns.db"
    # The confirm phase adds the best configuration and the control on one fresh seed: 2 trials.
    assert (study.confirm.top_k, study.confirm.seeds, study.confirm_trial_count) == (1, [1], 2)


def test_paper_gsm8k_is_one_epoch_on_gpus():
    study = load_study_config(SEARCH_SPACES / "paper_gsm8k_llama1b.yaml", check_paths=None)
    trial = study.trial
    assert trial.train.max_steps == math.ceil(7473 / trial.train.global_batch_size)
    assert trial.train.gradient_clipping == 1.0
    assert (trial.deepspeed.preset, trial.model.dtype, trial.resources.use_gpu) == ("zero2", "bfloat16", True)
    assert (trial.data.task, trial.model.preset) == ("gsm8k", "llama-3.2-1b")
    assert study.space["optimizer.lr"].log
    assert (study.space["quantum.n_qubits"].low, study.space["quantum.n_qubits"].high) == (2, 8)
    assert (study.space["quantum.circuit_depth"].low, study.space["quantum.circuit_depth"].high) == (1, 4)
    assert (study.confirm.top_k, study.confirm.seeds) == (3, [1, 2, 3])


def test_the_scaling_search_confirms_its_top_3():
    study = load_study_config(SEARCH_SPACES / "scaling_llama.yaml", check_paths=None)
    assert (study.confirm.top_k, study.confirm.seeds, study.confirm_trial_count) == (3, [1, 2, 3], 12)
    assert study.baselines[0]["quantum.enabled"] is False  # the confirm phase's control


@pytest.mark.parametrize(
    "name, arms, seeds",
    [
        (
            "paper_text_classification.yaml",
            [
                "control",
                "attention",
                "lambda_0.1",
                "lambda_0.3",
                "lambda_0.5",
                "lambda_0.7",
                "lambda_0.5_all",
                "gaussian_0.5_all",
            ],
            [0, 1, 2, 3, 4],
        ),
        ("ablation_response.yaml", ["control", "attention", "sin", "circuit", "gaussian"], [0, 1, 2]),
    ],
)
def test_experiment_1_studies_compare_arms_over_seeds(name, arms, seeds):
    study = load_study_config(SEARCH_SPACES / name, check_paths=check_paths)
    assert study.is_comparison and list(study.arms) == arms and study.seeds == seeds
    assert study.num_samples == len(arms) * len(seeds)
    assert study.trial.data.task == "classification"
    assert (study.objective.metric, study.objective.mode) == ("eval_accuracy", "max")
    # The paper's Table II optimizer: Adam, lr 1e-3, no weight decay.
    optimizer = study.trial.optimizer
    assert (optimizer.lr, optimizer.betas, optimizer.eps, optimizer.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert study.trial.train.global_batch_size == 32


def test_experiment_1_carries_the_papers_claims():
    study = load_study_config(SEARCH_SPACES / "paper_text_classification.yaml", check_paths=check_paths)
    measures = {claim.measure for claim in study.claims}
    assert measures == {"epochs_to_target", "final", "time_per_step", "time_to_target", "best_arm"}
    assert {claim.arm for claim in study.claims} == {"lambda_0.5", "lambda_0.5_all"}
    assert {gap.topic for gap in study.paper_gaps} >= {"the synthetic task", "the quantum attention's score"}
