"""`make sweep` as a new user runs it: the smoke study, then its report."""

import subprocess
from pathlib import Path

import pytest
from _studies import study_runs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_make_sweep_runs_the_smoke_study_whose_trials_differ_and_reports_it(tmp_path):
    proc = subprocess.run(
        ["make", "-C", str(REPO), "sweep", f"SWEEP_DIR={tmp_path}"], capture_output=True, text=True, timeout=1200
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    report = tmp_path / "qstudy_runs" / "smoke" / "report" / "report.md"
    assert report.is_file() and f"report: {report}" in out
    client, parents, children = study_runs(tmp_path, "smoke")
    losses = {
        r.data.tags["qstudy.trial_id"]: r.data.metrics["eval_loss"]
        for r in children
        if r.data.tags["qstudy.status"] == "completed"
    }
    assert len(losses) == len(children) >= 4
    # Every trial changes something that reaches the loss (the controls, λ with scope all, the circuit).
    rounded = [f"{v:.6g}" for v in losses.values()]
    assert len(set(rounded)) == len(rounded), losses
    assert "## Search trials" in report.read_text()
