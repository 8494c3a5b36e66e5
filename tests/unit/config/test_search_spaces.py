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

SEARCH_SPACES = Path(__file__).resolve().parents[3] / "search_spaces"
FILES = sorted(SEARCH_SPACES.glob("*.yaml"))
STUDIES = [path for path in FILES if is_study_file(load_yaml(path))]


def _has_paths(study: StudyConfig) -> bool:
    data = study.trial.data
    return study.trial.model.path is not None or data.train_path is not None or data.eval_path is not None


def _is_adamw(trial) -> bool:
    return trial.optimizer.quantum_weight == 0.0 or trial.optimizer.response == "none"


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
        study = load_study_config(path, check_paths=False)
        if not _has_paths(study):
            load_study_config(path)
        assert study.name == path.stem
        assert first.startswith(f"# qstudy sweep {rel}")
    else:
        load_trial_config(path)
        assert first.startswith(f"# qstudy train {rel}")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_study_carries_an_adamw_control(path):
    """A baseline, or (grid sampler) a grid point, runs the trial as AdamW."""
    study = load_study_config(path, check_paths=False)
    controls = [b for b in study.baselines if _is_adamw(apply_overrides(study.trial, b))]
    if study.sampler.type == "grid":
        controls += [
            (key, value)
            for key, spec in study.space.items()
            for value in spec.grid_values()
            if _is_adamw(apply_overrides(study.trial, {key: value}))
        ]
    assert controls, f"{path.name} has no AdamW control trial"


def test_smoke_study_fits_a_laptop():
    study = load_study_config(SEARCH_SPACES / "smoke.yaml")
    trial = study.trial
    assert study.num_samples == 4 and study.max_concurrent == 2
    assert study.baselines == [{"optimizer.quantum_weight": 0.0}]
    assert set(study.space) == {"optimizer.quantum_weight", "quantum.n_qubits", "quantum.circuit_depth"}
    assert (study.space["quantum.n_qubits"].low, study.space["quantum.n_qubits"].high) == (2, 4)
    assert (study.space["quantum.circuit_depth"].low, study.space["quantum.circuit_depth"].high) == (1, 2)
    assert (trial.model.preset, trial.data.task, trial.deepspeed.preset) == ("llama-tiny", "synthetic_gsm8k", "zero2")
    assert (trial.resources.num_workers, trial.resources.use_gpu) == (1, False)
    assert trial.train.max_steps <= 20
    assert study.tracking.uri == "sqlite:///mlruns.db"


def test_paper_gsm8k_is_one_epoch_on_gpus():
    study = load_study_config(SEARCH_SPACES / "paper_gsm8k_llama1b.yaml", check_paths=False)
    trial = study.trial
    assert trial.train.max_steps == math.ceil(7473 / trial.train.global_batch_size)
    assert trial.train.gradient_clipping == 1.0
    assert (trial.deepspeed.preset, trial.model.dtype, trial.resources.use_gpu) == ("zero2", "bfloat16", True)
    assert (trial.data.task, trial.model.preset) == ("gsm8k", "llama-3.2-1b")
    assert study.space["optimizer.lr"].log
    assert (study.space["quantum.n_qubits"].low, study.space["quantum.n_qubits"].high) == (2, 8)
    assert (study.space["quantum.circuit_depth"].low, study.space["quantum.circuit_depth"].high) == (1, 4)


@pytest.mark.parametrize(
    "name, grid",
    [
        ("paper_text_classification.yaml", {"optimizer.quantum_weight": [0.0, 0.1, 0.3, 0.5, 0.7], "seed": [0, 1, 2, 3, 4]}),
        ("ablation_response.yaml", {"optimizer.response": ["sin", "circuit", "gaussian", "none"], "seed": [0, 1, 2]}),
    ],
)
def test_grid_studies_run_every_point_once(name, grid):
    study = load_study_config(SEARCH_SPACES / name)
    assert study.sampler.type == "grid"
    assert {key: spec.grid_values() for key, spec in study.space.items()} == grid
    assert study.num_samples == study.grid_size() + len(study.baselines) == math.prod(len(v) for v in grid.values())
    assert study.trial.data.task == "classification"
    assert (study.objective.metric, study.objective.mode) == ("eval_accuracy", "max")
