"""Scaling and capacity (the paper's Figure 6 and its reviewers' question "do K tasks need K
heads?"): families of trained models that differ in one thing, evaluated on K-task mixtures.

Two families, both trained on the ``add`` family (x in 0..9, y = x + h mod 10, ten tasks)
with the tiny preset's data, curriculum and optimiser, and ONE rule for the training budget:
every member trains :data:`STEPS` steps of :data:`BATCH` sequences of 40 examples (the same
batches, seed 0), at learning rate ``3e-3 * min(1, sqrt(64 / width))``:

* :data:`SIZES`: the **scaling family**, 3 layers, 6 heads, width 24 ... 288 (head width =
  width / 6, SwiGLU 2 x width), about 0.02M to 2.5M parameters;
* :data:`HEADS`: the **capacity family**, width 96 with 1, 2, 3 or 6 heads per layer (head
  width 96 / heads: equal width, equal parameter count).

:func:`evaluate_mixtures` draws prompts whose examples' tasks follow a mixture D of K tasks
(uniform, and skewed ones) and records per prompt each task's answer probability, KL(D || P)
and r (docs/theory.md section 6: the number of the K tasks whose answer is among the K most likely
next tokens; here every answer is one token, followed by the newline). The constructed model
(Theorem 1) with the same K tasks is the reference: it has K heads where they are needed and
outputs the mixture itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from empirical import synthetic
from empirical.training import TrainConfig, tiny

#: Training budget of every member: steps, sequences per step (40 examples each).
STEPS = 2000
BATCH = 16
#: The tiny add preset's two-task start, shortened in proportion to the budget.
CURRICULUM = ((500, (1, 4)),)
#: Width of the scaling family (3 layers, 6 heads each).
SIZES = (24, 48, 96, 192, 288)
#: Heads per layer of the capacity family (width 96).
HEADS = (1, 2, 3, 6)
CAPACITY_WIDTH = 96


@dataclass(frozen=True)
class Member:
    """One model of a family: its name (its run directory's) and its width and heads."""

    name: str
    width: int
    heads: int

    def config(self) -> TrainConfig:
        """The member's TrainConfig (the tiny add preset with the family's budget rule)."""
        d, h = self.width, self.heads
        if d % h:
            raise ValueError(f"width {d} is not a multiple of {h} heads")
        return tiny("add", steps=STEPS, batch_size=BATCH, curriculum=CURRICULUM, lr=3e-3 * min(1.0, math.sqrt(64 / d)),
                    eval_every=250, ckpt_every=500,
                    model_changes=dict(d_model=d, num_heads=h, qk_dim=d // h, v_dim=d // h, mlp_dims=2 * d))


def scaling_members() -> list[Member]:
    return [Member(f"add-d{d}-h6", d, 6) for d in SIZES]


def capacity_members() -> list[Member]:
    return [Member(f"add-d{CAPACITY_WIDTH}-h{h}", CAPACITY_WIDTH, h) for h in HEADS]


def members(which: str = "all") -> list[Member]:
    """The members of ``which`` in {"scaling", "capacity", "all"} (shared ones listed once)."""
    if which not in ("scaling", "capacity", "all"):
        raise ValueError(f"which must be scaling, capacity or all, got {which!r}")
    out = (scaling_members() if which != "capacity" else []) + (capacity_members() if which != "scaling" else [])
    seen, unique = set(), []
    for m in out:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    return unique


def train_member(m: Member, out: str | os.PathLike, seeds: Sequence[int] | None = None, *,
                 progress: bool = True) -> list[dict]:
    """Train member ``m`` into ``out/<name>`` (the budget rule's seed), or, given ``seeds``, one
    model per seed into ``out/<name>-seed<s>`` in one vmapped step. Finished runs are kept,
    interrupted ones resumed; returns the training summaries."""
    from empirical.training import train_many

    cfg = m.config()
    if seeds is None:
        cfgs, runs = [cfg], [Path(out) / m.name]
    else:
        if not seeds or len(set(seeds)) != len(seeds) or any(int(s) < 0 for s in seeds):
            raise ValueError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
        cfgs = [replace(cfg, seed=int(s)) for s in seeds]
        runs = [Path(out) / f"{m.name}-seed{int(s)}" for s in seeds]
    done = [json.loads((r / "result.json").read_text()) if (r / "result.json").is_file() else None for r in runs]
    if all(d is not None and d.get("step") == STEPS for d in done):
        return done
    resume = any((r / "config.json").is_file() for r in runs)
    return train_many(cfgs, runs, resume=resume, progress=progress)


def train_members(out: str | os.PathLike, which: str = "all", *, seeds: Sequence[int] | None = None,
                  progress: bool = True, report: Callable[[str], None] = print) -> list[dict]:
    """Train every member of ``which`` into ``out`` (see :func:`train_member`); returns their
    training summaries."""
    summaries = []
    for m in members(which):
        for summary in train_member(m, out, seeds, progress=progress):
            acc = summary["eval"].get("answer_acc_late", float("nan"))
            report(f"{m.name} seed {summary['config']['seed']}: "
                   f"{summary['params']} parameters, late accuracy {acc:.3f}, {summary['wall_s']:.0f} s")
            summaries.append(summary)
    return summaries


# --------------------------------------------------------------------------- K-task mixtures

#: Numbers of tasks in a mixture (Figure 6 uses several; the add family has ten tasks).
KS = (2, 3, 4, 5, 6)
#: Prompts per K: ``GROUPS`` task subsets (each its own proportions) of ``n_prompts / GROUPS`` prompts.
GROUPS = 10
N_EXAMPLES = 40


def mixture_prompts(fam: synthetic.Family, k: int, *, n_prompts: int, n_examples: int, skewed: bool,
                    seed: int, groups: int = GROUPS, tasks: Sequence[int] | None = None) -> list[dict]:
    """``groups`` prompt groups for K = ``k``: each draws K distinct tasks of ``fam`` (or uses
    ``tasks``) and proportions (uniform, or Dirichlet(1) when ``skewed``), then
    ``n_prompts // groups`` prompts whose examples' tasks are drawn i.i.d. from them
    (:func:`synthetic.mixed_prompts`). Group g comes from ``default_rng([seed, k, g, skewed])``,
    so every model evaluated with the same arguments reads the same prompts."""
    if k < 2 or k > len(fam.params):
        raise ValueError(f"K must lie in 2..{len(fam.params)} for the {fam.name} family, got {k}")
    if n_prompts < groups:
        raise ValueError(f"need at least {groups} prompts (one per group), got {n_prompts}")
    out = []
    for g in range(groups):
        rng = np.random.default_rng([seed, k, g, int(skewed)])
        chosen = np.asarray(tasks if tasks is not None else rng.choice(np.asarray(fam.params), size=k, replace=False))
        mix = rng.dirichlet(np.ones(k)) if skewed else np.full(k, 1.0 / k)
        prompts = synthetic.mixed_prompts(fam, rng, n_prompts // groups, n_examples, chosen, mix)
        out.append({"tasks": chosen.tolist(), "mixture": mix.tolist(), **prompts})
    return out


def prompt_metrics(p: np.ndarray, answers: np.ndarray, example_task: np.ndarray, k: int,
                   p_next: np.ndarray | None = None, beam: int = 8) -> dict:
    """Per-prompt metrics from next-token distributions ``p`` [P, V], the K tasks' answers
    [P, K] and each example's task (index into the K) [P, m]: the realised proportions D, the
    answer probabilities P, KL(D || P) and three r's over continuations of one token (every
    answer is one token, then the newline):

    * ``r`` (the authors' rule, :func:`empirical.llm.metrics.r_paper`): the pool holds the
      ``beam`` most probable tokens after which the newline is the most probable next token
      (and the empty continuation if the newline is the most probable token at once), each
      with its own probability (the newline's left out);
    * ``r_complete`` (ours, :func:`empirical.llm.metrics.r_complete`): every token of the
      ``beam`` most probable, and every answer, with the newline's probability multiplied in;
    * ``r_next_token``: the answers among the K most likely next tokens (docs/theory.md section 6;
      the study's r before the split);
    * ``r_strict``: ``r`` without the authors' tolerance (an answer 1e-5 below the K-th
      completion counts for them; when that completion is itself below 1e-5, every answer does).

    ``p_next`` [P, V, V] (``p_next[i, t]``: the distribution after prompt i and token t;
    :func:`next_after`) is needed for ``r`` and ``r_complete``; without it they are None."""
    from empirical.llm.metrics import kl_divergence, r_complete, r_metric, r_paper

    d = np.stack([(example_task == j).mean(axis=1) for j in range(k)], axis=1)
    p_ans = np.take_along_axis(p, answers, axis=1)
    logp = np.log(np.maximum(p, 1e-30))
    kl, r_tok, r_a, r_c, r_s = [], [], [], [], []
    nl = synthetic.NEWLINE
    for i in range(len(p)):
        kl.append(kl_divergence(d[i], p_ans[i]))
        pool = {str(t): float(v) for t, v in enumerate(logp[i])}
        names = [str(a) for a in answers[i]]
        r_tok.append(r_metric(logp[i, answers[i]], pool, names)[0])
        if p_next is None:
            continue
        top = np.argsort(-p[i], kind="stable")[:beam]
        done = {"": 1.0} if int(np.argmax(p[i])) == nl else {}
        done.update({str(t): float(p[i, t]) for t in top if t != nl and int(np.argmax(p_next[i, t])) == nl})
        r_a.append(r_paper(p_ans[i], done, names)[0])
        r_s.append(r_paper(p_ans[i], done, names, tol=0.0)[0])
        with_nl = np.log(np.maximum(p[i] * p_next[i, :, nl], 1e-30))
        r_c.append(r_complete(with_nl[answers[i]], {str(t): float(with_nl[t]) for t in top if t != nl}, names)[0])
    return {"d": d, "p": p_ans, "kl": np.array(kl), "r_next_token": np.array(r_tok),
            "r": np.array(r_a) if p_next is not None else None,
            "r_complete": np.array(r_c) if p_next is not None else None,
            "r_strict": np.array(r_s) if p_next is not None else None}


def next_after(model, tokens: np.ndarray, p: np.ndarray, answers: np.ndarray, beam: int = 8) -> np.ndarray:
    """``[P, V, V]``: the next-token distribution after each prompt followed by each of its
    ``beam`` most probable tokens and each of its answers (rows of other tokens are zero):
    one batched call of ``model.last_probs`` on the prompts extended by one token."""
    P, V = p.shape
    want = [sorted(set(np.argsort(-p[i], kind="stable")[:beam].tolist()) | set(answers[i].tolist()))
            for i in range(P)]
    rows = np.array([i for i in range(P) for _ in want[i]])
    toks = np.array([t for i in range(P) for t in want[i]])
    ext = np.concatenate([tokens[rows], toks[:, None].astype(tokens.dtype)], axis=1)
    q = np.asarray(model.last_probs(ext), dtype=np.float64)
    out = np.zeros((P, V, q.shape[1]))
    out[rows, toks] = q
    return out


def evaluate_mixtures(model, fam: synthetic.Family, *,
                      ks: Sequence[int] = KS, n_prompts: int = 500, n_examples: int = N_EXAMPLES,
                      skewed: bool = False, seed: int = 0, progress: bool = True,
                      make_model: Callable[[list[int]], object] | None = None) -> list[dict]:
    """For each K in ``ks``: :func:`mixture_prompts`, every prompt's metrics, and their
    summary (mean with 95% interval of KL, r, other mass and the within-prompt second-largest
    task probability; r's histogram) of ``model`` (an :class:`empirical.models.Model`).
    ``make_model(tasks)``, when given, builds the model per task subset instead (the
    constructed model of exactly those K tasks: :func:`constructed_models`)."""
    from tqdm.auto import tqdm

    from empirical import within_prompt as wp

    out = []
    for k in tqdm(ks, disable=not progress, desc="mixtures", unit="K"):
        groups, kl, p_all = [], [], []
        rs: dict[str, list] = {"r": [], "r_complete": [], "r_next_token": [], "r_strict": []}
        for group in mixture_prompts(fam, k, n_prompts=n_prompts, n_examples=n_examples, skewed=skewed, seed=seed):
            m_k = make_model(group["tasks"]) if make_model is not None else model
            p = np.asarray(m_k.last_probs(group["tokens"]), dtype=np.float64)
            nxt = next_after(m_k, group["tokens"], p, group["answers"]) if fam.end is not None else None
            m = prompt_metrics(p, group["answers"], group["example_task"], k, p_next=nxt)
            if nxt is None:  # no newline token (the construction's layout): the label token is the continuation
                m["r"] = m["r_complete"] = m["r_strict"] = m["r_next_token"]
            kl.extend(m["kl"].tolist())
            for key in rs:
                if m[key] is not None:
                    rs[key].extend(m[key].tolist())
            p_all.append(m["p"])
            groups.append({"tasks": group["tasks"], "mixture": np.round(group["mixture"], 4).tolist(),
                           "d": np.round(m["d"], 4).tolist(), "p": np.round(m["p"], 5).tolist(),
                           "kl": np.round(m["kl"], 4).tolist(),
                           **{key: m[key].tolist() for key in rs if m[key] is not None}})
        p_ans = np.concatenate(p_all)
        out.append({
            "k": int(k),
            "skewed": bool(skewed),
            "n_prompts": len(p_ans),
            "kl": wp.mean_ci(kl),
            **{key: wp.mean_ci(v) for key, v in rs.items() if v},
            **{f"{key}_histogram": np.bincount(v, minlength=k + 1).tolist() for key, v in rs.items() if v},
            "other": wp.mean_ci(1.0 - p_ans.sum(axis=1)),
            "second": wp.mean_ci(np.sort(p_ans, axis=1)[:, -2]),
            # P(answer of the k-th task in the prompt's order) over prompts: var / (m (1 - m))
            "variance_ratio": wp.variance_ratio(p_ans),
            # per prompt, by group (its tasks and mixture): D, P, KL and the r's
            "groups": groups,
        })
    return out


def refresh_r(doc: dict, *, progress: bool = True, report: Callable[[str], None] = print,
              names: Sequence[str] | None = None, parts: Sequence[str] = ("uniform", "skewed")) -> dict:
    """A saved study whose trained members get ``r`` (the authors' rule) and ``r_complete``
    (ours) per prompt, re-measured on the shipped weights (checked against each entry's
    fingerprint) on the study's own prompts (rebuilt from its seed); the answer probabilities,
    KL and the study's earlier r (kept as ``r_next_token``) stay as saved, and are checked
    against the re-measured ones. Nothing is trained. Members whose weights are not found or
    differ are left as they are and reported. The constructed model has no newline token (its
    layout has none), so its r's stay the next-token r."""
    from empirical import runs
    from empirical import within_prompt as wp
    from empirical.models import FlaxModel

    cfg = doc["config"]
    fam = synthetic.family("add")
    out = dict(doc)
    out["models"] = []
    for entry in doc["models"]:
        def with_ratio(block: dict) -> dict:  # var / (m (1 - m)) from the saved per-prompt P
            return {**block, "variance_ratio": wp.variance_ratio(np.concatenate([np.asarray(g["p"])
                                                                              for g in block["groups"]]))}

        if entry.get("kind") == "constructed":  # no newline token: every r is the next-token r
            same = ("r_complete", "r_next_token", "r_strict")
            out["models"].append({**entry, **{part: [with_ratio({**b, **{key: b["r"] for key in same},
                                                                 "groups": [{**g, **{key: g["r"] for key in same}}
                                                                            for g in b["groups"]]})
                                                     for b in entry[part]]
                                              for part in ("uniform", "skewed") if part in entry}})
            continue
        if entry.get("kind") != "trained" or (names is not None and entry["name"] not in names):
            # not re-measured: "r" stays what it was (the next-token r unless r_complete is there)
            out["models"].append({**entry, **{part: [with_ratio({**b, "r_next_token": b.get("r_next_token", b["r"])})
                                                     for b in entry[part]]
                                              for part in ("uniform", "skewed") if part in entry}})
            continue
        try:
            mcfg, params, _ = runs.load(entry["name"])
        except (FileNotFoundError, ValueError) as err:
            report(f"{entry['name']}: not re-measured ({err})")
            out["models"].append(entry)
            continue
        if fingerprint(params) != entry.get("fingerprint"):
            report(f"{entry['name']}: the shipped weights are not the measured ones; not re-measured")
            out["models"].append(entry)
            continue
        model = FlaxModel(entry["name"], mcfg.model, params, "learned")
        new = dict(entry)
        for part, skewed in (("uniform", False), ("skewed", True)):
            if part not in entry or part not in parts:
                continue
            fresh = []
            for block in entry[part]:
                k = block["k"]
                gs = mixture_prompts(fam, k, n_prompts=cfg["n_prompts"], n_examples=cfg["n_examples"], skewed=skewed,
                                     seed=cfg["seed"], groups=cfg.get("groups", GROUPS))
                rs: dict[str, list] = {"r": [], "r_complete": [], "r_next_token": [], "r_strict": []}
                groups = []
                for g, saved in zip(gs, block["groups"]):
                    p = np.asarray(model.last_probs(g["tokens"]), dtype=np.float64)
                    m = prompt_metrics(p, g["answers"], g["example_task"], k,
                                       p_next=next_after(model, g["tokens"], p, g["answers"]))
                    if np.abs(np.round(m["p"], 5) - np.asarray(saved["p"])).max() > 2e-4:
                        raise ValueError(f"{entry['name']} K={k}: re-measured answer probabilities differ from the saved")
                    old_r = saved.get("r_next_token", saved["r"])
                    if m["r_next_token"].tolist() != list(old_r):
                        report(f"{entry['name']} K={k}: next-token r differs from the saved in "
                               f"{int(np.sum(m['r_next_token'] != np.asarray(old_r)))} prompts (float ties)")
                    groups.append({**saved, "r": m["r"].tolist(), "r_complete": m["r_complete"].tolist(),
                                   "r_strict": m["r_strict"].tolist(), "r_next_token": list(old_r)})
                    for key in rs:
                        rs[key].extend(groups[-1][key])
                p_ans = np.concatenate([np.asarray(g["p"]) for g in groups])
                fresh.append({**block, **{key: wp.mean_ci(v) for key, v in rs.items()},
                              **{f"{key}_histogram": np.bincount(v, minlength=k + 1).tolist() for key, v in rs.items()},
                              "variance_ratio": wp.variance_ratio(p_ans), "groups": groups})
            new[part] = fresh
        out["models"].append(new)
        u = new["uniform"]
        report(f"{entry['name']}: " + ", ".join(f"K={x['k']}: r={x['r']['mean']:.2f} r_complete="
                                                f"{x['r_complete']['mean']:.2f} (next-token {x['r_next_token']['mean']:.2f})"
                                                for x in u))
    return out


def constructed_family() -> synthetic.Family:
    """The add family's ten tasks (y = x + h mod 10) as construction tasks (shift tasks on 10
    symbols, examples of one input and a label), in the construction's layout."""
    from construction.tasks import TaskSet, shift_task

    tasks = tuple(shift_task(0, h, 10, name=f"x0 + {h}") for h in range(10))
    return synthetic.lookup_family(TaskSet(vocab_size=10, example_len=2, tasks=tasks), name="add-constructed")


def constructed_models(fam: synthetic.Family, *, max_examples: int = 64, beta: float = 30.0) -> Callable:
    """``make_model(tasks)`` for :func:`evaluate_mixtures`: Theorem 1's model of exactly those
    K tasks of ``fam`` (K heads where the construction runs tasks in parallel), a
    :class:`empirical.models.FlaxModel`."""
    from construction.tasks import TaskSet
    from empirical.models import FlaxModel

    ts = fam.task_set

    def make(tasks: list[int]) -> FlaxModel:
        sub = TaskSet(vocab_size=ts.vocab_size, example_len=ts.example_len, tasks=tuple(ts.tasks[h] for h in tasks))
        return FlaxModel.constructed(sub, max_examples=max_examples, beta=beta)

    return make


# --------------------------------------------------------------------------- the study

#: K of the skewed mixtures (the calibration study's; proportions Dirichlet(1) per group).
SKEWED_KS = (2, 3, 4)


def _entry(name: str, model, fam, *, n_prompts: int, seed: int, progress: bool, make_model=None, skewed: bool = True,
           **info) -> dict:
    kw = dict(n_prompts=n_prompts, seed=seed, progress=progress, make_model=make_model)
    out = {"name": name, **info, "uniform": evaluate_mixtures(model, fam, ks=KS, **kw)}
    if skewed:
        out["skewed"] = evaluate_mixtures(model, fam, ks=SKEWED_KS, skewed=True, **kw)
    return out


def _trained_entry(name: str, cfg, params, step: int, **kw) -> dict:
    """:func:`_entry` of a trained add model, with its size, weights' fingerprint and
    single-task accuracy (100 fresh sequences per task)."""
    from empirical.models import FlaxModel
    from empirical.training import evaluate_tasks, param_count

    acc = evaluate_tasks(cfg, params, sequences=100)
    return _entry(name, FlaxModel(name, cfg.model, params, "learned"), synthetic.family("add"), kind="trained",
                  width=cfg.model.d_model, heads=cfg.model.num_heads, params=param_count(params), step=step,
                  seed_of_training=cfg.seed, fingerprint=fingerprint(params),
                  single_task_late_acc=acc["answer_acc_late"], worst_task_late_acc=acc["worst_task_late"], **kw)


def fingerprint(params) -> str:
    """A short SHA-256 of a parameter tree's arrays (which weights an entry was measured on)."""
    import hashlib

    import jax

    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


def _study_config(runs_dir, n_prompts: int, seed: int) -> dict:
    return {"steps": STEPS, "batch": BATCH, "curriculum": CURRICULUM, "sizes": SIZES, "heads": HEADS,
            "capacity_width": CAPACITY_WIDTH, "ks": KS, "skewed_ks": SKEWED_KS, "n_prompts": n_prompts,
            "n_examples": N_EXAMPLES, "groups": GROUPS, "seed": seed, "runs": str(runs_dir)}


def evaluate_study(runs_dir: str | os.PathLike, *, n_prompts: int = 500, seed: int = 0, progress: bool = True,
                   reuse: dict | None = None, report: Callable[[str], None] = print) -> dict:
    """Every member of both families found in ``runs_dir`` (a run directory per member, or
    a shipped model of the member's name) trained to the end, and the constructed model with
    K heads, on uniform K-task mixtures (K in :data:`KS`) and skewed ones (:data:`SKEWED_KS`);
    the same prompts for every trained model. Members not trained yet are listed in
    ``"missing"``. ``reuse``: an earlier study of the same settings whose entries are kept for
    members whose weights have the same :func:`fingerprint` (the rest are evaluated)."""
    from empirical import runs
    from empirical.results import provenance
    config = _study_config(runs_dir, n_prompts, seed)
    old = {}
    if reuse is not None:
        same = {k: v for k, v in reuse.get("config", {}).items() if k != "runs"} == \
            {k: v for k, v in json_ready(config).items() if k != "runs"}
        if not same:
            raise ValueError("the study to reuse was made with other settings (steps, prompts, K, seed, ...)")
        old = {e["name"]: e for e in reuse["models"]}
    entries, missing = [], []
    for m in members("all"):
        where = Path(runs_dir) / m.name
        try:
            cfg, params, step = runs.load(str(where) if where.is_dir() else m.name)
        except (FileNotFoundError, ValueError):
            missing.append(m.name)
            continue
        if step != STEPS:  # still training
            missing.append(m.name)
            continue
        if cfg.model != m.config().model:
            raise ValueError(f"{where}: its model is not the family member {m.name}'s")
        if m.name in old and old[m.name].get("fingerprint") == fingerprint(params):
            entries.append(old[m.name])
            report(f"{m.name}: reused (same weights)")
            continue
        entries.append(_trained_entry(m.name, cfg, params, step, n_prompts=n_prompts, seed=seed, progress=progress))
        u = entries[-1]["uniform"]
        report(f"{m.name}: {entries[-1]['params']} params, single-task late acc "
               f"{entries[-1]['single_task_late_acc']:.3f}; "
               + ", ".join(f"K={x['k']}: r={x['r']['mean']:.2f} KL={x['kl']['mean']:.2f}" for x in u))
    if "constructed (K heads)" in old:
        entries.append(old["constructed (K heads)"])
    else:
        cfam = constructed_family()
        entries.append(_entry("constructed (K heads)", None, cfam, n_prompts=n_prompts, seed=seed, progress=progress,
                              make_model=constructed_models(cfam), kind="constructed", heads="K", beta=30.0))
    u = entries[-1]["uniform"]
    report("constructed: " + ", ".join(f"K={x['k']}: r={x['r']['mean']:.2f} KL={x['kl']['mean']:.4f}" for x in u))
    return {"command": "scaling eval", **provenance(config), "missing": missing, "models": entries}


def json_ready(x):
    """``x`` as it reads back from JSON (tuples as lists), for comparing settings."""
    return json.loads(json.dumps(x))


# --------------------------------------------------------------------------- plots


def _trained(doc: dict, which: str) -> list[dict]:
    names = {m.name for m in (scaling_members() if which == "scaling" else capacity_members())}
    return [e for e in doc["models"] if e["name"] in names]


def _constructed(doc: dict) -> dict | None:
    return next((e for e in doc["models"] if e.get("kind") == "constructed"), None)


def plot_family(doc: dict, which: str, path: str | os.PathLike) -> Path:
    """r, KL(D || P), the within-prompt second-largest task probability and the single-task
    accuracy (on the second half of one-task sequences: did the model learn?) against model size
    (``which="scaling"``, log-scaled parameters) or heads per layer (``"capacity"``), one
    line per K of the uniform mixtures, with 95% intervals; the constructed model with K heads
    is drawn as dotted lines of the same colours."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical import results

    models = sorted(_trained(doc, which), key=lambda e: e["params"] if which == "scaling" else e["heads"])
    if not models:
        raise ValueError(f"the study holds no trained member of the {which} family")
    x = [e["params"] if which == "scaling" else e["heads"] for e in models]
    ref = _constructed(doc)
    fig = Figure(figsize=(17, 3.8), dpi=140)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 4, i + 1) for i in range(4)]
    axes[3].plot(x, [e["single_task_late_acc"] for e in models], "ko-", markersize=4, label="all tasks")
    axes[3].plot(x, [e["worst_task_late_acc"] for e in models], "k^--", markersize=4, label="worst task")
    axes[3].axhline(0.1, color="gray", ls=":", lw=1)
    axes[3].set_ylim(0, 1.02)
    axes[3].legend(fontsize=7, loc="center right")
    # r as the answers among the K most likely next tokens (the study's first r; saved studies
    # before the split carry it as "r"); the authors' r and ours are in the JSON
    keys = (("r_next_token", "r (tasks among the top K next tokens)"), ("kl", "KL(D || P)"),
            ("second", "mean 2nd-largest task prob."))
    ks = [m["k"] for m in models[0]["uniform"]]
    for j, k in enumerate(ks):
        color = f"C{j}"
        for ax, (key, _) in zip(axes, keys):
            pts = [_stat(next(m for m in e["uniform"] if m["k"] == k), key) for e in models]
            ax.errorbar(x, [p["mean"] for p in pts], yerr=[p["ci95"] for p in pts], fmt="o-", color=color,
                        markersize=4, capsize=2, label=f"K={k}")
            if ref is not None:
                rv = _stat(next(m for m in ref["uniform"] if m["k"] == k), key)["mean"]
                ax.axhline(rv, color=color, ls=":", lw=1)
        # r of a model that ranks the ten digits at random: K answers among K of 10 places
        axes[0].axhline(k * k / 10, color=color, ls="-.", lw=0.8, alpha=0.6)
    for ax, (key, label) in zip(axes, keys + (("", "single-task accuracy, 2nd half (chance 0.1)"),)):
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if which == "scaling":
            ax.set_xscale("log")
            ax.set_xlabel("parameters (3 layers, 6 heads)", fontsize=8)
        else:
            ax.set_xticks(x)
            ax.set_xlabel(f"heads per layer (width {CAPACITY_WIDTH})", fontsize=8)
    axes[1].set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    if ref is not None:
        handles.append(Line2D([], [], color="gray", ls=":"))
        labels.append("constructed,\nK heads")
    handles.append(Line2D([], [], color="gray", ls="-.", lw=0.8))
    labels.append("r of a random\ndigit ranking")
    fig.legend(handles, labels, fontsize=7, loc="center right")
    what = "model size" if which == "scaling" else "heads per layer"
    fig.suptitle(f"add family, uniform K-task mixtures ({doc['config']['n_prompts']} prompts per K): against {what}; "
                 "dotted: the constructed model with K heads", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    return results.save_figure(fig, path)


def _stat(block: dict, key: str) -> dict:
    """``block[key]``; the next-token r is ``"r"`` in studies saved before r was split."""
    return block[key] if key in block else block["r"] if key == "r_next_token" else block[key]


def calibration_entries(doc: dict, llm_documents: Sequence[dict] = ()) -> list[dict]:
    """Calibration entries (:func:`empirical.calibration.summarize`) of the study's scaling
    family and constructed model (their skewed mixtures, all K pooled) and of saved LLM
    calibration runs (rows with ``proportions`` and ``probs``)."""
    from empirical import calibration

    out = []
    for e in _trained(doc, "scaling") + ([_constructed(doc)] if _constructed(doc) else []):
        d = [row for m in e["skewed"] for g in m["groups"] for row in g["d"]]
        p = [row for m in e["skewed"] for g in m["groups"] for row in g["p"]]
        label = e["name"] if e["kind"] == "constructed" else f"{e['name']} ({e['params'] / 1e6:.2f}M)"
        out.append(calibration.summarize(label, d, p, kind=e["kind"], ks=list(SKEWED_KS)))
    for llm in llm_documents:
        rows = llm["rows"]
        out.append(calibration.summarize(f"{llm['model']} {llm['family']}", [r["proportions"] for r in rows],
                                         [r["probs"] for r in rows], kind="llm"))
    return out


def evaluate_runs(run_dirs: Sequence[str | os.PathLike], *, n_prompts: int = 500, seed: int = 0,
                  report: Callable[[str], None] = print) -> dict:
    """Other runs of the add family, e.g. members trained with another seed
    (``Member(...).config().replace(seed=1)``): single-task accuracy and the uniform K-task
    mixtures exactly as :func:`evaluate_study` measures the members (the same prompts), without
    per-prompt rows. Is a member's failure its seed or its size?"""
    from empirical import runs
    from empirical.results import provenance
    out = []
    for run in run_dirs:
        cfg, params, step = runs.load(run)
        if cfg.family != "add":
            raise ValueError(f"{run} is a {cfg.family} run; the study's models are add-family runs")
        entry = _trained_entry(str(run), cfg, params, step, n_prompts=n_prompts, seed=seed, progress=False,
                               skewed=False)
        for m in entry["uniform"]:
            m.pop("groups")
        out.append(entry)
        report(f"{run} (seed {cfg.seed}): single-task late acc {entry['single_task_late_acc']:.3f}; "
               + ", ".join(f"K={m['k']}: r={m['r']['mean']:.2f} 2nd={m['second']['mean']:.3f}" for m in entry["uniform"]))
    return {"command": "scaling runs", **provenance({"runs": [str(r) for r in run_dirs], "n_prompts": n_prompts,
                                                     "seed": seed}), "models": out}


def command(action: str, *, runs: str = "runs/scaling", which: str = "all", seeds: Sequence[int] | None = None,
            run_dirs: Sequence[str] = (),
            prompts: int = 500, seed: int = 0, study: str | None = None, reuse: str | None = None,
            llm: Sequence[str] = (), out: str = "benchmarks/results/scaling", json_path: str | None = None,
            progress: bool = True, echo=print) -> None:
    """``superpose scaling train|runs|eval|plot|calibration`` (one action per call): train the
    members, evaluate other runs or the study (JSON), plot it, or fit calibration exponents of
    the study's models and saved LLM calibration runs."""
    from empirical.results import read_json
    from empirical.results import provenance, write_json

    out = Path(out)
    if action == "train":
        train_members(runs, which, seeds=seeds, progress=progress, report=echo)
        return
    if action == "runs":
        if not run_dirs:
            raise ValueError("scaling runs needs --run (repeatable): run directories of add-family models")
        target = json_path or str(out / "runs.json")
        write_json(target, evaluate_runs(run_dirs, n_prompts=prompts, seed=seed))
        echo(f"json: {target}")
        return
    if action == "eval":
        earlier = read_json(reuse, "study to reuse") if reuse else None
        if earlier is not None and earlier.get("command") != "scaling eval":
            raise ValueError(f"{reuse} is not a `superpose scaling eval` result")
        doc = evaluate_study(runs, n_prompts=prompts, seed=seed, progress=progress, reuse=earlier)
        target = json_path or str(out / "scaling.json")
        write_json(target, doc, indent=None)
        echo(f"json: {target}")
        if doc["missing"]:
            echo("not trained yet: " + ", ".join(doc["missing"]))
        return
    if study is None:
        raise ValueError(f"scaling {action} needs --study, a `superpose scaling eval` JSON")
    doc = read_json(study, "study")
    if doc.get("command") != "scaling eval" or "models" not in doc:
        raise ValueError(f"{study} is not a `superpose scaling eval` result")
    if action == "plot":
        for family in ("scaling", "capacity"):
            echo(f"plot: {plot_family(doc, family, out / f'{family}.png')}")
        return
    from empirical import calibration

    llm_docs = []
    for path in llm:
        rows = read_json(path, "LLM calibration result")
        if not isinstance(rows.get("rows"), list) or not rows["rows"]:
            raise ValueError(f"{path} holds no calibration rows (a `superpose probe skewed` JSON)")
        llm_docs.append(rows)
    entries = calibration_entries(doc, llm_docs)
    for e in entries:
        ex = e["exponent"]
        echo(f"{e['name']}: alpha {ex['alpha']:.2f} [{ex['lo']:.2f}, {ex['hi']:.2f}] ({e['n_prompts']} prompts)")
    echo(f"plot: {calibration.plot(entries, out / 'calibration.png')}")
    target = json_path or str(out / "calibration.json")
    write_json(target, {"command": "scaling calibration", **provenance({"study": study, "llm": list(llm)}),
                        "models": entries}, indent=None)
    echo(f"json: {target}")
