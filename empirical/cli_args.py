"""The plumbing every ``superpose`` subcommand shares: the bad-input error, the output-path
check, the shared flags and small argument parsers (comma lists, task ranges, --run).

Everything here turns command-line text into values or one clear error; no experiment logic.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


class UsageError(ValueError):
    """Bad input from the command line."""


#: What a subcommand raises for bad input, deliberately (ValueError: UsageError, ModelFileError,
#: UnicodeDecodeError among them; OSError: missing, unreadable or unwritable paths): each becomes
#: one line and exit status 2. Anything else (a KeyError, IndexError or TypeError) is a bug and
#: surfaces as one, with its traceback.
BAD_INPUT = (ValueError, OSError)

#: The output flags: (flag, attribute, what the path names).
OUTPUTS = (("--json", "json", "file"), ("--out", "out", "folder"), ("--to", "to", "folder"))


def check_outputs(args) -> None:
    """Before any work: every output path given can be written. A ``--json`` target must not be a
    folder, an ``--out`` / ``--to`` folder not a file, and the nearest existing folder above
    either must be a writable folder (not an ordinary file); one UsageError naming the path."""
    for flag, attr, kind in OUTPUTS:
        value = getattr(args, attr, None)
        if value is None:
            continue
        path = Path(value)
        if kind == "file" and path.is_dir():
            raise UsageError(f"{flag} {value}: is a folder, not a file")
        if kind == "folder" and path.exists() and not path.is_dir():
            raise UsageError(f"{flag} {value}: is a file, not a folder")
        folder = path if kind == "folder" else path.parent
        above = next((p for p in (folder, *folder.parents) if p.exists()), Path.cwd())
        if not above.is_dir():
            raise UsageError(f"{flag} {value}: {above} is a file, not a folder")
        if not os.access(above, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {value}: the folder {above} is not writable")


def one_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    message = str(err).strip()
    return message.splitlines()[0] if message else type(err).__name__


def positive(text: str) -> int:
    """An argparse ``type``: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def flags(p: argparse.ArgumentParser, *rows: tuple) -> None:
    """Add flags from rows ``(name, default, help)`` or ``(name, default, help, kind)``, where
    ``kind`` is an argparse ``type`` (``positive``, ``int``, ``float``), a tuple of choices, or
    ``"store_true"`` (a switch; its default is False)."""
    for name, default, helptext, *kind in rows:
        options = {}
        if kind == ["store_true"]:
            options = {"action": "store_true"}
        elif kind and isinstance(kind[0], tuple):
            options = {"choices": kind[0]}
        elif kind:
            options = {"type": kind[0]}
        p.add_argument(name, default=default, help=helptext, **options)


def add_outputs(p: argparse.ArgumentParser, *, result: str = "the result", plots: str = "plots",
                out_default: str | None = None, seed_help: str = "random seed (default 0)",
                quiet: bool = True) -> None:
    """The flags every subcommand shares: --json, --out, --seed (and --quiet)."""
    p.add_argument("--json", default=None, help=f"write {result} (with config, version, device, date) here")
    p.add_argument("--out", default=out_default, help=f"directory for {plots}" +
                   (f" (default {out_default})" if out_default else ""))
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def outputs(args) -> dict:
    """The shared flags (:func:`add_outputs`) as a library command's keywords: ``seed``, ``out``,
    ``json_path`` and ``progress``."""
    return dict(seed=args.seed, out=args.out, json_path=args.json, progress=not args.quiet)


def number_list(flag: str, text: str | None, kind=int) -> list | None:
    """``"0,1,2"`` -> [0, 1, 2]; one UsageError naming ``flag`` for anything else."""
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")]
    try:
        values = [kind(t) for t in parts]
    except ValueError:
        raise UsageError(f"{flag}: expected comma-separated {'integers' if kind is int else 'numbers'}, "
                         f"got {text!r}") from None
    if kind is int and any(v < 0 for v in values):
        raise UsageError(f"{flag}: seeds must be >= 0, got {text!r}")
    if len(set(values)) != len(values):
        raise UsageError(f"{flag}: values repeat in {text!r}")
    return values


def task_range(text: str | None) -> tuple[int, int] | None:
    """``"2,3"`` (or ``"2"``) -> (2, 3); one UsageError otherwise."""
    if text is None:
        return None
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise UsageError(f"--mix-tasks: expected LO,HI (integers), got {text!r}") from None
    if len(values) not in (1, 2):
        raise UsageError(f"--mix-tasks: expected LO,HI, got {text!r}")
    return (values[0], values[-1])


def require_run(run: str | None) -> str:
    """``--run``'s value, or one UsageError listing the shipped models."""
    if run is None:
        from empirical import runs

        raise UsageError("--run is required (a run directory or a shipped model: " + ", ".join(runs.available()) + ")")
    return run
