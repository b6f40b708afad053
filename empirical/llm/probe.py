"""The probe experiment (paper's Figure 2): superposed prompts -> per-task answer probabilities,
"other" mass, KL(D || P), r, and generation collapse; box plots and a JSON record."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from empirical.llm.families import get_family, make_prompts
from empirical import within_prompt as wp
from empirical.llm.metrics import collapse, kl_divergence, mean_var, other_mass, r_metric


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """Settings of one probe run (saved in the JSON)."""

    model: str = "smollm2"
    family: str = "country"
    prompts: int = 100
    seed: int = 0
    examples_per_task: int = 20
    beam: int | None = None
    max_tokens: int = 12


def probe_prompt(model, prompt, *, beam: int | None = None, max_tokens: int = 12) -> dict:
    """All metrics of one prompt (the prompt's tokens are computed once for everything)."""
    tasks_n = len(prompt.answers)
    cands = list(prompt.answers) + [a + "\n" for a in prompt.answers]
    prefix = model.prefix([model.tokenizer.encode_prompt(prompt.text)])
    sc = model.score_many([prompt.text], [cands], prefix=prefix)[0]
    lp, lp_nl = sc.logprobs[:tasks_n], sc.logprobs[tasks_n:]
    probs = np.exp(lp)
    cont = model.continuations(prompt.text, tasks_n, beam=beam, max_tokens=max_tokens, prefix=prefix)
    r, thr = r_metric(lp_nl, dict(zip(cont.texts, cont.logprobs)), prompt.answers)
    col = collapse(sc.token_ids[:tasks_n], sc.token_logprobs[:tasks_n])
    return {
        "probs": probs.tolist(),
        "probs_newline": np.exp(lp_nl).tolist(),
        "other": other_mass(probs),
        "kl": kl_divergence(prompt.proportions, probs),
        "r": r,
        "r_threshold": float(np.exp(thr)),
        "top_continuations": [[t, float(np.exp(v))] for t, v in zip(cont.texts[:8], cont.logprobs[:8])],
        "beam_exhausted": bool(cont.exhausted),
        "merged": bool(sc.merged.any()),
        "n_answer_tokens": [len(t) for t in sc.token_ids[:tasks_n]],
        "collapse_first": col["first"].tolist(),
        "collapse_rest": col["rest"].tolist(),
        "collapse_matrix": col["matrix"].tolist(),
    }


def summarize(tasks: Sequence[str], rows: Sequence[dict]) -> dict:
    """Per-task means/variances over prompts, plus other, KL, r, collapse summaries and the
    within-prompt statistics (:mod:`empirical.within_prompt`; the in-context proportions are
    equal, 1/K each, so proportional mixing would give a second-largest task probability of 1/K)."""
    probs = np.array([r["probs"] for r in rows])
    rest = np.array([r["collapse_rest"] for r in rows])
    multi = np.array([[n > 1 for n in r["n_answer_tokens"]] for r in rows])
    rest_multi = [float(rest[multi[:, i], i].mean()) if multi[:, i].any() else None
                  for i in range(len(tasks))]
    return {
        "tasks": list(tasks),
        "prob": mean_var(probs),
        "other": mean_var([r["other"] for r in rows]),
        "kl": mean_var([r["kl"] for r in rows]),
        "r": mean_var([r["r"] for r in rows]),
        "r_histogram": np.bincount([r["r"] for r in rows], minlength=len(tasks) + 1).tolist(),
        "within_prompt": wp.summary(probs),
        "within_prompt_reference": wp.reference(np.full(len(tasks), 1.0 / len(tasks))),
        "merged_prompts": int(sum(r["merged"] for r in rows)),
        "beam_exhausted_prompts": int(sum(r["beam_exhausted"] for r in rows)),
        "collapse": {
            "first_token_prob": mean_var(np.array([r["collapse_first"] for r in rows])),
            "rest_given_first": mean_var(rest),
            "rest_given_first_multi_token_only": rest_multi,
            "matrix_mean": np.mean([r["collapse_matrix"] for r in rows], axis=0).tolist(),
            "multi_token_fraction": multi.mean(axis=0).tolist(),
        },
    }


def run_probe(model, cfg: ProbeConfig, *, progress: Callable[[Iterable], Iterable] | None = None) -> dict:
    """Run one family: prompts from ``cfg.seed``, every metric per prompt, then the summary."""
    fam = get_family(cfg.family)
    prompts = make_prompts(fam, cfg.prompts, seed=cfg.seed, examples_per_task=cfg.examples_per_task)
    it = progress(prompts) if progress is not None else prompts
    rows = []
    t0 = time.perf_counter()
    for p in it:
        row = probe_prompt(model, p, beam=cfg.beam, max_tokens=cfg.max_tokens)
        row["query"], row["answers"] = p.query, list(p.answers)
        rows.append(row)
    seconds = time.perf_counter() - t0
    n_tokens = [len(model.tokenizer.encode_prompt(p.text)) for p in prompts]
    return {
        "family": fam.name,
        "description": fam.description,
        "summary": summarize(fam.tasks, rows),
        "prompt_tokens": mean_var(n_tokens),
        "example_prompt": prompts[0].text if prompts else "",
        "seconds": seconds,
        "per_prompt": rows,
    }


def calibration_rows(model, family: str, prompts: int, seed: int = 0, total_examples: int | None = None,
                     *, batch: int = 4, progress: Callable[[Iterable], Iterable] | None = None) -> list[dict]:
    """Calibration data: per skewed prompt (:func:`make_prompts` with ``skewed=True``, in-context
    proportions from a flat Dirichlet, ``total_examples`` examples, default 20 per task),
    ``{"proportions", "probs", "answers", "query"}``: the realised in-context proportions
    and each task's answer probability after the prompt. Only answer scoring
    (``model.score_many``, prompts' keys and values cached and shared by their answers, a few
    prompts per call); no beam search."""
    fam = get_family(family)
    ps = make_prompts(fam, prompts, seed=seed, skewed=True, total_examples=total_examples)
    chunks = [ps[i: i + batch] for i in range(0, len(ps), batch)]
    rows = []
    for chunk in progress(chunks) if progress is not None else chunks:
        scores = model.score_many([p.text for p in chunk], [list(p.answers) for p in chunk])
        for p, sc in zip(chunk, scores):
            rows.append({"proportions": list(p.proportions), "probs": np.exp(sc.logprobs).tolist(),
                         "answers": list(p.answers), "query": p.query})
    return rows


def calibration_record(model, model_name: str, family: str, rows: Sequence[dict], *, seed: int,
                       total_examples: int | None, seconds: float) -> dict:
    """The ``superpose probe --skewed`` JSON: provenance, the model, the family's tasks, rows."""
    from empirical.results import provenance

    fam = get_family(family)
    total = total_examples if total_examples is not None else 20 * len(fam.tasks)
    return {"command": "probe --skewed",
            **provenance({"model": model_name, "family": family, "prompts": len(rows), "seed": seed,
                          "total_examples": total}),
            "model": model_name, "family": family, "tasks": list(fam.tasks),
            "model_source": {"source": model.source, "config": model.config.to_json()},
            "seconds": seconds, "rows": list(rows)}


#: The probe's task families (``superpose probe --family``; ``all`` runs the four).
FAMILY_CHOICES = ("add", "country", "at", "letter")


def probe_families(model, cfg: ProbeConfig, *, quiet: bool = False, report=print) -> list[dict]:
    """:func:`run_probe` for ``cfg.family`` (or every family of :data:`FAMILY_CHOICES` for
    ``"all"``), with a progress bar per family and one summary line each through ``report``."""
    from tqdm import tqdm

    if cfg.family != "all" and cfg.family not in FAMILY_CHOICES:
        raise ValueError(f"--family must be one of {', '.join(FAMILY_CHOICES)} or all, got {cfg.family!r}")
    results = []
    for fam in FAMILY_CHOICES if cfg.family == "all" else (cfg.family,):
        bar = lambda xs, fam=fam: tqdm(xs, desc=f"probe {fam}", disable=quiet, unit="prompt")  # noqa: E731
        res = run_probe(model, ProbeConfig(**{**asdict(cfg), "family": fam}), progress=bar)
        results.append(res)
        s = res["summary"]
        probs = ", ".join(f"{t}={m:.3f}" for t, m in zip(s["tasks"], s["prob"]["mean"]))
        report(f"{fam}: {probs}, other={s['other']['mean']:.3f}, KL={s['kl']['mean']:.2f}, "
               f"r={s['r']['mean']:.2f} ({res['seconds']:.0f} s)")
    return results


def record(cfg: ProbeConfig, model, results: Sequence[dict]) -> dict:
    """The JSON document: config, package version, device, date, model config, results."""
    from empirical.results import provenance

    return {"command": "probe", **provenance(asdict(cfg)),
            "model": {"source": model.source, "config": model.config.to_json()},
            "results": list(results)}


def plot_figure2(results: Sequence[dict], path: str | Path, *, title: str = "") -> Path:
    """Figure 2: one column per family, a box per task's answer probability and one for
    "other", over prompts (top row linear as in the paper, bottom row log10 so that small
    models' probabilities stay visible); panel titles give mean KL and mean r."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n + 0.6, 6.4), squeeze=False)
    for col, res in enumerate(results):
        tasks = res["summary"]["tasks"]
        probs = np.array([r["probs"] for r in res["per_prompt"]])
        other = np.array([r["other"] for r in res["per_prompt"]])
        data = [probs[:, i] for i in range(len(tasks))] + [other]
        s = res["summary"]
        for row, log in ((0, False), (1, True)):
            ax = axes[row][col]
            vals = [np.log10(np.maximum(d, 1e-12)) for d in data] if log else data
            ax.boxplot(vals, showfliers=True, widths=0.6)
            ax.set_xticks(range(1, len(tasks) + 2), [*tasks, "other"], rotation=30, ha="right")
            share = 1 / len(tasks)
            ax.axhline(np.log10(share) if log else share, color="grey", ls=":", lw=1,
                       label="in-context share 1/K")
            if log:
                ax.set_ylabel("log10 probability")
            else:
                ax.set_ylim(-0.02, 1.02)
                ax.set_ylabel("probability")
                second = s["within_prompt"]["second"]["mean"] if "within_prompt" in s else float("nan")
                ax.set_title(f"{res['family']}  KL={s['kl']['mean']:.2f}  r={s['r']['mean']:.2f}\n"
                             f"mean 2nd-largest task prob. {second:.3f} (1/K={1 / len(tasks):.2f})", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from empirical.results import save_figure

    path = save_figure(fig, path)
    plt.close(fig)
    return path


def refresh(document: dict) -> dict:
    """A saved probe result with every summary recomputed from its per-prompt rows (no model run)."""
    doc = dict(document)
    doc["results"] = [{**res, "summary": summarize(res["summary"]["tasks"], res["per_prompt"])}
                      for res in document["results"]]
    return doc


def load_saved(path: str | Path) -> dict:
    """A saved probe result, checked for the per-prompt rows :func:`refresh` needs."""
    import json

    path = Path(path)
    try:
        document = json.loads(path.read_text())
        for res in document["results"]:
            res["summary"]["tasks"], res["per_prompt"][0]["probs"]  # noqa: B018 (shape check)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{path} is not a saved probe result ({type(err).__name__}: {err})") from None
    return document


def collapse_comparison(documents: Sequence[dict], labels: Sequence[str]) -> dict:
    """Generation collapse of several models' saved probes, per family: for each model and
    task, the mean probability of the answer's first token and of the rest of the answer
    given that token (from each result's ``summary["collapse"]``), and the fraction of
    prompts whose answer has more than one token. ``labels[i]`` names the model of
    ``documents[i]`` (one model may come in several documents, one per family); families
    missing from a model are left out for that model."""
    if len(documents) != len(labels) or not documents:
        raise ValueError("give one label per probe result (at least one)")
    families: dict[str, dict] = {}
    for doc, label in zip(documents, labels):
        for res in doc["results"]:
            c = summarize(res["summary"]["tasks"], res["per_prompt"])["collapse"]
            families.setdefault(res["family"], {})[label] = {
                "tasks": list(res["summary"]["tasks"]),
                "first_token_prob": c["first_token_prob"]["mean"],
                "rest_given_first": c["rest_given_first"]["mean"],
                "rest_given_first_multi_token_only": c["rest_given_first_multi_token_only"],
                "multi_token_fraction": c["multi_token_fraction"],
                "prompts": len(res["per_prompt"]),
            }
    order = [f for f in FAMILY_CHOICES if f in families] + sorted(set(families) - set(FAMILY_CHOICES))
    return {"models": list(dict.fromkeys(labels)), "families": {f: families[f] for f in order}}


def plot_collapse(comparison: dict, path: str | Path) -> Path:
    """One panel per family: per task, a pair of bars per model, P(first answer token) (solid)
    and P(rest of the answer | first token) (hatched); collapse shows as a high first-token
    probability whose rest is likely only for one task's continuation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from empirical.results import save_figure

    fams = list(comparison["families"])
    models = comparison["models"]
    fig, axes = plt.subplots(1, len(fams), figsize=(3.8 * len(fams) + 0.6, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / (2 * len(models))
    for ax, fam in zip(axes[0], fams):
        per = comparison["families"][fam]
        tasks = next(iter(per.values()))["tasks"]
        x = np.arange(len(tasks))
        for m, model in enumerate(models):
            if model not in per:
                continue
            v = per[model]
            base = x - 0.4 + width * (2 * m)
            ax.bar(base + width / 2, v["first_token_prob"], width, color=colors[m % len(colors)],
                   label=f"{model}: P(first token)")
            ax.bar(base + 1.5 * width, v["rest_given_first"], width, color="white",
                   edgecolor=colors[m % len(colors)], hatch="//", label=f"{model}: P(rest | first)")
        ax.set_xticks(x, tasks, rotation=30, ha="right")
        ax.set_ylim(0, 1.02)
        ax.set_title(fam, fontsize=10)
    axes[0][0].set_ylabel("mean probability over prompts")
    legend: dict = {}  # every model's two bar kinds, from whichever panel has them
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(4, len(legend)), fontsize=8,
               frameon=False)
    fig.suptitle("generation collapse: " + " vs ".join(models), fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = save_figure(fig, path)
    plt.close(fig)
    return path
