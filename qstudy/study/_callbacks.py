"""Driver-side Tune callbacks: MLflow tracking (the one writer) and the progress table."""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback

from qstudy.config import TrialStatus
from qstudy.study._searcher import ARM_KEY, PHASE_KEY, QSTUDY_KEYS, TRIAL_ID_KEY, status_of
from qstudy.tracking import short_names

__all__ = ["TrackingCallback", "ProgressCallback", "format_table", "tune_status"]

# String results kept on the trial's MLflow run as tags (metrics are numbers only).
_RESULT_TAGS = {"worker_nodes": "qstudy.worker_nodes"}


def _trial_id(trial) -> str:
    return trial.config.get(TRIAL_ID_KEY, trial.trial_id)


def _values(trial) -> dict[str, Any]:
    return {k: v for k, v in trial.config.items() if k not in QSTUDY_KEYS}


class TrackingCallback(Callback):
    """Logs every trial to MLflow through ``StudyTracker``, from the driver only.

    The Tune hooks call :meth:`start`, :meth:`result` and :meth:`end`, which take a trial
    id instead of a Tune trial, so that a trial's results read back from disk are logged
    exactly as the live study logs them (see ``qstudy.study._relog``).
    """

    def __init__(self, tracker, trial_config_of):
        self.tracker = tracker
        self._trial_config_of = trial_config_of  # values -> full trial config dict
        self.statuses: dict[str, str] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self._tags: dict[str, dict[str, str]] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.start(_trial_id(trial), _values(trial), arm=trial.config.get(ARM_KEY), phase=trial.config.get(PHASE_KEY))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.result(_trial_id(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.end(_trial_id(trial), status_of(trial.last_result, error=False))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.end(_trial_id(trial), TrialStatus.FAILED, error=_error_text(getattr(trial, "error_file", None)))

    def start(
        self,
        trial_id: str,
        values: dict[str, Any],
        config: dict[str, Any] | None = None,
        arm: str | None = None,
        phase: str | None = None,
    ) -> None:
        """Opens the trial's run with its searched ``values``, full ``config`` (default:
        the study's trial config with ``values`` applied), its comparison or confirm
        ``arm`` and its ``phase`` (``confirm``), if any."""
        config = config if config is not None else self._trial_config_of(values)
        self.tracker.start_trial(trial_id, values, config, arm=arm, phase=phase)

    def result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Logs one Tune result of the trial: its numbers at ``step``, its string tags."""
        step = result.get("step")
        self.results[trial_id] = result
        if step is not None:
            self.tracker.log_metrics(trial_id, _numeric(result), int(step))
        tags = {tag: result[key] for key, tag in _RESULT_TAGS.items() if isinstance(result.get(key), str)}
        if tags and tags != self._tags.get(trial_id):
            self.tracker.tag_trial(trial_id, tags)
            self._tags[trial_id] = tags

    def end(self, trial_id: str, status: str, error: str | None = None) -> None:
        """Ends the trial's run with its qstudy status (and the failure's text)."""
        self.statuses[trial_id] = status
        self.tracker.end_trial(trial_id, status, error=error)


def _error_text(path) -> str | None:
    """The tail of a trial's error file (Tune writes it in the trial's local folder
    before calling back; the copy in storage is synced later)."""
    try:
        text = open(path).read() if path else ""
    except OSError:  # an unreadable error file must not stop the study's tracking
        text = ""
    return text[-4000:] or None


def _numeric(result: dict[str, Any]) -> dict[str, float]:
    skip = {
        "step",
        "training_iteration",
        "timestamp",
        "time_this_iter_s",
        "time_total_s",
        "pid",
        "time_since_restore",
        "iterations_since_restore",
        "done",
    }
    return {
        k: float(v)
        for k, v in result.items()
        if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class ProgressCallback(Callback):
    """Prints the trial table (status, λ, qubits, depth, latest objective, elapsed)
    every ``interval_s`` while the study runs, and on every trial's end; the confirm
    phase's trials, once there are any, in a table of their own (``confirm_columns``)."""

    def __init__(
        self,
        metric: str,
        columns: list[str],
        interval_s: float = 15.0,
        printer=print,
        confirm_columns: list[str] | None = None,
    ):
        self.metric = metric
        self.columns = list(columns)
        self.confirm_columns = list(confirm_columns or columns)
        self.interval_s = interval_s
        self.printer = printer
        self._last = 0.0
        self._started = time.monotonic()

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last >= self.interval_s:
            self._print(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._print(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trials)

    def _print(self, trials) -> None:
        self._last = time.monotonic()
        header = f"[{time.monotonic() - self._started:6.0f}s]"
        search = [_row(t, self.metric, self.columns) for t in trials if PHASE_KEY not in t.config]
        confirm = [_row(t, self.metric, self.confirm_columns) for t in trials if PHASE_KEY in t.config]
        text = format_table(search, self.metric, self.columns, header=header) if search or not confirm else header
        if confirm:
            text += "\nconfirm trials:\n" + format_table(confirm, self.metric, self.confirm_columns)
        self.printer(text)


def tune_status(tune_state: str, last_result: dict | None) -> str:
    """A trial's status from Tune's state of it (PENDING, RUNNING, PAUSED, TERMINATED,
    ERROR): an ended trial (TERMINATED) has the status its last result says
    (:func:`status_of`), an ERROR one failed; a trial not ended yet is shown as Tune
    names it, lower-cased (``pending``, ``running``, ``paused``)."""
    if tune_state == "TERMINATED":
        return status_of(last_result, error=False)
    if tune_state == "ERROR":
        return TrialStatus.FAILED
    return tune_state.lower()


def _row(trial, metric: str, columns: list[str]) -> dict[str, Any]:
    result = trial.last_result or {}
    return {
        "trial": _trial_id(trial),
        "status": tune_status(trial.status, result),
        **{k: trial.config.get(k) for k in columns},
        **({"arm": trial.config[ARM_KEY]} if ARM_KEY in trial.config else {}),
        "step": result.get("step"),
        metric: result.get(metric),
        "elapsed_s": result.get("time_total_s"),
    }


def format_table(rows: list[dict[str, Any]], metric: str, columns: list[str], header: str = "") -> str:
    """A plain-text table: trial, status, the searched values, step, objective, elapsed."""
    names = short_names(columns)
    cols = ["trial", "status", *columns, "step", metric, "elapsed_s"]
    titles = ["trial", "status", *[names[c] for c in columns], "step", metric, "elapsed_s"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in sorted(rows, key=lambda r: r["trial"])]
    widths = [max(len(t), *(len(c[i]) for c in cells)) if cells else len(t) for i, t in enumerate(titles)]
    lines = [header] if header else []
    lines.append("  ".join(t.ljust(w) for t, w in zip(titles, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)
