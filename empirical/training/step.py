"""One training step: the optimiser and its schedule, the batches (a pure function of the
seed and the step), the loss, and the jitted train and evaluation steps."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import optax

from construction.transformer import TransformerConfig, init_params, run
from empirical import synthetic
from empirical.training.config import TrainConfig


# --------------------------------------------------------------------------- optimiser


def unit_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Warm-up-stable-decay of unit height: linear 0 -> 1 over warmup_frac, constant, linear
    -> 0 over decay_frac. The learning rate is ``cfg.lr`` times it (:func:`schedule`)."""
    warm = max(1, int(round(cfg.warmup_frac * cfg.steps)))
    decay = int(round(cfg.decay_frac * cfg.steps))
    stable = max(0, cfg.steps - warm - decay)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, 1.0, warm),
            optax.constant_schedule(1.0),
            optax.linear_schedule(1.0, 0.0, max(1, decay)),
        ],
        [warm, warm + stable],
    )


def schedule(cfg: TrainConfig) -> optax.Schedule:
    """The learning rate at each step: ``cfg.lr`` times :func:`unit_schedule`."""
    unit = unit_schedule(cfg)
    return lambda count: cfg.lr * unit(count)


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW at the unit schedule; weight decay on matrices only (not
    norms' scales). The step multiplies its updates by the member's learning rate, so that
    models with different learning rates share one compiled step."""
    decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip),
        optax.adamw(unit_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                    mask=decay_mask),
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
    """Step ``step``'s training batch (a pure function of the config and the step): the
    curriculum's tasks, mixed as :meth:`TrainConfig.mixing_at` says."""
    fam = cfg.fam
    tasks = tasks_at(cfg, step)
    if tasks != fam.params:
        fam = fam.restrict(tasks)
    return synthetic.training_batch(fam, batch_rng(cfg, step), cfg.batch_size, cfg.n_examples,
                                    cfg.mixing_at(step))


#: The arrays of a batch that the training step reads.
STEP_KEYS = ("tokens", "mask", "answer_mask", "soft")


def device_batch(batch: dict) -> dict:
    """The arrays of ``batch`` the training step reads (tokens, masks, soft targets if any)."""
    return {k: batch[k] for k in STEP_KEYS if k in batch}


# --------------------------------------------------------------------------- loss and steps


def _sums(model: TransformerConfig, params, batch: dict):
    """Masked sums over one (micro)batch: nll, mask count, answer hits, answer count, hits.
    With ``batch["soft"]`` the loss is the cross-entropy against those target distributions."""
    tokens = batch["tokens"]
    logits, _ = run(model, params, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    target = tokens[:, 1:]
    if "soft" in batch:
        nll = -(batch["soft"][:, 1:] * logp).sum(axis=-1)
    else:
        nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    m, am = batch["mask"][:, 1:], batch["answer_mask"][:, 1:]
    hit = (jnp.argmax(logp, axis=-1) == target).astype(jnp.float32)
    return (nll * m).sum(), m.sum(), (hit * am).sum(), am.sum(), hit * am


def shared_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the fields that may differ between models trained in one step (seed,
    learning rate, data settings: :data:`MEMBER_FIELDS`) set to fixed values: members of a
    group share this, and so one compiled step."""
    return cfg.replace(**MEMBER_DEFAULTS)


#: Fields in which models trained in one vmapped step may differ (they change the initial
#: weights, the batches or a scalar of the update, never a shape or the program).
MEMBER_DEFAULTS = dict(seed=0, lr=1.0, p_mix=0.0, mix_from=0, mix_concentration=1.0, mix_tasks=(1, 1),
                       label_noise=0.0, curriculum=())
MEMBER_FIELDS = tuple(MEMBER_DEFAULTS)


def _step_fn(cfg: TrainConfig) -> Callable:
    """The un-jitted ``(state, lr, batch) -> (state, metrics)`` of one model."""
    opt = optimizer(cfg)
    unit = unit_schedule(cfg)
    n_micro = cfg.batch_size // (cfg.microbatch or cfg.batch_size)

    def loss_fn(params, batch):
        nll, count, hits, answers, _ = _sums(cfg.model, params, batch)
        return nll, (count, hits, answers)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, lr, batch):
        params = state["params"]
        if n_micro == 1:
            (nll, (count, hits, answers)), grads = grad_fn(params, batch)
        else:
            split = lambda a: a.reshape(n_micro, -1, *a.shape[1:])  # noqa: E731

            def body(carry, micro):
                (nll_i, aux_i), g_i = grad_fn(params, micro)
                acc = jax.tree_util.tree_map(jnp.add, carry, (g_i, nll_i, *aux_i))
                return acc, None

            zeros = (jax.tree_util.tree_map(jnp.zeros_like, params), 0.0, 0.0, 0.0, 0.0)
            (grads, nll, count, hits, answers), _ = jax.lax.scan(
                body, zeros, jax.tree_util.tree_map(split, batch)
            )
        # The loss is the mean over covered tokens of the whole batch: scale the summed grads.
        grads = jax.tree_util.tree_map(lambda g: g / count, grads)
        updates, opt_state = opt.update(grads, state["opt_state"], params)
        updates = jax.tree_util.tree_map(lambda u: (lr * u).astype(u.dtype), updates)
        new = {"params": optax.apply_updates(params, updates), "opt_state": opt_state, "step": state["step"] + 1}
        metrics = {
            "loss": nll / count,
            "answer_acc": hits / answers,
            "grad_norm": optax.global_norm(grads),
            "lr": lr * unit(state["step"]),
        }
        return new, metrics

    return step


@lru_cache(maxsize=8)
def _jitted_step(cfg: TrainConfig) -> Callable:
    group = jax.vmap(_step_fn(shared_config(cfg)))
    one = lambda tree: jax.tree_util.tree_map(lambda a: a[None], tree)  # noqa: E731
    first = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)  # noqa: E731

    def step(state, batch):  # the group step with N = 1, inside one jit
        new, metrics = group(one(state), jnp.full((1,), cfg.lr, jnp.float32), one(batch))
        return first(new), first(metrics)

    return jax.jit(step, donate_argnums=(0,))


def make_train_step(cfg: TrainConfig) -> Callable:
    """A jitted ``(state, batch) -> (state, metrics)`` of one model; state is donated, and
    ``batch`` is :func:`make_batch`'s dict (the arrays of :data:`STEP_KEYS` are read). The
    same program as :func:`make_group_step` with one model (what :func:`training.train` runs).

    Cached per configuration, so repeated or resumed runs in one process compile once."""
    jitted = _jitted_step(cfg)
    return lambda state, batch: jitted(state, device_batch(batch))


@lru_cache(maxsize=8)
def make_group_step(cfg: TrainConfig) -> Callable:
    """A jitted ``(states, lrs [N], batches) -> (states, metrics)`` training N models in one
    step: :func:`jax.vmap` of one model's step over stacked states (parameters, optimiser
    state, step), learning rates and batches (leading axis N). ``cfg`` is the group's
    :func:`shared_config`; states are donated; compiled once per (config, N)."""
    return jax.jit(jax.vmap(_step_fn(cfg)), donate_argnums=(0,))


def make_eval_fn(cfg: TrainConfig) -> Callable:
    """A jitted ``(params, tokens, mask, answer_mask) -> metrics`` on single-task sequences.

    ``answer_acc``: argmax accuracy on every answer; ``answer_acc_late``: on the second half of
    the examples (enough context to know the task); ``example_acc`` [n_examples]: per example
    index, averaged over the batch (the in-context learning curve).
    """
    return _eval_fn(shared_config(cfg))


@lru_cache(maxsize=8)
def _eval_fn(cfg: TrainConfig) -> Callable:
    n = cfg.n_examples
    where = jnp.asarray(synthetic.answer_positions(cfg.fam, n))

    def evaluate(params, tokens, mask, answer_mask):
        batch = {"tokens": tokens, "mask": mask, "answer_mask": answer_mask}
        nll, count, hits, answers, hit = _sums(cfg.model, params, batch)
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


