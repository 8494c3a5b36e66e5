"""Tracking URIs made absolute, the local UI's command, and an import that loads no mlflow."""

import subprocess
import sys

import pytest

from qstudy.tracking import (
    TrackingError,
    absolute_tracking_uri,
    is_server_uri,
    ui_command,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///mlruns.db", "sqlite:////base/mlruns.db"),
        ("sqlite:///runs/a b.db?timeout=20", "sqlite:////base/runs/a%20b.db?timeout=20"),
        ("sqlite:////abs/mlruns.db", "sqlite:////abs/mlruns.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("mlruns.db", "sqlite:////base/mlruns.db"),
        ("mlruns", "file:///base/mlruns"),
        ("file:./mlruns", "file:///base/mlruns"),
        ("file:///abs/mlruns", "file:///abs/mlruns"),
        ("http://head-node:5000", "http://head-node:5000"),
        ("postgresql://u@db/mlflow", "postgresql://u@db/mlflow"),
    ],
)
def test_absolute_tracking_uri(uri, expected):
    assert absolute_tracking_uri(uri, base_dir="/base") == expected


def test_absolute_tracking_uri_defaults_to_cwd_and_refuses_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///mlruns.db") == f"sqlite:///{tmp_path}/mlruns.db"
    with pytest.raises(
        TrackingError, match="tracking URI must name a store, e.g. sqlite:///mlruns.db, got an empty string"
    ):
        absolute_tracking_uri("")


def test_ui_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ui_command("sqlite:///mlruns.db", port=5051) == [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", f"sqlite:///{tmp_path}/mlruns.db",
        "--host", "127.0.0.1", "--port", "5051", "--workers", "1",
    ]  # fmt: skip
    assert is_server_uri("http://head:5000") and is_server_uri("https://mlflow.example")
    assert not is_server_uri("sqlite:///mlruns.db") and not is_server_uri("mlruns")
    with pytest.raises(TrackingError, match=r"http://head:5000 is a tracking server: open it in a browser"):
        ui_command("http://head:5000")


def test_import_does_not_import_mlflow():
    code = "import sys, qstudy.tracking; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
