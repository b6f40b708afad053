"""The ``train`` and ``sweep`` subcommands of the ``superpose`` CLI.

``register(subparsers)`` adds them to the package's one parser (empirical/cli.py); each sets
``func(args) -> int``. Every subcommand accepts ``--json PATH``, ``--seed`` and ``--out DIR``;
bad input prints one line to stderr and exits non-zero; result files are written to a
temporary file and ``os.replace``d, and carry the config, package version, device and date.

    superpose train --preset tiny --family copy --out runs/copy
    superpose sweep --run runs/copy --tasks copy:2,copy:6 --json s.json --out plots/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


def _fail(command: str, message: str) -> int:
    print(f"superpose {command}: error: {message}", file=sys.stderr)
    return 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# --------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    from empirical import synthetic, training

    try:
        if args.out is None:
            raise UsageError("--out DIR is required (the run directory)")
        out = Path(args.out)
        if args.resume and (out / "config.json").is_file():
            cfg = training.load_config(out)
            if args.preset is not None and args.preset != cfg.preset:
                raise UsageError(f"{out} was trained with preset {cfg.preset!r}, not {args.preset!r}")
            if args.family is not None and args.family != cfg.family:
                raise UsageError(f"{out} was trained on family {cfg.family!r}, not {args.family!r}")
            if args.seed is not None and args.seed != cfg.seed:
                raise UsageError(f"{out} was trained with seed {cfg.seed}, not {args.seed}")
        else:
            preset = args.preset or "tiny"
            if preset not in training.PRESETS:
                raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(training.PRESETS)}")
            family = args.family or "copy"
            if family not in synthetic.FAMILIES:
                raise UsageError(f"unknown family {family!r}; choose from {', '.join(synthetic.FAMILIES)}")
            cfg = training.PRESETS[preset](family=family, seed=0 if args.seed is None else args.seed)
        if args.steps is not None:
            cfg = cfg.replace(steps=args.steps)
        if (out / "config.json").is_file() and not args.resume:
            raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        summary = training.train(cfg, out, resume=args.resume, progress=not args.quiet)
    except UsageError as err:
        return _fail("train", str(err))
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        return _fail("train", str(err))
    if args.json:
        training.write_json_atomic(args.json, summary)
    ev = summary["eval"]
    print(
        f"trained {cfg.preset}/{cfg.family} to step {summary['step']}: loss {ev['loss']:.4f}, "
        f"answer accuracy {ev['answer_acc']:.3f} (second half of examples {ev['answer_acc_late']:.3f}), "
        f"{summary['tokens_per_s'] or float('nan'):.0f} tokens/s -> {out}"
    )
    return 0


# --------------------------------------------------------------------------- sweep


def _sweep(args: argparse.Namespace) -> int:
    from empirical import sweep as sweep_lib
    from empirical import synthetic, training

    try:
        if args.run is None:
            raise UsageError("--run DIR is required (a directory written by `superpose train`)")
        if args.tasks is None:
            raise UsageError("--tasks A,B is required (e.g. copy:2,copy:6)")
        try:
            fam, hs = synthetic.parse_tasks(args.tasks)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if len(hs) != 2:
            raise UsageError(f"--tasks needs exactly two tasks A,B, got {len(hs)}")
        run_dir = Path(args.run)
        try:
            cfg = training.load_config(run_dir)
        except FileNotFoundError as err:
            raise UsageError(str(err)) from None
        if cfg.family != fam.name:
            raise UsageError(f"{run_dir} was trained on family {cfg.family!r}; the tasks are {fam.name!r} tasks")
        cfg_, params, step = training.load_run(run_dir)
        n_examples = args.examples or cfg.n_examples
        result = sweep_lib.sweep(
            cfg.model,
            params,
            fam.name,
            hs,
            n_prompts=args.prompts,
            n_examples=n_examples,
            seed=args.seed,
            batch=args.batch,
            progress=not args.quiet,
        )
    except UsageError as err:
        return _fail("sweep", str(err))
    except (ValueError, FileNotFoundError) as err:
        return _fail("sweep", str(err))
    result = {**training.provenance(cfg), "run": str(run_dir), "checkpoint_step": step, **result}
    name_a, name_b = result["tasks"]
    if args.out:
        stem = f"sweep_{name_a}_{name_b}".replace(":", "")
        plot_path = sweep_lib.plot(result, Path(args.out) / f"{stem}.png")
        result["plot"] = str(plot_path)
    if args.json:
        training.write_json_atomic(args.json, result)
    for lam in (0.0, 0.5, 1.0):
        pt = sweep_lib.at(result, lam)
        print(
            f"lambda={lam:.1f}: P({name_a})={pt['p_a']['mean']:.3f}±{pt['p_a']['ci95']:.3f}  "
            f"P({name_b})={pt['p_b']['mean']:.3f}±{pt['p_b']['ci95']:.3f}"
        )
    return 0


# --------------------------------------------------------------------------- registration


def register(subparsers) -> None:
    """Add ``train`` and ``sweep`` to the CLI's subparsers (each sets ``func``)."""
    p = subparsers.add_parser("train", help="train the transformer from scratch on one task per sequence (Fig. 3)")
    p.add_argument("--preset", default=None, help="tiny (CPU, ~10 min) or paper (~14M params, GPU); default tiny")
    p.add_argument("--family", default=None, help="task family: copy or add (default copy)")
    p.add_argument("--steps", type=_positive, default=None, help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="seed of weights and data (default 0)")
    p.add_argument("--out", default=None, help="run directory (checkpoints, config.json, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--json", default=None, help="also write the run summary to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    s = subparsers.add_parser("sweep", help="lambda sweep of a trained run on mixed prompts (Fig. 3)")
    s.add_argument("--run", default=None, help="run directory written by `superpose train`")
    s.add_argument("--tasks", default=None, help="two tasks A,B of the run's family, e.g. copy:2,copy:6")
    s.add_argument("--prompts", type=_positive, default=1000, help="prompts per lambda (default 1000)")
    s.add_argument("--examples", type=_positive, default=None, help="examples per prompt (default: the run's)")
    s.add_argument("--batch", type=_positive, default=50, help="prompts per forward pass (default 50)")
    s.add_argument("--seed", type=int, default=0, help="seed of the prompts (default 0)")
    s.add_argument("--json", default=None, help="write the sweep (with config, version, device, date) here")
    s.add_argument("--out", default=None, help="directory for the Figure 3 plot")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_sweep)


def main(argv=None) -> int:
    """Standalone entry point (``python -m empirical.train_cli``), until empirical/cli.py wires it."""
    parser = argparse.ArgumentParser(prog="superpose")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
