"""Task vectors: extraction, patching, convex combinations and geometry (the paper's Figures 4, 5).

One analysis for every :class:`empirical.models.Model` (constructed, trained, real LLMs): it
asks the model only for ``last_residuals``, ``last_probs`` and ``patch_probs`` at each
prompt's last token, where the prediction, and the task vector, sit. What differs between
models is where prompts and answers come from, a *prompt source*:

* :class:`LayoutPrompts`: the construction's token layout (the ``lookup`` family) of a
  :class:`construction.tasks.TaskSet`; the query is the last example's n-1 input tokens and
  every task's answer one token;
* :class:`FamilyPrompts`: text prompts of a real LLM's probe family
  (:mod:`empirical.llm.families`), scored at the answer's first token after the separator.

The pieces:

* :func:`extract`: the residual stream after the embedding and after every layer at the last
  position, averaged over single-task prompts: one vector per layer.
* :func:`patch`: replace the last position's residual after layer ``l`` by a vector in a batch
  of queries, returning the clean and the patched next-token distributions.
* :func:`choose_layer`: the layer whose patch gives the task's answer the highest mean
  probability on held-out queries.
* :func:`convex`: patch (1 - lambda) v_A + lambda v_B (or a point of the simplex for three
  tasks) and read every task's answer probability; :func:`report` gives the same numbers from
  real mixed prompts, for the side-by-side of Figure 5.
* :func:`lda` and :func:`mixture_fit`: the geometry (Figure 4) and the least-squares fit of a
  mixed prompt's vector onto the single-task vectors, with its residual per layer.

In the constructed model the task identity lives in known blocks: after layer 4 (averaging)
the last position holds S_k = alpha_k, and layers 5-7 turn any S into sum_k S_k g_k(x_q).
Patching there gives exactly the mixture the theory predicts (:func:`predicted_mixture`).

The result is a :class:`TaskVectorsResult` (a typed record; ``to_json`` / ``from_json``), what
``superpose task-vectors`` writes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jax.numpy as jnp
import numpy as np

from construction import sample_prompts
from construction.reference import task_outputs
from construction.tasks import TaskSet
from construction.transformer import run
from empirical.analysis.grid import LAMBDAS  # the two-task interpolation's grid; real prompts use REAL_LAMBDAS
from empirical.models import layer_name
from empirical.results import Record, Stampable, key, optional, record, result_type

REAL_LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


# --------------------------------------------------------------------------- the result, typed


@record
class LayerChoice(Record):
    """Per patched layer (``layers``), every task's mean answer probability with its own vector
    patched in (``per_layer``) and their mean over tasks (``mean``); ``layer``: the best one."""

    layers: tuple[int, ...]
    per_layer: tuple[dict[str, float], ...]
    mean: tuple[float, ...]
    layer: int


@record
class ConvexPoint(Record):
    """One patched combination: its weights over the combined tasks and every task's mean
    answer probability."""

    weights: tuple[float, ...]
    p: dict[str, float]


@record
class Convex(Record):
    """Convex combinations of the ``tasks``' vectors patched at ``layer`` (:func:`convex`)."""

    tasks: tuple[str, ...]
    layer: int
    points: tuple[ConvexPoint, ...]


@record
class Context(Record):
    """One query context: the layer choice (on one query set), the held-out patched and the
    clean answer probabilities per task (on another), the two-task line and the three-task
    simplex (None with fewer than three tasks)."""

    choice: LayerChoice
    layer: int
    held_out: dict[str, float]
    clean: dict[str, float]
    convex_two: Convex
    convex_three: Convex | None


@record
class RealMixed(Record):
    """Real prompts with a share ``lam`` of the pair's second task: every task's mean answer
    probability."""

    lam: float = key("lambda")
    p: dict[str, float]


@record
class MixtureFit(Record):
    """A vector fitted on the affine hull of the single-task vectors (:func:`mixture_fit`)."""

    coefficients: tuple[float, ...]
    relative_residual: float


#: Points of an LDA projection: [N, components].
Points = tuple[tuple[float, ...], ...]


@record
class Geometry(Record):
    """Figure 4 at ``layer`` and the per-layer mixture fits (:func:`geometry`). ``lda`` maps
    ``"singles"`` to each task's held-out projections and every mixture's name to its own
    (read them as :attr:`singles` and :attr:`mixtures`)."""

    layer: int
    lda: dict[str, Points | dict[str, Points]]
    mixture_fit: dict[str, tuple[MixtureFit, ...]]

    @property
    def singles(self) -> dict[str, Points]:
        """Each task's held-out single-task prompts, projected."""
        return self.lda["singles"]

    @property
    def mixtures(self) -> dict[str, Points]:
        """Each mixture's prompts, projected."""
        return {name: pts for name, pts in self.lda.items() if name != "singles"}


