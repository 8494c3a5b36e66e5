"""Tracking URIs and the MLflow UI: a URI that means one store from any working
directory, where a store's artifacts and its UI are, the links to a study's pages."""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
from pathlib import Path

from qstudy.tracking._store import TrackingError

_DEFAULT_UI_PORT = 5000


def is_server_uri(uri: str) -> bool:
    """Whether the URI names a tracking server (http/https): its UI is already running."""
    return urllib.parse.urlparse(uri).scheme in ("http", "https")


def absolute_tracking_uri(uri: str, base_dir: str | Path | None = None) -> str:
    """A tracking URI that means the same store from any working directory.

    Ray changes the working directory of trials and MLflow resolves a relative SQLite
    path against it, so ``sqlite:///mlruns.db`` becomes ``sqlite:////abs/dir/mlruns.db``.

    Args:
        uri: ``sqlite:///relative.db`` -> absolute against ``base_dir``; ``file:relative``
            likewise; a bare path is a SQLite database when it ends in ``.db``,
            ``.sqlite`` or ``.sqlite3`` and otherwise what MLflow makes of a bare path, a
            file-store directory (``file:///abs/dir``). Absolute paths, in-memory SQLite
            and every other scheme (http, https, postgresql, ...) are returned unchanged.
        base_dir: directory relative paths start from (default: the current directory).

    Raises:
        TrackingError: an empty URI.
    """
    if not uri or not uri.strip():
        raise TrackingError("tracking URI must name a store, e.g. sqlite:///mlruns.db, got an empty string")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if uri.startswith("sqlite:///"):
        path, sep, query = uri[len("sqlite:///") :].partition("?")
        if path.startswith("/") or path in ("", ":memory:"):
            return uri
        return "sqlite:///" + urllib.parse.quote(os.path.abspath(base / urllib.parse.unquote(path))) + sep + query
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc or os.path.isabs(parsed.path):
            return uri
        return Path(os.path.abspath(base / urllib.parse.unquote(parsed.path))).as_uri()
    if parsed.scheme:
        return uri
    path = os.path.abspath(base / uri)
    if path.endswith((".db", ".sqlite", ".sqlite3")):
        return "sqlite:///" + urllib.parse.quote(path)
    return Path(path).as_uri()


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts of a new experiment: ``mlartifacts/<experiment>`` beside a SQLite file.

    MLflow's default for a SQLite store is ``./mlruns`` in the working directory of
    whichever process created the store; a server picks its own (``mlflow-artifacts:``).
    """
    if not tracking_uri.startswith("sqlite:////"):
        return None
    db_path = urllib.parse.unquote(tracking_uri[len("sqlite:///") :].partition("?")[0])
    folder = re.sub(r"[^\w.\-]", "_", experiment) or "default"
    return Path(db_path).parent.joinpath("mlartifacts", folder).as_uri()


def ui_command(tracking_uri: str, port: int = 5000) -> list[str]:
    """The command that serves the MLflow UI of a local store on 127.0.0.1:<port>.

    A tracking server (:func:`is_server_uri`) has its UI already: print its address
    instead.

    Raises:
        TrackingError: the URI is a tracking server.
    """
    if is_server_uri(tracking_uri):
        raise TrackingError(f"{tracking_uri} is a tracking server: open it in a browser, there is no local UI to start")
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", absolute_tracking_uri(tracking_uri),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",  # one user's UI: 4 uvicorn workers would only slow the start
    ]  # fmt: skip


def ui_base_url(tracking_uri: str, port: int = _DEFAULT_UI_PORT) -> str:
    """Where the study's MLflow UI is: the tracking server itself, or the local UI that
    ``qstudy ui`` starts on 127.0.0.1:<port>."""
    if is_server_uri(tracking_uri):
        return tracking_uri.rstrip("/")
    return f"http://127.0.0.1:{port}"


# MLflow 3's UI shows a page in its GenAI or its "Model training" mode by the URL's
# workflowType, else by what the browser last chose (GenAI, at first).
_MODEL_TRAINING = {"workflowType": "machine_learning"}


def runs_page_url(base_url: str, experiment_id: str, view_key: str | None = None) -> str:
    """The experiment's runs page in "Model training" mode (MLflow 3 otherwise opens on the
    GenAI overview), with a shared view (:meth:`StudyTracker.share_view`)."""
    query = dict(_MODEL_TRAINING)
    if view_key:
        query["viewStateShareKey"] = view_key
    return f"{base_url}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"


def run_page_url(base_url: str, experiment_id: str, run_id: str) -> str:
    """A run's page (its description, params, metrics, artifacts), in "Model training" mode."""
    return f"{base_url}/#/experiments/{experiment_id}/runs/{run_id}?{urllib.parse.urlencode(_MODEL_TRAINING)}"


def compare_url(base_url: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare view of ``run_ids``: parallel coordinates, params and metrics side
    by side. The UI reads ``runs`` and ``experiments`` as JSON lists."""
    runs = urllib.parse.quote(json.dumps(list(run_ids), separators=(",", ":")))
    experiments = urllib.parse.quote(json.dumps([str(experiment_id)], separators=(",", ":")))
    return f"{base_url}/#/compare-runs?runs={runs}&experiments={experiments}&{urllib.parse.urlencode(_MODEL_TRAINING)}"
