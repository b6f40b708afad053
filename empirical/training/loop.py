"""The training loop: checkpoints, resume, metrics.jsonl, the in-training evaluation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from empirical import synthetic
from empirical.results import write_json
from empirical.training.checkpoints import _manager, load_config, provenance, restore_state
from empirical.training.config import TrainConfig, param_count
from empirical.training.evaluation import evaluate
from empirical.training.step import (
    MEMBER_FIELDS,
    device_batch,
    eval_rng,
    init_state,
    make_batch,
    make_eval_fn,
    make_group_step,
    shared_config,
)


def _read_metrics(path: Path, upto: int) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= upto]


# --------------------------------------------------------------------------- the loop


def _member(tree, i: int):
    """Model ``i`` of a stacked state (or metrics) tree."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _stack(trees: list, xp=np):
    """One tree of arrays with a leading model axis (``xp``: numpy for host batches, jax.numpy
    for states, which the step donates)."""
    return jax.tree_util.tree_map(lambda *a: xp.stack(a), *trees)


def check_group(cfgs: Sequence[TrainConfig], outs: Sequence[Path]) -> TrainConfig:
    """The shared configuration of models to be trained in one step; one clear error when
    they cannot be (differing in more than :data:`MEMBER_FIELDS`, repeated, or sharing a run
    directory)."""
    if not cfgs or len(cfgs) != len(outs):
        raise ValueError(f"need one run directory per model, got {len(cfgs)} configs and {len(outs)} directories")
    shared = shared_config(cfgs[0])
    for cfg in cfgs[1:]:
        if shared_config(cfg) != shared:
            a, b = cfgs[0].to_dict(), cfg.to_dict()
            diff = sorted(k for k in a if a[k] != b[k] and k not in MEMBER_FIELDS)
            raise ValueError(f"models trained in one step may differ only in {', '.join(MEMBER_FIELDS)}; "
                             f"these differ in {', '.join(diff)}")
    if len(set(cfgs)) != len(cfgs):
        raise ValueError("two of the models have the same configuration (the same seed and settings)")
    resolved = [Path(o).resolve() for o in outs]
    if len(set(resolved)) != len(resolved):
        raise ValueError("every model needs its own run directory")
    return shared


