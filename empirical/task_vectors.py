"""Task vectors: extraction, patching, convex combinations and geometry (the paper's Figures 4, 5).

Pure functions over the one intermediates API of the package's transformer
(``construction.transformer.run(..., capture=, edits=)``), so constructed and trained models
go through the same calls (a :class:`empirical.compare.Subject` carries either). Prompts are
on the construction's token layout (the ``lookup`` family); the prediction, and the task
vector, sit at the last position (the query's last input token).

* :func:`extract`: the residual stream after the embedding and after every layer at the last
  position, averaged over single-task prompts: one vector per layer.
* :func:`patch`: replace the last position's residual after layer ``l`` by a vector in a batch
  of zero-shot queries (the query's inputs alone), in one jitted call that returns the clean
  and the patched next-token distributions.
* :func:`choose_layer`: the layer whose patch gives the task's answer the highest mean
  probability on held-out queries.
* :func:`convex`: patch (1 - lambda) v_A + lambda v_B (or a point of the simplex for three
  tasks) and read every task's answer probability; :func:`mixed_prompts_curve` gives the same
  numbers from real mixed prompts, for the side-by-side of Figure 5.
* :func:`lda` and :func:`mixture_fit`: the geometry (Figure 4) and the least-squares fit of a
  mixed prompt's vector onto the single-task vectors, with its residual per layer.

In the constructed model the task identity lives in known blocks: after layer 4 (averaging)
the last position holds S_k = alpha_k, and layers 5-7 turn any S into sum_k S_k g_k(x_q).
Patching there gives exactly the mixture the theory predicts (:func:`predicted_mixture`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from construction import sample_prompts
from construction.reference import task_outputs
from construction.tasks import TaskSet
from construction.transformer import TransformerConfig, run
from empirical.compare import Subject, capture

#: The lambda grid of the two-task interpolation; the real-prompt side uses :data:`REAL_LAMBDAS`.
LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
REAL_LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def layer_name(layer: int) -> str:
    """The canonical name of the residual stream after ``layer`` (0: the embedding)."""
    return "embed" if layer == 0 else f"blocks.{layer - 1}.resid_post"


def single_task_prompts(task_set: TaskSet, task: int, rng: np.random.Generator, n_prompts: int,
                        n_examples: int) -> np.ndarray:
    """Prompts whose every example is of task ``task``: tokens [P, L]."""
    return sample_prompts(rng, [task_set.tasks[task]], [1.0], n_examples=n_examples, batch=n_prompts,
                          vocab_size=task_set.vocab_size, example_len=task_set.example_len).tokens


def zero_shot_queries(task_set: TaskSet, rng: np.random.Generator, n_queries: int) -> np.ndarray:
    """Queries without examples (their n-1 input symbols only): tokens [P, n-1]."""
    return rng.integers(0, task_set.vocab_size, size=(n_queries, task_set.example_len - 1)).astype(np.int32)


def residuals_at_last(subject: Subject, tokens: np.ndarray) -> np.ndarray:
    """[layers + 1, P, D]: the residual at the last position after the embedding and every layer."""
    cap = capture(subject, tokens)
    return np.stack([cap[layer_name(l)][:, -1] for l in range(subject.num_layers + 1)]).astype(np.float64)


def extract(subject: Subject, tokens: np.ndarray) -> np.ndarray:
    """The task vector of every layer: [layers + 1, D], the mean over the prompts ``tokens``."""
    return residuals_at_last(subject, tokens).mean(axis=1)


@partial(jax.jit, static_argnames=("config", "name"))
def _clean_and_patched(config: TransformerConfig, params, tokens, name: str, vectors, mask):
    """Next-token distributions [2, P, V] at the last position: clean, then with the last
    position's activation ``name`` replaced by ``vectors`` [P, D] where ``mask`` [D] is 1."""
    def replace(x):
        last = x[:, -1]
        return x.at[:, -1].set(jnp.where(mask > 0, vectors.astype(x.dtype), last))

    clean, _ = run(config, params, tokens)  # the same full pass as the patched one
    patched, _ = run(config, params, tokens, edits={name: replace})
    return jnp.stack([jax.nn.softmax(clean[:, -1].astype(jnp.float32), -1),
                      jax.nn.softmax(patched[:, -1].astype(jnp.float32), -1)])


