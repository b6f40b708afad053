"""The decoding study: on the task families' superposed prompts, how many tasks' answers each
decoding method of :mod:`empirical.llm.decode` recovers at k = 1..K, at what cost, against the
same model's single-task accuracy, and what a superposed input does to generation collapse.

Per prompt the prompt's pass is computed once and shared by every method (each method's
cost still counts it: its tokens, and its measured seconds added to the method's own). Every
method at ``k = 1`` is greedy decoding (beam search of width 1, one branch, one superposed
candidate at weight 1), so ``k = 1`` is run once, as ``greedy``. ``branch`` and ``sample``
run once at ``K``: their first ``k`` streams are exactly the method at ``k`` (branches are
independent greedy streams in first-token order; samples are independent draws), so their
answers and forward tokens at ``k < K`` are exact, and their seconds at ``k < K`` are the K
run's decoding time scaled by the share of steps the first ``k`` streams needed (flagged
``seconds_derived``). ``beam`` and ``superposed`` run at every k.

Metrics per prompt and (method, k): ``recall`` (share of the prompt's tasks whose answer is
among the outputs, compared after stripping surrounding white space), ``all`` (every task
recalled), ``precision`` (share of the distinct outputs that are some task's answer; None
without outputs), ``forward_tokens`` (prompt tokens + generated-token evaluations),
``generated_tokens`` and ``seconds``.

Collapse: for each task whose answer has two or more tokens after the prompt (prompts where
an answer merges with the prompt's last token are skipped), the probability of its second
token after (a) its own first token ("own": today's collapse measure), (b) the superposed
input of all tasks' distinct first tokens, weighted by their probabilities after the prompt
("mix"), (c) the same with equal weights ("mix_uniform"), and (d) another task's first token
(mean over the other tasks whose first token differs: "other").

Single-task ceiling: greedy decoding on prompts with examples of one task only (the same
family, ``examples_per_task`` examples), per task: the model's accuracy on that task alone.

Each (model, family) part is a typed record, :class:`DecodeStudyResult` (``to_json`` /
``from_json``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from empirical.llm.decode import METHODS, decode, stop_mask
from empirical.llm.families import get_family, make_prompt, make_prompts
from empirical.results import Record, ResultError, Stamped, optional, record, result_type

#: A task is "alive" after an input when its second answer token keeps at least this probability.
ALIVE = 0.1

#: Where ``superpose decode --study`` writes by default.
DEFAULT_OUT = "benchmarks/results/decoding"


@dataclass(frozen=True, kw_only=True)
class DecodeStudyConfig:
    """Settings of one (model, family) part of the decoding study (saved in its JSON)."""

    model: str = "gemma3"
    family: str = "country"
    prompts: int = 100
    seed: int = 0
    examples_per_task: int = 20
    max_k: int | None = None  # default: the family's number of tasks
    max_tokens: int = 12
    ceiling_prompts: int = 10  # single-task prompts per task
    ks: tuple[int, ...] | None = None  # k > 1 at which beam and superposed run (default 2..max_k)


# --------------------------------------------------------------------------- the result, typed


@record
class Entry(Record):
    """One method at one k on one prompt; ``same_as``: the method whose run this entry copies (every
    method at k = 1 is greedy)."""

    k: int
    outputs: tuple[str, ...]
    probs: tuple[float, ...]
    forward_tokens: int
    generated_tokens: int
    seconds: float
    seconds_derived: bool
    truncated: bool
    recall: float
    all: bool
    tasks_recalled: tuple[bool, ...]
    precision: float | None
    same_as: str | None = optional()


@record
class TaskCollapse(Record):
    """P(a task's second answer token) after each input (module doc); ``other`` is None when every
    other task shares its first token."""

    own: float
    mix: float
    mix_uniform: float
    other: float | None
    first_prob: float


@record
class PromptCollapse(Record):
    """The collapse measures of one prompt, by task index (as a string)."""

    tasks: dict[str, TaskCollapse]
    mix_weights: tuple[float, ...]
    distinct_first_tokens: int


@record
class StudyRow(Record):
    """One prompt: every method's entries by k (:data:`METHODS` order), and collapse (None: skipped)."""

    query: str
    answers: tuple[str, ...]
    prompt_tokens: int
    prompt_seconds: float
    methods: dict[str, tuple[Entry, ...]]
    collapse: PromptCollapse | None


@record
class MethodSummary(Record):
    """One method at one k: means over prompts (``precision`` over the prompts with outputs)."""

    k: int
    prompts: int
    recall: float
    all: float
    precision: float | None
    outputs: float
    forward_tokens: float
    generated_tokens: float
    seconds: float
    seconds_median: float
    seconds_derived: bool
    task_recall: tuple[float, ...]


@record
class SeveralAlive(Record):
    """Share of the prompts with two multi-token tasks where both keep P(2nd token) >= ALIVE."""

    own: float | None
    mix: float | None
    mix_uniform: float | None


@record
class TaskCollapseSummary(Record):
    """One task's collapse means over prompts (None without pairs) and its number of pairs."""

    own: float | None
    mix: float | None
    mix_uniform: float | None
    other: float | None
    pairs: int


@record
class CollapseSummary(Record):
    """The collapse means over (prompt, task) pairs, overall and per task name."""

    pairs: int
    prompts: int
    alive_threshold: float
    prompts_two_multi_token_tasks: int
    several_alive: SeveralAlive
    own: float | None
    mix: float | None
    mix_uniform: float | None
    other: float | None
    per_task: dict[str, TaskCollapseSummary]


@record
class StudySummary(Record):
    """Per method, its :class:`MethodSummary` at each k measured; and the collapse means."""

    methods: dict[str, tuple[MethodSummary, ...]]
    collapse: CollapseSummary


@record
class CeilingRow(Record):
    """One single-task prompt: the task's answer and the greedy output (None: no complete answer)."""

    task: str
    query: str
    answer: str
    output: str | None
    correct: bool


@record
class Ceiling(Record):
    """Greedy accuracy on single-task prompts, per task, and its mean over tasks."""

    prompts_per_task: int
    accuracy: dict[str, float]
    mean: float
    rows: tuple[CeilingRow, ...]


@result_type("decode --study")
@record
class DecodeStudyResult(Stamped):
    """One (model, family) part of ``superpose decode --study`` (``complete``: every prompt and the
    ceiling done; ``ceiling`` is None until then)."""

    model: str
    model_config: dict[str, Any]
    family: str
    tasks: tuple[str, ...]
    max_k: int
    methods: tuple[str, ...]
    prompts_done: int
    complete: bool
    seconds: float
    summary: StudySummary
    ceiling: Ceiling | None
    per_prompt: tuple[StudyRow, ...]


def model_name(name: str) -> str:
    """The model as package/file (the installed models) or its file / folder name: no paths."""
    from empirical.llm import loading

    low = str(name).lower()
    if low == "smollm2":
        return f"{loading.SMOLLM2_PACKAGE}/{loading.SMOLLM2_FILE}"
    if low == "gemma3":
        return f"{loading.GEMMA3_PACKAGE}/{loading.GEMMA3_FILE}"
    return Path(str(name)).name


def score_outputs(answers: Sequence[str], outputs: Sequence[str]) -> dict:
    """Recall, all-recalled and precision of decoded ``outputs`` against the tasks' ``answers``."""
    gold = [a.strip() for a in answers]
    outs = list(dict.fromkeys(o.strip() for o in outputs))
    hit = [g in outs for g in gold]
    good = [o in gold for o in outs]
    return {"recall": float(np.mean(hit)), "all": bool(all(hit)), "tasks_recalled": [bool(h) for h in hit],
            "precision": float(np.mean(good)) if outs else None}


def _entry(answers, res_answers, probs, k, fwd, gen, seconds, *, truncated, derived=False) -> Entry:
    s = score_outputs(answers, res_answers)
    return Entry(k=k, outputs=tuple(res_answers), probs=tuple(float(p) for p in probs), forward_tokens=int(fwd),
                 generated_tokens=int(gen), seconds=float(seconds), seconds_derived=derived,
                 truncated=bool(truncated), recall=s["recall"], all=s["all"],
                 tasks_recalled=tuple(s["tasks_recalled"]), precision=s["precision"])


def _prefix_entries(answers, res, prompt_tokens: int, prompt_seconds: float, max_k: int,
                    first_k: int) -> list[Entry]:
    """Entries for k = first_k..max_k from one run at max_k whose first k streams are the method at k."""
    steps = [max(len(o.token_ids) - 1, 0) for o in res.outputs]
    total_steps = max(steps) if steps else 0
    out = []
    for k in range(first_k, max_k + 1):
        first = res.outputs[:k]
        best: dict[str, float] = {}
        for o in first:
            if o.complete:
                best[o.text] = max(best.get(o.text, -np.inf), o.logprob)
        order = sorted(best.items(), key=lambda x: -x[1])
        gen = sum(steps[:k])
        decode_s = res.seconds - res.prompt_seconds
        frac = (max(steps[:k]) / total_steps) if total_steps else 1.0
        out.append(_entry(answers, [t for t, _ in order], [np.exp(lp) for _, lp in order], k,
                          prompt_tokens + gen, gen, prompt_seconds + decode_s * frac,
                          truncated=any(not o.complete for o in first), derived=k < max_k))
    return out


def collapse_row(model, prompt_text: str, answers: Sequence[str], prefix) -> PromptCollapse | None:
    """The collapse measures of one prompt (module doc), or None when an answer merges with the
    prompt's end or no answer has a second token."""
    from empirical.llm.decode import Streams
    from empirical.llm.scoring import split_candidates

    p, splits = split_candidates(model.tokenizer, prompt_text, list(answers))
    if any(s.merged for s in splits):
        return None
    toks = [s.ids[s.start:] for s in splits]
    multi = [i for i, t in enumerate(toks) if len(t) > 1]
    if not multi:
        return None
    firsts = [t[0] for t in toks]
    distinct = list(dict.fromkeys(firsts))
    st = Streams(model, p, 2, rows=len(distinct) + 2, prefix=prefix)
    pf = np.exp(st.first[distinct])
    m = len(distinct)
    ids = np.zeros((m + 2, m), np.int32)
    w = np.zeros((m + 2, m), np.float32)
    for r, t in enumerate(distinct):
        ids[r, 0], w[r, 0] = t, 1.0
    ids[m], w[m] = distinct, pf / pf.sum()
    ids[m + 1], w[m + 1] = distinct, 1.0 / m
    lp = st.step([0] * (m + 2), mix=(ids, w))
    rows = {}
    for i in multi:
        s2 = toks[i][1]
        own = float(np.exp(lp[distinct.index(firsts[i]), s2]))
        others = [float(np.exp(lp[distinct.index(firsts[j]), s2])) for j in range(len(toks))
                  if firsts[j] != firsts[i]]
        rows[str(i)] = TaskCollapse(own=own, mix=float(np.exp(lp[m, s2])), mix_uniform=float(np.exp(lp[m + 1, s2])),
                                    other=float(np.mean(others)) if others else None,
                                    first_prob=float(np.exp(st.first[firsts[i]])))
    return PromptCollapse(tasks=rows, mix_weights=tuple((pf / pf.sum()).tolist()), distinct_first_tokens=m)


def study_prompt(model, prompt, max_k: int, max_tokens: int, stop: np.ndarray, *, seed: int = 0,
                 ks: Sequence[int] | None = None) -> StudyRow:
    """Every method at k = 1..max_k on one prompt (the prompt's pass shared; beam and superposed
    only at 1 and ``ks``, default every k), plus collapse."""
    ids = model.tokenizer.encode_prompt(prompt.text)
    t0 = time.perf_counter()
    prefix = model.prefix([ids])
    np.asarray(prefix[0])
    ps = time.perf_counter() - t0
    n = len(ids)
    answers = prompt.answers
    methods: dict[str, list] = {m: [] for m in METHODS}
    kw = dict(max_tokens=max_tokens, prefix=prefix, stop=stop)
    g = decode(model, prompt.text, "greedy", 1, **kw)
    gen = g.forward_tokens - n
    methods["greedy"].append(_entry(answers, g.answers, g.probs, 1, g.forward_tokens, gen, ps + g.seconds,
                                    truncated=g.truncated))
    for m in ("beam", "branch", "superposed"):
        methods[m].append(replace(methods["greedy"][0], same_as="greedy"))
    for m, first_k in (("branch", 2), ("sample", 1)):
        r = decode(model, prompt.text, m, max_k, seed=seed, **kw)
        methods[m].extend(_prefix_entries(answers, r, n, ps, max_k, first_k))
    for m in ("beam", "superposed"):
        for k in (range(2, max_k + 1) if ks is None else [k for k in ks if 1 < k <= max_k]):
            r = decode(model, prompt.text, m, k, **kw)
            methods[m].append(_entry(answers, r.answers, r.probs, k, r.forward_tokens, r.forward_tokens - n,
                                     ps + r.seconds, truncated=r.truncated))
    return StudyRow(query=prompt.query, answers=tuple(answers), prompt_tokens=n, prompt_seconds=ps,
                    methods={m: tuple(es) for m, es in methods.items()},
                    collapse=collapse_row(model, prompt.text, answers, prefix))


def ceiling(model, family: str, prompts: int, *, seed: int, examples_per_task: int, max_tokens: int,
            stop: np.ndarray, progress: Callable[[Iterable], Iterable] | None = None) -> Ceiling:
    """Greedy accuracy on single-task prompts, ``prompts`` per task (generator seeded ``seed + 1``,
    so the queries differ from the study's): per task the share answered exactly."""
    fam = get_family(family)
    rng = np.random.default_rng(seed + 1)
    jobs = [(t, make_prompt(fam, rng, examples_per_task=examples_per_task, tasks=(t,)))
            for t in fam.tasks for _ in range(prompts)]
    hits: dict[str, list[bool]] = {t: [] for t in fam.tasks}
    rows = []
    for t, p in progress(jobs) if progress is not None else jobs:
        r = decode(model, p.text, "greedy", 1, max_tokens=max_tokens, stop=stop)
        want = p.answers[fam.tasks.index(t)]
        ok = bool(r.answers) and r.answers[0].strip() == want.strip()
        hits[t].append(ok)
        rows.append(CeilingRow(task=t, query=p.query, answer=want, output=r.answers[0] if r.answers else None,
                               correct=ok))
    acc = {t: float(np.mean(h)) for t, h in hits.items()}
    return Ceiling(prompts_per_task=prompts, accuracy=acc, mean=float(np.mean(list(acc.values()))), rows=tuple(rows))


def summarize(tasks: Sequence[str], rows: Sequence[StudyRow]) -> StudySummary:
    """Per method and k: means over prompts of recall, all, precision (over prompts with outputs),
    forward / generated tokens and seconds; and the collapse means over (prompt, task) pairs."""
    methods: dict[str, tuple[MethodSummary, ...]] = {}
    for m in METHODS:
        per_k: dict[int, list[Entry]] = {}
        for r in rows:
            for e in r.methods[m]:
                per_k.setdefault(e.k, []).append(e)
        methods[m] = tuple(MethodSummary(
            k=k, prompts=len(es),
            recall=float(np.mean([e.recall for e in es])),
            all=float(np.mean([e.all for e in es])),
            precision=(float(np.mean([e.precision for e in es if e.precision is not None]))
                       if any(e.precision is not None for e in es) else None),
            outputs=float(np.mean([len(e.outputs) for e in es])),
            forward_tokens=float(np.mean([e.forward_tokens for e in es])),
            generated_tokens=float(np.mean([e.generated_tokens for e in es])),
            seconds=float(np.mean([e.seconds for e in es])),
            seconds_median=float(np.median([e.seconds for e in es])),
            seconds_derived=bool(any(e.seconds_derived for e in es)),
            task_recall=tuple(np.mean([e.tasks_recalled for e in es], axis=0).tolist()),
        ) for k, es in sorted(per_k.items()))
    col: dict[str, list] = {"own": [], "mix": [], "mix_uniform": [], "other": []}
    per_task: dict[str, dict[str, list]] = {}
    for r in rows:
        if r.collapse is None:
            continue
        for i, v in r.collapse.tasks.items():
            t = tasks[int(i)]
            for key in col:
                if getattr(v, key) is not None:
                    col[key].append(getattr(v, key))
                    per_task.setdefault(t, {kk: [] for kk in col})[key].append(getattr(v, key))
    several = {key: [] for key in ("own", "mix", "mix_uniform")}
    for r in rows:
        c = r.collapse
        if c is None or len(c.tasks) < 2:
            continue
        for key in several:
            several[key].append(sum(getattr(v, key) >= ALIVE for v in c.tasks.values()) >= 2)

    def mean(v: list) -> float | None:
        return float(np.mean(v)) if v else None

    collapse = CollapseSummary(
        pairs=len(col["own"]),
        prompts=sum(r.collapse is not None for r in rows),
        alive_threshold=ALIVE,
        prompts_two_multi_token_tasks=len(several["mix"]),
        # share of those prompts where >= 2 tasks keep P(2nd token) >= ALIVE: after their own first
        # tokens (separate streams) and after one superposed input
        several_alive=SeveralAlive(**{key: mean(v) for key, v in several.items()}),
        **{key: mean(v) for key, v in col.items()},
        per_task={t: TaskCollapseSummary(**{key: mean(v) for key, v in d.items()}, pairs=len(d["own"]))
                  for t, d in per_task.items()},
    )
    return StudySummary(methods=methods, collapse=collapse)


def _saved_part(path: Path) -> DecodeStudyResult | None:
    """The decoding-study part saved at ``path`` (None when the file holds something else)."""
    import json

    try:
        return DecodeStudyResult.from_json(path)
    except (ResultError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def run_part(model, cfg: DecodeStudyConfig, path: str | Path, *, progress=None, save_every: int = 5,
             report=print) -> DecodeStudyResult:
    """One (model, family) part, written to ``path`` every ``save_every`` prompts and at the end
    (``complete`` says which). A file there with the same config and at most ``cfg.prompts``
    prompts is resumed (or extended: a seed's first n prompts never change)."""
    import json

    from empirical.results import provenance

    fam = get_family(cfg.family)
    max_k = cfg.max_k or len(fam.tasks)
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k}")
    path = Path(path)
    prompts = make_prompts(fam, cfg.prompts, seed=cfg.seed, examples_per_task=cfg.examples_per_task)
    stop = stop_mask(model)
    rows: list[StudyRow] = []
    ceil = None
    seconds = 0.0
    old = _saved_part(path) if path.is_file() else None
    if old is not None:
        now = json.loads(json.dumps(asdict(cfg)))
        same = {k: v for k, v in old.config.items() if k != "prompts"} == \
            {k: v for k, v in now.items() if k != "prompts"}
        if same and len(old.per_prompt) <= cfg.prompts:  # the first n prompts of a seed are fixed
            rows, ceil, seconds = list(old.per_prompt), old.ceiling, old.seconds
            if len(rows) < cfg.prompts or ceil is None:
                report(f"resuming {path}: {len(rows)} of {cfg.prompts} prompts done")
            else:  # complete: its summary recomputed from the rows, nothing rerun
                old = replace(old, summary=summarize(fam.tasks, rows))
                old.write(path, indent=None)
                return old

    def save(complete: bool) -> DecodeStudyResult:
        doc = DecodeStudyResult(
            command="decode --study", **provenance(asdict(cfg)), model=model_name(cfg.model),
            model_config=model.config.to_json(), family=fam.name, tasks=tuple(fam.tasks), max_k=max_k,
            methods=tuple(METHODS), prompts_done=len(rows), complete=complete,
            seconds=seconds + time.perf_counter() - t0, summary=summarize(fam.tasks, rows), ceiling=ceil,
            per_prompt=tuple(rows))
        doc.write(path, indent=None)
        return doc

    todo = prompts[len(rows):]
    t0 = time.perf_counter()
    for i, p in enumerate(progress(todo) if progress is not None else todo):
        rows.append(study_prompt(model, p, max_k, cfg.max_tokens, stop, seed=cfg.seed + len(rows),
                                 ks=None if cfg.ks is None else list(cfg.ks)))
        if (i + 1) % save_every == 0:
            save(False)
    if ceil is None:
        ceil = ceiling(model, fam.name, cfg.ceiling_prompts, seed=cfg.seed, examples_per_task=cfg.examples_per_task,
                       max_tokens=cfg.max_tokens, stop=stop)
    return save(True)


def format_summary(doc: DecodeStudyResult) -> str:
    """A few lines per part: recall / all / precision / cost per method and k, ceiling, collapse."""
    s = doc.summary
    lines = [f"{doc.model} {doc.family}: {doc.prompts_done} prompts, single-task ceiling "
             f"{doc.ceiling.mean:.2f}" if doc.ceiling else f"{doc.model} {doc.family}"]
    for m, es in s.methods.items():
        lines.append(f"  {m:10s} " + "  ".join(
            f"k={e.k}: recall {e.recall:.2f} all {e.all:.2f} prec "
            f"{e.precision if e.precision is None else round(e.precision, 2)} "
            f"gen {e.generated_tokens:.1f} {e.seconds_median:.1f}s" for e in es))
    c = s.collapse
    if c.pairs:
        lines.append(f"  prompts with >= 2 tasks at P(2nd) >= {c.alive_threshold}: superposed input "
                     f"{c.several_alive.mix}, equal weights {c.several_alive.mix_uniform} "
                     f"(of {c.prompts_two_multi_token_tasks})")
        lines.append(f"  collapse ({c.pairs} task answers): P(2nd | own 1st) {c.own:.3f}, "
                     f"P(2nd | superposed 1sts) {c.mix:.3f} (uniform {c.mix_uniform:.3f}), "
                     f"P(2nd | other task's 1st) {c.other if c.other is None else round(c.other, 3)}")
    return "\n".join(lines)


_COLORS = {"greedy": "black", "sample": "tab:gray", "beam": "tab:blue", "branch": "tab:green",
           "superposed": "tab:red"}


def plot_recall_cost(docs: Sequence[DecodeStudyResult], path: str | Path) -> Path:
    """One column per family: recall at k against cost (top: median seconds per prompt, the prompt's
    pass included; bottom: generated-token evaluations beyond the prompt), a line per method through
    k = 1..K, the single-task ceiling dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from empirical.results import save_figure

    fig, axes = plt.subplots(2, len(docs), figsize=(3.6 * len(docs) + 0.8, 6.6), squeeze=False)
    for col, doc in enumerate(docs):
        s = doc.summary.methods
        for row, key, label in ((0, "seconds_median", "median seconds per prompt"),
                                (1, "generated_tokens", "generated-token evaluations per prompt")):
            ax = axes[row][col]
            for m in METHODS:
                es = s[m]
                if not es:
                    continue
                xs = [getattr(e, key) for e in es]
                ys = [e.recall for e in es]
                ax.plot(xs, ys, "o-" if m != "greedy" else "s", color=_COLORS[m], label=m, ms=4, lw=1.2)
                for e, x, y in zip(es, xs, ys):
                    if m != "greedy":
                        ax.annotate(str(e.k), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points",
                                    color=_COLORS[m])
            if doc.ceiling:
                ax.axhline(doc.ceiling.mean, color="purple", ls="--", lw=1, label="single-task ceiling")
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            if col == 0:
                ax.set_ylabel("task recall at k")
            if row == 0:
                ax.set_title(f"{doc.family} ({doc.prompts_done} prompts)", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{docs[0].model.split('/')[-1]}: recall of the prompt's tasks against cost", fontsize=10)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def plot_collapse(docs_by_model: dict[str, Sequence[DecodeStudyResult]], path: str | Path) -> Path:
    """Per model and family, the mean probability of a task's second answer token after its own
    first token, after the superposed first tokens (probability-weighted and uniform), and after
    another task's first token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from empirical.results import save_figure

    models = list(docs_by_model)
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False)
    keys = (("own", "own 1st token", "tab:blue"), ("mix", "superposed 1st tokens (prob.-weighted)", "tab:red"),
            ("mix_uniform", "superposed 1st tokens (equal weights)", "salmon"),
            ("other", "another task's 1st token", "tab:gray"))
    for ax, m in zip(axes[0], models):
        docs = docs_by_model[m]
        x = np.arange(len(docs))
        w = 0.8 / len(keys)
        for j, (key, label, color) in enumerate(keys):
            vals = [getattr(d.summary.collapse, key) or 0.0 for d in docs]
            ax.bar(x - 0.4 + w * (j + 0.5), vals, w, color=color, label=label)
        ax.set_xticks(x, [f"{d.family}\n({d.summary.collapse.pairs} answers)" for d in docs], fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_title(m.split("/")[-1], fontsize=9)
        ax.set_ylabel("mean P(task's 2nd answer token)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("does a superposed input keep several tasks alive past the first token?", fontsize=10)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown_tables(docs: Sequence[DecodeStudyResult]) -> str:
    """Markdown tables (docs/real_llms.md) from saved parts: per model and family, each method's recall / all
    tasks / precision and cost at every k measured, and the collapse measures."""
    lines = ["| model | family | prompts | single-task ceiling | method | k | recall | all tasks | precision | "
             "generated tokens | median s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in docs:
        name = _label(d)
        ceil = d.ceiling.mean if d.ceiling else None
        for m, es in d.summary.methods.items():
            for e in es:
                if m != "greedy" and e.k == 1:
                    continue  # k = 1 is greedy for every method
                lines.append(f"| {name} | {d.family} | {d.prompts_done} | {_fmt(ceil)} | {m} | {e.k} | "
                             f"{_fmt(e.recall)} | {_fmt(e.all)} | {_fmt(e.precision)} | "
                             f"{e.generated_tokens:.1f} | {e.seconds_median:.1f}"
                             + ("*" if e.seconds_derived else "") + " |")
    lines += ["", "| model | family | answers (prompts) | P(2nd \\| own 1st) | P(2nd \\| superposed 1sts) | "
              "P(2nd \\| equal-weight 1sts) | P(2nd \\| another task's 1st) | >= 2 tasks alive: own / superposed / "
              "equal (of prompts) |", "|---|---|---|---|---|---|---|---|"]
    for d in docs:
        c = d.summary.collapse
        sa = c.several_alive
        lines.append(f"| {_label(d)} | {d.family} | {c.pairs} ({c.prompts}) | {_fmt(c.own, 3)} | "
                     f"{_fmt(c.mix, 3)} | {_fmt(c.mix_uniform, 3)} | {_fmt(c.other, 3)} | "
                     f"{_fmt(sa.own)} / {_fmt(sa.mix)} / {_fmt(sa.mix_uniform)} "
                     f"({c.prompts_two_multi_token_tasks}) |")
    return "\n".join(lines)


def _label(doc: DecodeStudyResult) -> str:
    return Path(str(doc.config["model"])).stem or str(doc.config["model"])


def compact_table(docs: Sequence[DecodeStudyResult]) -> str:
    """One row per model and family: the single-task ceiling, greedy's recall, and per method the
    recall at k = 2 and at K with the generated-token evaluations and median seconds at K."""
    head = ("| model | family | prompts | K | single-task ceiling | greedy | sample | beam | branch | superposed |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for d in docs:
        s = d.summary.methods
        g = s["greedy"][0]
        cells = []
        for m in ("sample", "beam", "branch", "superposed"):
            by_k = {e.k: e for e in s[m]}
            top = by_k[max(by_k)]
            two = by_k.get(2)
            cells.append((f"{_fmt(two.recall)} / " if two is not None and max(by_k) > 2 else "")
                         + f"**{_fmt(top.recall)}** ({top.generated_tokens:.1f} tok, {top.seconds_median:.1f} s)")
        ceil = d.ceiling.mean if d.ceiling else None
        lines.append(f"| {_label(d)} | {d.family} | {d.prompts_done} | {d.max_k} | {_fmt(ceil)} | "
                     f"{_fmt(g.recall)} ({g.generated_tokens:.1f} tok, {g.seconds_median:.1f} s) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the commands


def decode_command(model: str = "gemma3", *, method: str = "branch", k: int = 3, prompt: str | None = None,
                   prompt_file: str | None = None, family: str | None = None, prompts: int = 3,
                   examples_per_task: int = 20, max_tokens: int = 12, seed: int = 0, json_path: str | None = None,
                   quiet: bool = False, echo=print) -> list[dict]:
    """``superpose decode``: ``k`` answers of one prompt (``prompt``, the text of ``prompt_file``,
    or a family's ``prompts`` prompts, scored against their tasks' answers) by ``method``, one
    line per prompt; the rows (written to ``json_path`` with their config)."""
    from empirical.llm.probe import FAMILY_CHOICES

    if method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    for flag, value in (("--k", k), ("--prompts", prompts), ("--max-tokens", max_tokens),
                        ("--examples-per-task", examples_per_task)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if method == "greedy" and k != 1:
        raise ValueError(f"--method greedy returns one answer: --k must be 1, got {k}")
    if prompt is not None and prompt_file is not None:
        raise ValueError("give --prompt or --prompt-file, not both")
    text = prompt if prompt_file is None else Path(prompt_file).read_text(encoding="utf-8")
    if text is not None and not text:
        raise ValueError("the prompt is empty")
    family = family or "country"
    if text is None and family not in FAMILY_CHOICES:
        raise ValueError(f"--family must be one of {', '.join(FAMILY_CHOICES)}, got {family!r}")
    from tqdm import tqdm

    from empirical.llm.probe import load_with_tokenizer
    from empirical.results import provenance, write_json

    loaded = load_with_tokenizer(model)
    if text is not None:
        jobs = [(text, None, None)]
    else:
        jobs = [(p.text, p.query, p.answers)
                for p in make_prompts(family, prompts, seed=seed, examples_per_task=examples_per_task)]
    longest = max(len(loaded.tokenizer.encode_prompt(t)) for t, _, _ in jobs)
    if longest + max_tokens > loaded.config.max_len:
        raise ValueError(f"the prompt ({longest} tokens) plus --max-tokens ({max_tokens}) exceeds the "
                         f"model's context of {loaded.config.max_len} tokens")
    stop = stop_mask(loaded)
    rows = []
    for t, query, answers in tqdm(jobs, desc=f"decode {method}", disable=quiet or len(jobs) < 2, unit="prompt"):
        r = decode(loaded, t, method, k, max_tokens=max_tokens, seed=seed, stop=stop)
        row = {"answers": list(r.answers), "probs": r.probs.tolist(), "forward_tokens": r.forward_tokens,
               "prompt_tokens": r.prompt_tokens, "seconds": r.seconds, "truncated": r.truncated,
               "unfinished": [o.text for o in r.outputs if not o.complete]}
        head = f"{query}: " if query is not None else ""
        if answers is not None:
            row.update(query=query, tasks_answers=list(answers), **score_outputs(answers, r.answers))
        echo(head + ", ".join(f"{a!r} {p:.3f}" for a, p in zip(r.answers, r.probs))
             + (" (no complete answer)" if not r.answers else "")
             + f"  [{r.forward_tokens} forward tokens, {r.seconds:.2f} s"
             + (", stopped at --max-tokens" if r.truncated else "") + "]")
        rows.append(row)
    if text is None and rows:
        echo(f"recall {np.mean([r['recall'] for r in rows]):.2f}, all tasks {np.mean([r['all'] for r in rows]):.2f} "
             f"over {len(rows)} prompts")
    if json_path:
        cfg = {"model": model_name(model), "method": method, "k": k, "max_tokens": max_tokens, "seed": seed,
               "family": None if text is not None else family, "prompts": len(rows), "prompt": text}
        write_json(json_path, {"command": "decode", **provenance(cfg), "model": model_name(model), "rows": rows})
        echo(f"json: {json_path}")
    return rows


def study_command(model: str = "gemma3", family: str = "all", *, prompts: int = 3, seed: int = 0,
                  max_k: int | None = None, ks: Sequence[int] | None = None, max_tokens: int = 12,
                  examples_per_task: int = 20, ceiling_prompts: int = 10, out: str | Path = DEFAULT_OUT,
                  quiet: bool = False, echo=print) -> dict[str, list[DecodeStudyResult]]:
    """``superpose decode --study``: every method at k = 1..K on ``family``'s prompts (or every
    family's), one JSON per model and family in ``out`` (resumed if incomplete, reused if
    complete), then the plots of every part there; the parts by model."""
    from tqdm import tqdm

    from empirical.llm.probe import FAMILY_CHOICES, load_with_tokenizer, model_label

    if family != "all" and family not in FAMILY_CHOICES:
        raise ValueError(f"--family must be one of {', '.join(FAMILY_CHOICES)} or all, got {family!r}")
    for flag, value in (("--prompts", prompts), ("--max-tokens", max_tokens), ("--ceiling-prompts", ceiling_prompts),
                        ("--max-k", max_k or 1), ("--examples-per-task", examples_per_task)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    loaded = load_with_tokenizer(model)
    label = model_label(model)
    out = Path(out)
    for fam in FAMILY_CHOICES if family == "all" else (family,):
        cfg = DecodeStudyConfig(model=str(model), family=fam, prompts=prompts, seed=seed, max_k=max_k,
                                max_tokens=max_tokens, examples_per_task=examples_per_task,
                                ks=None if ks is None else tuple(ks), ceiling_prompts=ceiling_prompts)
        bar = lambda xs, fam=fam: tqdm(xs, desc=f"decode study {fam}", disable=quiet, unit="prompt")  # noqa: E731
        doc = run_part(loaded, cfg, out / f"{label}_{fam}.json", progress=bar)
        echo(format_summary(doc))
    by_model: dict[str, list[DecodeStudyResult]] = {}
    for path in sorted(out.glob("*.json")):
        doc = _saved_part(path)
        if doc is not None:
            doc = replace(doc, summary=summarize(doc.tasks, doc.per_prompt))  # from the rows, current code
            by_model.setdefault(doc.model, []).append(doc)
    order = {f: i for i, f in enumerate(FAMILY_CHOICES)}
    for docs in by_model.values():
        docs.sort(key=lambda d: order.get(d.family, 99))
        stem = model_label(docs[0].config["model"])
        echo(f"plot: {plot_recall_cost(docs, out / f'recall_cost_{stem}.png')}")
    if by_model:
        echo(f"plot: {plot_collapse(by_model, out / 'collapse_superposed.png')}")
    return by_model
