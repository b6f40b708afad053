"""Regenerate every results table of the README and of ``docs/*.md`` from the committed JSON.

A table lives between two marker comments in a page::

    <!-- table:NAME -->
    | ... the generated rows ... |
    <!-- /table:NAME -->

``python docs/generate.py`` (``make docs``) rewrites the text between every pair of markers
in place; ``python docs/generate.py --check`` writes nothing and exits 1 listing the pages
whose tables differ from what their JSON gives (``tests/test_docs.py`` runs ``stale()``).
Only the standard library is used, and only ``benchmarks/results/**/*.json`` is read.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"(<!-- table:([A-Za-z0-9_-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)


@lru_cache(maxsize=None)
def load(rel: str) -> dict:
    """A committed result file, by its path under benchmarks/results/."""
    return json.loads((RESULTS / rel).read_text(encoding="utf-8"))


def f(x, d: int = 3) -> str:
    """Fixed point with ``d`` digits; '' for None."""
    return "" if x is None else f"{x:.{d}f}"


def p(x, d: int = 3) -> str:
    """A probability without its leading zero (.040), as the tables write them."""
    s = f(x, d)
    return s.replace("0.", ".", 1) if s.startswith("0.") else s.replace("-0.", "-.", 1)


def rng(xs, d: int = 2) -> str:
    """'lo-hi' of a list of numbers (one value if they agree at this precision)."""
    lo, hi = f(min(xs), d), f(max(xs), d)
    return lo if lo == hi else f"{lo}-{hi}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --- the construction's lemmas and bounds (superpose check) -------------------------------------------

def e(x) -> str:
    """Scientific notation with two significant digits (3.0e-11)."""
    if x is None:
        return ""
    mantissa, exponent = f"{x:.1e}".split("e")
    return mantissa if int(exponent) == 0 else f"{mantissa}e{int(exponent)}"


CHECK_BETAS = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0)


def t_check_beta() -> str:
    b = load("check/check.json")["beta_sweep"]
    idx = [b["betas"].index(x) for x in CHECK_BETAS if x in b["betas"]]
    rows = [["float64 error", *(e(b["measured_float64"][i]) for i in idx)],
            ["bound (exact arithmetic)", *(e(b["bound_exact"][i]) for i in idx)],
            ["float32 error", *(e(b["measured_float32"][i]) for i in idx)]]
    if "bound_float32" in b:
        rows.append(["bound with the float32 allowance", *(e(b["bound_float32"][i]) for i in idx)])
    return table(["beta", *(f"{b['betas'][i]:g}" for i in idx)], rows)


def t_check_length() -> str:
    L = load("check/check.json")["length_sweep"]
    rows = []
    for beta in L["betas"]:
        rows.append([f"measured, beta {beta:g}", *(e(x) for x in L[f"measured_beta{beta:g}"])])
        rows.append([f"bound, beta {beta:g}", *(e(x) for x in L[f"bound_beta{beta:g}"])])
    return table(["prompt length L (examples m)", *(f"{n} ({m})" for n, m in zip(L["prompt_length"], L["n_examples"]))],
                 rows)


def t_check_lemmas() -> str:
    d = load("check/check.json")
    by = {}
    for r in d["results"]:
        by.setdefault(r["lemma"], []).append(r)
    rows = [[lemma, str(len(rs)), str(sum(r["holds"] for r in rs))] for lemma, rs in by.items()]
    rows.append(["**all**", f"**{len(d['results'])}**", f"**{sum(r['holds'] for r in d['results'])}**"])
    return table(["lemma ([theory.md](theory.md) section 5)", "checks", "hold"], rows)


# --- training: the shipped models --------------------------------------------------------------

SHIPPED = ("add", "copy", "lookup", "like-construction", "like-construction-nonorm", "lookup-mix",
           "like-construction-mix")


def t_shipped_models() -> str:
    rows = []
    for name in SHIPPED:
        ev = load(f"training/eval_{name}.json")
        tr_path = RESULTS / "training" / f"train_{name}.json"
        tr = load(f"training/train_{name}.json") if tr_path.exists() else None
        cfg = ev["config"]["model"]
        trained = f"{tr['step']} steps, {tr['wall_s']:.0f} s" if tr else f"{ev['checkpoint_step']} steps"
        params = f"{tr['params']:,}" if tr else ""
        rows.append([f"`{name}`", f"{cfg['num_layers']} layers, width {cfg['d_model']}, {cfg['num_heads']} heads",
                     params, trained, f(ev["answer_acc"]), f"**{f(ev['answer_acc_late'])}**",
                     f(ev["worst_task_late"]), f(ev["example_acc"][0])])
    return table(["model", "architecture", "parameters", "trained on the CPU", "all examples", "second half",
                  "worst task, second half", "first example"], rows)


# --- Figure 3 sweeps ---------------------------------------------------------------------------

SWEEPS = (("training/sweep_copy.json", "copy:1 vs copy:5"), ("training/sweep_copy_2_6.json",
          "copy:2 vs copy:6 (the authors' pair)"), ("training/sweep_add.json", "add:2 vs add:6"),
          ("training/sweep_lookup.json", "lookup:0 vs lookup:1"),
          ("mixture/sweep_lookup-mix.json", "`lookup-mix`, lookup:0 vs lookup:1"),
          ("mixture/sweep_like-construction-mix.json", "`like-construction-mix`, lookup:0 vs lookup:1"))


def _point(doc: dict, lam: float) -> dict:
    return min(doc["points"], key=lambda q: abs(q["lambda"] - lam))


def _pa_pb(pt: dict) -> tuple[float, float]:
    m = pt["p_a"]["mean"] if isinstance(pt["p_a"], dict) else pt["p_a"]
    n = pt["p_b"]["mean"] if isinstance(pt["p_b"], dict) else pt["p_b"]
    return m, n


def t_figure3() -> str:
    rows = []
    for rel, label in SWEEPS:
        d = load(rel)
        cells = []
        for lam in (0.1, 0.5, 0.9):
            a, b = _pa_pb(_point(d, lam))
            cells.append(f"{p(a)} / {p(b)}")
        mid = _point(d, 0.5)
        rows.append([f"{label} (`{Path(str(d['run'])).name}`)", *cells, f(mid["second"]["mean"])])
        if rel.endswith("sweep_lookup.json") and d.get("constructed"):
            c = _point(d["constructed"], 0.5) if "points" in d["constructed"] else None
            if c is not None:
                a, b = _pa_pb(c)
                rows.append(["constructed model, the same prompts", "", f"{p(a)} / {p(b)}", "",
                             f(c["second"]["mean"])])
    return table(["sweep (model)", "P(A) / P(B) at lambda 0.1", "at 0.5", "at 0.9",
                  "mean 2nd-largest task prob. at 0.5"], rows)


def t_seeds() -> str:
    d = load("seeds/seeds.json")
    rows = []
    for fam, seeds in d["families"].items():
        for seed, e in seeds.items():
            mid = min(e["points"], key=lambda q: abs(q["lambda"] - 0.5))
            rows.append([fam, seed + (" (shipped)" if seed == "0" else ""), f(e["accuracy"]["answer_acc_late"]),
                         f"{p(mid['p_a'], 2)} / {p(mid['p_b'], 2)}", f(mid["variance_ratio_a"], 2),
                         f(mid["second"]), f(mid["follows_last"], 2)])
    return table(["family", "seed", "second-half accuracy", "P(A) / P(B) at lambda 0.5", "variance ratio of P(A)",
                  "mean 2nd-largest task prob.", "follows the last example"], rows)


# --- superposition within one prompt -----------------------------------------------------------

def t_within_prompt() -> str:
    d = load("within_prompt_summary.json")
    rows = []
    for key, r in d["rows"].items():
        s = r["second"]
        val = f"{f(s['mean'])} +- {f(s['ci95'])}"
        if key.startswith("constructed"):
            val = f"**{val}**"
        rows.append([key, f"{r['setting']}, {r['prompts']} prompts", val, f(r["proportional"], 2),
                     f"{100 * min(1.0, r['several']['mean']):.0f}%"])
    return table(["model: setting", "prompts", "mean 2nd-largest task probability (95% interval)",
                  "proportional mixing", "prompts with 2 tasks >= 0.1"], rows)


def _mid_range(by_lambda: dict, key=None) -> list[float]:
    vals = []
    for lam, v in by_lambda.items():
        if 0.05 < float(lam) < 0.95:
            vals += list(v.values()) if isinstance(v, dict) else [v]
    return vals


def _sweep_mass() -> dict:
    """P(A) + P(B) per lambda of every sweep the within-prompt summary read, by its row name."""
    out = {}
    for rel in load("within_prompt_summary.json")["config"]["sweeps"]:
        rel = str(Path(rel).resolve().relative_to(RESULTS)) if Path(rel).is_absolute() else \
            str((ROOT / rel).resolve().relative_to(RESULTS))
        d = load(rel)
        a, b = d["tasks"][:2]
        docs = [(f"trained {Path(str(d['run'])).name}: {a} vs {b}", d)]
        if isinstance(d.get("constructed"), dict) and "points" in d["constructed"]:
            docs.append((f"constructed: {a} vs {b}", d["constructed"]))
        for key, doc in docs:
            out[key] = {str(q["lambda"]): sum(_pa_pb(q)) for q in doc["points"]}
    return out


def t_variance_ratio() -> str:
    d = load("within_prompt_summary.json")
    masses = _sweep_mass()
    rows = []
    for name, run in d["authors"]["runs"].items():
        mass = _mid_range(run.get("p_a_plus_p_b_by_lambda", {}))
        rows.append([f"authors' `{name}` ({run['max_steps']} steps x batch {run['batch']}, {run['layers']} layers)",
                     "1000", f"**{rng(_mid_range(run['variance_ratio_by_lambda']), 3)}**", rng(mass, 3) if mass else ""])
    for key, r in d["rows"].items():
        if "variance_ratio_by_lambda" in r:
            mass = _mid_range(r.get("p_a_plus_p_b_by_lambda") or masses.get(key, {}))
            rows.append([f"ours: {key}", str(r["prompts"]), rng(_mid_range(r["variance_ratio_by_lambda"])),
                         rng(mass) if mass else ""])
    for key, r in d["rows"].items():
        if "variance_ratio_by_lambda" not in r:
            vr = r["variance_ratio"]
            rows.append([f"{key} ({' / '.join(vr)}; equal shares)", f"{r['prompts']}, one setting",
                         " / ".join(f(v, 2) for v in vr.values()) + " (per task)", "see the probe tables"])
    return table(["model", "prompts per lambda", "var / (m (1 - m)), lambda 0.1-0.9", "P(A) + P(B), lambda 0.1-0.9"],
                 rows)


# --- the mixture study -------------------------------------------------------------------------

def _mix_row(name: str, seed: str, e: dict) -> list[str]:
    h = e["headline"]
    met = e.get("targets")
    flag = ("**all met**" if all(t["met"] for t in met.values()) else
            "missed: " + ", ".join(k for k, t in met.items() if not t["met"])) if met else ""
    acc = f(e["accuracy"]["answer_acc_late"]) if "accuracy" in e else ""
    return [name, seed, acc, f(h["second@0.5"]), f(h["tv@0.5"]), f(h["var_ratio@0.5"]), f(h["a_last_abs_delta"]),
            f(h["order_abs_delta"]), f"{h['flip_delta']:+.3f}", f(h["slope_grid"], 2), flag]


MIX_HEADER = ["model", "seed", "single-task accuracy", "2nd-largest (0.5)", "TV(q, D) (0.5)", "var ratio (0.5)",
              "A examples last: abs dP(A)", "permuted: abs dP(A)", "one label flipped dP(A)", "slope over the grid",
              "targets"]


def _dose_label(dose: str, fork: int) -> str:
    return f"p_mix 0 (step {fork}, one task per sequence)" if float(dose) == 0 else f"p_mix {dose}"


def _mixture(rel: str, contrasts: str | None, references: bool) -> str:
    d = load(rel)
    fork = d["recipe"]["fork"]
    rows = [_mix_row(_dose_label(dose, fork), s, e)
            for dose in sorted(d["arms"], key=float) for s, e in d["arms"][dose].items()]
    if contrasts:
        c = load(contrasts)
        names = {"soft": "soft target, p_mix 1"}
        for arm, seeds in c["arms"].items():
            label = names.get(arm) or (f"label noise {arm[len('noise'):]}, one task per sequence"
                                       if arm.startswith("noise") else arm)
            rows += [_mix_row(label, s, e) for s, e in seeds.items()]
    rows.append(_mix_row("constructed (Theorem 1, beta 30)", "", d["constructed"]))
    if references:
        for name, e in d.get("references", {}).items():
            rows.append(_mix_row(f"shipped `{name}` (one task per sequence)", "0", e))
    return table(MIX_HEADER, rows)


def t_mixture() -> str:
    return _mixture("mixture/mixture.json", None, True)


def t_mixture_tiny() -> str:
    return _mixture("mixture/mixture_tiny.json", "mixture/mixture_tiny_contrasts.json", False)


# --- constructed versus learned ------------------------------------------------------------------

def _role_cell(v: dict, probe: bool) -> str:
    num = f(v["number"])
    num = f"**{num}**" if v.get("present") else num
    return num + (f"; {f(v['probe'])}" if probe and "probe" in v else "")


def t_compare_roles() -> str:
    subjects = ("lookup", "like-construction", "like-construction-nonorm")
    docs = {n: load(f"compare/compare_{n}.json")["mechanism"] for n in subjects}
    cons = docs["lookup"]["constructed"]["roles"]
    rows = []
    for role, v in cons.items():
        rows.append([role, v.get("measure", "").replace("|", "\\|") + ("; probe" if "probe" in v else ""), _role_cell(v, True),
                     *(_role_cell(docs[n]["learned"]["roles"][role], True) for n in subjects)])
    return table(["role", "measure (bold: present)", "constructed", "`lookup`", "`like-construction`",
                  "`like-construction-nonorm`"], rows)


def t_mixture_roles() -> str:
    subjects = (("`like-construction` (one task per sequence)", "like-construction"),
                ("`like-construction-mix` (p_mix 1, seed 0)", "like-construction-mix"),
                ("p_mix 1, seed 1", "like-construction-mix-seed1"))
    first = load(f"compare/compare_{subjects[0][1]}.json")
    roles = list(first["mechanism"]["constructed"]["roles"])
    rows = [["constructed", *(_role_cell(first["mechanism"]["constructed"]["roles"][r], False) for r in roles),
             f(first["causal"]["constructed"]["slope"], 2)]]
    for label, name in subjects:
        d = load(f"compare/compare_{name}.json")
        rows.append([label, *(_role_cell(d["mechanism"]["learned"]["roles"][r], False) for r in roles),
                     f(d["causal"]["learned_data_direction"]["slope"], 2)])
    return table(["subject", *roles, "causal slope along the data's alpha direction"], rows)


# --- task vectors --------------------------------------------------------------------------------

def t_task_vectors() -> str:
    rows = []
    for name in ("constructed", "lookup", "like-construction", "like-construction-nonorm"):
        d = load(f"task_vectors/task_vectors_{name}.json")
        cells = []
        for ctx in ("zero-shot", "random-label context"):
            c = d["contexts"][ctx]
            cells.append(f"{c['layer']}: {' / '.join(p(x, 2) for x in c['held_out'].values())} "
                         f"({' / '.join(p(x, 2) for x in c['clean'].values())})")
            if ctx == "zero-shot":
                mid = min(c["convex_two"]["points"], key=lambda q: abs(q["weights"][0] - 0.5))
                cells.append(" / ".join(p(x, 2) for x in mid["p"].values()))
        label = f"{name} (S block)" if d.get("masked") else f"`{name}`"
        rows.append([label, *cells])
    return table(["model", "zero-shot: best layer: patched answer probability (clean)", "convex patch at lambda 0.5 "
                  "(zero-shot)", "after a random-label context: layer: patched (clean)"], rows)


# --- real LLMs ---------------------------------------------------------------------------------

FAMILIES = ("letter", "letter_rare", "at", "country", "add")


def _probe(model: str) -> str:
    rows = []
    for fam in FAMILIES:
        doc = load(f"llm_probe/{model}_{fam}_100.json")
        res = doc["results"][0]
        s = res["summary"]
        rows.append([f"{fam} ({' / '.join(s['tasks'])})", str(len(res["per_prompt"])),
                     " / ".join(p(x) for x in s["prob"]["mean"]), p(s["other"]["mean"]), f(s["kl"]["mean"], 2),
                     f"{f(s['r']['mean'], 2)} ({s['r_prompts']})", f(s["r_complete"]["mean"], 2),
                     " / ".join(f(x, 2) for x in s["variance_ratio"]), f(s["within_prompt"]["second"]["mean"])])
    return table(["family (tasks)", "prompts", "task probabilities", "other", "KL", "r (prompts)", "r_complete",
                  "var / (m (1 - m)) per task", "mean 2nd-largest task prob."], rows)


def t_probe_smollm2() -> str:
    return _probe("smollm2")


def t_probe_gemma3() -> str:
    return _probe("gemma3")


def t_collapse() -> str:
    d = load("llm_probe/collapse_smollm2_gemma3.json")
    rows = []
    for fam, per_model in d["families"].items():
        for model in d["models"]:
            c = per_model[model]
            rows.append([fam, model, " / ".join(p(x) for x in c["first_token_prob"]),
                         " / ".join(p(x) for x in c["rest_given_first"]),
                         " / ".join(f(x, 2) for x in c["multi_token_fraction"])])
    return table(["family", "model", "P(first token) per task", "P(rest \\| first) per task", "multi-token answers"],
                 rows)


DECODING = [f"{m}_{fam}" for m in ("gemma3", "smollm2") for fam in ("country", "at", "letter", "add")]


def t_decoding() -> str:
    rows = []
    for name in DECODING:
        d = load(f"decoding/{name}.json")
        s = d["summary"]["methods"]
        g = s["greedy"][0]
        cells = []
        for m in ("sample", "beam", "branch", "superposed"):
            by_k = {e["k"]: e for e in s[m]}
            top, two = by_k[max(by_k)], by_k.get(2)
            cells.append((f"{f(two['recall'], 2)} / " if two is not None and max(by_k) > 2 else "")
                         + f"**{f(top['recall'], 2)}** ({top['generated_tokens']:.1f} tok, {top['seconds_median']:.1f} s)")
        ceil = d["ceiling"]["mean"] if d.get("ceiling") else None
        rows.append([str(d["config"]["model"]), d["family"], str(d["prompts_done"]), str(d["max_k"]), f(ceil, 2),
                     f"{f(g['recall'], 2)} ({g['generated_tokens']:.1f} tok, {g['seconds_median']:.1f} s)", *cells])
    return table(["model", "family", "prompts", "K", "single-task ceiling", "greedy", "sample", "beam", "branch",
                  "superposed"], rows)


def t_decoding_collapse() -> str:
    rows = []
    for name in DECODING:
        d = load(f"decoding/{name}.json")
        c = d["summary"]["collapse"]
        if not c.get("pairs"):
            continue
        sa = c.get("several_alive") or {}
        rows.append([str(d["config"]["model"]), d["family"], f"{c['pairs']} ({c['prompts']})", f(c["own"]),
                     f(c["mix"]), f(c["mix_uniform"]), f(c["other"]),
                     f"{f(sa.get('own'), 2)} / {f(sa.get('mix'), 2)} / {f(sa.get('mix_uniform'), 2)} "
                     f"({c.get('prompts_two_multi_token_tasks', 0)})"])
    return table(["model", "family", "answers (prompts)", "P(2nd \\| own 1st)", "P(2nd \\| superposed 1sts)",
                  "P(2nd \\| equal-weight 1sts)", "P(2nd \\| another task's 1st)",
                  ">= 2 tasks alive: own / superposed / equal (of prompts)"], rows)


# --- scaling -----------------------------------------------------------------------------------

def _by_k(entries: list[dict]) -> dict:
    return {e["k"]: e for e in entries}


def _kl(x: float) -> str:
    return f"{x:.1f}" if x >= 0.05 else f"{x:.1g}"


def t_scaling() -> str:
    rows = []
    for m in load("scaling/scaling.json")["models"]:
        u = _by_k(m["uniform"])
        ks = sorted(u)
        r_key = "r_next_token" if "r_next_token" in u[ks[0]] else "r"
        params = f"{m['params'] / 1e6:.3f}M" if m.get("params") else "-"
        rows.append([m["name"], params, f(m.get("single_task_late_acc")),
                     " / ".join(f(u[k][r_key]["mean"], 2) for k in ks),
                     " / ".join(_kl(u[k]["kl"]["mean"]) for k in (2, 4, 6) if k in u),
                     " / ".join(p(u[k]["second"]["mean"]) for k in (2, 6) if k in u),
                     " / ".join(p(u[k]["other"]["mean"], 2) for k in (2, 6) if k in u)])
    return table(["model", "params", "single-task acc. (2nd half)", "r next-token, K = 2 / 3 / 4 / 5 / 6",
                  "KL, K = 2 / 4 / 6", "2nd-largest task prob., K = 2 / 6", "other, K = 2 / 6"], rows)


def t_scaling_seeds() -> str:
    """Each member of the study (seed 0) with its runs at other seeds (``scaling/seeds.json``)."""
    others = load("scaling/seeds.json")
    seeds = sorted({str(_seed_of(e)) for e in others["models"]})
    rows = []
    for m in load("scaling/scaling.json")["models"]:
        if m.get("kind") == "constructed" or m.get("width") is None:
            continue
        more = [e for e in others["models"] if (e["width"], e["heads"]) == (m["width"], m["heads"])]
        if not more:
            continue
        rows.append([m["name"], f"{m['params'] / 1e6:.3f}M", *_learned_cells([m, *more])])
    return table(["member", "params", "learned (acc. >= 0.95)", f"single-task acc., seeds 0 / {' / '.join(seeds)}",
                  "r next-token at K = 2, seeds that learned", "2nd-largest task prob. at K = 2, seeds that learned"],
                 rows)


def _seed_of(e: dict) -> int:
    """A run's training seed; the study's own entries carry none: they are seed 0 (its budget rule)."""
    return next((e[k] for k in ("seed_of_training", "seed") if e.get(k) is not None), 0)


def _learned_cells(runs: list[dict]) -> list[str]:
    """Learned count, accuracy per seed, and r / 2nd-largest at K = 2 over the runs that learned."""
    runs = sorted(runs, key=_seed_of)
    learned = [e for e in runs if e["single_task_late_acc"] >= LEARNED]
    cells = []
    for stat in ("r_next_token", "second"):
        vals = [(_by_k(e["uniform"])[2].get(stat) or _by_k(e["uniform"])[2]["r"])["mean"] for e in learned]
        cells.append(rng(vals, 3 if stat == "second" else 2) if vals else "-")
    return [f"{len(learned)} of {len(runs)}", " / ".join(f(e["single_task_late_acc"]) for e in runs), *cells]


def t_scaling_lr() -> str:
    """The members at chance under the budget rule, at other learning rates (``scaling/lr_grid.json``),
    next to the rule's own runs (the study's seed 0 and ``scaling/seeds.json``)."""
    grid = load("scaling/lr_grid.json")["models"]
    rule = [m for m in load("scaling/scaling.json")["models"] if m.get("kind") == "trained"]
    rule += load("scaling/seeds.json")["models"]
    rows = []
    for width, heads in sorted({(e["width"], e["heads"]) for e in grid}):
        name = f"add-d{width}-h{heads}"
        budget = 3e-3 * min(1.0, (64 / width) ** 0.5)  # scaling.budget_lr (this script imports no package code)
        lrs = sorted({e["lr"] for e in grid if (e["width"], e["heads"]) == (width, heads)} | {budget})
        for lr in lrs:
            is_rule = abs(lr / budget - 1) < 1e-9
            runs = [e for e in (rule if is_rule else grid) if (e["width"], e["heads"]) == (width, heads)
                    and (is_rule or e["lr"] == lr)]
            seeds = " / ".join(str(_seed_of(e)) for e in sorted(runs, key=_seed_of))
            rows.append([name, f"{lr:.2g} " + ("(the rule)" if is_rule else f"({lr / budget:.2g} x the rule)"),
                         seeds, *_learned_cells(runs)])
    return table(["member", "learning rate", "seeds", "learned (acc. >= 0.95)", "single-task acc. per seed",
                  "r next-token at K = 2, seeds that learned", "2nd-largest task prob. at K = 2, seeds that learned"],
                 rows)


def t_scaling_r() -> str:
    rows = []
    for m in load("scaling/scaling.json")["models"]:
        u = _by_k(m["uniform"])
        ks = sorted(u)
        cells = [" / ".join(f(u[k][key]["mean"], 2) for k in ks) if key in u[ks[0]] else ""
                 for key in ("r", "r_strict", "r_complete")]
        vr = u[2].get("variance_ratio") if 2 in u else None
        rows.append([m["name"], *cells, " / ".join(f(v, 2) for v in vr) if vr else ""])
    return table(["model", "r (the authors' rule), K = 2 / 3 / 4 / 5 / 6", "r without the 1e-5 tolerance",
                  "r_complete (ours)", "var / (m (1 - m)) of the prompt's first and second task, K = 2"], rows)


def t_calibration() -> str:
    rows = []
    for m in load("scaling/calibration.json")["models"]:
        e, pp = m["exponent"], m["per_prompt"]
        rows.append([m["name"], f"{f(e['alpha'], 2)} [{f(e['lo'], 2)}, {f(e['hi'], 2)}]", f(pp["tv"]["mean"], 2),
                     f(pp["matching_chooser"], 2), f(pp["majority_chooser"], 2), f(pp["uniform_mixer"], 2)])
    return table(["model", "exponent alpha [95% interval] (1 = proportional)", "TV(q, D) per prompt",
                  "a chooser matching D", "a majority chooser", "a 1/K mixer"], rows)


# --- robustness and benchmarks ------------------------------------------------------------------

def t_bad_input() -> str:
    d = load("bad_input_summary.json")
    rows = [[name, str(c["tried"]), str(c["clean"]), str(c["accepted"])] for name, c in sorted(d["classes"].items())]
    rows.append(["**all**", f"**{d['tried']}**", f"**{d['clean']}**",
                 f"**{sum(c['accepted'] for c in d['classes'].values())}**"])
    return table(["input class", "cases tried", "clean errors", "valid after all"], rows)


def t_thorough() -> str:
    d = load("thorough_summary.json")
    rows = []
    for name, t in d["tests"].items():
        short = name.split("::", 1)[1]
        rows.append([f"`{short}`", str(t.get("cases", "")), t.get("outcome", "")])
    rows.append(["**all** (" + f"{d['seconds'] / 60:.0f} min, profile `{d['profile']}`)", f"**{d['cases']:,}**",
                 f"**{d['failures']}**"])
    return table(["property test", "generated cases", "outcome"], rows)


def t_training_many() -> str:
    d = load("training_many_add_cpu.json")
    rows = []
    for n, m in sorted(d["models"].items(), key=lambda kv: int(kv[0])):
        def side(k):
            return f"{round(m[k]['tokens_per_s'], -2):,.0f} ({100 * m[k]['mfu']:.0f}%)"
        rows.append([n, side("ours"), side("sequential"), side("torchfunc"),
                     f"**{m['ratio_ours_over_best_pytorch']:.2f}x**"])
    return table(["N", "ours (MFU)", "PyTorch sequential (MFU)", "PyTorch torch.func (MFU)", "ours / best PyTorch"],
                 rows)


# --- the README's findings at a glance -----------------------------------------------------------

#: A seed has learned its tasks when its second-half single-task accuracy reaches this.
LEARNED = 0.95


def t_findings() -> str:
    wp = load("within_prompt_summary.json")["rows"]
    cons = wp["constructed: lookup:0 vs lookup:1"]
    trained = [r["second"]["mean"] for k, r in wp.items() if k.startswith("trained ")]
    mix = {n: _point(load(f"mixture/sweep_{n}.json"), 0.5)["second"]["mean"] for n in ("lookup-mix",
                                                                                       "like-construction-mix")}
    seed_fams = load("seeds/seeds.json")["families"]
    learners = {fam: [e for e in seeds.values() if e["accuracy"]["answer_acc_late"] >= LEARNED]
                for fam, seeds in seed_fams.items()}
    n_learn = sum(len(v) for v in learners.values())
    n_choose = sum(next(q for q in e["points"] if q["lambda"] == 0.5)["second"] < 0.1
                   for v in learners.values() for e in v)
    learn_counts = ", ".join(f"{fam} {len(v)}" for fam, v in learners.items())
    copy = load("training/sweep_copy.json")
    ca, cb = _pa_pb(_point(copy, 0.5))
    authors = load("within_prompt_summary.json")["authors"]["runs"]
    a_copy, a_add = (_mid_range(authors[n]["variance_ratio_by_lambda"]) for n in ("copy", "bias_add_simple"))
    tiny = load("mixture/mixture_tiny.json")["arms"]["1"]
    met = sum(all(t["met"] for t in e["targets"].values()) for e in tiny.values())
    tvs = [e["headline"]["tv@0.5"] for e in tiny.values()]
    cmp_ = {n: load(f"compare/compare_{n}.json")["causal"] for n in ("lookup", "like-construction")}
    thorough = load("thorough_summary.json")
    check = load("check/check.json")
    bs = check["beta_sweep"]
    i30 = bs["betas"].index(30.0)
    beta30 = (bs["measured_float64"][i30], bs["bound_exact"][i30])
    probes = [load(f"llm_probe/{m}_{fam}_100.json")["results"][0]["summary"] for m in ("smollm2", "gemma3")
              for fam in FAMILIES]
    other = [s["other"]["mean"] for s in probes]
    second = [s["within_prompt"]["second"]["mean"] for s in probes]
    dec = load("decoding/gemma3_at.json")["summary"]["methods"]
    branch = max(dec["branch"], key=lambda e: e["k"])
    beam = max(dec["beam"], key=lambda e: e["k"])
    scaled = [m for m in load("scaling/scaling.json")["models"] if m["kind"] == "trained"]
    scaled += load("scaling/seeds.json")["models"]
    learned = [m for m in scaled if (m.get("single_task_late_acc") or 0) >= LEARNED]
    def r2_of(models):  # r next-token at K = 2 of the models that learned
        return [_by_k(m["uniform"])[2].get("r_next_token", _by_k(m["uniform"])[2]["r"])["mean"] for m in models
                if m["single_task_late_acc"] >= LEARNED]

    r2 = r2_of(scaled)
    one_head = [m for m in scaled if (m["width"], m["heads"]) == (96, 1)]
    grid = [m for m in load("scaling/lr_grid.json")["models"] if (m["width"], m["heads"]) == (96, 1)]
    best_lr = max(sorted({m["lr"] for m in grid}), key=lambda lr: sum(
        m["single_task_late_acc"] >= LEARNED for m in grid if m["lr"] == lr))
    one_head_lr = [m for m in grid if m["lr"] == best_lr]
    many = load("training_many_add_cpu.json")["models"]
    harness = load("llm_harness_cpu.json")["summary"]
    bad = load("bad_input_summary.json")
    rows = [
        ["**Who superposes within one prompt?**",
         f"**Only the constructed model** (mean 2nd-largest task prob. {f(cons['second']['mean'])}, proportional "
         f"mixing {f(cons['proportional'], 2)}) **and models trained on mixed sequences** (`lookup-mix` "
         f"{f(mix['lookup-mix'])}, `like-construction-mix` {f(mix['like-construction-mix'])}); every single-task "
         f"model chooses one task per prompt (at most {f(max(trained))})",
         "[superposition](docs/superposition.md)"],
        ["Does a transformer compute Theorem 1's mixture?",
         f"Yes, built by hand in 7 layers, within its proved bound; the property suite: "
         f"{thorough['cases']:,} generated cases, {thorough['failures']} failures",
         "[construction](docs/construction.md)"],
        ["Do the lemmas hold on the built weights?",
         f"Yes: {sum(r['holds'] for r in check['results'])} of {len(check['results'])} checks, each measured "
         f"independently of its bound; at beta 30 the float64 error is {e(beta30[0])} under a bound of {e(beta30[1])}",
         "[proofs_check](docs/proofs_check.md)"],
        ["Does Figure 3 come out of single-task training?",
         f"On average yes (copy 1 vs 5: {p(ca)} / {p(cb)} at lambda 0.5), per prompt no: copy follows the last "
         f"example, add answers the average shift; {n_choose} of {n_learn} seeds that learn their tasks choose per "
         f"prompt ({learn_counts} of 3 seeds learn)", "[training](docs/training.md#results-seed-spread)"],
        ["Do the authors' own models superpose?",
         f"No: their logged variance ratio is {rng(a_copy)} (copy) and {rng(a_add, 3)} (add) over lambda 0.1-0.9, "
         f"a chooser's 1", "[superposition](docs/superposition.md#results-the-authors-own-per-prompt-numbers)"],
        ["What training makes a model superpose?",
         f"Mixed training sequences: {met} of {len(tiny)} tiny-preset seeds meet every target at p_mix 1 "
         f"(TV to the shares {rng(tvs, 3)})", "[superposition](docs/superposition.md#mixed-training-sequences-the-method)"],
        ["Do trained models use the construction's mechanism?",
         f"No: steering along their alpha direction moves the output by {f(cmp_['lookup']['learned']['slope'])} "
         f"(`lookup`) per unit, the construction's S block by {f(cmp_['lookup']['constructed']['slope'], 2)}",
         "[compare](docs/compare.md)"],
        ["Is a task one patchable vector?", "In the construction's S block, yes (convex patches give the "
         "mixture); in trained models and SmolLM2 mostly not", "[task vectors](docs/task_vectors.md)"],
        ["Do small real LLMs superpose?",
         f"Weakly: most mass goes elsewhere ('other' {rng(other)}), 2nd-largest task prob. at most "
         f"{f(max(second))} (SmolLM2, Gemma 3)", "[real LLMs](docs/real_llms.md)"],
        ["Which decoder recovers several tasks' answers?",
         f"Branching on the first token: Gemma 3 at, recall {f(branch['recall'], 2)} at K with "
         f"{branch['generated_tokens']:.1f} generated tokens (beam {f(beam['recall'], 2)} with "
         f"{beam['generated_tokens']:.1f})", "[real LLMs](docs/real_llms.md#decoding-that-keeps-the-superposition-superpose-decode)"],
        ["Does size bring superposition (Figure 6)?",
         f"Not in a controlled family: the {len(learned)} of {len(scaled)} trained runs (8 members, seeds "
         f"{min(map(_seed_of, scaled))}-{max(map(_seed_of, scaled))}) that learned reach r {rng(r2)} of 2 at "
         f"K = 2, the construction 2; one head per layer learns in "
         f"{sum(m['single_task_late_acc'] >= LEARNED for m in one_head)} of {len(one_head)} seeds at the budget "
         f"rule's learning rate, {sum(m['single_task_late_acc'] >= LEARNED for m in one_head_lr)} of "
         f"{len(one_head_lr)} at {best_lr:g} (r {rng(r2_of(one_head_lr))} at K = 2)",
         "[scaling](docs/scaling.md)"],
        ["How fast is it?",
         f"Real-LLM scoring {harness['speedup_vs_reference']:.1f}x the PyTorch reference; training "
         f"{load('training_add_cpu.json')['ratio_ours_over_reference']:.2f}x PyTorch's speed for one model, "
         f"{rng([m['ratio_ours_over_best_pytorch'] for m in many.values()])}x for 1-8 models in one step (2-core CPU)",
         "[benchmarks](docs/benchmarks.md)"],
        ["Does bad input fail cleanly?",
         f"{bad['clean']} of {bad['tried']} bad inputs are one clear error, the other "
         f"{sum(c['accepted'] for c in bad['classes'].values())} valid after all",
         "[robustness](docs/robustness.md)"],
    ]
    return table(["question", "our answer", "page"], rows)


def t_benchmarks() -> str:
    c = load("construction_cpu.json")
    t = load("training_add_cpu.json")
    many = load("training_many_add_cpu.json")["models"]
    h = load("llm_harness_cpu.json")["summary"]
    t8 = many["8"]
    rows = [
        ["constructed model, jitted `predict` (batch 1024, m = 64)", f"{c['prompts_per_second']:.0f} prompts/s",
         f"{100 * c['fraction_of_matmul_peak']:.1f}% of the matmul peak", "-", "-", "`construction_cpu.json`"],
        ["one training step, tiny add preset", f"{round(t['ours']['tokens_per_s'], -2):,.0f} tokens/s",
         f"MFU {100 * t['ours']['mfu']:.0f}%", f"{round(t['reference']['tokens_per_s'], -2):,.0f} tokens/s "
         f"(MFU {100 * t['reference']['mfu']:.0f}%)", f"**{t['ratio_ours_over_reference']:.2f}x**",
         "`training_add_cpu.json`"],
        ["N = 8 tiny add models in one vmapped step", f"{round(t8['ours']['tokens_per_s'], -2):,.0f} tokens/s",
         f"MFU {100 * t8['ours']['mfu']:.0f}%", f"{round(t8[t8['best_pytorch']]['tokens_per_s'], -2):,.0f} tokens/s "
         f"({t8['best_pytorch']})", f"**{t8['ratio_ours_over_best_pytorch']:.2f}x**", "`training_many_add_cpu.json`"],
        ["SmolLM2 scoring, ~960-token prompts, 4 candidates", f"{h['ours_s']:.2f} s per prompt",
         f"{h['ours_over_floor']:.2f}x its FLOP floor", f"{h['reference_s']:.2f} s per prompt "
         f"({h['reference_over_its_floor']:.2f}x its floor)", f"**{h['speedup_vs_reference']:.1f}x**",
         "`llm_harness_cpu.json`"],
    ]
    return table(["what", "ours", "efficiency", "PyTorch reference", "ours / reference (speed)", "JSON"], rows)


TABLES = {name[2:].replace("_", "-"): fn for name, fn in list(globals().items())
          if name.startswith("t_") and callable(fn)}


# --- pages -------------------------------------------------------------------------------------

def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def regenerate(text: str) -> str:
    """The page's text with every marked table replaced by what its JSON gives."""
    def sub(m: re.Match) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
        return m.group(1) + TABLES[name]() + "\n" + m.group(4)
    return MARKER.sub(sub, text)


def stale() -> list[str]:
    """The pages (relative paths) whose marked tables differ from their JSON; nothing is written."""
    out = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        if regenerate(text) != text:
            out.append(str(page.relative_to(ROOT)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is out of date")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"out of date: {name} (run make docs)", file=sys.stderr)
        return 1 if bad else 0
    for page in pages():
        text = page.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
