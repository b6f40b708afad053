"""The ``train``, ``eval``, ``export``, ``sweep``, ``compare`` and ``within-prompt`` subcommands of the ``superpose`` CLI.

``register(subparsers)`` adds them to the package's one parser (empirical/cli.py); each sets
``func(args) -> int``. Every subcommand accepts ``--json PATH``, ``--seed`` and ``--out DIR``;
bad input prints one line to stderr and exits 2; result files are written to a temporary
file and ``os.replace``d, and carry the config, package version, device and date. ``--run``
takes a run directory or the name of a shipped model (``copy``, ``add``, ``lookup``).

    superpose train --preset tiny --family copy --out runs/copy
    superpose eval --run copy --sequences 200 --json eval.json
    superpose sweep --run copy --tasks copy:2,copy:6 --json s.json --out plots/
    superpose train --like-construction --out runs/like-construction
    superpose compare --run lookup --json compare.json --out plots/
"""

from __future__ import annotations

import argparse
import json
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


def _guarded(command: str, body) -> int:
    """Run ``body()``; bad input of any kind becomes one line on stderr and exit status 2."""
    try:
        return body()
    except UsageError as err:
        return _fail(command, str(err))
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, PermissionError, IsADirectoryError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        return _fail(command, str(message).strip().splitlines()[0] if str(message).strip() else type(err).__name__)


