"""`qstudy ui` prints the study's pages; for a tracking server it points at the server and
starts nothing (the local UI is tested in a browser: tests/integration/test_mlflow_ui.py)."""

import qstudy.tracking
from qstudy.cli import main


def test_a_server_study_gets_the_servers_links_and_no_local_ui(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nnum_samples: 1\nspace: {optimizer.lr: {type: float, low: 0.001, high: 0.01}}\n"
        "tracking: {uri: 'http://head:5000/'}\n"
        "trial: {model: {preset: llama-tiny}, data: {task: synthetic_gsm8k}}\n"
    )
    asked = []

    def links(uri, experiment, study, base_url):
        asked.append((uri, experiment, study, base_url))
        return {"ui": base_url, "runs": f"{base_url}/#/experiments/7/runs?workflowType=machine_learning"}

    monkeypatch.setattr(qstudy.tracking, "study_links", links)
    assert main(["ui", str(path), "--no-browser"]) == 0  # returns: no local UI was started
    out = capsys.readouterr().out
    assert asked == [("http://head:5000/", "s", "s", "http://head:5000")]
    assert "  runs:    http://head:5000/#/experiments/7/runs?workflowType=machine_learning" in out.splitlines()
    assert (
        f"{path}: tracking store is the MLflow server http://head:5000/: its UI is at "
        "http://head:5000/#/experiments/7/runs?workflowType=machine_learning"
    ) in out
