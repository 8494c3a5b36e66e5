"""Study config: every problem of a study file at once, with file, dotted key and value."""

import textwrap

import pytest

from qstudy.config import (
    ConfigError,
    ParamSpec,
    StudyConfig,
    TrialConfig,
    apply_overrides,
    is_study_file,
    load_study_config,
)
from qstudy.tracking import absolute_tracking_uri
from qstudy.train import check_paths

MINIMAL = """
num_samples: 4
space:
  optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}
baselines:
  - {optimizer.quantum_weight: 0.0}
trial:
  train: {max_steps: 20}
"""


def _write(tmp_path, text, name="study.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(path, **kwargs):
    with pytest.raises(ConfigError) as err:
        load_study_config(path, **{"check_paths": check_paths, **kwargs})
    return err.value.problems


# ------------------------------------------------------------------------ a good file


def test_minimal_study_defaults(tmp_path):
    study = load_study_config(_write(tmp_path, MINIMAL, "my_study.yaml"), check_paths=check_paths)
    assert study.name == "my_study"
    assert study.experiment_name == "my_study"
    assert (study.objective.metric, study.objective.mode) == ("eval_loss", "min")
    assert (study.sampler.type, study.sampler.seed, study.scheduler.type) == ("tpe", 0, "none")
    assert (study.max_concurrent, study.trial_timeout_s, study.trial_retries) == (1, 3600, 0)
    assert study.trial.train.max_steps == 20
    assert study.tracking.uri == "sqlite:///mlruns.db"
    assert absolute_tracking_uri(study.tracking.uri, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns.db"
    assert study.storage_path_absolute(tmp_path) == str(tmp_path.resolve() / "qstudy_runs")
    # 20 steps, log every step: one report per step.
    assert study.asha_max_t() == 20


def test_every_field_has_a_description():
    from qstudy.config import ObjectiveConfig, SamplerConfig, SchedulerConfig, TrackingConfig

    for model in (StudyConfig, ObjectiveConfig, SamplerConfig, SchedulerConfig, TrackingConfig, ParamSpec):
        missing = [name for name, field in model.model_fields.items() if not field.description]
        assert missing == [], model.__name__


def test_explicit_name_and_experiment(tmp_path):
    path = _write(tmp_path, MINIMAL + "name: lam-sweep.v2\ntracking: {experiment: paper}\n")
    study = load_study_config(path, check_paths=check_paths)
    assert (study.name, study.experiment_name) == ("lam-sweep.v2", "paper")


def test_search_space_entries_and_their_grids(tmp_path):
    path = _write(
        tmp_path,
        """
        num_samples: 3
        space:
          optimizer.lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
          quantum.n_qubits: {type: int, low: 2, high: 8, step: 2}
          optimizer.response: {type: categorical, choices: [sin, circuit]}
        trial: {}
        """,
    )
    space = load_study_config(path, check_paths=check_paths).space
    assert (space["optimizer.lr"].type, space["optimizer.lr"].log) == ("float", True)
    assert not space["optimizer.lr"].is_finite
    assert space["quantum.n_qubits"].grid_values() == [2, 4, 6, 8]
    assert space["optimizer.response"].grid_values() == ["sin", "circuit"]


def test_is_study_file():
    assert is_study_file({"num_samples": 3, "trial": {}})
    assert is_study_file({"space": {}})
    assert not is_study_file({"seed": 0, "optimizer": {"lr": 0.1}})


# ---------------------------------------------------------------------- bad files


def test_unknown_keys(tmp_path):
    path = _write(tmp_path, MINIMAL + "samplers: {type: tpe}\nscheduler: {type: asha, grace: 2}\n")
    assert sorted(_problems(path)) == [
        f"{path}: samplers: unknown key; allowed keys here: name, objective, sampler, scheduler, num_samples, "
        "max_concurrent, trial_timeout_s, trial_retries, space, baselines, confirm, arms, seeds, claims, paper_gaps, trial, "
        "tracking, storage_path",
        f"{path}: scheduler.grace: unknown key; allowed keys here: type, grace_period, reduction_factor, max_t",
    ]


def test_wrong_types(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("num_samples: 4", "num_samples: many") + "max_concurrent: [2]\n")
    assert _problems(path) == [
        f"{path}: num_samples: input should be a valid integer, unable to parse string as an integer, got 'many'",
        f"{path}: max_concurrent: input should be a valid integer, got [2]",
    ]


def test_low_above_high(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("low: 0.0, high: 1.0", "low: 1.0, high: 0.5"))
    assert _problems(path) == [f"{path}: space.optimizer.quantum_weight.high: must be >= low, got low=1.0, high=0.5"]


def test_unknown_sampler(tmp_path):
    path = _write(tmp_path, MINIMAL + "sampler: {type: bayes}\n")
    assert _problems(path) == [
        f"{path}: sampler.type: input should be 'tpe', 'gp', 'cmaes', 'random', 'grid' or 'qmc', got 'bayes'"
    ]


def test_missing_data_and_model_paths(tmp_path):
    text = MINIMAL.replace(
        "trial:\n",
        f"trial:\n  data: {{task: gsm8k, train_path: {tmp_path}/train.jsonl}}\n  model: {{path: {tmp_path}/llama}}\n",
    )
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f"{path}: trial.data.train_path: no such file or directory, got '{tmp_path}/train.jsonl'",
        f"{path}: trial.model.path: no such checkpoint directory, got '{tmp_path}/llama'",
    ]
    # A cluster study is checked on a laptop without the path checks.
    assert load_study_config(path, check_paths=None).trial.data.train_path == f"{tmp_path}/train.jsonl"


def test_every_problem_at_once(tmp_path):
    """Problems of different sections, and cross checks of the sections that are fine."""
    path = _write(
        tmp_path,
        """
        num_samples: 1
        max_concurrent: 3
        sampler: {type: bayes}
        space:
          optimizer.quantum_wieght: {type: float, low: 0.0, high: 1.0}
          optimizer.lr: {type: float, low: 0.1, high: 0.01}
        baselines:
          - {optimizer.quantum_weight: 0.0}
          - {optimizer.quantum_weight: -0.5}
        trial:
          optimizer: {lr: abc}
        """,
    )
    lines = _problems(path)
    assert (
        f"{path}: sampler.type: input should be 'tpe', 'gp', 'cmaes', 'random', 'grid' or 'qmc', got 'bayes'" in lines
    )
    assert f"{path}: space.optimizer.lr.high: must be >= low, got low=0.1, high=0.01" in lines
    assert any(line.startswith(f"{path}: trial.optimizer.lr: input should be a valid number") for line in lines)
    assert any(
        line.startswith(
            f"{path}: space.optimizer.quantum_wieght: unknown trial setting; allowed under optimizer: lr, betas,"
        )
        for line in lines
    )
    assert (
        f"{path}: num_samples: must be >= the number of baselines (2), which run first and count as trials, got 1"
        in lines
    )
    assert f"{path}: max_concurrent: must be <= num_samples (1), got 3" in lines
    # The baselines are checked against the trial as far as it validated (trial.optimizer.lr failed).
    assert (
        f"{path}: baselines.1.optimizer.quantum_weight: input should be greater than or equal to 0, got -0.5" in lines
    )
    assert len(lines) == 7, lines


# ------------------------------------------------------------------- space entries


def _space(tmp_path, entries: str, extra: str = ""):
    text = "num_samples: 4\nspace:\n" + textwrap.indent(textwrap.dedent(entries), "  ") + "trial: {}\n" + extra
    return _write(tmp_path, text)


def test_space_keys_must_name_trial_settings(tmp_path):
    path = _space(
        tmp_path,
        """
        optimizer.quantum_wieght: {type: float, low: 0.0, high: 1.0}
        optimizer: {type: float, low: 0.0, high: 1.0}
        optimizer.lr.x: {type: float, low: 0.1, high: 1.0}
        lam: {type: float, low: 0.1, high: 1.0}
        """,
    )
    assert _problems(path) == [
        f"{path}: space.optimizer.quantum_wieght: unknown trial setting; allowed under optimizer: lr, betas, eps, "
        "weight_decay, quantum_weight, n_qubits, circuit_depth, response, scope, seed, warmup_steps, lr_schedule",
        f"{path}: space.optimizer: names the section optimizer, not a setting; allowed under optimizer: lr, betas, eps, "
        "weight_decay, quantum_weight, n_qubits, circuit_depth, response, scope, seed, warmup_steps, lr_schedule",
        f"{path}: space.optimizer.lr.x: unknown trial setting; optimizer.lr is a setting, not a section",
        f"{path}: space.lam: unknown trial setting; allowed at the top level: seed, or a dotted key into model, "
        "quantum, optimizer, data, train, deepspeed, resources (e.g. optimizer.lr)",
    ]


def test_space_values_must_be_valid_trial_values(tmp_path):
    path = _space(
        tmp_path,
        """
        optimizer.quantum_weight: {type: float, low: -1, high: 1.0}
        quantum.n_qubits: {type: int, low: 2, high: 16}
        optimizer.response: {type: categorical, choices: [sin, cosine]}
        resources.num_workers: {type: int, low: 1, high: 3}
        """,
    )
    assert _problems(path) == [
        f"{path}: space.optimizer.quantum_weight.low: input should be greater than or equal to 0, got -1",
        f"{path}: space.quantum.n_qubits.high: input should be less than or equal to 12, got 16",
        f"{path}: space.optimizer.response.choices.1: input should be 'sin', 'circuit', 'gaussian' or 'none', got 'cosine'",
        f"{path}: space.resources.num_workers.high: with resources.num_workers=3: train.global_batch_size: must be a "
        "multiple of train.micro_batch_size x resources.num_workers = 4 x 3 = 12, got 8",
    ]


def test_space_entry_rules(tmp_path):
    path = _space(
        tmp_path,
        """
        optimizer.lr: {type: float, low: 0.0, high: 0.1, log: true}
        optimizer.response: {type: categorical, choices: [], low: 1}
        quantum.n_qubits: {type: int, low: 2.5, high: 4}
        quantum.circuit_depth: {type: float, low: 1, high: 3}
        optimizer.betas: {type: categorical, choices: [0.9]}
        optimizer.weight_decay: {type: float, low: 0.0, high: 0.1, step: 0.03}
        optimizer.eps: {type: float, low: 1.0e-8, high: 1.0e-6, log: true, step: 1.0e-7}
        seed: {type: int, high: 3}
        """,
    )
    assert _problems(path) == [
        f"{path}: space.optimizer.lr.low: must be > 0 with log: true, got 0.0",
        f"{path}: space.optimizer.response.choices: type categorical needs a non-empty list of choices, got []",
        f"{path}: space.optimizer.response.low: not used by type categorical (use choices), got 1",
        f"{path}: space.quantum.n_qubits.low: must be an integer for type int, got 2.5",
        f"{path}: space.optimizer.weight_decay.high: high - low must be a multiple of step, got low=0.0, high=0.1, step=0.03",
        f"{path}: space.optimizer.eps.step: cannot be combined with log: true (Optuna's rule), got 1e-07",
        f"{path}: space.seed.low: required for type int",
        f"{path}: space.quantum.circuit_depth.type: quantum.circuit_depth takes int values: use type int or categorical, got 'float'",
        f"{path}: space.optimizer.betas.type: optimizer.betas is a tuple setting and cannot be searched (Optuna "
        "samples single values); set it under trial: or in baselines",
    ]


def test_space_must_not_be_empty(tmp_path):
    path = _write(tmp_path, "num_samples: 2\ntrial: {}\n")
    assert _problems(path) == [
        f"{path}: space: must name at least one searched setting, e.g. optimizer.quantum_weight: "
        "{type: float, low: 0.0, high: 1.0}, or compare named arms (arms: and seeds:)"
    ]


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads 1e-5 (no dot) as a string; the space takes it as the number it means.
    path = _space(tmp_path, "optimizer.lr: {type: float, low: 1e-5, high: 1e-3, log: true}\n")
    assert load_study_config(path, check_paths=check_paths).space["optimizer.lr"].low == 1e-5


# ---------------------------------------------------------------------------- grid


def test_grid_needs_a_finite_space(tmp_path):
    path = _space(
        tmp_path,
        """
        optimizer.lr: {type: float, low: 0.001, high: 0.01}
        optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0, step: 0.25}
        """,
        "sampler: {type: grid}\n",
    )
    assert _problems(path) == [
        f"{path}: space.optimizer.lr: sampler.type grid needs a finite space: categorical, int, or float with step, "
        "got type float without step (low=0.001, high=0.01)"
    ]


def test_grid_size_bounds_num_samples(tmp_path):
    path = _space(
        tmp_path,
        """
        optimizer.quantum_weight: {type: float, low: 0.0, high: 0.2, step: 0.1}
        seed: {type: categorical, choices: [0, 1]}
        """,
        "sampler: {type: grid}\nbaselines: [{optimizer.quantum_weight: 0.0, seed: 5}]\n",
    )
    assert _problems(path) == [f"{path}: baselines.0.seed: must be one of the space's choices [0, 1], got 5"]
    path.write_text(path.read_text().replace("seed: 5", "seed: 1").replace("num_samples: 4", "num_samples: 8"))
    assert _problems(path) == [
        f"{path}: num_samples: sampler.type grid has 6 points + 1 baselines = 7 trials at most, got 8"
    ]
    path.write_text(path.read_text().replace("num_samples: 8", "num_samples: 7"))
    study = load_study_config(path, check_paths=check_paths)
    assert study.grid_size() == 6
    assert study.space["optimizer.quantum_weight"].grid_values() == [0.0, 0.1, 0.2]


def test_grid_baselines_set_every_searched_key(tmp_path):
    path = _space(
        tmp_path,
        """
        optimizer.quantum_weight: {type: categorical, choices: [0.0, 0.5]}
        seed: {type: categorical, choices: [0, 1]}
        """,
        "sampler: {type: grid}\nbaselines: [{optimizer.quantum_weight: 0.0}]\n",
    )
    assert _problems(path) == [
        f"{path}: baselines.0: sampler.type grid runs a baseline only if it sets every searched key "
        "(Optuna's GridSampler), missing: seed"
    ]


# ----------------------------------------------------------------------- baselines


def test_baseline_problems(tmp_path):
    path = _space(
        tmp_path,
        """
        optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}
        optimizer.response: {type: categorical, choices: [sin, circuit]}
        """,
        textwrap.dedent(
            """
            baselines:
              - {optimizer.quantum_wieght: 0.0}
              - {optimizer.quantum_weight: -0.5, train.max_steps: 0}
              - {optimizer.response: none}
              - {}
              - {optimizer.quantum_weight: 0.0, train.global_batch_size: 6}
            """
        ),
    )
    lines = _problems(path)
    assert lines[0].startswith(
        f"{path}: baselines.0.optimizer.quantum_wieght: unknown trial setting; allowed under optimizer: lr,"
    )
    assert lines[1:] == [
        f"{path}: baselines.1.optimizer.quantum_weight: input should be greater than or equal to 0, got -0.5",
        f"{path}: baselines.1.train.max_steps: input should be greater than or equal to 1, got 0",
        f"{path}: baselines.2.optimizer.response: must be one of the space's choices ['sin', 'circuit'], got 'none'",
        f"{path}: baselines.3: an empty baseline is no control; set e.g. optimizer.quantum_weight: 0.0",
        f"{path}: baselines.4.train.global_batch_size: must be a multiple of train.micro_batch_size x "
        "resources.num_workers = 4 x 1 = 4, got 6",
        f"{path}: num_samples: must be >= the number of baselines (5), which run first and count as trials, got 4",
    ]


# ---------------------------------------------------------- objective, sampler, ASHA


def test_objective_sampler_scheduler_rules(tmp_path):
    path = _write(
        tmp_path,
        MINIMAL
        + textwrap.dedent(
            """
            objective: {metric: eval_accuracy}
            sampler: {type: random, n_startup_trials: 5}
            scheduler: {type: none, grace_period: 3}
            """
        ),
    )
    assert _problems(path) == [
        f"{path}: objective.mode: eval_accuracy is an accuracy: use max, got 'min'",
        f"{path}: sampler.n_startup_trials: only tpe, gp and cmaes have start-up trials, got sampler.type 'random'",
        f"{path}: scheduler.grace_period: only used by scheduler.type asha, got type 'none'",
        # The metric is checked against the trial's task even though the mode it implies failed.
        f"{path}: objective.metric: eval_accuracy is reported only for data.task classification, "
        "got trial.data.task 'synthetic_gsm8k'",
    ]


def test_objective_metric_must_be_reported_by_the_task(tmp_path):
    path = _write(tmp_path, MINIMAL + "objective: {metric: eval_accuracy, mode: max}\n")
    assert _problems(path) == [
        f"{path}: objective.metric: eval_accuracy is reported only for data.task classification, "
        "got trial.data.task 'synthetic_gsm8k'"
    ]
    path = _write(tmp_path, MINIMAL + "objective: {metric: accuracy, mode: max}\n")
    assert _problems(path) == [
        f"{path}: objective.metric: must be one of eval_loss, train_loss, mean_train_loss, eval_accuracy, gsm8k_accuracy, got 'accuracy'"
    ]


def test_asha_grace_period_within_the_steps(tmp_path):
    text = MINIMAL.replace("{max_steps: 20}", "{max_steps: 20, log_every_steps: 5, eval_every_steps: 10}")
    path = _write(tmp_path, text + "scheduler: {type: asha, grace_period: 25}\n")
    assert _problems(path) == [
        f"{path}: scheduler.grace_period: must be <= trial.train.max_steps = 20 (ASHA's time is the "
        "optimizer step), got 25"
    ]
    path = _write(tmp_path, text + "scheduler: {type: asha, grace_period: 5}\n")
    assert load_study_config(path, check_paths=check_paths).asha_max_t() == 20
    path = _write(tmp_path, text + "scheduler: {type: asha, grace_period: 5, max_t: 10}\n")
    assert load_study_config(path, check_paths=check_paths).asha_max_t() == 10


def test_name_pattern(tmp_path):
    path = _write(tmp_path, MINIMAL + "name: my study\n")
    assert _problems(path) == [f"{path}: name: string should match pattern '^[A-Za-z0-9_.-]+$', got 'my study'"]


# ------------------------------------------------------------------ apply_overrides


def test_apply_overrides_sets_dotted_values_on_a_copy():
    trial = TrialConfig()
    out = apply_overrides(trial, {"optimizer.quantum_weight": 0.0, "quantum.n_qubits": 3, "seed": 4})
    assert (out.optimizer.quantum_weight, out.quantum.n_qubits, out.seed) == (0.0, 3, 4)
    assert (trial.optimizer.quantum_weight, trial.quantum.n_qubits, trial.seed) == (0.5, 4, 0)
    assert out.optimizer.lr == trial.optimizer.lr


def test_apply_overrides_names_the_key():
    with pytest.raises(
        ValueError, match=r"^optimizer\.quantum_wieght: unknown trial setting; allowed under optimizer: lr,"
    ):
        apply_overrides(TrialConfig(), {"optimizer.quantum_wieght": 0.0})
    with pytest.raises(ValueError) as err:
        apply_overrides(TrialConfig(), {"optimizer.quantum_weight": -1})
    assert str(err.value) == "optimizer.quantum_weight: input should be greater than or equal to 0, got -1"
    with pytest.raises(ValueError) as err:
        apply_overrides(TrialConfig(), {"resources.num_workers": 3})
    assert str(err.value) == (
        "train.global_batch_size: must be a multiple of train.micro_batch_size x resources.num_workers = 4 x 3 = 12, got 8"
    )
