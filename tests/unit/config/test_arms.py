"""Comparison studies in study files: `arms:` (one named control) and `seeds:`, validated
with every problem in one pass, each naming file, key and value."""

import textwrap

import pytest

from qstudy.config import ConfigError, StudyConfig, load_study_config
from qstudy.train import check_paths

COMPARISON = """
arms:
  control: {}
  sgd: {optimizer.quantum_weight: 0.5}
  sgd_all: {optimizer.quantum_weight: 0.5, optimizer.scope: all}
seeds: [3, 1, 2]
trial:
  optimizer: {quantum_weight: 0.0}
  train: {max_steps: 20}
"""

OPTIMIZER_KEYS = "lr, betas, eps, weight_decay, quantum_weight, n_qubits, circuit_depth, response, scope, seed, warmup_steps, lr_schedule"


def _write(tmp_path, text, name="study.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(path):
    with pytest.raises(ConfigError) as err:
        load_study_config(path, check_paths=check_paths)
    return err.value.problems


def test_a_comparison_derives_num_samples_and_runs_seeds_major_control_first(tmp_path):
    study = load_study_config(_write(tmp_path, COMPARISON), check_paths=check_paths)
    assert study.is_comparison and study.space == {} and study.baselines == []
    assert study.num_samples == 9  # 3 arms x 3 seeds
    assert [(arm, seed) for arm, seed, _ in study.comparison_trials()] == [
        ("control", 3),
        ("sgd", 3),
        ("sgd_all", 3),
        ("control", 1),
        ("sgd", 1),
        ("sgd_all", 1),
        ("control", 2),
        ("sgd", 2),
        ("sgd_all", 2),
    ]
    overrides = {(arm, seed): values for arm, seed, values in study.comparison_trials()}
    assert overrides["control", 1] == {"seed": 1}
    assert overrides["sgd_all", 2] == {"optimizer.quantum_weight": 0.5, "optimizer.scope": "all", "seed": 2}
    trial = study.trial_config(overrides["sgd_all", 2])
    assert (trial.seed, trial.optimizer.quantum_weight, trial.optimizer.scope) == (2, 0.5, "all")


def test_control_is_run_first_wherever_the_file_names_it(tmp_path):
    path = _write(
        tmp_path,
        """
        arms:
          sgd: {optimizer.quantum_weight: 0.5}
          control: {}
        seeds: [0, 1]
        trial: {optimizer: {quantum_weight: 0.0}}
        """,
    )
    study = load_study_config(path, check_paths=check_paths)
    assert [(arm, seed) for arm, seed, _ in study.comparison_trials()] == [
        ("control", 0),
        ("sgd", 0),
        ("control", 1),
        ("sgd", 1),
    ]


def test_a_given_num_samples_must_equal_arms_times_seeds(tmp_path):
    assert (
        load_study_config(_write(tmp_path, COMPARISON + "num_samples: 9\n"), check_paths=check_paths).num_samples == 9
    )
    path = _write(tmp_path, COMPARISON + "num_samples: 8\nmax_concurrent: 10\n")
    assert _problems(path) == [
        f"{path}: num_samples: a comparison study runs each of its 3 arms once per seed: must be 3 x 3 = 9 "
        "(or left out), got 8",
    ]
    path = _write(tmp_path, COMPARISON + "max_concurrent: 10\n")
    assert _problems(path) == [f"{path}: max_concurrent: must be <= num_samples (9), got 10"]


def test_every_problem_of_arms_and_seeds_in_one_pass(tmp_path):
    path = _write(
        tmp_path,
        """
        space:
          optimizer.lr: {type: float, low: 0.001, high: 0.01}
        baselines:
          - {optimizer.quantum_weight: 0.0}
        sampler: {type: tpe}
        scheduler: {type: asha}
        arms:
          typo: {optimizer.quantum_weigth: 0.5}
          seeded: {optimizer.quantum_weight: 0.5, seed: 7}
          negative: {optimizer.quantum_weight: -1}
          odd_batch: {train.micro_batch_size: 3}
          empty: {}
        seeds: [0, 1, 1, -2]
        trial:
          optimizer: {quantum_weight: 0.0}
          train: {max_steps: 20, global_batch_size: 8, micro_batch_size: 4}
        """,
    )
    assert _problems(path) == [
        f"{path}: space: a comparison study (arms) runs fixed trials and searches nothing: put the settings to "
        "compare into arms, got space optimizer.lr",
        f"{path}: baselines: a comparison study (arms) has its control among its arms (control): put each baseline "
        "into arms, got 1 baseline(s)",
        f"{path}: sampler: a comparison study (arms) samples nothing: every arm runs once per seed, leave sampler out",
        f"{path}: scheduler.type: a comparison study (arms) runs every trial to its last step: an early stop would "
        "leave an arm without the seeds its control has, use none, got 'asha'",
        f"{path}: seeds.3: must be >= 0, got -2",
        f"{path}: seeds: must be distinct (each arm runs once per seed), got [0, 1, 1, -2] (1 repeated)",
        f"{path}: arms: must include an arm named control (the one every other arm is compared with, seed for "
        "seed; control: {} runs trial: as it is), got arms typo, seeded, negative, odd_batch, empty",
        f"{path}: arms.typo.optimizer.quantum_weigth: unknown trial setting; allowed under optimizer: {OPTIMIZER_KEYS}",
        f"{path}: arms.seeded.seed: set by seeds: (every arm runs with each of them, so arms are paired by seed), "
        "not per arm, got 7",
        f"{path}: arms.negative.optimizer.quantum_weight: input should be greater than or equal to 0, got -1",
        f"{path}: arms.odd_batch: train.global_batch_size: must be a multiple of train.micro_batch_size x "
        "resources.num_workers = 3 x 1 = 3, got 8",
        f"{path}: arms.empty: no overrides: it would run the control's trials again; set what this arm changes, "
        "e.g. optimizer.quantum_weight: 0.5, got {}",
    ]


def test_arms_need_seeds_and_seeds_need_arms(tmp_path):
    path = _write(tmp_path, "arms: {control: {}, sgd: {optimizer.quantum_weight: 0.7}}\ntrial: {}\n")
    assert _problems(path) == [
        f"{path}: seeds: required with arms: the trial seeds every arm runs with, e.g. [0, 1, 2]",
    ]
    path = _write(tmp_path, "arms: {control: {}, sgd: {optimizer.quantum_weight: 0.7}}\nseeds: []\ntrial: {}\n")
    assert _problems(path) == [
        f"{path}: seeds: a comparison study needs at least one seed, e.g. [0, 1, 2], got []",
    ]
    path = _write(
        tmp_path,
        "num_samples: 2\nseeds: [0, 1]\nspace: {optimizer.lr: {type: float, low: 0.001, high: 0.01}}\ntrial: {}\n",
    )
    assert _problems(path) == [
        f"{path}: seeds: only used with arms (a comparison study); a search study sets trial.seed or searches seed, "
        "got [0, 1]",
    ]


def test_empty_arms_are_refused(tmp_path):
    path = _write(tmp_path, "num_samples: 2\narms: {}\nseeds: [0]\ntrial: {}\n")
    assert _problems(path) == [
        f"{path}: space: must name at least one searched setting, e.g. optimizer.quantum_weight: "
        "{type: float, low: 0.0, high: 1.0}, or compare named arms (arms: and seeds:)",
        f"{path}: arms: must name at least the control arm, e.g. {{control: {{}}, lam_0.5: "
        "{optimizer.quantum_weight: 0.5}}, got {}",
    ]


def test_an_arm_that_changes_nothing_is_refused(tmp_path):
    # The trial's λ is already 0.5 (the default): this arm's override is the control's value.
    path = _write(
        tmp_path,
        """
        arms:
          control: {}
          same: {optimizer.quantum_weight: 0.5}
          lam: {optimizer.quantum_weight: 0.1}
          lam_again: {optimizer.quantum_weight: 0.1}
        seeds: [0]
        trial: {optimizer: {quantum_weight: 0.5}}
        """,
    )
    assert _problems(path) == [
        f"{path}: arms.same: runs the same trial config as arms.control: it would measure nothing the other does "
        "not, got {'optimizer.quantum_weight': 0.5}",
        f"{path}: arms.lam_again: runs the same trial config as arms.lam: it would measure nothing the other does "
        "not, got {'optimizer.quantum_weight': 0.1}",
    ]


def test_arms_of_the_wrong_type_leave_the_other_checks_running(tmp_path):
    path = _write(
        tmp_path,
        """
        arms: [control, sgd]
        seeds: [0, 0]
        max_concurrent: 0
        trial: {model: {preset: llama-9b}}
        """,
    )
    problems = _problems(path)
    assert problems[0] == f"{path}: max_concurrent: input should be greater than or equal to 1, got 0"
    assert problems[1] == f"{path}: arms: input should be a valid dictionary, got ['control', 'sgd']"
    assert problems[2].startswith(f"{path}: trial.model.preset: input should be 'llama-tiny'")
    # The cross checks still ran: the repeated seed is reported, and no "space" or
    # "num_samples is missing" line blames the file for what the bad arms hid.
    assert problems[3:] == [f"{path}: seeds: must be distinct (each arm runs once per seed), got [0, 0] (0 repeated)"]


def test_a_comparison_study_validates_from_a_mapping_too():
    study = StudyConfig.model_validate(
        {
            "name": "cmp",
            "arms": {"control": {}, "adamw_sdpa": {"quantum.enabled": False}},
            "seeds": [0, 1],
            "trial": {},
        }
    )
    assert study.num_samples == 4
    assert [arm for arm, _, _ in study.comparison_trials()] == ["control", "adamw_sdpa"] * 2
