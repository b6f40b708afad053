"""Training the shared transformer from scratch on one in-context task per sequence (Fig. 3).

The model is :class:`construction.transformer.TransformerConfig` / ``run`` as is (the class
the construction also runs on). A run is described by a frozen :class:`TrainConfig` (model
architecture + data + optimiser), saved as ``config.json`` beside the orbax checkpoints:

    out/config.json        the TrainConfig (model config inside)
    out/checkpoints/<step> orbax checkpoints of {params, opt_state, step}
    out/metrics.jsonl      one JSON object per logged step (``"kind": "train"`` or ``"eval"``)
    out/result.json        the final summary (config, version, device, date, metrics)

The batch of step ``s`` is drawn from ``numpy.random.default_rng([seed, 0, s])``, so a resumed
run sees exactly the data the uninterrupted run would have seen, and XLA's deterministic
kernels give the same losses.

Presets: :func:`tiny` (a 2-core CPU, 3 to 15 minutes per family) and :func:`paper` (the authors'
Llama-style ~14M-parameter model, THEORY.md section 6).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from construction.tasks import TaskSet
from construction.transformer import TransformerConfig, init_params, run
from empirical import results as results_lib
from empirical import synthetic


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that defines a training run (saved as JSON beside its checkpoints)."""

    model: TransformerConfig
    preset: str = "custom"
    family: str = "copy"
    #: the ``lookup`` family's task set (None: ``construction.default_task_set()``).
    tasks: TaskSet | None = None
    n_examples: int = 100
    batch_size: int = 32
    #: sequences per forward/backward pass; gradients are accumulated over batch/microbatch.
    microbatch: int = 0
    steps: int = 5000
    lr: float = 5e-4
    b1: float = 0.9
    b2: float = 0.98
    eps: float = 1e-8
    weight_decay: float = 0.01
    clip: float = 1.0
    warmup_frac: float = 0.1
    #: fraction of the steps spent decaying linearly to zero at the end (warm-up-stable-decay).
    decay_frac: float = 0.2
    #: task curriculum: stages ``(until_step, tasks)``; a step s <= until_step (of the first
    #: such stage) draws its sequences' tasks from ``tasks`` only; later steps from all tasks.
    curriculum: tuple[tuple[int, tuple[int, ...]], ...] = ()
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    eval_batch: int = 32
    ckpt_every: int = 500

    def __post_init__(self):
        problems = []
        try:
            fam = synthetic.family(self.family, self.tasks)
        except ValueError as err:
            raise ValueError(f"invalid TrainConfig: {err}") from None
        for name in ("n_examples", "batch_size", "steps", "log_every", "eval_every", "eval_batch", "ckpt_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        mb = self.microbatch or self.batch_size
        if mb < 1 or self.batch_size % mb:
            problems.append(f"microbatch {self.microbatch} must divide batch_size {self.batch_size}")
        object.__setattr__(
            self, "curriculum", tuple((int(until), tuple(int(h) for h in hs)) for until, hs in self.curriculum)
        )
        ends = [until for until, _ in self.curriculum]
        if ends != sorted(set(ends)) or any(e < 1 for e in ends):
            problems.append(f"curriculum stages must end at increasing steps >= 1, got {ends}")
        for _, hs in self.curriculum:
            if not hs or any(h not in fam.params for h in hs):
                problems.append(f"curriculum tasks {list(hs)} must be a non-empty subset of {list(fam.params)}")
        if not (0 <= self.warmup_frac and 0 <= self.decay_frac and self.warmup_frac + self.decay_frac <= 1):
            problems.append("warmup_frac and decay_frac must be >= 0 and sum to at most 1")
        if self.model.input_vocab != fam.vocab_size or self.model.output_dim != fam.vocab_size:
            problems.append(
                f"the model's input_vocab and output_dim ({self.model.input_vocab}, {self.model.output_dim}) must be "
                f"the {self.family} family's vocabulary size {fam.vocab_size}"
            )
        if self.model.positions == "learned" and self.model.max_len < self.seq_len:
            problems.append(f"learned positions need max_len >= the sequence length {self.seq_len}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    @property
    def fam(self) -> synthetic.Family:
        return synthetic.family(self.family, self.tasks)

    @property
    def seq_len(self) -> int:
        """Tokens the model reads per sequence (the training sequence minus its last token)."""
        return synthetic.sequence_length(self.fam, self.n_examples) - 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tasks"] = None if self.tasks is None else self.tasks.to_json()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        data["model"] = TransformerConfig.from_dict(data["model"])
        if data.get("tasks") is not None:
            data["tasks"] = TaskSet.from_json(data["tasks"])
        return cls(**data)

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **changes)


def _model(fam: synthetic.Family, **overrides) -> TransformerConfig:
    """A Llama-style model for family ``fam`` (its vocabulary in and out)."""
    base = dict(
        input_vocab=fam.vocab_size,
        output_dim=fam.vocab_size,
        positions="rope",
        norm="rms",
        mlp="swiglu",
        tie_embeddings=False,
        dtype="float32",
    )
    base.update(overrides)
    return TransformerConfig(**base)


def _preset(name: str, family: str, tasks: TaskSet | None, model: dict, train: dict, changes: dict) -> TrainConfig:
    """A TrainConfig from a preset's settings and the caller's ``changes`` (TrainConfig fields,
    and ``model_changes`` for model fields). Learned positions cover the training sequences."""
    fam = synthetic.family(family, tasks)
    model = {**model, **(changes.pop("model_changes", None) or {})}
    train = {**train, **changes}
    if model.get("positions") == "learned":
        model["max_len"] = synthetic.sequence_length(fam, train["n_examples"]) - 1
    return TrainConfig(model=_model(fam, **model), preset=name, family=family, tasks=tasks, **train)


#: The tiny preset's settings per family (model, then data and optimiser), found on a 2-core CPU
#: (README, "Training from scratch": what was tried and what each change did). Every family
#: starts on two of its tasks (a curriculum: in-context task inference appears there within a
#: few hundred steps, where all tasks at once stall at chance) and then trains on all of them.
#: copy and lookup add learned embeddings of the offset inside an example and of the example
#: index (``offset_period``, ``code_bits``): the features the constructed model reads, without
#: which copy stayed at chance (1/8) for 1000+ steps. copy grows its tasks in stages (2, 4,
#: then one more per stage) and still learns only five of its eight tasks (h = 0, 1, 3, 5, 7)
#: to ~100%: the others stay near chance (benchmarks/results/training/SEARCH.md).
TINY: dict[str, dict] = {
    "add": {
        "model": dict(),
        "train": dict(n_examples=40, batch_size=16, lr=3e-3, steps=4000, curriculum=((600, (1, 4)),)),
    },
    "copy": {
        "model": dict(qk_dim=32, offset_period=11, code_bits=5),
        "train": dict(n_examples=16, batch_size=16, lr=3e-3, steps=6000,
                      curriculum=((300, (1, 5)), (900, (1, 3, 5, 7)), (1500, (0, 1, 3, 5, 7)),
                                  (2100, (0, 1, 3, 4, 5, 7)), (2700, (0, 1, 2, 3, 4, 5, 7)))),
    },
    "lookup": {
        "model": dict(qk_dim=32, offset_period=5, code_bits=5),
        "train": dict(n_examples=20, batch_size=32, lr=3e-3, steps=2000, curriculum=((400, (0, 2)),)),
    },
}


def tiny(family: str = "copy", *, tasks: TaskSet | None = None, **changes) -> TrainConfig:
    """A CPU-sized preset: 3 layers, width 64, 4 heads (query/key 16 or 32, value 16), SwiGLU
    128 (~0.13M parameters), RoPE, with per-family settings (:data:`TINY`). ``changes`` replace TrainConfig fields;
    ``model_changes={...}`` replaces model fields (learned positions follow ``n_examples``)."""
    if family not in TINY:
        raise ValueError(f"family must be one of {list(TINY)}, got {family!r}")
    model = dict(num_layers=3, d_model=64, num_heads=4, qk_dim=16, v_dim=16, mlp_dims=128)
    model.update(TINY[family]["model"])
    train = dict(log_every=20, eval_every=250, eval_batch=64, ckpt_every=500, **TINY[family]["train"])
    return _preset("tiny", family, tasks, model, train, dict(changes))


def paper(family: str = "copy", *, tasks: TaskSet | None = None, **changes) -> TrainConfig:
    """The authors' model (THEORY.md section 6): Llama-style, 6 layers, width 384, 6 heads,
    SwiGLU 1536, RMSNorm, RoPE (~14M parameters); AdamW lr 5e-4, b2 0.98, wd 0.01, clip 1,
    10% warm-up then warm-up-stable-decay, 5000 steps, batch 400 sequences of 100 examples,
    bf16 compute with float32 parameters, gradients accumulated over microbatches of 25
    sequences (attention is materialised: L x L scores per head) -- for the GPU. The lookup
    family gets learned positions (its layout has no separators to find examples by)."""
    model = dict(num_layers=6, d_model=384, num_heads=6, qk_dim=64, v_dim=64, mlp_dims=1536, dtype="bfloat16")
    if family == "lookup":
        model["positions"] = "learned"
    train = dict(n_examples=100, batch_size=400, microbatch=25, steps=5000, lr=5e-4, b2=0.98, weight_decay=0.01,
                 clip=1.0, warmup_frac=0.1, decay_frac=0.2, log_every=10, eval_every=250, eval_batch=25,
                 ckpt_every=500)
    return _preset("paper", family, tasks, model, train, dict(changes))


def like_construction(*, tasks: TaskSet | None = None, norm: str = "rms", n_examples: int = 20,
                      **changes) -> TrainConfig:
    """The constructed model's own architecture, to be trained on its own tasks (``lookup``
    family, one task per sequence): seven layers, K heads per layer (query/key b + n, value V),
    the construction's residual width and per-layer ReLU MLP widths (with biases), its
    structured positions (example code, offset, label and query flags, projected by a learned
    matrix) -- :func:`construction.weights.transformer_config` of the task set's construction
    with ``max_examples = 2**b - 1``, b the code bits that number ``n_examples`` examples --
    with the usual 1/sqrt(qk) attention scale, float32 and ``norm`` ("rms", "layer" or "none").
    ``changes`` replace TrainConfig fields (``model_changes={...}``: model fields)."""
    from construction.layout import code_bits
    from construction.spec import ConstructionSpec
    from construction.tasks import default_task_set
    from construction.weights import transformer_config

    ts = tasks if tasks is not None else default_task_set()
    bits = code_bits(n_examples)
    spec = ConstructionSpec(tasks=ts.tasks, vocab_size=ts.vocab_size, example_len=ts.example_len,
                            max_examples=2**bits - 1)
    model = asdict(transformer_config(spec))
    model.update(norm=norm, attn_scale=None, dtype="float32", **(changes.pop("model_changes", None) or {}))
    # Two tasks first (in-context inference of two tasks appears near step 600 on the default
    # tasks), then all of them (learned by step ~1200; README, "Constructed versus learned").
    train = dict(n_examples=n_examples, batch_size=32, lr=3e-3, steps=3000, curriculum=((800, (0, 2)),)
                 if len(ts.tasks) > 2 else (), log_every=20, eval_every=250, eval_batch=64, ckpt_every=500)
    train.update(changes)
    return TrainConfig(model=TransformerConfig.from_dict(model), preset="like-construction", family="lookup",
                       tasks=tasks, **train)


#: Named presets (a plain dict; the CLI's --preset choices).
PRESETS: dict[str, Callable[..., TrainConfig]] = {"tiny": tiny, "paper": paper}


# --------------------------------------------------------------------------- model accounting


def param_count(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def flops_per_token(model: TransformerConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (matmul parameters) + 6 x attention score/value matmuls.

    The usual convention (Kaplan et al. / PaLM appendix): the embedding lookup is free, the
    unembedding counts, and attention adds 2 * 2 * L * heads * (qk + v) / 2 forward FLOPs per
    token and layer (causal: half the L x L square), times 3 for forward + backward.
    """
    c = model
    per_layer = c.d_model * c.num_heads * (2 * c.qk_dim + 2 * c.v_dim)
    mlp = sum(c.d_model * w * (3 if c.mlp == "swiglu" else 2) for w in c.mlp_dims)
    dense = c.num_layers * per_layer + mlp + c.d_model * c.output_dim
    attn = c.num_layers * c.num_heads * (c.qk_dim + c.v_dim) * seq_len  # 2*2*L*h*(qk+v)/2 / 2 (fwd, causal)
    return 6.0 * dense + 6.0 * attn


# --------------------------------------------------------------------------- optimiser


def schedule(cfg: TrainConfig) -> optax.Schedule:
    """Warm-up-stable-decay: linear 0 -> lr over warmup_frac, constant, linear -> 0 over decay_frac."""
    warm = max(1, int(round(cfg.warmup_frac * cfg.steps)))
    decay = int(round(cfg.decay_frac * cfg.steps))
    stable = max(0, cfg.steps - warm - decay)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, cfg.lr, warm),
            optax.constant_schedule(cfg.lr),
            optax.linear_schedule(cfg.lr, 0.0, max(1, decay)),
        ],
        [warm, warm + stable],
    )


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW; weight decay on matrices only (not norms' scales)."""
    decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip),
        optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=decay_mask),
    )


