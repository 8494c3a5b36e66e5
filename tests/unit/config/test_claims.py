"""The paper's claims and gaps in study files, validated with every problem in one pass."""

import pytest
from test_arms import _problems, _write

from qstudy.config import load_study_config
from qstudy.train import check_paths

COMPARISON = """
objective: {metric: eval_accuracy, mode: max}
arms:
  control: {}
  sgd: {optimizer.quantum_weight: 0.5}
  sgd_all: {optimizer.quantum_weight: 0.5, optimizer.scope: all}
seeds: [0, 1]
trial:
  optimizer: {quantum_weight: 0.0}
  data: {task: classification, train_examples: 64}
"""


def test_claims_and_gaps_load(tmp_path):
    study = load_study_config(
        _write(
            tmp_path,
            COMPARISON
            + """
claims:
  - {text: "4.6 vs 7.4 epochs", measure: epochs_to_target, metric: eval_accuracy, target: 0.9, arm: sgd,
     paper: 4.6, paper_control: 7.4}
  - {text: "+35% per epoch", measure: time_per_step, arm: sgd, paper_change: 0.35}
  - {text: "sgd is best", measure: best_arm, metric: eval_accuracy, arm: sgd, among: [sgd, sgd_all]}
paper_gaps:
  - {topic: the task, paper: not specified, qstudy: motifs}
""",
        ),
        check_paths=check_paths,
    )
    epochs, time, best = study.claims
    assert epochs.claimed_change() == pytest.approx(4.6 / 7.4 - 1)
    assert (time.claimed_change(), best.claimed_change(), epochs.control) == (0.35, None, "control")
    assert study.paper_gaps[0].qstudy == "motifs"


def test_every_claim_problem_in_one_pass(tmp_path):
    path = _write(
        tmp_path,
        COMPARISON
        + """
claims:
  - {text: a, measure: epochs_to_target, metric: eval_accuracy, arm: sgd, paper: 1, paper_control: 2}
  - {text: b, measure: final, metric: accuracy, arm: lam, control: sgd, target: 0.9}
  - {text: c, measure: time_per_step, metric: eval_loss, arm: sgd, paper_change: 0.3}
  - {text: d, measure: best_arm, metric: eval_accuracy, arm: control, among: [sgd]}
  - {text: e, measure: speed, arm: sgd}
""",
    )
    problems = _problems(path)
    assert problems == [
        f"{path}: claims.0.target: measure epochs_to_target needs the value the metric must reach, e.g. 0.9",
        f"{path}: claims.1.target: only used by steps_to_target, epochs_to_target, time_to_target, got measure 'final'",
        f"{path}: claims.1.paper: a claim needs the paper's numbers: paper and paper_control, or paper_change "
        "(the relative change, e.g. -0.16), got none",
        f"{path}: claims.2.metric: measure time_per_step times steps and reads no metric, got 'eval_loss'",
        f"{path}: claims.3.among: measure best_arm needs at least two arms to compare, got ['sgd']",
        f"{path}: claims.4.measure: input should be 'final', 'steps_to_target', 'epochs_to_target', 'time_per_step', "
        "'time_to_target' or 'best_arm', got 'speed'",
        f"{path}: claims.1.arm: must name an arm (control, sgd, sgd_all), got 'lam'",
        f"{path}: claims.1.metric: must be one of eval_loss, train_loss, mean_train_loss, eval_accuracy, "
        "gsm8k_accuracy, got 'accuracy'",
        f"{path}: claims.3.among: must include the claim's arm 'control', got ['sgd']",
    ]


def test_claims_need_a_comparison_and_epochs_need_an_epoch_length(tmp_path):
    search = _write(
        tmp_path,
        """
space: {optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}}
num_samples: 2
claims:
  - {text: a, measure: final, metric: eval_loss, arm: sgd, paper: 1, paper_control: 2}
trial: {}
""",
    )
    assert _problems(search) == [
        f"{search}: claims: claims compare arms: only a comparison study (arms: and seeds:) can carry them, "
        "got 1 claim(s) and no arms"
    ]
    no_length = _write(
        tmp_path,
        COMPARISON.replace(", train_examples: 64", "")
        + """
claims:
  - {text: a, measure: epochs_to_target, metric: eval_accuracy, target: 0.9, arm: sgd, paper: 4.6, paper_control: 7.4}
""",
    )
    assert _problems(no_length) == [
        f"{no_length}: claims.0.measure: epochs_to_target needs trial.data.train_examples (the epoch length), got "
        "none: use steps_to_target"
    ]
