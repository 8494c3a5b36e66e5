"""Every problem of a study or trial file in one run, each naming file, key, value and what is
allowed; a problem suppresses only the checks it makes meaningless."""

import textwrap

import pytest

from qstudy.cli import main
from qstudy.config import ConfigError, load_study_config, load_trial_config
from qstudy.train import check_paths

# Took three rounds of `qstudy validate` before it was clean: five problems, then three
# more once those were fixed, then the last.
ISSUE_STUDY = """\
objective: {metric: eval_los, mode: minimize}
sampler: {type: tpee}
num_samples: -3
space:
  optimizer.quantum_weigth: {type: float, low: 1.0, high: 0.0}
  quantum.n_qubits: {type: int, low: 2, high: 40}
trial:
  model: {preset: llama-9b}
  train: {max_steps: 10, global_batch_size: 7, micro_batch_size: 2}
tracking: {uri: sqlite:///x.db}
"""

OPTIMIZER_KEYS = "lr, betas, eps, weight_decay, quantum_weight, n_qubits, circuit_depth, response, scope, seed, warmup_steps, lr_schedule"
PRESETS = "'llama-tiny', 'llama-3.2-1b', 'llama-3.2-3b', 'llama-3.1-8b' or 'llama-3.1-70b'"


def _issue_problems(path) -> list[str]:
    return [
        f"{path}: objective.mode: input should be 'min' or 'max', got 'minimize'",
        f"{path}: objective.metric: must be one of eval_loss, train_loss, mean_train_loss, eval_accuracy, gsm8k_accuracy, got 'eval_los'",
        f"{path}: sampler.type: input should be 'tpe', 'gp', 'cmaes', 'random', 'grid' or 'qmc', got 'tpee'",
        f"{path}: num_samples: input should be greater than or equal to 1, got -3",
        f"{path}: space.optimizer.quantum_weigth.high: must be >= low, got low=1.0, high=0.0",
        f"{path}: trial.model.preset: input should be {PRESETS}, got 'llama-9b'",
        f"{path}: trial.train.global_batch_size: must be a multiple of train.micro_batch_size x "
        "resources.num_workers = 2 x 1 = 2, got 7",
        f"{path}: space.optimizer.quantum_weigth: unknown trial setting; allowed under optimizer: {OPTIMIZER_KEYS}",
        f"{path}: space.quantum.n_qubits.high: input should be less than or equal to 12, got 40",
    ]


def _write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_study_yields_all_nine_problems_at_once(tmp_path):
    path = _write(tmp_path, ISSUE_STUDY, "study.yaml")
    with pytest.raises(ConfigError) as err:
        load_study_config(path, check_paths=check_paths)
    assert err.value.problems == _issue_problems(path)


def test_validate_cli_prints_the_nine_problems_and_exits_2(tmp_path, capsys):
    path = _write(tmp_path, ISSUE_STUDY, "study.yaml")
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "qstudy: error: " + "\n".join(_issue_problems(path)) + "\n"


def test_a_failed_value_suppresses_only_the_checks_that_read_it(tmp_path):
    path = _write(
        tmp_path,
        """
        objective: {metric: eval_accuracy, mode: maximise}
        scheduler: {type: asha, grace_period: many}
        num_samples: 2
        space:
          optimizer.lr: {type: float, low: small, high: 0.1, log: true}
          optimizer.quantum_wieght: {type: floaty, low: 0.0, high: 1.0}
          resources.num_workers: {type: int, low: 1, high: 3}
        trial:
          train: {max_steps: 0, global_batch_size: 8, micro_batch_size: x}
        """,
        "study.yaml",
    )
    with pytest.raises(ConfigError) as err:
        load_study_config(path, check_paths=check_paths)
    assert err.value.problems == [
        f"{path}: objective.mode: input should be 'min' or 'max', got 'maximise'",
        f"{path}: scheduler.grace_period: input should be a valid integer, unable to parse string as an integer, "
        "got 'many'",
        f"{path}: space.optimizer.lr.low: must be a number, got 'small'",
        f"{path}: space.optimizer.quantum_wieght.type: input should be 'float', 'int' or 'categorical', got 'floaty'",
        f"{path}: trial.train.max_steps: input should be greater than or equal to 1, got 0",
        f"{path}: trial.train.micro_batch_size: input should be a valid integer, unable to parse string as an "
        "integer, got 'x'",
        # The metric is still checked against the task; the mode it implies is not (it failed).
        f"{path}: objective.metric: eval_accuracy is reported only for data.task classification, "
        "got trial.data.task 'synthetic_gsm8k'",
        # An entry without a valid type still names a setting to check.
        f"{path}: space.optimizer.quantum_wieght: unknown trial setting; allowed under optimizer: {OPTIMIZER_KEYS}",
    ]
    # Not reported: "low required" / "log needs low > 0" for the unparsable low, grace_period
    # vs max_steps (both failed), and num_workers=3 against a batch whose micro size failed.


TRIAL = """
model: {preset: llama-9b, path: /nonexistent/ckpt, num_hidden_layers: 2}
optimizer: {lr: -1, response: sine}
data: {task: gsm8k, max_tokens: 4}
train: {global_batch_size: 7, micro_batch_size: 2}
resources: {num_workers: 1, gpus: 2}
"""


def _trial_problems(path) -> list[str]:
    return [
        f"{path}: model.preset: input should be {PRESETS}, got 'llama-9b'",
        f"{path}: optimizer.lr: input should be greater than 0, got -1",
        f"{path}: optimizer.response: input should be 'sin', 'circuit', 'gaussian' or 'none', got 'sine'",
        f"{path}: data.max_tokens: input should be greater than or equal to 8, got 4",
        f"{path}: resources.gpus: unknown key; allowed keys here: num_workers, use_gpu, cpus_per_worker, max_failures, single_worker",
        f"{path}: train.global_batch_size: must be a multiple of train.micro_batch_size x resources.num_workers "
        "= 2 x 1 = 2, got 7",
        f"{path}: model.num_hidden_layers: overrides a preset's depth; it cannot apply to a checkpoint loaded from "
        "model.path, got num_hidden_layers=2 with path='/nonexistent/ckpt'",
        f"{path}: data.train_path: required for data.task gsm8k: a JSONL file or a saved HF dataset directory, got None",
    ]


def test_a_trial_file_lists_its_problems_and_its_paths_at_once(tmp_path):
    path = _write(tmp_path, TRIAL, "trial.yaml")
    with pytest.raises(ConfigError) as err:
        load_trial_config(path, check_paths=check_paths)
    missing = f"{path}: model.path: no such checkpoint directory, got '/nonexistent/ckpt'"
    assert err.value.problems == _trial_problems(path) + [missing]
    with pytest.raises(ConfigError) as err:
        load_trial_config(path, check_paths=None)
    assert err.value.problems == _trial_problems(path)


def test_validate_cli_on_a_trial_file(tmp_path, capsys):
    path = _write(tmp_path, TRIAL, "trial.yaml")
    assert main(["validate", "--no-path-checks", str(path)]) == 2
    assert capsys.readouterr().err == "qstudy: error: " + "\n".join(_trial_problems(path)) + "\n"
