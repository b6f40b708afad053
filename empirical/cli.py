"""The ``superpose`` command: one entry point, one subcommand per experiment.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Bad input raises ValueError (or UsageError); ``main`` turns it into one
clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: The modules that provide subcommands, in help order.
SUBCOMMANDS = ("empirical.verify", "empirical.check_cli", "empirical.train_cli", "empirical.llm.cli")


class UsageError(ValueError):
    """Bad input from the command line."""


def add_common(parser: argparse.ArgumentParser, *, json_default=None, out_default="results") -> None:
    """The flags every subcommand accepts: --json, --seed, --out."""
    parser.add_argument("--json", default=json_default, help="write the machine-readable result here")
    parser.add_argument("--seed", type=int, default=0, help="random seed (prompts, weights, sampling)")
    parser.add_argument("--out", default=out_default, help="folder for plots")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="superpose", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:
        message = e.args[0] if e.args else repr(e)
        print(f"superpose {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
