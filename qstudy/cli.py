"""The `qstudy` command: parse, then call one function per subcommand."""

from __future__ import annotations

import argparse
import sys

from qstudy import __version__
from qstudy.errors import QStudyError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qstudy",
        description="Ray-distributed hyperparameter studies of Superpositional Gradient "
        "Descent (arXiv 2511.01918).",
    )
    parser.add_argument("--version", action="version", version=f"qstudy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="print the versions of the stack qstudy runs on")
    info.set_defaults(func=_cmd_info)

    train = sub.add_parser("train", help="run one trial (Ray Train + DeepSpeed) from a trial YAML file")
    train.add_argument("file", help="trial config YAML (see search_spaces/trial_tiny.yaml)")
    train.add_argument("--name", help="trial name (default: the file's stem)")
    train.add_argument("--storage-path", default="qstudy_runs", help="where Ray Train keeps checkpoints")
    train.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    train.set_defaults(func=_cmd_train)
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
    import json
    from pathlib import Path

    from qstudy.config import load_trial_config

    trial = load_trial_config(args.file)
    from qstudy.train import run_trial

    name = args.name or Path(args.file).stem
    outcome = run_trial(trial, name=name, storage_path=args.storage_path, source=args.file, address=args.address)
    print(json.dumps(outcome, indent=2, default=str))
    return 0 if outcome["status"] == "completed" else 1


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
