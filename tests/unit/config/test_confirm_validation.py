"""`confirm: {top_k, seeds}` in a search study: validated with every problem in one pass,
each naming file, key and value; a comparison study cannot take it."""

from test_arms import _problems, _write

from qstudy.cli import main
from qstudy.config import load_study_config
from qstudy.train import check_paths

SEARCH = """
num_samples: 5
scheduler: {type: asha, grace_period: 5}
space:
  optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}
baselines:
  - {quantum.enabled: false, optimizer.quantum_weight: 0.0}
  - {optimizer.quantum_weight: 0.0}
trial:
  seed: 0
  optimizer: {quantum_weight: 0.0}
  train: {max_steps: 20}
"""


def test_a_search_with_asha_takes_confirm_and_counts_its_trials(tmp_path, capsys):
    path = _write(tmp_path, SEARCH + "confirm: {top_k: 3, seeds: [101, 102]}\n")
    study = load_study_config(path, check_paths=check_paths)
    assert (study.confirm.top_k, study.confirm.seeds) == (3, [101, 102])
    assert study.num_samples == 5  # the search's trials; the confirm trials come on top
    assert study.confirm_trial_count == 8  # (3 top + the control) x 2 seeds
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok — 5 trials (2 baselines first), then 8 confirm trials (top 3 and the control x seeds 101, 102)" in out
    assert load_study_config(_write(tmp_path, SEARCH, "plain.yaml"), check_paths=check_paths).confirm_trial_count == 0


def test_top_k_defaults_to_one_and_seeds_are_required(tmp_path):
    assert (
        load_study_config(_write(tmp_path, SEARCH + "confirm: {seeds: [7]}\n"), check_paths=check_paths).confirm.top_k
        == 1
    )
    path = _write(tmp_path, SEARCH + "confirm: {top_k: 2}\n")
    assert _problems(path) == [
        f"{path}: confirm.seeds: required: the fresh trial seeds the top configurations and the control run with, "
        "e.g. [101, 102, 103]",
    ]


def test_every_problem_of_confirm_in_one_pass(tmp_path):
    path = _write(
        tmp_path,
        """
        num_samples: 4
        space:
          optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}
          seed: {type: int, low: 10, high: 20}
        baselines:
          - {quantum.enabled: false, optimizer.quantum_weight: 0.0}
          - {optimizer.quantum_weight: 0.0, seed: 42}
        confirm: {top_k: 3, seeds: [42, 15, -1, 0, 0, 7], typo: 1}
        trial: {seed: 0, optimizer: {quantum_weight: 0.0}}
        """,
    )
    fresh = "must be a seed no search trial ran with (the top configurations were picked on those seeds), got"
    assert _problems(path) == [
        f"{path}: confirm.typo: unknown key; allowed keys here: top_k, seeds",
        f"{path}: confirm.seeds.2: must be >= 0, got -1",
        f"{path}: confirm.seeds: must be distinct (each configuration runs once per seed), got [42, 15, -1, 0, 0, 7] "
        "(0 repeated)",
        f"{path}: confirm.top_k: must be <= num_samples - len(baselines) = 4 - 2 = 2 (the trials the search samples), "
        "got 3",
        f"{path}: confirm.seeds.0: {fresh} 42: baselines.1.seed is 42",
        f"{path}: confirm.seeds.1: {fresh} 15: space.seed searches 10..20",
        f"{path}: confirm.seeds.3: {fresh} 0: trial.seed is 0",
        f"{path}: confirm.seeds.4: {fresh} 0: trial.seed is 0",
    ]


def test_a_seed_among_a_searched_seeds_choices_is_not_fresh(tmp_path):
    path = _write(
        tmp_path,
        SEARCH.replace("space:\n", "space:\n  seed: {type: categorical, choices: [3, 5]}\n")
        + "confirm: {seeds: [5, 4]}\n",
    )
    assert _problems(path) == [
        f"{path}: confirm.seeds.0: must be a seed no search trial ran with (the top configurations were picked on "
        "those seeds), got 5: space.seed searches choices [3, 5]",
    ]


def test_confirm_needs_a_control_a_seed_and_a_top_k_of_at_least_one(tmp_path):
    path = _write(
        tmp_path,
        """
        num_samples: 3
        space:
          optimizer.quantum_weight: {type: float, low: 0.0, high: 1.0}
        confirm: {top_k: 0, seeds: []}
        trial: {}
        """,
    )
    assert _problems(path) == [
        f"{path}: confirm.top_k: input should be greater than or equal to 1, got 0",
        f"{path}: confirm.seeds: needs at least one fresh seed, e.g. [101, 102, 103], got []",
        f"{path}: confirm: needs a control to run beside the top configurations: baselines.0, e.g. baselines: "
        "[{quantum.enabled: false, optimizer.quantum_weight: 0.0}], got no baselines",
    ]


def test_a_comparison_study_cannot_confirm(tmp_path):
    path = _write(
        tmp_path,
        """
        arms:
          control: {}
          sgd: {optimizer.quantum_weight: 0.5}
        seeds: [0, 1]
        confirm: {top_k: 1, seeds: [5]}
        trial: {optimizer: {quantum_weight: 0.0}}
        """,
    )
    assert _problems(path) == [
        f"{path}: confirm: only for a search study: a comparison study (arms) already runs every arm on each of its "
        "seeds and calls no trial best, got confirm with arms control, sgd",
    ]


def test_confirm_problems_come_with_the_rest_of_the_file(tmp_path):
    path = _write(tmp_path, SEARCH.replace("num_samples: 5", "num_samples: 1") + "confirm: {top_k: 2, seeds: [0]}\n")
    assert _problems(path) == [
        f"{path}: num_samples: must be >= the number of baselines (2), which run first and count as trials, got 1",
        # top_k's bound is not checked against a num_samples that is itself wrong.
        f"{path}: confirm.seeds.0: must be a seed no search trial ran with (the top configurations were picked on "
        "those seeds), got 0: trial.seed is 0",
    ]
