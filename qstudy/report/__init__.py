"""``qstudy report FILE``: a finished study's answer, read back from MLflow and Optuna.

Writes ``report.md``, ``report.json`` (every number of the report) and PNG figures into
``<output>/report/``, logs them as artifacts of the study's MLflow parent run (under
``report/``), adds the arm tables and verdicts to that run's description, and returns the main table for the terminal. The per-step cost of each arm
is measured here, paired in one process (``_timing``), and logged on the parent run
(metrics ``timing/<arm>/step_s``, tag ``qstudy.timing``) before it is read back like
every other number.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from qstudy.config import TrialStatus
from qstudy.report._errors import ReportError

__all__ = ["ReportError", "write_report"]

_TIMING_TAG = "qstudy.timing"


def write_report(
    study, source: str, timing_rounds: int = 10, timing_steps: int = 4, retime: bool = False, printer=print
) -> dict[str, Any]:
    """Writes the report of ``study`` (a ``StudyConfig``) and returns its ``report.json`` content.

    Args:
        source: the study file (named in the report).
        timing_rounds, timing_steps: paired timing rounds and steps per arm per round; 0
            rounds: no timing (time claims are then "not measured").
        retime: measure the timing again even where the parent run holds one.

    Raises:
        ReportError: the study has no MLflow or Optuna record here.
    """
    from qstudy.report._analysis import analyse
    from qstudy.report._figures import write_figures
    from qstudy.report._read import read_study
    from qstudy.report._render import arm_table, description_section, render_markdown, verdict_text
    from qstudy.report._timing import TIMING_METHOD
    from qstudy.study import study_paths
    from qstudy.tracking import StudyTracker, is_server_uri

    paths = study_paths(study)
    uri = paths["tracking_uri"]
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ReportError(
            f"{source}: study {study.name}: its MLflow store {uri} does not exist: run "
            f"`qstudy sweep {source}` first (from the directory it was run in)"
        )
    if not Path(paths["output"], "optuna.db").is_file():
        raise ReportError(
            f"{source}: study {study.name}: no Optuna storage at {paths['optuna_url']}: run "
            f"`qstudy sweep {source}` first (from the directory it was run in)"
        )
    if not is_server_uri(uri):
        from mlflow import MlflowClient

        if MlflowClient(uri).get_experiment_by_name(study.experiment_name) is None:
            raise ReportError(f"{source}: study {study.name}: {uri} has no experiment {study.experiment_name!r}")
    tracker = StudyTracker(uri, study.experiment_name, study.name)
    record = read_study(study, paths, tracker)
    timing, timing_note = _paired_timing(study, record, tracker, timing_rounds, timing_steps, retime, printer)
    numbers = analyse(study, record, timing)
    out = Path(paths["output"]) / "report"
    figures, notes = write_figures(study, record, numbers, out / "figures")
    if timing_note:
        notes.append(timing_note)
    header = {
        "study": study.name,
        "file": source,
        "commit": _commit(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": _machine(),
        "seeds": list(study.seeds),
        "timing_method": TIMING_METHOD,
        "timing": json.loads(tracker.mlflow_client.get_run(record.parent_run_id).data.tags.get(_TIMING_TAG, "null")),
        "tracking_uri": uri,
        "optuna_url": paths["optuna_url"],
        "parent_run_id": record.parent_run_id,
    }
    report = {"header": header, **numbers, "figures": figures, "notes": notes}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "report.md").write_text(render_markdown(header, numbers, figures, notes))
    tracker.log_study_artifacts(
        {
            "report/report.md": (out / "report.md").read_text(),
            "report/report.json": (out / "report.json").read_text(),
            **{f"report/figures/{name}": (out / "figures" / name).read_bytes() for name in figures},
        }
    )
    tracker.set_report_description(description_section(header, numbers))
    for phase, arms in numbers["arms"].items():
        if arms:
            printer(_text_table(*arm_table(arms, record.metric), title=f"study {study.name}: arms ({phase})"))
    for claim in numbers["claims"]:
        printer(f"  claim: {claim['text']}: {verdict_text(claim)}")
    printer(f"report: {out / 'report.md'} (and report.json, figures/; also on MLflow run {record.parent_run_id})")
    return report


def _paired_timing(
    study, record, tracker, rounds: int, steps: int, retime: bool, printer
) -> tuple[dict[str, list[float]], str | None]:
    """The paired step times per arm: read from the parent run, measured and logged first if absent."""
    from qstudy.report._timing import measure_step_times

    # Only arms with a completed trial: a failed or diverged arm has no cost to compare.
    ran = {t.arm for t in record.trials if t.status == TrialStatus.COMPLETED and t.arm is not None}
    arms = {name: overrides for name, overrides in _timed_arms(study, record).items() if name in ran}
    if not arms or "control" not in arms:
        return {}, None
    tags = tracker.mlflow_client.get_run(record.parent_run_id).data.tags
    logged = json.loads(tags.get(_TIMING_TAG, "null"))
    if logged is None or retime or sorted(logged.get("arms", [])) != sorted(arms):
        if rounds <= 0:
            return {}, "per-step time not measured (--timing-rounds 0)"
        printer(f"study {study.name}: timing {len(arms)} arms, {rounds} rounds x {steps} steps, paired in one process")
        times, why = measure_step_times(study, arms, rounds=rounds, steps=steps, printer=printer)
        if why:
            return {}, f"per-step time not measured: {why}"
        first = 0 if logged is None else logged["first_step"] + logged["rounds"]
        for r in range(rounds):
            tracker.log_study_metrics({f"timing/{arm}/step_s": times[arm][r] for arm in arms}, step=first + r)
        logged = {
            "first_step": first,
            "rounds": rounds,
            "steps": steps,
            "arms": list(arms),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": _machine(),
        }
        tracker.mlflow_client.set_tag(record.parent_run_id, _TIMING_TAG, json.dumps(logged))
    span = range(logged["first_step"], logged["first_step"] + logged["rounds"])
    timing = {}
    for arm in logged["arms"]:
        history = dict(tracker.study_metric_history(f"timing/{arm}/step_s"))
        timing[arm] = [history[s] for s in span if s in history]
    return timing, None


def _timed_arms(study, record) -> dict[str, dict[str, Any]]:
    """Arm -> overrides of the arms to time: a comparison study's, or a confirm phase's."""
    if study.is_comparison:
        return dict(study.arms)
    arms: dict[str, dict[str, Any]] = {}
    for t in record.trials:
        if t.phase == "confirm" and t.arm is not None:
            arms.setdefault(t.arm, {k: v for k, v in t.values.items() if k != "seed"})
    return arms


def _commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _machine() -> str:
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{model}, {os.cpu_count()} CPUs{gpu}; {platform.system()} {platform.release()}; torch {torch.__version__}"


def _text_table(header: list[str], rows: list[list[str]], title: str) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["", title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
