"""MLflow tracking of a study: the only package of qstudy that imports mlflow.

One writer: the study driver logs everything through one :class:`StudyTracker` (from a
Tune callback), workers never touch the store, so the embedded default
``sqlite:///mlruns.db`` is safe and a cluster can point at an ``mlflow server`` on the
head node instead. The layout in MLflow::

    experiment <experiment>   tag mlflow.experimentKind=custom_model_development (MLflow 3's
                              "Model training" kind: the UI opens on the runs, not on traces);
                              tag mlflow.sharedViewState.<key> per study (:meth:`share_view`)
      run <study>             tags qstudy.role=study, qstudy.study=<study>
                              params: the study file flattened; artifacts study.yaml, space.json,
                              summary.txt; tags qstudy.objective, qstudy.optuna_storage,
                              qstudy.output, qstudy.study_file; at the end best_<metric>
                              metrics, qstudy.best.* tags and the description
                              (mlflow.note.content, markdown)
        run <study>/<trial>   tags mlflow.parentRunId, qstudy.trial_id, qstudy.status (qstudy.arm,
                              qstudy.phase)
                              params: the trial config flattened, every setting once under its
                              dotted name (optimizer.quantum_weight, quantum.n_qubits)
                              (+ arm: the arm of a comparison or confirm trial; a confirm trial
                              is tagged qstudy.phase=confirm)
                              metrics per step, named by :func:`mlflow_metric_name` (cost
                              figures under timing/, system/, trial/); artifact trial_config.json

Re-running a study reuses its parent run and the child run of every trial id it has seen
(never a duplicate run), and metric steps repeated after a worker restart are logged once.

mlflow is imported inside the methods that need it: importing this package (for
:func:`absolute_tracking_uri`, :func:`ui_command`) costs nothing.

One concern a module: ``_uri`` (tracking URIs, the UI's address and links), ``_naming``
(trial ids and run names, short param titles, flattened params, metric names, MLflow's
limits on a value), ``_store`` (batched writes,
artifacts, paginated search), ``_study`` (:class:`StudyTracker`: parent and child runs,
resume, de-duplication).
"""

from qstudy.tracking._naming import mlflow_metric_name, short_names, trial_name, trial_number, trial_run_name
from qstudy.tracking._store import TrackingError
from qstudy.tracking._study import TRIAL_STATUSES, StudyTracker, study_links
from qstudy.tracking._uri import (
    absolute_tracking_uri,
    compare_url,
    is_server_uri,
    run_page_url,
    runs_page_url,
    ui_base_url,
    ui_command,
)

__all__ = [
    "TRIAL_STATUSES",
    "StudyTracker",
    "TrackingError",
    "absolute_tracking_uri",
    "compare_url",
    "is_server_uri",
    "mlflow_metric_name",
    "run_page_url",
    "runs_page_url",
    "short_names",
    "study_links",
    "trial_name",
    "trial_number",
    "trial_run_name",
    "ui_base_url",
    "ui_command",
]