def _read_json(path: str, what: str) -> dict:
    """The JSON content of ``path``; a missing or malformed file is one UsageError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not valid JSON: {err}") from None


def _task_set(path: str | None):
    """The TaskSet of a ``--tasks-file`` (None without one)."""
    if path is None:
        return None
    from construction.tasks import TaskSet

    return TaskSet.from_json(_read_json(path, "task file"))


def _load_run(run: str | None):
    from empirical import runs

    if run is None:
        raise UsageError("--run is required (a run directory or a shipped model: " + ", ".join(runs.available()) + ")")
    return runs.load(run)


# --------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    from empirical import synthetic, training

    def body() -> int:
        if args.out is None:
            raise UsageError("--out DIR is required (the run directory)")
        out = Path(args.out)
        if args.resume and (out / "config.json").is_file():
            cfg = training.load_config(out)
            for flag, value, saved in (("preset", args.preset, cfg.preset), ("family", args.family, cfg.family),
                                       ("seed", args.seed, cfg.seed)):
                if value is not None and value != saved:
                    raise UsageError(f"{out} was trained with {flag} {saved!r}, not {value!r}")
            if args.tasks_file is not None:
                raise UsageError("--tasks-file cannot change on --resume")
        elif args.like_construction:
            if (out / "config.json").is_file():
                raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
            if args.preset is not None or args.family not in (None, "lookup"):
                raise UsageError("--like-construction sets the architecture and the family (lookup) itself; "
                                 "drop --preset and --family")
            cfg = training.like_construction(tasks=_task_set(args.tasks_file), norm=args.norm,
                                             seed=0 if args.seed is None else args.seed)
        else:
            if (out / "config.json").is_file():
                raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
            if args.norm != "rms":
                raise UsageError("--norm applies to --like-construction only")
            preset = args.preset or "tiny"
            if preset not in training.PRESETS:
                raise UsageError(f"unknown preset {preset!r}; choose from {', '.join(training.PRESETS)}")
            family = args.family or "copy"
            if family not in synthetic.FAMILIES:
                raise UsageError(f"unknown family {family!r}; choose from {', '.join(synthetic.FAMILIES)}")
            tasks = _task_set(args.tasks_file)
            if tasks is not None and family != "lookup":
                raise UsageError("--tasks-file applies to --family lookup only")
            extra = {"tasks": tasks} if tasks is not None else {}
            cfg = training.PRESETS[preset](family=family, seed=0 if args.seed is None else args.seed, **extra)
        if args.steps is not None:
            cfg = cfg.replace(steps=args.steps)
        summary = training.train(cfg, out, resume=args.resume, progress=not args.quiet)
        if args.json:
            training.write_json_atomic(args.json, summary)
        ev = summary["eval"]
        print(
            f"trained {cfg.preset}/{cfg.family} to step {summary['step']}: loss {ev['loss']:.4f}, "
            f"answer accuracy {ev['answer_acc']:.3f} (second half of examples {ev['answer_acc_late']:.3f}), "
            f"{summary['tokens_per_s'] or float('nan'):.0f} tokens/s -> {out}"
        )
        return 0

    return _guarded("train", body)


# --------------------------------------------------------------------------- eval


def _eval(args: argparse.Namespace) -> int:
    from empirical import training

    def body() -> int:
        cfg, params, step = _load_run(args.run)
        result = training.evaluate_tasks(cfg, params, sequences=args.sequences, seed=args.seed,
                                         progress=not args.quiet)
        result = {**training.provenance(cfg), "command": "eval", "run": args.run, "checkpoint_step": step, **result}
        if args.out:
            result["plot"] = str(plot_eval(result, Path(args.out) / f"eval_{Path(args.run).name}.png"))
        if args.json:
            training.write_json_atomic(args.json, result)
        print(f"{args.run} ({cfg.family}, step {step}), {args.sequences} fresh sequences per task, seed {args.seed}:")
        for name, t in result["tasks"].items():
            print(f"  {t['label']:28s} answer accuracy {t['answer_acc']:.4f}   second half {t['answer_acc_late']:.4f}")
        print(f"  {'all tasks':28s} answer accuracy {result['answer_acc']:.4f}   second half "
              f"{result['answer_acc_late']:.4f} (worst task {result['worst_task_late']:.4f})")
        return 0

    return _guarded("eval", body)


def plot_eval(result: dict, path: Path) -> Path:
    """Answer accuracy against example index, one line per task (the in-context learning curve)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    fig = Figure(figsize=(5.5, 3.6), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for t in result["tasks"].values():
        acc = np.array(t["example_acc"])
        ax.plot(np.arange(len(acc)), acc, linewidth=1, alpha=0.8, label=t["label"])
    ax.plot(np.arange(len(result["example_acc"])), result["example_acc"], "k-", linewidth=2, label="mean")
    ax.set_xlabel("example index in the sequence")
    ax.set_ylabel("answer accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(f"{result['run']}: {result['sequences_per_task']} fresh sequences per task", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------- sweep


def _sweep(args: argparse.Namespace) -> int:
    from empirical import sweep as sweep_lib
    from empirical import synthetic, training

    def body() -> int:
        if args.tasks is None:
            raise UsageError("--tasks A,B is required (e.g. copy:2,copy:6)")
        if args.run is None:
            raise UsageError("--run is required (a run directory or a shipped model)")
        names = [t for t in args.tasks.split(",") if t.strip()]
        try:
            synthetic.parse_tasks(names)  # the shape of the argument, before loading anything
        except ValueError as err:
            raise UsageError(str(err)) from None
        cfg, params, step = _load_run(args.run)
        fam, hs = synthetic.parse_tasks(names, cfg.tasks)
        if len(hs) != 2:
            raise UsageError(f"--tasks needs exactly two tasks A,B, got {len(hs)}")
        if cfg.family != fam.name:
            raise UsageError(f"{args.run} was trained on family {cfg.family!r}; the tasks are {fam.name!r} tasks")
        fam = cfg.fam
        n_examples = args.examples or cfg.n_examples - 1
        if n_examples > cfg.n_examples - 1 and cfg.model.positions == "learned":
            raise UsageError(f"{args.run} has learned positions for {cfg.n_examples} examples: prompts can hold at "
                             f"most {cfg.n_examples - 1} examples and the query")
        kw = dict(n_prompts=args.prompts, n_examples=n_examples, seed=args.seed, progress=not args.quiet)
        result = sweep_lib.sweep(sweep_lib.trained_probs(cfg.model, params, args.batch), fam, hs, **kw)
        result = {**training.provenance(cfg), "command": "sweep", "run": args.run, "checkpoint_step": step, **result}
        constructed = None
        if fam.task_set is not None:  # lookup: the constructed model on the same prompts
            from construction import construct

            ts = fam.task_set
            model = construct(ts.tasks, vocab_size=ts.vocab_size, example_len=ts.example_len,
                              max_examples=max(64, n_examples), beta=args.beta)
            constructed = sweep_lib.sweep(model.probabilities, fam, hs, **kw)
            constructed["model"] = {"kind": "constructed", "beta": args.beta, "spec": model.spec.to_dict()}
            result["constructed"] = constructed
        name_a, name_b = result["tasks"]
        if args.out:
            stem = f"sweep_{name_a}_{name_b}".replace(":", "")
            result["plot"] = str(sweep_lib.plot(result, Path(args.out) / f"{stem}.png", overlay=constructed))
        if args.json:
            training.write_json_atomic(args.json, result)
        for lam in (0.0, 0.5, 1.0):
            pt = sweep_lib.at(result, lam)
            print(f"lambda={lam:.1f}: P({name_a})={pt['p_a']['mean']:.3f}±{pt['p_a']['ci95']:.3f}  "
                  f"P({name_b})={pt['p_b']['mean']:.3f}±{pt['p_b']['ci95']:.3f}  "
                  f"within-prompt 2nd-largest {pt['second']['mean']:.3f}")
        return 0

    return _guarded("sweep", body)


# --------------------------------------------------------------------------- export


def _export(args: argparse.Namespace) -> int:
    from empirical import runs, training

    def body() -> int:
        if args.run is None or args.to is None:
            raise UsageError("--run DIR and --to DIR are required (e.g. --to empirical/pretrained/copy)")
        src = runs.resolve(args.run)
        if not (src / "config.json").is_file():
            raise UsageError(f"{src} is not a training run: config.json is missing")
        cfg, params, step = runs.load(src)
        evaluation = training.evaluate_tasks(cfg, params, sequences=args.sequences, seed=args.seed,
                                             progress=not args.quiet)
        dest = runs.export(src, args.to, summary={"eval": {**evaluation, "command": "export"}})
        if args.out:
            out = Path(args.out)
            training.plot_learning_curves(src, out / f"learning_{Path(args.to).name}.png",
                                          title=f"{Path(args.to).name}: {cfg.preset}/{cfg.family}, "
                                                f"{training.param_count(params)} parameters")
            plot_eval(evaluation | {"run": Path(args.to).name}, out / f"eval_{Path(args.to).name}.png")
        if args.json:
            training.write_json_atomic(args.json, {**training.provenance(cfg), "command": "export",
                                                   "run": str(src), "to": str(dest), "checkpoint_step": step,
                                                   **evaluation})
        print(f"exported {src} (step {step}) -> {dest}: answer accuracy {evaluation['answer_acc']:.4f}, "
              f"second half {evaluation['answer_acc_late']:.4f} (worst task {evaluation['worst_task_late']:.4f}) "
              f"on {args.sequences} fresh sequences per task")
        return 0

    return _guarded("export", body)


# --------------------------------------------------------------------------- within-prompt summary


def _within(args: argparse.Namespace) -> int:
    from empirical import within_prompt as wp
    from empirical.results import provenance, write_json

    def body() -> int:
        if not args.sweep and not args.probe:
            raise UsageError("give at least one --sweep or --probe result file")
        rows: dict[str, dict] = {}
        for path in args.sweep or []:
            result = _read_json(path, "sweep result")
            label = f"trained {result.get('run', '?')}: {' vs '.join(result['tasks'])}"
            rows[label] = wp.from_sweep(result, args.lam)
            if "constructed" in result:
                rows[f"constructed: {' vs '.join(result['tasks'])}"] = wp.from_sweep(result, args.lam, constructed=True)
        for path in args.probe or []:
            document = _read_json(path, "probe result")
            model = Path(str(document.get("config", {}).get("model", document.get("model", "llm")))).stem
            for res in document["results"]:
                rows[f"{model}: {res['family']}"] = wp.from_probe(res)
        result = {**provenance({"sweeps": args.sweep, "probes": args.probe, "lambda": args.lam}),
                  "command": "within-prompt", "rows": rows}
        if args.out:
            result["plot"] = str(wp.plot_summary(rows, Path(args.out) / "within_prompt_summary.png"))
        if args.json:
            write_json(args.json, result)
        for label, row in rows.items():
            print(f"{label:48s} 2nd-largest {row['second']['mean']:.3f} +- {row['second']['ci95']:.3f} "
                  f"(proportional {row['proportional']:.2f}), both >= 0.1 in {row['several']['mean']:.0%}")
        return 0

    return _guarded("within-prompt", body)


# --------------------------------------------------------------------------- compare


def _compare(args: argparse.Namespace) -> int:
    from empirical import compare as compare_lib
    from empirical import training

    def body() -> int:
        if args.run is None:
            raise UsageError("--run is required (a lookup-family run directory or shipped model: lookup, "
                             "like-construction, like-construction-nonorm)")
        subject, cfg = compare_lib.learned_subject(args.run)
        task_set, max_examples = cfg.fam.task_set, cfg.n_examples - 1
        given = _task_set(args.tasks_file)
        if given is not None and given != task_set:
            raise UsageError(f"{args.run} was trained on the tasks {list(task_set.names)}, not on those of "
                             f"{args.tasks_file}")
        examples = args.examples or max_examples
        if examples > max_examples:
            raise UsageError(f"{args.run} was trained on sequences of {max_examples + 1} examples: prompts can hold "
                             f"at most {max_examples}")
        result = compare_lib.compare(subject, task_set, max_examples=examples, n_prompts=args.prompts,
                                     mechanism_prompts=args.mechanism_prompts, seed=args.seed, beta=args.beta,
                                     progress=not args.quiet)
        result = {**training.provenance(cfg), "command": "compare", "run": args.run, **result}
        if args.out:
            result["plots"] = [str(p) for p in compare_lib.plot(result, args.out)]
        if args.json:
            training.write_json_atomic(args.json, result)
        print("\n".join(compare_lib.summary_lines(result)))
        return 0

    return _guarded("compare", body)


# --------------------------------------------------------------------------- task vectors


def _task_vectors(args: argparse.Namespace) -> int:
    import numpy as np

    from empirical import compare as compare_lib
    from empirical import task_vectors as tv
    from empirical.results import provenance, write_json

    def body() -> int:
        if args.model is not None:
            return _llm_task_vectors(args)
        if args.run is None:
            raise UsageError("--run (a lookup-family run directory or shipped model, or 'constructed') or "
                             "--model (a real LLM, e.g. smollm2) is required")
        given = _task_set(args.tasks_file)
        if args.run == "constructed":
            from construction.tasks import default_task_set

            task_set = given or default_task_set()
            subject = compare_lib.constructed_subject(task_set, bits=5)
            max_examples, config = 31, {"model": "constructed", "spec": subject.spec.to_dict()}
        else:
            subject, cfg = compare_lib.learned_subject(args.run)
            task_set, max_examples, config = cfg.fam.task_set, cfg.n_examples - 1, cfg.to_dict()
            if given is not None and given != task_set:
                raise UsageError(f"{args.run} was trained on the tasks {list(task_set.names)}, not on those of "
                                 f"{args.tasks_file}")
        examples = args.examples or min(19, max_examples)
        if examples > max_examples:
            raise UsageError(f"prompts of {args.run} can hold at most {max_examples} examples")
        kw = dict(n_examples=examples, n_prompts=args.prompts, n_queries=args.prompts, seed=args.seed,
                  progress=not args.quiet)
        if subject.kind == "constructed":  # its task vector lives in the S block after layer 4
            result = tv.report(subject, task_set, mask=tv.s_block_mask(subject), **kw)
            queries = tv.zero_shot_queries(task_set, np.random.default_rng([args.seed, 41]), args.prompts)
            vectors = {k: tv.extract(subject, tv.single_task_prompts(task_set, k, np.random.default_rng([args.seed, 42, k]),
                                                                     args.prompts, examples))
                       for k in range(len(task_set.tasks))}
            result["full_vector_choice"] = tv.choose_layer(subject, task_set, vectors, queries)
        else:
            result = tv.report(subject, task_set, **kw)
        result = {**provenance(config), "command": "task-vectors", "run": args.run, **result}
        if args.out:
            result["plot"] = str(tv.plot(result, args.out, f"task_vectors_{Path(args.run).name}"))
        if args.json:
            write_json(args.json, result)
        for kind, c in result["contexts"].items():
            mid = c["convex_two"]["points"][len(c["convex_two"]["points"]) // 2]["p"]
            print(f"{kind}: layer {c['layer']}, held-out patched answer probability "
                  + ", ".join(f"{k} {v:.3f}" for k, v in c["held_out"].items())
                  + " (clean " + ", ".join(f"{v:.3f}" for v in c["clean"].values()) + "); at lambda 0.5: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in mid.items()))
        fits = result["geometry"]["mixture_fit"]
        layer = result["geometry"]["layer"]
        print(f"mixture fit at layer {layer}: 50/50 coefficients "
              + ", ".join(f"{c:.2f}" for c in fits["50/50"][layer]["coefficients"])
              + f", residual {fits['50/50'][layer]['relative_residual']:.2f} (random answers "
              f"{fits['50/50, random answers'][layer]['relative_residual']:.2f})")
        return 0

    return _guarded("task-vectors", body)


def _llm_task_vectors(args: argparse.Namespace) -> int:
    """``superpose task-vectors --model smollm2 --family country``: the same figures for a real LLM."""
    from empirical import task_vectors as tv
    from empirical.llm import load_model
    from empirical.llm.families import get_family
    from empirical.results import provenance, write_json

    if args.run is not None:
        raise UsageError("give --run (a trained or the constructed model) or --model (a real LLM), not both")
    family = args.family or "country"
    get_family(family)  # one clear error for an unknown family, before loading the model
    model = load_model(args.model)
    result = tv.llm_report(model, family, n_prompts=args.prompts, examples=args.llm_examples,
                           n_queries=args.prompts, seed=args.seed, progress=not args.quiet)
    result = {**provenance({"model": args.model, "family": family, "prompts": args.prompts,
                            "examples_per_task": args.llm_examples, "seed": args.seed}),
              "command": "task-vectors", **result}
    if args.out:
        result["plot"] = str(tv.plot(result, args.out, f"task_vectors_{Path(str(args.model)).stem}_{family}"))
    if args.json:
        write_json(args.json, result)
    c = result["contexts"]["zero-shot"]
    print(f"{args.model} {family}: layer {c['layer']}, held-out patched first-token probability "
          + ", ".join(f"{k} {v:.3f}" for k, v in c["held_out"].items())
          + " (clean " + ", ".join(f"{v:.3f}" for v in c["clean"].values()) + ")")
    return 0


# --------------------------------------------------------------------------- registration


def _evaluation_flags(parser: argparse.ArgumentParser, plots: str) -> None:
    """The flags of a single-task evaluation on fresh sequences (``eval`` and ``export``)."""
    parser.add_argument("--sequences", type=_positive, default=200, help="fresh sequences per task (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sequences (default 0)")
    parser.add_argument("--json", default=None, help="write the accuracies (with config, version, device, date) here")
    parser.add_argument("--out", default=None, help=f"directory for {plots}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _prompt_flags(parser: argparse.ArgumentParser, result: str, plots: str) -> None:
    """The flags of a run on drawn prompts (``sweep`` and ``compare``): seed, outputs, progress."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompts (default 0)")
    parser.add_argument("--json", default=None, help=f"write {result} (with config, version, device, date) here")
    parser.add_argument("--out", default=None, help=f"directory for {plots}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    """Add ``train``, ``eval``, ``export``, ``sweep`` and ``within-prompt`` to the CLI's subparsers (each sets
    ``func``)."""
    p = subparsers.add_parser("train", help="train the transformer from scratch on one task per sequence (Fig. 3)")
    p.add_argument("--preset", default=None, help="tiny (2-core CPU) or paper (~14M params, GPU); default tiny")
    p.add_argument("--family", default=None, help="task family: copy, add or lookup (default copy)")
    p.add_argument("--tasks-file", default=None, help="lookup only: a task file as `superpose verify` reads")
    p.add_argument("--like-construction", action="store_true",
                   help="train the constructed model's own architecture (7 layers, K heads, its width and "
                        "structured positions) on its tasks (the lookup family; --tasks-file to choose them)")
    p.add_argument("--norm", default="rms", choices=("rms", "layer", "none"),
                   help="--like-construction: the normalisation (default rms; the construction has none)")
    p.add_argument("--steps", type=_positive, default=None, help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="seed of weights and data (default 0)")
    p.add_argument("--out", default=None, help="run directory (checkpoints, config.json, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--json", default=None, help="also write the run summary to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    e = subparsers.add_parser("eval", help="single-task answer accuracy of a trained run, per task and example index")
    e.add_argument("--run", default=None, help="run directory or shipped model (copy, add, lookup)")
    _evaluation_flags(e, plots="the accuracy-per-example plot")
    e.set_defaults(func=_eval)

    x = subparsers.add_parser("export", help="copy a run's weights into a shipped-model directory, with its evaluation")
    x.add_argument("--run", default=None, help="the run directory to export")
    x.add_argument("--to", default=None, help="the shipped-model directory (e.g. empirical/pretrained/copy)")
    _evaluation_flags(x, plots="the learning-curve and accuracy plots")
    x.set_defaults(func=_export)

    s = subparsers.add_parser("sweep", help="lambda sweep of a trained run on mixed prompts (Fig. 3)")
    s.add_argument("--run", default=None, help="run directory or shipped model (copy, add, lookup)")
    s.add_argument("--tasks", default=None, help="two tasks A,B of the run's family, e.g. copy:2,copy:6")
    s.add_argument("--prompts", type=_positive, default=1000, help="prompts per lambda (default 1000)")
    s.add_argument("--examples", type=_positive, default=None,
                   help="examples per prompt (default: the run's sequences less one, the query's place)")
    s.add_argument("--batch", type=_positive, default=50, help="prompts per forward pass (default 50)")
    s.add_argument("--beta", type=float, default=30.0, help="lookup: the constructed model's attention sharpness")
    _prompt_flags(s, result="the sweep", plots="the Figure 3 plot")
    s.set_defaults(func=_sweep)

    c = subparsers.add_parser("compare", help="a learned lookup model against the construction: behaviour, "
                                              "mechanism (roles, probes, causal edit) and weights (heads, CKA)")
    c.add_argument("--run", default=None, help="run directory or shipped model of the lookup family "
                                               "(lookup, like-construction, like-construction-nonorm)")
    c.add_argument("--tasks-file", default=None, help="the task file the run was trained on (checked against it)")
    c.add_argument("--prompts", type=_positive, default=500, help="prompts per behaviour point (default 500)")
    c.add_argument("--mechanism-prompts", type=_positive, default=1000,
                   help="prompts for the probes and the causal check (default 1000; attention reads 200)")
    c.add_argument("--examples", type=_positive, default=None,
                   help="examples per prompt (default: the run's training sequences less one)")
    c.add_argument("--beta", type=float, default=30.0, help="the constructed model's attention sharpness")
    _prompt_flags(c, result="the report", plots="the three plots")
    c.set_defaults(func=_compare)

    t = subparsers.add_parser("task-vectors", help="task vectors of a lookup-family model or the constructed one: "
                                                   "patching, convex combinations, LDA (Figs. 4, 5)")
    t.add_argument("--run", default=None, help="run directory or shipped model of the lookup family, or constructed")
    t.add_argument("--model", default=None, help="a real LLM instead (smollm2, a .gguf file or a Hugging Face folder)")
    t.add_argument("--family", default=None, help="--model: the probe family (country, add, at, letter; default country)")
    t.add_argument("--llm-examples", type=_positive, default=10,
                   help="--model: examples per task in the single-task prompts (default 10)")
    t.add_argument("--tasks-file", default=None, help="constructed: its tasks; a run: checked against its tasks")
    t.add_argument("--prompts", type=_positive, default=200,
                   help="single-task prompts per task, queries and mixed prompts (default 200)")
    t.add_argument("--examples", type=_positive, default=None, help="examples per prompt (default 19)")
    _prompt_flags(t, result="the result", plots="the task-vector figure")
    t.set_defaults(func=_task_vectors)

    w = subparsers.add_parser("within-prompt", help="one within-prompt superposition number per model, from saved "
                                                    "sweep and probe results")
    w.add_argument("--sweep", action="append", help="a `superpose sweep` JSON (repeatable)")
    w.add_argument("--probe", action="append", help="a `superpose probe` JSON (repeatable)")
    w.add_argument("--lambda", dest="lam", type=float, default=0.5, help="the sweeps' lambda (default 0.5)")
    w.add_argument("--seed", type=int, default=0, help="unused (every number comes from the saved results)")
    w.add_argument("--json", default=None, help="write the numbers here")
    w.add_argument("--out", default=None, help="directory for within_prompt_summary.png")
    w.set_defaults(func=_within)



def main(argv=None) -> int:
    """Standalone entry point (``python -m empirical.train_cli``); ``superpose`` registers the same parsers."""
    parser = argparse.ArgumentParser(prog="superpose")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
