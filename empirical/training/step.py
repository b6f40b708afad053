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


