"""Command line: ``prolab <stage> ...``, one module per stage (``describe``, ``properties``, ``train``,
``pipeline``, ``wovss``) over ``common``. Flag names equal the notebooks' parameter names."""
from __future__ import annotations

import argparse
import sys

from ..entry import EXPECTED_ERRORS, entry_point
from .common import PATH_FLAGS, here
from .describe import add_describe
from .pipeline import add_doctor, add_grid, add_run, add_verify
from .properties import add_properties, collision_advice
from .train import add_evaluate, add_train, space_warnings
from .wovss import add_wovss

__all__ = ["EXPECTED_ERRORS", "build_parser", "collision_advice", "entry_point", "main", "space_warnings"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"prolab {version('prolab')}"
    except PackageNotFoundError:
        return "prolab (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``prolab`` parser with every subcommand (also what the docs' CLI reference is generated from)."""
    parser = argparse.ArgumentParser(prog="prolab", description=__doc__)
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_describe, add_properties, add_train, add_evaluate, add_doctor, add_run, add_grid,
                add_verify, add_wovss):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in PATH_FLAGS:
        if isinstance(getattr(args, name, None), str):
            setattr(args, name, here(getattr(args, name)))
    if getattr(args, "parameters_file", None):
        args.parameters_file = [here(f) for f in args.parameters_file]
    try:
        return args.func(args)
    except EXPECTED_ERRORS as e:
        from ..redact import redact

        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        print(f"prolab {args.command}: error: {redact(msg)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
