"""What a training run is: :class:`TrainConfig` (model, data, optimiser), the presets
(:func:`tiny`, :func:`paper`, :func:`like_construction`) and the model's size and FLOPs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import jax
import numpy as np

from construction.tasks import TaskSet
from construction.transformer import TransformerConfig
from empirical import synthetic


# --------------------------------------------------------------------------- configuration

#: The loss targets (TrainConfig.target).
TARGETS = ("label", "shares")


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
    #: mixed training sequences (docs/theory.md section 7; :class:`empirical.synthetic.Mixing`): the
    #: share of sequences that mix tasks (0: one task per sequence), from step ``mix_from + 1``
    #: on (a single-task stage first), with Dirichlet(``mix_concentration``) weights over
    #: ``mix_tasks`` = (lo, hi) tasks drawn per mixed sequence.
    p_mix: float = 0.0
    mix_from: int = 0
    mix_concentration: float = 1.0
    mix_tasks: tuple[int, int] = (2, 2)
    #: the loss target: "label" (next-token labels) or "shares" (the running in-context task
    #: shares' posterior predictive spread over the tasks' answers; soft targets).
    target: str = "label"
    #: the share of labels replaced by a random answer in single-task sequences (from step
    #: ``mix_from + 1`` on, like the mixing).
    label_noise: float = 0.0
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
        try:
            self.mixing_at(self.mix_from + 1)
        except ValueError as err:
            problems.append(str(err))
        if self.p_mix > 0 and len(self.mix_tasks) == 2 and self.mix_tasks[1] > len(fam.params):
            problems.append(f"mix_tasks {list(self.mix_tasks)}: a mixed sequence cannot draw more tasks than the "
                            f"{self.family} family's {len(fam.params)}")
        if self.target not in TARGETS:
            problems.append(f"target must be one of {list(TARGETS)}, got {self.target!r}")
        if self.mix_from < 0:
            problems.append(f"mix_from must be >= 0, got {self.mix_from}")
        mb = self.microbatch or self.batch_size
        if mb < 1 or self.batch_size % mb:
            problems.append(f"microbatch {self.microbatch} must divide batch_size {self.batch_size}")
        object.__setattr__(self, "mix_tasks", tuple(int(t) for t in self.mix_tasks))
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

    def mixing_at(self, step: int) -> synthetic.Mixing:
        """How step ``step``'s training sequences mix tasks (no mixing and no label noise up
        to ``mix_from``)."""
        after = step > self.mix_from
        return synthetic.Mixing(p_mix=self.p_mix if after else 0.0, concentration=self.mix_concentration,
                                tasks=self.mix_tasks, label_noise=self.label_noise if after else 0.0,
                                soft=self.target == "shares")

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
#: (docs/training.md: what was tried and what each change did). Every family
#: starts on two of its tasks (a curriculum: in-context task inference appears there within a
#: few hundred steps, where all tasks at once stall at chance) and then trains on all of them.
#: copy and lookup add learned embeddings of the offset inside an example and of the example
#: index (``offset_period``, ``code_bits``): the features the constructed model reads, without
#: which copy stayed at chance (1/8) for 1000+ steps. copy grows its tasks in stages (2, 4,
#: then one more per stage) at learning rate 1e-3: at 3e-3 the same curriculum learned only
#: the five offsets of its first stages (benchmarks/results/training/SEARCH.md, c17 and c21).
TINY: dict[str, dict] = {
    "add": {
        "model": dict(),
        "train": dict(n_examples=40, batch_size=16, lr=3e-3, steps=4000, curriculum=((600, (1, 4)),)),
    },
    "copy": {
        "model": dict(qk_dim=32, offset_period=11, code_bits=5),
        "train": dict(n_examples=16, batch_size=16, lr=1e-3, steps=6000,
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
    """The authors' model (docs/theory.md section 6): Llama-style, 6 layers, width 384, 6 heads,
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
    # tasks), then all of them (learned by step ~1200; docs/compare.md).
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