def _open_run(cfg: TrainConfig, out: Path, resume: bool) -> dict | None:
    """Check run directory ``out`` for ``cfg``; the saved state when resuming one."""
    if (out / "config.json").exists():
        if not resume:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        saved = load_config(out)
        if saved.replace(steps=cfg.steps) != cfg:
            raise ValueError(f"{out} holds a run with a different configuration; only --steps may change on resume")
        return restore_state(cfg, out)
    return None


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
    stop (with a checkpoint) after that step, as an interruption would. The same code as
    :func:`train_many` with one model.
    """
    return train_many([cfg], [out], resume=resume, progress=progress, stop_at=stop_at)[0]


def train_many(
    cfgs: Sequence[TrainConfig],
    outs: Sequence[str | os.PathLike],
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> list[dict]:
    """Train N models in one compiled step (:func:`make_group_step`: vmapped over weights,
    optimiser states, learning rates and each model's own batch stream), model i into run
    directory ``outs[i]``, each laid out exactly as a single run (config.json, checkpoints,
    metrics.jsonl, result.json) and loadable on its own. The models may differ in seed,
    learning rate and data settings (:data:`MEMBER_FIELDS`), nothing else. Returns the N
    summaries. ``resume`` continues every model from its latest checkpoint (all at one step).
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    cfgs, outs = list(cfgs), [Path(o) for o in outs]
    shared = check_group(cfgs, outs)
    n = len(cfgs)
    saved = [_open_run(cfg, out, resume) for cfg, out in zip(cfgs, outs)]
    starts = {0 if st is None else int(st["step"]) for st in saved}
    if len(starts) > 1:
        raise ValueError(f"the runs to resume are at different steps {sorted(starts)}; resume them one by one")
    start = starts.pop()
    states = [init_state(cfg) if st is None else st for cfg, st in zip(cfgs, saved)]
    for cfg, out in zip(cfgs, outs):
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg.to_dict())
        # Keep the metrics of steps up to the checkpoint; a resumed run rewrites the rest.
        kept = _read_metrics(out / "metrics.jsonl", start)
        tmp = out / ".metrics.jsonl.tmp"
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, out / "metrics.jsonl")
    state = _stack(states, jnp)
    del states, saved
    lrs = np.asarray([cfg.lr for cfg in cfgs], np.float32)

    step_fn, eval_fn = make_group_step(shared), make_eval_fn(shared)
    eval_batches = [synthetic.training_batch(cfg.fam, eval_rng(cfg), cfg.eval_batch, cfg.n_examples) for cfg in cfgs]
    managers = [_manager(out) for out in outs]
    last = shared.steps if stop_at is None else min(stop_at, shared.steps)
    tokens_per_step = n * shared.batch_size * shared.seq_len
    label = f"train {shared.family}" + (f" x{n}" if n > 1 else "")
    bar = tqdm(total=shared.steps, initial=start, disable=not progress, desc=label, unit="step")
    t0, timed_steps, t_timed = time.perf_counter(), 0, None
    evals: list[dict] = [{} for _ in cfgs]
    logs = [(out / "metrics.jsonl").open("a") for out in outs]

    def next_batch(s):
        return _stack([device_batch(make_batch(cfg, s)) for cfg in cfgs])

    try:
        batch = next_batch(start + 1) if start < last else None
        for s in range(start + 1, last + 1):
            state, metrics = step_fn(state, lrs, batch)
            if s < last:
                batch = next_batch(s + 1)  # overlaps the asynchronous device step
            if s == start + 1:
                jax.block_until_ready(metrics)
                t_timed = time.perf_counter()  # exclude compilation from the throughput
            else:
                timed_steps += 1
            if s % shared.log_every == 0 or s == last:
                m = {k: np.asarray(v, np.float64) for k, v in metrics.items()}
                elapsed = time.perf_counter() - t_timed
                rate = timed_steps * tokens_per_step / elapsed if timed_steps and elapsed > 0 else float("nan")
                for i, log in enumerate(logs):
                    record = {"kind": "train", "step": s, **{k: float(v[i]) for k, v in m.items()},
                              "tokens_per_s": rate / n}
                    if n > 1:
                        record["group_tokens_per_s"] = rate
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.set_postfix(loss=f"{m['loss'].mean():.3f}", acc=f"{m['answer_acc'].mean():.3f}")
            if s % shared.eval_every == 0 or s == shared.steps:
                for i, (cfg, log) in enumerate(zip(cfgs, logs)):
                    evals[i] = evaluate(cfg, _member(state["params"], i), eval_batches[i], eval_fn)
                    log.write(json.dumps({"kind": "eval", "step": s, **evals[i]}) + "\n")
                    log.flush()
            if s % shared.ckpt_every == 0 or s == last:
                for i, mngr in enumerate(managers):
                    mngr.save(s, args=ocp.args.StandardSave(_member(state, i)), force=True)
            bar.update(1)
    finally:
        for log in logs:
            log.close()
        bar.close()
        for mngr in managers:
            mngr.wait_until_finished()
            mngr.close()
    wall = time.perf_counter() - t0
    elapsed = (time.perf_counter() - t_timed) if t_timed else float("nan")
    rate = timed_steps * tokens_per_step / elapsed if timed_steps else None
    summaries = []
    for i, (cfg, out) in enumerate(zip(cfgs, outs)):
        params = _member(state["params"], i)
        ev = evals[i] or evaluate(cfg, params, eval_batches[i], eval_fn)
        summary = {
            **provenance(cfg),
            "run": str(out),
            "step": int(state["step"][i]),
            "resumed_from": start,
            "params": param_count(params),
            "wall_s": wall,
            "tokens_per_s": None if rate is None else rate / n,
            "eval": {k: v for k, v in ev.items() if k != "example_acc"},
            "example_acc": ev.get("example_acc"),
        }
        if n > 1:
            summary["group"] = {"size": n, "index": i, "tokens_per_s": rate, "runs": [str(o) for o in outs]}
        write_json(out / "result.json", summary)
        summaries.append(summary)
    return summaries


def read_metrics(out: str | os.PathLike, kind: str | None = "train") -> list[dict]:
    """The metrics records of run ``out`` (of one ``kind``, or all with None)."""
    path = Path(out) / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