@result_type("task-vectors")
@record
class TaskVectorsResult(Stampable):
    """Figures 4 and 5 for one model (:func:`report`). The provenance fields (``config`` ...
    ``run``) and ``plot`` are set by the command line (None and left out of the JSON otherwise);
    ``run``, ``n_examples`` are a layout model's, ``family`` ... ``merged_answers`` a real LLM's;
    ``masked`` (the patches restricted to a subspace) is always there for a layout model and
    only when set for a real LLM; ``full_vector_choice`` is the constructed model's."""

    run: str | None = optional()
    model: str
    family: str | None = optional()
    tasks: tuple[str, ...]
    n_examples: int | None = optional()
    n_prompts: int
    examples_per_task: int | None = optional()
    n_queries: int
    seed: int
    first_token: bool | None = optional()
    merged_answers: int | None = optional()
    masked: bool | None = optional()
    contexts: dict[str, Context]
    real_mixed: tuple[RealMixed, ...]
    geometry: Geometry
    full_vector_choice: LayerChoice | None = optional()
    plot: str | None = optional()


def single_task_prompts(task_set: TaskSet, task: int, rng: np.random.Generator, n_prompts: int,
                        n_examples: int) -> np.ndarray:
    """Prompts whose every example is of task ``task``: tokens [P, L]."""
    return sample_prompts(rng, [task_set.tasks[task]], [1.0], n_examples=n_examples, batch=n_prompts,
                          vocab_size=task_set.vocab_size, example_len=task_set.example_len).tokens


def zero_shot_queries(task_set: TaskSet, rng: np.random.Generator, n_queries: int) -> np.ndarray:
    """Queries without examples (their n-1 input symbols only): tokens [P, n-1]."""
    return rng.integers(0, task_set.vocab_size, size=(n_queries, task_set.example_len - 1)).astype(np.int32)


def extract(model, tokens) -> np.ndarray:
    """The task vector of every layer: [layers + 1, D], the mean over the prompts ``tokens``."""
    return model.last_residuals(tokens).mean(axis=1)