def patch(subject: Subject, tokens: np.ndarray, layer: int, vectors: np.ndarray,
          mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(clean, patched) next-token distributions [P, V] of ``tokens`` [P, L], the patched run
    with the residual after ``layer`` at the last position replaced by ``vectors`` ([D] for
    every prompt, or [P, D] one per prompt) -- only in the coordinates where ``mask`` [D] is
    set, if given (a subspace patch, e.g. the constructed model's S block)."""
    if not 0 <= layer <= subject.num_layers:
        raise ValueError(f"layer must lie in 0..{subject.num_layers}, got {layer}")
    d = subject.config.d_model
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape not in ((d,), (len(tokens), d)):
        raise ValueError(f"vectors must be [{d}] or [{len(tokens)}, {d}], got {list(vectors.shape)}")
    vectors = np.broadcast_to(vectors, (len(tokens), d))
    mask = np.ones(d, np.float32) if mask is None else np.asarray(mask, np.float32)
    out = np.asarray(_clean_and_patched(subject.config, subject.params, jnp.asarray(tokens), layer_name(layer),
                                        jnp.asarray(vectors), jnp.asarray(mask)))
    return out[0].astype(np.float64), out[1].astype(np.float64)


def answer_probability(probs: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """[P] probability of each prompt's answer."""
    return probs[np.arange(len(probs)), answers]


def choose_layer(subject: Subject, task_set: TaskSet, vectors: dict[int, np.ndarray], queries: np.ndarray,
                 mask: np.ndarray | None = None, layers=None) -> dict:
    """Per layer, the mean probability of each task's answer when its vector is patched into
    the held-out zero-shot ``queries``; the chosen layer maximises the mean over tasks."""
    layers = list(range(subject.num_layers + 1)) if layers is None else list(layers)
    per_layer = []
    for l in layers:
        scores = {}
        for k, vec in vectors.items():
            answers = task_set.tasks[k].apply(_query_inputs(queries, task_set))
            probs = patch(subject, queries, l, vec[l], mask)[1]
            scores[task_set.names[k]] = float(answer_probability(probs, answers).mean())
        per_layer.append(scores)
    means = [float(np.mean(list(s.values()))) for s in per_layer]
    return {"layers": layers, "per_layer": per_layer, "mean": means, "layer": layers[int(np.argmax(means))]}


def _query_inputs(queries: np.ndarray, task_set: TaskSet) -> np.ndarray:
    """The query's n-1 inputs: the last n-1 tokens of every prompt (zero-shot or not)."""
    return np.asarray(queries)[:, -(task_set.example_len - 1):]


def convex(subject: Subject, task_set: TaskSet, vectors: dict[int, np.ndarray], layer: int, queries: np.ndarray,
           weights: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Patch sum_j weights[j] v_{task j} (weights [W, J] over the tasks of ``vectors``, in
    their order) at ``layer`` into ``queries``; every task's mean answer probability per row."""
    tasks = list(vectors)
    answers = {k: task.apply(_query_inputs(queries, task_set)) for k, task in enumerate(task_set.tasks)}
    rows = []
    for w in np.asarray(weights, np.float64):
        vec = sum(wj * vectors[k][layer] for wj, k in zip(w, tasks))
        probs = patch(subject, queries, layer, vec, mask)[1]
        rows.append({"weights": w.tolist(),
                     "p": {task_set.names[k]: float(answer_probability(probs, a).mean()) for k, a in answers.items()}})
    return {"tasks": [task_set.names[k] for k in tasks], "layer": layer, "points": rows}


def simplex_grid(step: float = 0.25) -> np.ndarray:
    """Points of the 2-simplex (three weights summing to 1) on a grid of ``step``."""
    n = int(round(1 / step))
    return np.array([(i / n, j / n, (n - i - j) / n) for i in range(n + 1) for j in range(n + 1 - i)])


def mixed_prompts_curve(subject: Subject, task_set: TaskSet, pair: tuple[int, int], rng: np.random.Generator, *,
                        n_prompts: int, n_examples: int, lambdas=REAL_LAMBDAS) -> list[dict]:
    """Real mixed prompts (examples of task B with probability lambda, else A): every task's
    mean answer probability per lambda (Figure 5's right side)."""
    ts, out = task_set, []
    for lam in lambdas:
        tokens = sample_prompts(rng, [ts.tasks[pair[0]], ts.tasks[pair[1]]], [1 - lam, lam], n_examples=n_examples,
                                batch=n_prompts, vocab_size=ts.vocab_size, example_len=ts.example_len,
                                interleave="iid").tokens
        probs = capture(subject, tokens)["probs"].astype(np.float64)
        answers = task_outputs(tokens, ts.tasks, ts.example_len)
        out.append({"lambda": lam, "p": {ts.names[k]: float(answer_probability(probs, answers[:, k]).mean())
                                         for k in range(len(ts.tasks))}})
    return out


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


def mixture_fit(mixed: np.ndarray, singles: np.ndarray) -> dict:
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
    return {"coefficients": coef.tolist(), "relative_residual": float(np.linalg.norm(resid) / max(scale, 1e-12))}


def random_answer_prompts(tokens: np.ndarray, task_set: TaskSet, rng: np.random.Generator) -> np.ndarray:
    """The same prompts with every example's label replaced by a uniform random symbol (the
    control of :func:`mixture_fit`: no task fits them beyond chance)."""
    out = np.array(tokens, copy=True)
    n = task_set.example_len
    m = (out.shape[1] - (n - 1)) // n
    labels = np.arange(m) * n + n - 1
    out[:, labels] = rng.integers(0, task_set.vocab_size, size=(len(out), m))
    return out


def geometry(singles: dict, vectors: dict, mixed: dict, names: dict, layer: int, half: int) -> dict:
    """Figure 4 and the mixture fit from per-prompt residuals [layers + 1, P, D]: ``singles``
    (per task, the prompts after ``half`` held out), ``vectors`` (per task, [layers + 1, D],
    from the first ``half``), ``mixed`` (per mixture); ``names`` names each task key. Every
    mixture's mean, and each task's held-out mean (the noise floor), is fitted at every layer;
    the LDA on the held-out single-task residuals at ``layer`` projects them and the mixtures."""
    keys = list(singles)
    everything = {**mixed, **{f"held-out {names[k]}": singles[k][:, half:] for k in keys}}
    n_layers = vectors[keys[0]].shape[0]
    fits = {name: [mixture_fit(r[l].mean(0), np.stack([vectors[k][l] for k in keys])) for l in range(n_layers)]
            for name, r in everything.items()}
    held_x = np.concatenate([singles[k][layer, half:] for k in keys])
    held_y = np.concatenate([np.full(singles[k].shape[1] - half, i) for i, k in enumerate(keys)])
    directions, centre = lda(held_x, held_y, components=min(2, len(keys) - 1))

    def project(x):
        return ((x - centre) @ directions).tolist()

    return {"layer": layer,
            "lda": {"singles": {names[k]: project(singles[k][layer, half:]) for k in keys},
                    **{name: project(r[layer]) for name, r in mixed.items()}},
            "mixture_fit": fits}


# --------------------------------------------------------------------------- the constructed model


def predicted_mixture(subject, queries: np.ndarray, s_weights: np.ndarray) -> np.ndarray:
    """The constructed model's OUT block that the theory predicts when the S block at the last
    position holds ``s_weights`` [K]: sum_k S_k onehot(g_k(x_q)), [P, V]."""
    spec = subject.spec
    outs = np.stack([t.apply(np.asarray(queries)[:, -(spec.example_len - 1):]) for t in spec.tasks], axis=1)
    return np.einsum("k,pkv->pv", np.asarray(s_weights, np.float64), np.eye(spec.vocab_size)[outs])


def out_block(subject, tokens: np.ndarray, layer: int | None = None, vector: np.ndarray | None = None,
              mask: np.ndarray | None = None) -> np.ndarray:
    """The constructed model's OUT block at the last position after its last layer [P, V],
    with the residual after ``layer`` at the last position replaced by ``vector`` (where
    ``mask`` is set, if given)."""
    block = subject.spec.residual["OUT"]
    edits = None
    if vector is not None:
        v = jnp.asarray(np.broadcast_to(vector, (len(tokens), subject.config.d_model)), jnp.float32)
        keep = jnp.asarray(np.ones(subject.config.d_model) if mask is None else mask, jnp.float32)
        edits = {layer_name(layer): lambda x: x.at[:, -1].set(jnp.where(keep > 0, v.astype(x.dtype), x[:, -1]))}
    _, cache = run(subject.config, subject.params, jnp.asarray(tokens), capture=("final",), edits=edits)
    return np.asarray(cache["final"][:, -1, block], np.float64)


def s_block_mask(subject) -> np.ndarray:
    """[D] 1 on the constructed model's S_k blocks (where its task identity lives after layer 4)."""
    mask = np.zeros(subject.config.d_model)
    for k in range(subject.spec.num_tasks):
        mask[subject.spec.residual[f"S_{k}"]] = 1.0
    return mask


# --------------------------------------------------------------------------- the report


def report(subject: Subject, task_set: TaskSet, *, n_examples: int, n_prompts: int = 200, n_queries: int = 200,
           seed: int = 0, mask: np.ndarray | None = None, pair: tuple[int, int] = (0, 1), progress: bool = True) -> dict:
    """Figures 4 and 5 for one model: task vectors from ``n_prompts`` single-task prompts per
    task (half to extract, half held out), the layer chosen on one set of queries and scored
    on another, in two query contexts (zero-shot queries; the same queries after a context of
    ``n_examples`` examples with random labels, so that positions match the extraction
    prompts), the convex interpolations (two tasks on :data:`LAMBDAS`, three on the simplex),
    real mixed prompts, the LDA projection and the per-layer mixture fit with its
    random-answer control. ``mask`` restricts every patch to a subspace."""
    from tqdm.auto import tqdm

    from empirical.compare import mixture_prompts

    ts, K = task_set, len(task_set.tasks)
    rng = np.random.default_rng([seed, 40])
    bar = tqdm(total=5, disable=not progress, desc="task vectors", unit="step")
    singles = {k: residuals_at_last(subject, single_task_prompts(ts, k, rng, n_prompts, n_examples)) for k in range(K)}
    half = n_prompts // 2
    vectors = {k: r[:, :half].mean(1) for k, r in singles.items()}
    bar.update(1)

    def context(kind):
        if kind == "zero-shot":
            return zero_shot_queries(ts, rng, n_queries)
        return random_answer_prompts(mixture_prompts(ts, rng, n_queries, n_examples), ts, rng)

    result = {"model": subject.name, "tasks": list(ts.names), "n_examples": n_examples, "n_prompts": n_prompts,
              "n_queries": n_queries, "seed": seed, "masked": mask is not None, "contexts": {}}
    for kind in ("zero-shot", "random-label context"):
        fit_q, test_q = context(kind), context(kind)
        choice = choose_layer(subject, ts, vectors, fit_q, mask)
        layer = choice["layer"]
        held = choose_layer(subject, ts, vectors, test_q, mask, layers=[layer])["per_layer"][0]
        clean = capture(subject, test_q)["probs"].astype(np.float64)
        clean_p = {ts.names[k]: float(answer_probability(clean, ts.tasks[k].apply(_query_inputs(test_q, ts))).mean())
                   for k in range(K)}
        two = convex(subject, ts, {pair[0]: vectors[pair[0]], pair[1]: vectors[pair[1]]}, layer, test_q,
                     np.array([[1 - lam, lam] for lam in LAMBDAS]), mask)
        three = convex(subject, ts, {k: vectors[k] for k in range(3)}, layer, test_q, simplex_grid(), mask) if K >= 3 \
            else None
        result["contexts"][kind] = {"choice": choice, "layer": layer, "held_out": held, "clean": clean_p,
                                    "convex_two": two, "convex_three": three}
        bar.update(1)
    result["real_mixed"] = mixed_prompts_curve(subject, ts, pair, rng, n_prompts=n_prompts, n_examples=n_examples)
    bar.update(1)
    # geometry: 50/50 mixtures of the pair, one-third mixtures of three tasks, and the control
    mixes = {"50/50": [0.0] * K, "thirds": [0.0] * K}
    mixes["50/50"][pair[0]] = mixes["50/50"][pair[1]] = 0.5
    for k in range(min(K, 3)):
        mixes["thirds"][k] = 1.0 / min(K, 3)
    mixed_res = {}
    for name, props in mixes.items():
        tokens = sample_prompts(rng, ts.tasks, props, n_examples=n_examples, batch=n_prompts,
                                vocab_size=ts.vocab_size, example_len=ts.example_len).tokens
        mixed_res[name] = residuals_at_last(subject, tokens)
        if name == "50/50":
            mixed_res["50/50, random answers"] = residuals_at_last(subject, random_answer_prompts(tokens, ts, rng))
    result["geometry"] = geometry(singles, vectors, mixed_res, dict(enumerate(ts.names)),
                                  result["contexts"]["zero-shot"]["layer"], half)
    bar.update(1)
    bar.close()
    return result


def subject_report(subject: Subject, task_set: TaskSet, *, n_examples: int = 19, n_prompts: int = 200,
                   seed: int = 0, progress: bool = True) -> dict:
    """:func:`report` for one subject as ``superpose task-vectors --run`` makes it: the
    constructed model's task vector is read in its S block after layer 4 (where it is
    written), and the full residual's choice of layer is reported beside it."""
    kw = dict(n_examples=n_examples, n_prompts=n_prompts, n_queries=n_prompts, seed=seed, progress=progress)
    if subject.kind != "constructed":
        return report(subject, task_set, **kw)
    result = report(subject, task_set, mask=s_block_mask(subject), **kw)
    queries = zero_shot_queries(task_set, np.random.default_rng([seed, 41]), n_prompts)
    vectors = {k: extract(subject, single_task_prompts(task_set, k, np.random.default_rng([seed, 42, k]),
                                                       n_prompts, n_examples))
               for k in range(len(task_set.tasks))}
    result["full_vector_choice"] = choose_layer(subject, task_set, vectors, queries)
    return result


def plot(result: dict, out, stem: str):
    """Figure 5 (convex patches beside real mixed prompts), Figure 4 (LDA) and the per-layer
    mixture-fit residuals, as one PNG with four panels."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    fig = Figure(figsize=(18, 4), dpi=150)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3, ax4 = (fig.add_subplot(1, 4, i) for i in range(1, 5))
    names = result["tasks"]
    colours = dict(zip(names, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    for kind, style in zip(result["contexts"], ("-", "--")):
        two = result["contexts"][kind]["convex_two"]
        lams = [p["weights"][1] for p in two["points"]]
        for name in names:
            ax1.plot(lams, [p["p"][name] for p in two["points"]], style, color=colours[name], marker="o", markersize=2,
                     label=f"{name} ({kind}, layer {result['contexts'][kind]['layer']})")
    ax1.set_xlabel(f"lambda: (1 - lambda) v[{two['tasks'][0]}] + lambda v[{two['tasks'][1]}]")
    ax1.set_ylabel("mean answer probability (patched)")
    ax1.set_ylim(0, 1.02)
    ax1.legend(fontsize=5)
    for name in names:
        ax2.plot([p["lambda"] for p in result["real_mixed"]], [p["p"][name] for p in result["real_mixed"]], "o-",
                 color=colours[name], markersize=3, label=name)
    ax2.set_xlabel(f"lambda (share of {two['tasks'][1]} in real prompts)")
    ax2.set_ylabel("mean answer probability" + (" (first token)" if result.get("first_token") else ""))
    ax2.set_ylim(0, 1.02)
    ax2.legend(fontsize=6)
    geo = result["geometry"]
    for name, pts in geo["lda"]["singles"].items():
        pts = np.asarray(pts)
        ax3.scatter(pts[:, 0], pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts)), s=4, color=colours[name],
                    label=name, alpha=0.6)
    for name, marker in (("50/50", "x"), ("thirds", "+"), ("50/50, random answers", "1")):
        pts = np.asarray(geo["lda"][name])
        ax3.scatter(pts[:, 0], pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts)), s=10, marker=marker,
                    color="black" if "random" not in name else "gray", label=name, alpha=0.5)
    ax3.set_title(f"LDA of the task vectors (layer {geo['layer']})", fontsize=8)
    ax3.legend(fontsize=5)
    for name, fits in geo["mixture_fit"].items():
        held = name.startswith("held-out")
        ax4.plot([f["relative_residual"] for f in fits], ":" if held else "-", marker="o", markersize=2 if held else 3,
                 color="gray" if held else None, label=name if not held or name.endswith(names[0]) else None)
    ax4.set_xlabel("layer (0 = embedding)")
    ax4.set_ylabel("residual of the fit / spread of the task vectors")
    ax4.set_title("dotted: held-out single-task vectors (the noise floor)", fontsize=7)
    ax4.legend(fontsize=6)
    fig.suptitle(f"task vectors: {result['model']}", fontsize=9)
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


def llm_report(model, family_name: str, *, n_prompts: int = 40, examples: int = 10, n_queries: int = 60,
               seed: int = 0, progress: bool = True) -> dict:
    """Figures 4 and 5 for a real LLM on one of its probe families (``empirical.llm.families``):
    task vectors from ``n_prompts`` single-task prompts of ``examples`` examples per task (half
    to extract, half held out), the layer chosen on zero-shot queries and scored on others, the
    convex patches, real prompts mixing the first two tasks, LDA and the mixture fit. Answer
    probabilities are of the answer's first token at the prompt's last token (the separator)."""
    from tqdm.auto import tqdm

    from empirical.llm.families import get_family

    fam = get_family(family_name)
    tasks, K = list(fam.tasks), len(fam.tasks)
    rng = np.random.default_rng([seed, 50])
    tok = model.tokenizer
    bar = tqdm(total=4, disable=not progress, desc=f"task vectors {family_name}", unit="step")

    def prompts(counts, n, **kw):
        texts, answers = zip(*(_llm_prompt(fam, rng, counts, **kw) for _ in range(n)))
        return _first_tokens(tok, texts, answers)

    singles, merged = {}, 0
    for t in tasks:
        toks, _, m = prompts({t: examples}, n_prompts)
        singles[t] = model.last_residuals(toks)
        merged += m
    half = n_prompts // 2
    vectors = {t: r[:, :half].mean(1) for t, r in singles.items()}
    bar.update(1)
    fit_q, fit_first, m1 = prompts({}, n_queries)
    test_q, test_first, m2 = prompts({}, n_queries)
    rows = np.arange(n_queries)

    def patched_p(queries, first, layer, vec):
        clean, patched = model.patch_last(queries, layer, vec)
        return (np.exp(clean[rows[:, None], first]).mean(0), np.exp(patched[rows[:, None], first]).mean(0))

    per_layer = []
    for layer in range(model.config.n_layers + 1):
        per_layer.append({t: float(patched_p(fit_q, fit_first, layer, vectors[t][layer])[1][k])
                          for k, t in enumerate(tasks)})
    means = [float(np.mean(list(x.values()))) for x in per_layer]
    layer = int(np.argmax(means))
    held, clean = {}, None
    for k, t in enumerate(tasks):
        c, p = patched_p(test_q, test_first, layer, vectors[t][layer])
        held[t], clean = float(p[k]), {tt: float(c[j]) for j, tt in enumerate(tasks)}

    def convex_points(names, weights):
        points = []
        for w in weights:
            vec = sum(wj * vectors[t][layer] for wj, t in zip(w, names))
            p = patched_p(test_q, test_first, layer, vec)[1]
            points.append({"weights": list(map(float, w)), "p": {t: float(p[j]) for j, t in enumerate(tasks)}})
        return {"tasks": list(names), "layer": layer, "points": points}

    two = convex_points(tasks[:2], [[1 - lam, lam] for lam in LAMBDAS])
    three = convex_points(tasks[:3], simplex_grid()) if K >= 3 else None
    bar.update(1)
    total = 2 * examples
    real = []
    for lam in REAL_LAMBDAS:
        n_b = int(round(lam * total))
        toks, first, _ = prompts({tasks[0]: total - n_b, tasks[1]: n_b}, n_prompts)
        logits, _ = model.prefix(toks)
        logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits), -1), np.float64)
        p = np.exp(logp[np.arange(len(toks))[:, None], first]).mean(0)
        real.append({"lambda": lam, "p": {t: float(p[j]) for j, t in enumerate(tasks)}})
    bar.update(1)
    mixed = {"50/50": model.last_residuals(prompts({tasks[0]: examples, tasks[1]: examples}, n_prompts)[0]),
             "thirds": model.last_residuals(prompts({t: max(1, 2 * examples // 3) for t in tasks[:3]},
                                                    n_prompts)[0]),
             "50/50, random answers": model.last_residuals(
                 prompts({tasks[0]: examples, tasks[1]: examples}, n_prompts, random_answers=True)[0])}
    bar.update(1)
    bar.close()
    return {
        "model": model.source, "family": family_name, "tasks": tasks, "n_prompts": n_prompts,
        "examples_per_task": examples, "n_queries": n_queries, "seed": seed, "first_token": True,
        "merged_answers": merged + m1 + m2,
        "contexts": {"zero-shot": {"choice": {"layers": list(range(len(means))), "per_layer": per_layer,
                                              "mean": means, "layer": layer},
                                   "layer": layer, "held_out": held, "clean": clean,
                                   "convex_two": two, "convex_three": three}},
        "real_mixed": real,
        "geometry": geometry(singles, vectors, mixed, {t: t for t in tasks}, layer, half),
    }
