"""The training loop: checkpoints, resume, metrics.jsonl, the in-training evaluation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax

from empirical import synthetic
from empirical.training.checkpoints import _manager, load_config, provenance, restore_state, write_json_atomic
from empirical.training.config import TrainConfig, param_count
from empirical.training.evaluation import evaluate
from empirical.training.step import eval_rng, init_state, make_batch, make_eval_fn, make_train_step


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