def patch(model, tokens, layer: int, vectors: np.ndarray,
          mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(clean, patched) next-token distributions [P, V] of the prompts ``tokens``, the patched
    run with the residual after ``layer`` at the last position replaced by ``vectors`` ([D] for
    every prompt, or [P, D] one per prompt) -- only in the coordinates where ``mask`` [D] is
    set, if given (a subspace patch, e.g. the constructed model's S block):
    ``model.patch_probs``."""
    return model.patch_probs(tokens, layer, vectors, mask)


def answer_probability(probs: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """[P] probability of each prompt's answer."""
    return probs[np.arange(len(probs)), answers]


def mean_answers(probs: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """[K] mean over prompts of the probability of every task's answer (``answers`` [P, K])."""
    return probs[np.arange(len(probs))[:, None], answers].mean(0)


def choose_layer(model, vectors: dict[int, np.ndarray], queries, answers: np.ndarray, names, mask=None,
                 layers=None) -> LayerChoice:
    """Per layer, the mean probability of each task's answer (``answers`` [P, K], task ``k``
    named ``names[k]``) when its vector is patched into the held-out ``queries``; the chosen
    layer maximises the mean over tasks."""
    layers = list(range(model.num_layers + 1)) if layers is None else list(layers)
    per_layer = []
    for l in layers:
        per_layer.append({names[k]: float(mean_answers(patch(model, queries, l, vec[l], mask)[1], answers)[k])
                          for k, vec in vectors.items()})
    means = [float(np.mean(list(s.values()))) for s in per_layer]
    return LayerChoice(layers=tuple(layers), per_layer=tuple(per_layer), mean=tuple(means),
                       layer=layers[int(np.argmax(means))])


def convex(model, vectors: dict[int, np.ndarray], layer: int, queries, answers: np.ndarray, names, weights,
           mask=None) -> Convex:
    """Patch sum_j weights[j] v_{task j} (weights [W, J] over the tasks of ``vectors``, in
    their order) at ``layer`` into ``queries``; every task's mean answer probability per row."""
    tasks = list(vectors)
    rows = []
    for w in np.asarray(weights, np.float64):
        vec = sum(wj * vectors[k][layer] for wj, k in zip(w, tasks))
        p = mean_answers(patch(model, queries, layer, vec, mask)[1], answers)
        rows.append(ConvexPoint(weights=tuple(w.tolist()), p={names[j]: float(p[j]) for j in range(len(names))}))
    return Convex(tasks=tuple(names[k] for k in tasks), layer=layer, points=tuple(rows))


def simplex_grid(step: float = 0.25) -> np.ndarray:
    """Points of the 2-simplex (three weights summing to 1) on a grid of ``step``."""
    n = int(round(1 / step))
    return np.array([(i / n, j / n, (n - i - j) / n) for i in range(n + 1) for j in range(n + 1 - i)])


# --------------------------------------------------------------------------- geometry


def lda(x: np.ndarray, labels: np.ndarray, components: int = 2, shrink: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Fisher's linear discriminants of ``x`` [N, D] with class ``labels``: (directions
    [D, components], the mean it centres by). The within-class scatter is shrunk towards its
    mean eigenvalue by ``shrink`` so that a D larger than the classes' span stays solvable."""
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    classes = np.unique(labels)
    sw = np.zeros((x.shape[1], x.shape[1]))
    sb = np.zeros_like(sw)
    for c in classes:
        xc = x[labels == c]
        mc = xc.mean(0)
        sw += (xc - mc).T @ (xc - mc)
        sb += len(xc) * np.outer(mc - mean, mc - mean)
    sw = (1 - shrink) * sw + shrink * np.trace(sw) / len(sw) * np.eye(len(sw))
    evals, evecs = np.linalg.eig(np.linalg.solve(sw, sb))
    order = np.argsort(-evals.real)[:components]
    return evecs[:, order].real, mean


def mixture_fit(mixed: np.ndarray, singles: np.ndarray) -> MixtureFit:
    """Least squares of a mixed vector [D] on the affine hull of single-task vectors [K, D]:
    coefficients c (summing to 1) minimising |mixed - sum_k c_k v_k|, and the relative
    residual |mixed - fit| / mean_k |v_k - mean_j v_j| (the residual in units of the single-task
    vectors' spread around their centre: 0 when the mixed vector is a combination of them)."""
    mixed, singles = np.asarray(mixed, np.float64), np.asarray(singles, np.float64)
    ref = singles[-1]
    a = (singles[:-1] - ref).T  # [D, K-1]
    c, *_ = np.linalg.lstsq(a, mixed - ref, rcond=None)
    coef = np.append(c, 1.0 - c.sum())
    resid = mixed - coef @ singles
    scale = np.linalg.norm(singles - singles.mean(0), axis=1).mean()
    return MixtureFit(coefficients=tuple(coef.tolist()),
                      relative_residual=float(np.linalg.norm(resid) / max(scale, 1e-12)))


def random_answer_prompts(tokens: np.ndarray, task_set: TaskSet, rng: np.random.Generator) -> np.ndarray:
    """The same prompts with every example's label replaced by a uniform random symbol (the
    control of :func:`mixture_fit`: no task fits them beyond chance)."""
    out = np.array(tokens, copy=True)
    n = task_set.example_len
    m = (out.shape[1] - (n - 1)) // n
    labels = np.arange(m) * n + n - 1
    out[:, labels] = rng.integers(0, task_set.vocab_size, size=(len(out), m))
    return out


def geometry(singles: dict, vectors: dict, mixed: dict, names: dict, layer: int, half: int) -> Geometry:
    """Figure 4 and the mixture fit from per-prompt residuals [layers + 1, P, D]: ``singles``
    (per task, the prompts after ``half`` held out), ``vectors`` (per task, [layers + 1, D],
    from the first ``half``), ``mixed`` (per mixture); ``names`` names each task key. Every
    mixture's mean, and each task's held-out mean (the noise floor), is fitted at every layer;
    the LDA on the held-out single-task residuals at ``layer`` projects them and the mixtures."""
    keys = list(singles)
    everything = {**mixed, **{f"held-out {names[k]}": singles[k][:, half:] for k in keys}}
    n_layers = vectors[keys[0]].shape[0]
    fits = {name: tuple(mixture_fit(r[l].mean(0), np.stack([vectors[k][l] for k in keys])) for l in range(n_layers))
            for name, r in everything.items()}
    held_x = np.concatenate([singles[k][layer, half:] for k in keys])
    held_y = np.concatenate([np.full(singles[k].shape[1] - half, i) for i, k in enumerate(keys)])
    directions, centre = lda(held_x, held_y, components=min(2, len(keys) - 1))

    def project(x) -> Points:
        return tuple(map(tuple, ((x - centre) @ directions).tolist()))

    return Geometry(layer=layer,
                    lda={"singles": {names[k]: project(singles[k][layer, half:]) for k in keys},
                         **{name: project(r[layer]) for name, r in mixed.items()}},
                    mixture_fit=fits)


# --------------------------------------------------------------------------- the constructed model


def predicted_mixture(model, queries: np.ndarray, s_weights: np.ndarray) -> np.ndarray:
    """The constructed model's OUT block that the theory predicts when the S block at the last
    position holds ``s_weights`` [K]: sum_k S_k onehot(g_k(x_q)), [P, V]."""
    spec = model.spec
    outs = np.stack([t.apply(np.asarray(queries)[:, -(spec.example_len - 1):]) for t in spec.tasks], axis=1)
    return np.einsum("k,pkv->pv", np.asarray(s_weights, np.float64), np.eye(spec.vocab_size)[outs])


def out_block(model, tokens: np.ndarray, layer: int | None = None, vector: np.ndarray | None = None,
              mask: np.ndarray | None = None) -> np.ndarray:
    """The constructed model's OUT block at the last position after its last layer [P, V],
    with the residual after ``layer`` at the last position replaced by ``vector`` (where
    ``mask`` is set, if given)."""
    block = model.spec.residual["OUT"]
    edits = None
    if vector is not None:
        v = jnp.asarray(np.broadcast_to(vector, (len(tokens), model.config.d_model)), jnp.float32)
        keep = jnp.asarray(np.ones(model.config.d_model) if mask is None else mask, jnp.float32)
        edits = {layer_name(layer): lambda x: x.at[:, -1].set(jnp.where(keep > 0, v.astype(x.dtype), x[:, -1]))}
    _, cache = run(model.config, model.params, jnp.asarray(tokens), capture=("final",), edits=edits)
    return np.asarray(cache["final"][:, -1, block], np.float64)


def s_block_mask(model) -> np.ndarray:
    """[D] 1 on the constructed model's S_k blocks (where its task identity lives after layer 4)."""
    mask = np.zeros(model.config.d_model)
    for k in range(model.spec.num_tasks):
        mask[model.spec.residual[f"S_{k}"]] = 1.0
    return mask


def plot(result: TaskVectorsResult, out, stem: str):
    """Figure 5 (convex patches beside real mixed prompts), Figure 4 (LDA) and the per-layer
    mixture-fit residuals, as one PNG with four panels."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    fig = Figure(figsize=(18, 4), dpi=150)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3, ax4 = (fig.add_subplot(1, 4, i) for i in range(1, 5))
    names = result.tasks
    colours = dict(zip(names, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    for (kind, context), style in zip(result.contexts.items(), ("-", "--")):
        two = context.convex_two
        lams = [p.weights[1] for p in two.points]
        for name in names:
            ax1.plot(lams, [p.p[name] for p in two.points], style, color=colours[name], marker="o", markersize=2,
                     label=f"{name} ({kind}, layer {context.layer})")
    ax1.set_xlabel(f"lambda: (1 - lambda) v[{two.tasks[0]}] + lambda v[{two.tasks[1]}]")
    ax1.set_ylabel("mean answer probability (patched)")
    ax1.set_ylim(0, 1.02)
    ax1.legend(fontsize=5)
    for name in names:
        ax2.plot([p.lam for p in result.real_mixed], [p.p[name] for p in result.real_mixed], "o-",
                 color=colours[name], markersize=3, label=name)
    ax2.set_xlabel(f"lambda (share of {two.tasks[1]} in real prompts)")
    ax2.set_ylabel("mean answer probability" + (" (first token)" if result.first_token else ""))
    ax2.set_ylim(0, 1.02)
    ax2.legend(fontsize=6)
    geo = result.geometry
    for name, pts in geo.singles.items():
        pts = np.asarray(pts)
        ax3.scatter(pts[:, 0], pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts)), s=4, color=colours[name],
                    label=name, alpha=0.6)
    for name, marker in (("50/50", "x"), ("thirds", "+"), ("50/50, random answers", "1")):
        pts = np.asarray(geo.mixtures[name])
        ax3.scatter(pts[:, 0], pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts)), s=10, marker=marker,
                    color="black" if "random" not in name else "gray", label=name, alpha=0.5)
    ax3.set_title(f"LDA of the task vectors (layer {geo.layer})", fontsize=8)
    ax3.legend(fontsize=5)
    for name, fits in geo.mixture_fit.items():
        held = name.startswith("held-out")
        ax4.plot([f.relative_residual for f in fits], ":" if held else "-", marker="o", markersize=2 if held else 3,
                 color="gray" if held else None, label=name if not held or name.endswith(names[0]) else None)
    ax4.set_xlabel("layer (0 = embedding)")
    ax4.set_ylabel("residual of the fit / spread of the task vectors")
    ax4.set_title("dotted: held-out single-task vectors (the noise floor)", fontsize=7)
    ax4.legend(fontsize=6)
    fig.suptitle(f"task vectors: {result.model}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(out) / f"{stem}.png")


# --------------------------------------------------------------------------- real LLMs


def _llm_prompt(family, rng: np.random.Generator, counts: dict[str, int], *, random_answers: bool = False):
    """A prompt of ``counts[task]`` examples per task (distinct inputs, shuffled) and a query:
    (text, answers of every task to the query). ``random_answers``: every example's answer is
    another input's answer for a random task (the mixture fit's control)."""
    pool = family.inputs()
    n = sum(counts.values())
    picked = [pool[i] for i in rng.choice(len(pool), size=n + 1, replace=False)]
    query, examples = picked[-1], picked[:-1]
    labels = [t for t, c in counts.items() for _ in range(c)]
    lines = []
    for x, i in zip(examples, rng.permutation(n)):
        if random_answers:
            other = pool[int(rng.integers(len(pool)))]
            answer = family.answer(family.tasks[int(rng.integers(len(family.tasks)))], other)
        else:
            answer = family.answer(labels[i], x)
        lines.append(f"{family.render(x)}{family.sep}{answer}")
    head = "\n".join(lines) + "\n" if lines else ""
    return head + family.render(query) + family.sep, [family.answer(t, query) for t in family.tasks]


def _first_tokens(tokenizer, texts, answers) -> tuple[list[list[int]], np.ndarray, int]:
    """Token lists of the prompts, the first token of every task's answer [P, K] (scored at the
    prompt's last token), and how many answers merge with the prompt's last characters."""
    from empirical.llm.scoring import split_candidates

    tokens, first, merged = [], [], 0
    for text, ans in zip(texts, answers):
        p, splits = split_candidates(tokenizer, text, ans)
        tokens.append(p)
        first.append([sp.ids[sp.start] for sp in splits])
        merged += sum(sp.merged for sp in splits)
    return tokens, np.array(first), merged


# --------------------------------------------------------------------------- prompt sources


class LayoutPrompts:
    """Prompts on the construction's token layout for ``task_set`` (constructed and trained
    ``lookup``-family models), of ``n_examples`` examples. Two query contexts: zero-shot (the
    query's inputs alone) and the same queries after ``n_examples`` examples with random
    labels (positions then match the extraction prompts)."""

    seed_tag = 40
    contexts = ("zero-shot", "random-label context")

    def __init__(self, task_set: TaskSet, n_examples: int):
        self.task_set, self.n_examples = task_set, n_examples
        self.tasks = list(task_set.names)

    def answers(self, tokens: np.ndarray) -> np.ndarray:
        """[P, K]: every task's answer to each prompt's query (its last n-1 tokens)."""
        ts = self.task_set
        inputs = np.asarray(tokens)[:, -(ts.example_len - 1):]
        return np.stack([t.apply(inputs) for t in ts.tasks], axis=1)

    def single(self, task: int, rng: np.random.Generator, n: int) -> np.ndarray:
        return single_task_prompts(self.task_set, task, rng, n, self.n_examples)

    def queries(self, kind: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        from empirical.analysis.prompts import dirichlet_prompts

        ts = self.task_set
        if kind == "zero-shot":
            tokens = zero_shot_queries(ts, rng, n)
        else:
            tokens = random_answer_prompts(dirichlet_prompts(ts, rng, n, self.n_examples), ts, rng)
        return tokens, self.answers(tokens)

    def real_mixed(self, pair, lam: float, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Prompts whose examples are of task ``pair[1]`` with probability ``lam``, else ``pair[0]``."""
        ts = self.task_set
        tokens = sample_prompts(rng, [ts.tasks[pair[0]], ts.tasks[pair[1]]], [1 - lam, lam],
                                n_examples=self.n_examples, batch=n, vocab_size=ts.vocab_size,
                                example_len=ts.example_len, interleave="iid").tokens
        return tokens, task_outputs(tokens, ts.tasks, ts.example_len)

    def mixtures(self, pair, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """50/50 mixtures of ``pair``, the same prompts with random answers, and one-third
        mixtures of the first three tasks."""
        ts, K = self.task_set, len(self.task_set.tasks)
        halves, thirds = [0.0] * K, [0.0] * K
        halves[pair[0]] = halves[pair[1]] = 0.5
        for k in range(min(K, 3)):
            thirds[k] = 1.0 / min(K, 3)

        def draw(props):
            return sample_prompts(rng, ts.tasks, props, n_examples=self.n_examples, batch=n,
                                  vocab_size=ts.vocab_size, example_len=ts.example_len).tokens

        out = {"50/50": draw(halves)}
        out["50/50, random answers"] = random_answer_prompts(out["50/50"], ts, rng)
        out["thirds"] = draw(thirds)
        return out

    def describe(self, *, n_prompts: int, n_queries: int, seed: int, masked: bool) -> dict:
        """The :class:`TaskVectorsResult` fields that describe the prompts."""
        return dict(tasks=tuple(self.tasks), n_examples=self.n_examples, n_prompts=n_prompts, n_queries=n_queries,
                    seed=seed, masked=masked)


class FamilyPrompts:
    """Text prompts of a real LLM's probe family (``empirical.llm.families``), tokenised by
    ``tokenizer``: ``examples`` examples per task (distinct inputs, shuffled) and a query;
    every task's answer is scored at its first token after the prompt's last token (the
    separator). One query context: zero-shot. ``merged`` counts the answers of the
    single-task prompts and queries whose first characters merge with the prompt's last."""

    seed_tag = 50
    contexts = ("zero-shot",)

    def __init__(self, tokenizer, family: str, examples: int):
        from empirical.llm.families import get_family

        self.tokenizer, self.family_name, self.examples = tokenizer, family, examples
        self.family = get_family(family)
        self.tasks = list(self.family.tasks)
        self.merged = 0

    def _draw(self, counts: dict, rng: np.random.Generator, n: int, **kw):
        texts, answers = zip(*(_llm_prompt(self.family, rng, counts, **kw) for _ in range(n)))
        return _first_tokens(self.tokenizer, texts, answers)

    def single(self, task: int, rng: np.random.Generator, n: int) -> list[list[int]]:
        tokens, _, merged = self._draw({self.tasks[task]: self.examples}, rng, n)
        self.merged += merged
        return tokens

    def queries(self, kind: str, rng: np.random.Generator, n: int) -> tuple[list[list[int]], np.ndarray]:
        tokens, first, merged = self._draw({}, rng, n)
        self.merged += merged
        return tokens, first

    def real_mixed(self, pair, lam: float, rng: np.random.Generator, n: int) -> tuple[list[list[int]], np.ndarray]:
        """Prompts of 2 * ``examples`` examples, a share ``lam`` of them of task ``pair[1]``."""
        total = 2 * self.examples
        n_b = int(round(lam * total))
        tokens, first, _ = self._draw({self.tasks[pair[0]]: total - n_b, self.tasks[pair[1]]: n_b}, rng, n)
        return tokens, first

    def mixtures(self, pair, rng: np.random.Generator, n: int) -> dict[str, list[list[int]]]:
        """50/50 mixtures of ``pair``, one-third mixtures of the first three tasks, and 50/50
        prompts whose answers are random (another input's answer for a random task)."""
        a, b = self.tasks[pair[0]], self.tasks[pair[1]]
        return {"50/50": self._draw({a: self.examples, b: self.examples}, rng, n)[0],
                "thirds": self._draw({t: max(1, 2 * self.examples // 3) for t in self.tasks[:3]}, rng, n)[0],
                "50/50, random answers": self._draw({a: self.examples, b: self.examples}, rng, n,
                                                    random_answers=True)[0]}

    def describe(self, *, n_prompts: int, n_queries: int, seed: int, masked: bool) -> dict:
        """The :class:`TaskVectorsResult` fields that describe the prompts (``masked`` only when set)."""
        return dict(family=self.family_name, tasks=tuple(self.tasks), n_prompts=n_prompts,
                    examples_per_task=self.examples, n_queries=n_queries, seed=seed, first_token=True,
                    merged_answers=self.merged, masked=True if masked else None)


# --------------------------------------------------------------------------- the report


def report(model, source, *, n_prompts: int = 200, n_queries: int = 200, seed: int = 0,
           mask: np.ndarray | None = None, pair: tuple[int, int] = (0, 1), progress: bool = True) -> TaskVectorsResult:
    """Figures 4 and 5 for one :class:`empirical.models.Model` on the prompts of ``source``
    (:class:`LayoutPrompts` or :class:`FamilyPrompts`): task vectors from ``n_prompts``
    single-task prompts per task (half to extract, half held out), the layer chosen on one set
    of ``n_queries`` queries and scored on another in each of the source's query contexts, the
    convex interpolations (two tasks on :data:`LAMBDAS`, three on the simplex), real prompts
    mixing the ``pair`` of tasks, the LDA projection and the per-layer mixture fit with its
    random-answer control. ``mask`` restricts every patch to a subspace."""
    from tqdm.auto import tqdm

    names = dict(enumerate(source.tasks))
    K = len(names)
    rng = np.random.default_rng([seed, source.seed_tag])
    bar = tqdm(total=len(source.contexts) + 3, disable=not progress, desc="task vectors", unit="step")
    singles = {k: model.last_residuals(source.single(k, rng, n_prompts)) for k in range(K)}
    half = n_prompts // 2
    vectors = {k: r[:, :half].mean(1) for k, r in singles.items()}
    bar.update(1)
    contexts = {}
    for kind in source.contexts:
        fit_q, fit_a = source.queries(kind, rng, n_queries)
        test_q, test_a = source.queries(kind, rng, n_queries)
        choice = choose_layer(model, vectors, fit_q, fit_a, names, mask)
        layer = choice.layer
        held, clean = {}, None
        for k in range(K):
            clean, patched = patch(model, test_q, layer, vectors[k][layer], mask)
            held[names[k]] = float(mean_answers(patched, test_a)[k])
        clean_p = mean_answers(clean, test_a)
        two = convex(model, {pair[0]: vectors[pair[0]], pair[1]: vectors[pair[1]]}, layer, test_q, test_a, names,
                     np.array([[1 - lam, lam] for lam in LAMBDAS]), mask)
        three = convex(model, {k: vectors[k] for k in range(3)}, layer, test_q, test_a, names, simplex_grid(), mask) \
            if K >= 3 else None
        contexts[kind] = Context(choice=choice, layer=layer, held_out=held,
                                 clean={names[k]: float(clean_p[k]) for k in range(K)},
                                 convex_two=two, convex_three=three)
        bar.update(1)
    real = []
    for lam in REAL_LAMBDAS:
        tokens, answers = source.real_mixed(pair, lam, rng, n_prompts)
        p = mean_answers(model.last_probs(tokens), answers)
        real.append(RealMixed(lam=lam, p={names[k]: float(p[k]) for k in range(K)}))
    bar.update(1)
    mixed = {name: model.last_residuals(tokens) for name, tokens in source.mixtures(pair, rng, n_prompts).items()}
    geo = geometry(singles, vectors, mixed, names, contexts[source.contexts[0]].layer, half)
    bar.update(1)
    bar.close()
    return TaskVectorsResult(model=model.name,
                             **source.describe(n_prompts=n_prompts, n_queries=n_queries, seed=seed,
                                               masked=mask is not None),
                             contexts=contexts, real_mixed=tuple(real), geometry=geo)


def layout_report(model, task_set: TaskSet, *, n_examples: int = 19, n_prompts: int = 200, seed: int = 0,
                  progress: bool = True) -> TaskVectorsResult:
    """:func:`report` on :class:`LayoutPrompts` as ``superpose task-vectors --run`` makes it:
    the constructed model's task vector is read in its S block after layer 4 (where it is
    written), and the full residual's choice of layer is reported beside it."""
    source = LayoutPrompts(task_set, n_examples)
    kw = dict(n_prompts=n_prompts, n_queries=n_prompts, seed=seed, progress=progress)
    if getattr(model, "kind", None) != "constructed":
        return report(model, source, **kw)
    result = report(model, source, mask=s_block_mask(model), **kw)
    queries = zero_shot_queries(task_set, np.random.default_rng([seed, 41]), n_prompts)
    vectors = {k: extract(model, single_task_prompts(task_set, k, np.random.default_rng([seed, 42, k]),
                                                     n_prompts, n_examples))
               for k in range(len(task_set.tasks))}
    return replace(result, full_vector_choice=choose_layer(model, vectors, queries, source.answers(queries),
                                                           source.tasks))


#: ``superpose task-vectors --run constructed``: the construction numbers up to 2**5 - 1 examples.
CONSTRUCTED_BITS = 5


def _summary_lines(result: TaskVectorsResult) -> list[str]:
    lines = []
    for kind, c in result.contexts.items():
        mid = c.convex_two.points[len(c.convex_two.points) // 2].p
        lines.append(f"{kind}: layer {c.layer}, held-out patched answer probability "
                     + ", ".join(f"{k} {v:.3f}" for k, v in c.held_out.items())
                     + " (clean " + ", ".join(f"{v:.3f}" for v in c.clean.values()) + "); at lambda 0.5: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in mid.items()))
    fits, layer = result.geometry.mixture_fit, result.geometry.layer
    lines.append(f"mixture fit at layer {layer}: 50/50 coefficients "
                 + ", ".join(f"{c:.2f}" for c in fits["50/50"][layer].coefficients)
                 + f", residual {fits['50/50'][layer].relative_residual:.2f} (random answers "
                 f"{fits['50/50, random answers'][layer].relative_residual:.2f})")
    return lines


def command(run: str, *, tasks_file: str | None = None, examples: int | None = None, prompts: int = 200,
            seed: int = 0, out=None, json_path=None, progress: bool = True, echo=print) -> TaskVectorsResult:
    """``superpose task-vectors --run``: Figures 4 and 5 for the constructed model (``run`` =
    ``"constructed"``, numbering :data:`CONSTRUCTED_BITS`-bit examples) or a trained lookup-family
    model, on prompts of ``examples`` examples (default 19); plot in ``out``, JSON, summary lines."""
    from pathlib import Path

    from empirical.models import FlaxModel, lookup_model
    from empirical.results import provenance, read_task_set

    if run == "constructed":
        from construction.tasks import default_task_set

        task_set = read_task_set(tasks_file) or default_task_set()
        model = FlaxModel.constructed(task_set, bits=CONSTRUCTED_BITS)
        max_examples, config = 2**CONSTRUCTED_BITS - 1, {"model": "constructed", "spec": model.spec.to_dict()}
    else:
        model, cfg, task_set, max_examples = lookup_model(run, tasks_file)
        config = cfg.to_dict()
    examples = examples or min(19, max_examples)
    if examples > max_examples:
        raise ValueError(f"prompts of {run} can hold at most {max_examples} examples")
    result = layout_report(model, task_set, n_examples=examples, n_prompts=prompts, seed=seed, progress=progress)
    result = result.with_provenance(provenance(config), command="task-vectors", run=run)
    if out:
        result = replace(result, plot=str(plot(result, out, f"task_vectors_{Path(run).name}")))
    if json_path:
        result.write(json_path)
    for line in _summary_lines(result):
        echo(line)
    return result


def llm_command(model_name: str, *, family: str = "country", examples: int = 10, prompts: int = 200, seed: int = 0,
                out=None, json_path=None, progress: bool = True, echo=print) -> TaskVectorsResult:
    """``superpose task-vectors --model``: the same figures for a real LLM on one probe family."""
    from pathlib import Path

    from empirical.llm import load_model
    from empirical.llm.families import get_family
    from empirical.results import provenance

    get_family(family)  # one clear error for an unknown family, before loading the model
    model = load_model(model_name)
    result = report(model, FamilyPrompts(model.tokenizer, family, examples), n_prompts=prompts, n_queries=prompts,
                    seed=seed, progress=progress)
    result = result.with_provenance(provenance({"model": model_name, "family": family, "prompts": prompts,
                                                "examples_per_task": examples, "seed": seed}),
                                    command="task-vectors")
    if out:
        result = replace(result, plot=str(plot(result, out, f"task_vectors_{Path(str(model_name)).stem}_{family}")))
    if json_path:
        result.write(json_path)
    c = result.contexts["zero-shot"]
    echo(f"{model_name} {family}: layer {c.layer}, held-out patched first-token probability "
         + ", ".join(f"{k} {v:.3f}" for k, v in c.held_out.items())
         + " (clean " + ", ".join(f"{v:.3f}" for v in c.clean.values()) + ")")
    return result