def init_state(cfg: TrainConfig) -> dict:
    """The training state {params, opt_state, step} at step 0 (weights from ``seed``)."""
    params = init_params(cfg.model, jax.random.key(cfg.seed), cfg.seq_len)
    return {"params": params, "opt_state": optimizer(cfg).init(params), "step": jnp.zeros((), jnp.int32)}


# --------------------------------------------------------------------------- data


def batch_rng(cfg: TrainConfig, step: int) -> np.random.Generator:
    """The Generator of step ``step``'s training batch (steps count from 1)."""
    return np.random.default_rng([cfg.seed, 0, step])


def eval_rng(cfg: TrainConfig) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, 1])


def tasks_at(cfg: TrainConfig, step: int) -> tuple[int, ...]:
    """The tasks step ``step``'s sequences are drawn from (the curriculum's stage, or all)."""
    for until, hs in cfg.curriculum:
        if step <= until:
            return hs
    return cfg.fam.params


def make_batch(cfg: TrainConfig, step: int) -> dict[str, np.ndarray]:
    """Step ``step``'s training batch (a pure function of the config and the step)."""
    fam = cfg.fam
    tasks = tasks_at(cfg, step)
    if tasks != fam.params:
        fam = fam.restrict(tasks)
    return synthetic.training_batch(fam, batch_rng(cfg, step), cfg.batch_size, cfg.n_examples)


