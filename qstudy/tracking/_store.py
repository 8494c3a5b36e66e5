"""The MLflow store as qstudy writes and reads it: batched writes within MLflow's limits,
artifacts from text or bytes, every page of a search.

mlflow is imported inside the functions that write: importing this module costs nothing.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qstudy.errors import QStudyError
from qstudy.tracking._naming import _MAX_PARAM_CHARS, _MAX_TAG_CHARS, _name, _truncate

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# MLflow's limits per log_batch call (mlflow/utils/validation.py): MLflow would refuse more.
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000


class TrackingError(QStudyError):
    """The tracking store cannot record the study as asked."""


def search_runs(mlflow_client: MlflowClient, experiment_id: str, filter_string: str) -> Iterator[Run]:
    """Every active run of the experiment matching the filter, oldest first."""
    token = None
    while True:
        page = mlflow_client.search_runs(
            [experiment_id],
            filter_string,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def log_batch(
    mlflow_client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, float] | None = None,
    step: int = 0,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """One log_batch call (more only past MLflow's 100 params/tags per batch)."""
    from mlflow.entities import Metric, Param, RunTag

    timestamp = int(time.time() * 1000)
    metric_list = [Metric(_name(k), float(v), timestamp, step) for k, v in (metrics or {}).items()]
    param_list = [Param(_name(k), _truncate(v, _MAX_PARAM_CHARS)) for k, v in (params or {}).items()]
    tag_list = [RunTag(k, _truncate(str(v), _MAX_TAG_CHARS)) for k, v in (tags or {}).items()]
    while metric_list or param_list or tag_list:
        mlflow_client.log_batch(
            run_id,
            metrics=metric_list[:_MAX_METRICS_PER_BATCH],
            params=param_list[:_MAX_PARAMS_TAGS_PER_BATCH],
            tags=tag_list[:_MAX_PARAMS_TAGS_PER_BATCH],
        )
        metric_list = metric_list[_MAX_METRICS_PER_BATCH:]
        param_list = param_list[_MAX_PARAMS_TAGS_PER_BATCH:]
        tag_list = tag_list[_MAX_PARAMS_TAGS_PER_BATCH:]


def log_artifact(mlflow_client: MlflowClient, run_id: str, name: str, content: str | bytes) -> None:
    if isinstance(content, str):
        mlflow_client.log_text(run_id, content, name)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        mlflow_client.log_artifact(run_id, str(path), artifact_path=str(Path(name).parent) if "/" in name else None)
