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