# --------------------------------------------------------------------------- loss and steps


def _sums(model: TransformerConfig, params, tokens, mask, answer_mask):
    """Masked sums over one (micro)batch: nll, mask count, answer hits, answer count."""
    logits, _ = run(model, params, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    target = tokens[:, 1:]
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    m, am = mask[:, 1:], answer_mask[:, 1:]
    hit = (jnp.argmax(logp, axis=-1) == target).astype(jnp.float32)
    return (nll * m).sum(), m.sum(), (hit * am).sum(), am.sum(), hit * am


@lru_cache(maxsize=8)
def make_train_step(cfg: TrainConfig) -> Callable:
    """A jitted ``(state, tokens, mask, answer_mask) -> (state, metrics)``; state is donated.

    Cached per configuration, so repeated or resumed runs in one process compile once."""
    opt = optimizer(cfg)
    sched = schedule(cfg)
    n_micro = cfg.batch_size // (cfg.microbatch or cfg.batch_size)

    def loss_fn(params, tokens, mask, answer_mask):
        nll, count, hits, answers, _ = _sums(cfg.model, params, tokens, mask, answer_mask)
        return nll, (count, hits, answers)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, tokens, mask, answer_mask):
        params = state["params"]
        if n_micro == 1:
            (nll, (count, hits, answers)), grads = grad_fn(params, tokens, mask, answer_mask)
        else:
            split = lambda a: a.reshape(n_micro, -1, *a.shape[1:])  # noqa: E731

            def body(carry, xs):
                (nll_i, aux_i), g_i = grad_fn(params, *xs)
                acc = jax.tree_util.tree_map(jnp.add, carry, (g_i, nll_i, *aux_i))
                return acc, None

            zeros = (jax.tree_util.tree_map(jnp.zeros_like, params), 0.0, 0.0, 0.0, 0.0)
            (grads, nll, count, hits, answers), _ = jax.lax.scan(
                body, zeros, (split(tokens), split(mask), split(answer_mask))
            )
        # The loss is the mean over covered tokens of the whole batch: scale the summed grads.
        grads = jax.tree_util.tree_map(lambda g: g / count, grads)
        updates, opt_state = opt.update(grads, state["opt_state"], params)
        new = {"params": optax.apply_updates(params, updates), "opt_state": opt_state, "step": state["step"] + 1}
        metrics = {
            "loss": nll / count,
            "answer_acc": hits / answers,
            "grad_norm": optax.global_norm(grads),
            "lr": sched(state["step"]),
        }
        return new, metrics

    return jax.jit(step, donate_argnums=(0,))


