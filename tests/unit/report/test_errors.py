"""`qstudy report` on a study that has not run here: a clear error, nothing created."""

import pytest

from qstudy.config import StudyConfig
from qstudy.report import ReportError, write_report


def _study(tmp_path) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": "never_ran",
            "arms": {"control": {}, "sgd": {"optimizer.quantum_weight": 0.5}},
            "seeds": [0],
            "trial": {"optimizer": {"quantum_weight": 0.0}},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}"},
            "storage_path": str(tmp_path / "runs"),
        }
    )


def test_a_study_without_a_store_is_refused_and_nothing_is_created(tmp_path):
    with pytest.raises(
        ReportError,
        match=r"s\.yaml: study never_ran: its MLflow store sqlite:///.*mlruns\.db does not "
        r"exist: run `qstudy sweep s\.yaml` first",
    ):
        write_report(_study(tmp_path), source="s.yaml", timing_rounds=0)
    assert list(tmp_path.iterdir()) == []


def test_a_study_without_its_optuna_storage_is_refused(tmp_path):
    (tmp_path / "mlruns.db").touch()
    with pytest.raises(ReportError, match=r"study never_ran: no Optuna storage at sqlite:///.*optuna\.db"):
        write_report(_study(tmp_path), source="s.yaml", timing_rounds=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns.db"]
