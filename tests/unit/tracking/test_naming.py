"""Names: trial ids and run names, short param titles, and a metric's name in MLflow."""

import pytest

from qstudy.tracking import mlflow_metric_name, short_names, trial_name, trial_number, trial_run_name


def test_a_trial_id_is_its_optuna_number_and_its_run_name_is_under_the_study():
    assert trial_name(3) == "trial_0003"
    assert trial_name(12345) == "trial_12345"  # past 9999 it grows, never wraps
    assert [trial_number(trial_name(n)) for n in (0, 7, 12345)] == [0, 7, 12345]
    assert trial_run_name("paper", trial_name(3)) == "paper/trial_0003"


def test_a_short_name_is_the_last_part_where_no_other_key_ends_in_it():
    keys = ["optimizer.lr", "optimizer.quantum_weight", "quantum.n_qubits", "seed"]
    assert short_names(keys) == {
        "optimizer.lr": "lr",
        "optimizer.quantum_weight": "quantum_weight",
        "quantum.n_qubits": "n_qubits",
        "seed": "seed",
    }
    clash = short_names(iter(["optimizer.lr", "scheduler.lr", "quantum.n_qubits"]))  # any iterable, read once
    assert clash == {"optimizer.lr": "optimizer.lr", "scheduler.lr": "scheduler.lr", "quantum.n_qubits": "n_qubits"}


@pytest.mark.parametrize(
    "key, name",
    [
        ("eval_loss", "eval_loss"),
        ("train_loss", "train_loss"),
        ("mean_train_loss", "mean_train_loss"),
        ("lr", "lr"),
        ("initial_eval_loss", "initial_eval_loss"),
        ("perturbation_to_adam_ratio", "perturbation_to_adam_ratio"),
        ("step_time_s", "timing/step_time_s"),
        ("tokens_per_s", "timing/tokens_per_s"),
        ("train_time_s", "timing/train_time_s"),
        ("startup_imports_s", "timing/startup_imports_s"),
        ("optimizer_time_share", "timing/optimizer_time_share"),
        ("quantum_attention_forward_time_share", "timing/quantum_attention_forward_time_share"),
        ("gpu_max_memory_allocated_gib", "system/gpu_max_memory_allocated_gib"),
        ("resumed_from_step", "trial/resumed_from_step"),
        ("model_parameters", "trial/model_parameters"),
        ("aer_parity", "trial/aer_parity"),
        ("timing/control/step_s", "timing/control/step_s"),
    ],
)
def test_mlflow_metric_names_group_cost_figures(key, name):
    assert mlflow_metric_name(key) == name