@lru_cache(maxsize=8)
def make_eval_fn(cfg: TrainConfig) -> Callable:
    """A jitted ``(params, tokens, mask, answer_mask) -> metrics`` on single-task sequences.

    ``answer_acc``: argmax accuracy on every answer; ``answer_acc_late``: on the second half of
    the examples (enough context to know the task); ``example_acc`` [n_examples]: per example
    index, averaged over the batch (the in-context learning curve).
    """
    n = cfg.n_examples
    where = jnp.asarray(synthetic.answer_positions(cfg.fam, n))

    def evaluate(params, tokens, mask, answer_mask):
        nll, count, hits, answers, hit = _sums(cfg.model, params, tokens, mask, answer_mask)
        example_hits = hit[:, where]  # hit is [B, T-1]; one answer per example
        example_acc = example_hits.mean(0)
        return {
            "loss": nll / count,
            "answer_acc": hits / answers,
            "answer_acc_late": example_acc[n // 2 :].mean(),
            "example_acc": example_acc,
            "example_hits": example_hits,
        }

    return jax.jit(evaluate)


def evaluate_tasks(cfg: TrainConfig, params, *, sequences: int = 200, seed: int = 0, batch: int = 50,
                   progress: bool = False) -> dict:
    """Single-task answer accuracy of ``params`` per task and per example index, on
    ``sequences`` fresh sequences of each task (``numpy.random.default_rng([seed, 2, h])``:
    a stream no training or in-training evaluation batch uses).

    Returns ``{"tasks": {name: {answer_acc, answer_acc_late, loss, example_acc}}, "answer_acc",
    "answer_acc_late", "example_acc", "worst_task_late"}`` (the last four over all tasks).
    """
    from tqdm.auto import tqdm

    if sequences < 1 or batch < 1:
        raise ValueError(f"need sequences >= 1 and batch >= 1, got {sequences} and {batch}")
    eval_fn = make_eval_fn(cfg)
    fam = cfg.fam
    per_task, curves = {}, []
    for h in tqdm(fam.params, disable=not progress, desc="eval", unit="task"):
        one = fam.restrict([h])
        rng = np.random.default_rng([seed, 2, h])
        sums, n_done = 0.0, 0
        while n_done < sequences:
            size = min(batch, sequences - n_done)
            b = synthetic.training_batch(one, rng, batch, cfg.n_examples)  # fixed shape: one compilation
            out = eval_fn(params, b["tokens"], b["mask"], b["answer_mask"])
            sums = sums + np.asarray(out["example_hits"], dtype=np.float64)[:size].sum(0)
            n_done += size
        example_acc = sums / sequences
        curves.append(example_acc)
        per_task[fam.task(h)] = {
            "label": fam.task_label(h),
            "answer_acc": float(example_acc.mean()),
            "answer_acc_late": float(example_acc[cfg.n_examples // 2 :].mean()),
            "example_acc": example_acc.tolist(),
        }
    mean_curve = np.mean(curves, axis=0)
    return {
        "sequences_per_task": sequences,
        "seed": seed,
        "n_examples": cfg.n_examples,
        "tasks": per_task,
        "answer_acc": float(mean_curve.mean()),
        "answer_acc_late": float(mean_curve[cfg.n_examples // 2 :].mean()),
        "worst_task_late": min(t["answer_acc_late"] for t in per_task.values()),
        "example_acc": mean_curve.tolist(),
    }


def evaluate(cfg: TrainConfig, params, batch: dict | None = None, eval_fn: Callable | None = None) -> dict:
    """Single-task accuracy of ``params`` on ``cfg.eval_batch`` fresh sequences (fixed seed)."""
    if batch is None:
        batch = synthetic.training_batch(cfg.fam, eval_rng(cfg), cfg.eval_batch, cfg.n_examples)
    eval_fn = eval_fn or make_eval_fn(cfg)
    out = eval_fn(params, batch["tokens"], batch["mask"], batch["answer_mask"])
    return {k: (np.asarray(v).tolist() if np.ndim(v) else float(v)) for k, v in out.items() if k != "example_hits"}


# --------------------------------------------------------------------------- run directory


def provenance(cfg: TrainConfig) -> dict:
    """The config, package version, device and date that every result file carries."""
    return results_lib.provenance(cfg.to_dict())


#: JSON written to a temporary file then os.replace'd (never half-written).
write_json_atomic = results_lib.write_json


def _manager(out: Path, read_only: bool = False):
    import orbax.checkpoint as ocp

    if read_only:
        options = ocp.CheckpointManagerOptions(
            read_only=True, create=False, save_interval_steps=0, max_to_keep=None, enable_async_checkpointing=False
        )
    else:
        options = ocp.CheckpointManagerOptions(max_to_keep=3, enable_async_checkpointing=False)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # orbax warns about read-only managers it is asked for
    try:
        return ocp.CheckpointManager(out.resolve() / "checkpoints", options=options)
    finally:
        absl.setLevel(level)


def load_config(out: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in run directory ``out``; one clear error if it is missing or malformed."""
    path = Path(out) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a training run: {path} is missing")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"{path} is not a valid training config ({type(err).__name__}: {err})") from None


def restore_state(cfg: TrainConfig, out: str | os.PathLike, step: int | None = None) -> dict | None:
    """The state saved in run ``out`` at ``step`` (default: latest); None if there is none."""
    import orbax.checkpoint as ocp

    out = Path(out)
    if not (out / "checkpoints").is_dir():
        return None
    mngr = _manager(out, read_only=True)
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None
    abstract = jax.eval_shape(lambda: init_state(cfg))
    state = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    mngr.close()
    return state


def load_run(out: str | os.PathLike, step: int | None = None) -> tuple[TrainConfig, dict, int]:
    """(config, params, step) of the latest (or given) checkpoint of run directory ``out``."""
    cfg = load_config(out)
    state = restore_state(cfg, out, step)
    if state is None:
        raise FileNotFoundError(f"{out} has no checkpoint")
    return cfg, state["params"], int(state["step"])


def _read_metrics(path: Path, upto: int) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= upto]


# --------------------------------------------------------------------------- the loop


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> dict:
    """Train ``cfg`` into run directory ``out``; returns the summary also written to result.json.

    ``resume``: continue from the latest checkpoint in ``out`` (its config.json must equal
    ``cfg`` up to ``steps``); without it, ``out`` must not hold a run already. ``stop_at``:
    stop (with a checkpoint) after that step, as an interruption would.
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    out = Path(out)
    cfg_path, metrics_path = out / "config.json", out / "metrics.jsonl"
    state = None
    if cfg_path.exists():
        if not resume:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        saved = load_config(out)
        if saved.replace(steps=cfg.steps) != cfg:
            raise ValueError(f"{out} holds a run with a different configuration; only --steps may change on resume")
        state = restore_state(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg_path, cfg.to_dict())
    start = 0 if state is None else int(state["step"])
    if state is None:
        state = init_state(cfg)
    # Keep the metrics of steps up to the checkpoint; a resumed run rewrites the rest.
    kept = _read_metrics(metrics_path, start)
    tmp = metrics_path.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, metrics_path)

    step_fn, eval_fn = make_train_step(cfg), make_eval_fn(cfg)
    eval_batch = synthetic.training_batch(cfg.fam, eval_rng(cfg), cfg.eval_batch, cfg.n_examples)
    mngr = _manager(out)
    last = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc=f"train {cfg.family}", unit="step")
    t0, timed_steps, t_timed = time.perf_counter(), 0, None
    eval_metrics: dict = {}
    with metrics_path.open("a") as log:
        batch = make_batch(cfg, start + 1) if start < last else None
        for s in range(start + 1, last + 1):
            state, metrics = step_fn(state, batch["tokens"], batch["mask"], batch["answer_mask"])
            if s < last:
                batch = make_batch(cfg, s + 1)  # overlaps the asynchronous device step
            if s == start + 1:
                jax.block_until_ready(metrics)
                t_timed = time.perf_counter()  # exclude compilation from the throughput
            else:
                timed_steps += 1
            if s % cfg.log_every == 0 or s == last:
                m = {k: float(v) for k, v in metrics.items()}
                elapsed = time.perf_counter() - t_timed
                rate = timed_steps * tokens_per_step / elapsed if timed_steps and elapsed > 0 else float("nan")
                record = {"kind": "train", "step": s, **m, "tokens_per_s": rate}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['answer_acc']:.3f}")
            if s % cfg.eval_every == 0 or s == cfg.steps:
                eval_metrics = evaluate(cfg, state["params"], eval_batch, eval_fn)
                log.write(json.dumps({"kind": "eval", "step": s, **eval_metrics}) + "\n")
                log.flush()
            if s % cfg.ckpt_every == 0 or s == last:
                mngr.save(s, args=ocp.args.StandardSave(state), force=True)
            bar.update(1)
    bar.close()
    mngr.wait_until_finished()
    mngr.close()
    wall = time.perf_counter() - t0
    elapsed = (time.perf_counter() - t_timed) if t_timed else float("nan")
    if not eval_metrics:
        eval_metrics = evaluate(cfg, state["params"], eval_batch, eval_fn)
    summary = {
        **provenance(cfg),
        "run": str(out),
        "step": int(state["step"]),
        "resumed_from": start,
        "params": param_count(state["params"]),
        "wall_s": wall,
        "tokens_per_s": timed_steps * tokens_per_step / elapsed if timed_steps else None,
        "eval": {k: v for k, v in eval_metrics.items() if k != "example_acc"},
        "example_acc": eval_metrics.get("example_acc"),
    }
    write_json_atomic(out / "result.json", summary)
    return summary


def read_metrics(out: str | os.PathLike, kind: str | None = "train") -> list[dict]:
    """The metrics records of run ``out`` (of one ``kind``, or all with None)."""
    path = Path(out) / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def plot_learning_curves(out: str | os.PathLike, path: str | os.PathLike, title: str = "",
                         snapshots: int = 6) -> Path:
    """Three panels from run ``out``'s metrics: the training loss, the held-out answer accuracy
    (all examples, and the second half of each sequence's examples) against step, and the
    in-context learning curve (accuracy against example index) at ``snapshots`` evaluation
    steps. Curriculum stages are shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg = load_config(out)
    train_r, eval_r = read_metrics(out, "train"), read_metrics(out, "eval")
    fig = Figure(figsize=(13.0, 3.6), dpi=150)
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_ex = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    ax_loss.plot([r["step"] for r in train_r], [r["loss"] for r in train_r], linewidth=0.8)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss (answers and newlines)")
    steps = [r["step"] for r in eval_r]
    ax_acc.plot(steps, [r["answer_acc"] for r in eval_r], "o-", markersize=2, label="all examples")
    ax_acc.plot(steps, [r["answer_acc_late"] for r in eval_r], "o-", markersize=2, label="second half")
    chance = 1.0 / (8 if cfg.family == "copy" else cfg.fam.vocab_size if cfg.family == "lookup" else 10)
    ax_acc.axhline(chance, color="gray", linestyle=":", linewidth=1, label="chance")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_ylabel("held-out answer accuracy")
    ax_acc.legend(fontsize=7)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        start = 0
        for until, hs in cfg.curriculum:
            ax.axvspan(start, until, color="tab:orange", alpha=0.08 + 0.04 * (len(hs) < 3))
            start = until
    if eval_r:
        picks = sorted({int(round(i)) for i in np.linspace(0, len(eval_r) - 1, min(snapshots, len(eval_r)))})
        colors = [plt_color(i, len(picks)) for i in range(len(picks))]
        for i, c in zip(picks, colors):
            acc = eval_r[i]["example_acc"]
            ax_ex.plot(np.arange(len(acc)), acc, color=c, linewidth=1, label=f"step {eval_r[i]['step']}")
    ax_ex.set_xlabel("example index in the sequence")
    ax_ex.set_ylabel("answer accuracy")
    ax_ex.set_ylim(0, 1.02)
    ax_ex.grid(alpha=0.3)
    ax_ex.legend(fontsize=6)
    fig.suptitle(title or f"{cfg.preset}/{cfg.family}: training curves", fontsize=9)
    fig.tight_layout()
    return results_lib.save_figure(fig, path)


def plt_color(i: int, n: int):
    """The i-th of n colours along viridis (early steps dark, late steps light)."""
    from matplotlib import colormaps

    return colormaps["viridis"](0.1 + 0.8 * i / max(1, n - 1))
