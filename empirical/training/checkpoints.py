"""The run directory: config.json, orbax checkpoints, and the result files' provenance."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import jax
import numpy as np

from empirical import results as results_lib
from empirical.training.config import TrainConfig
from empirical.training.step import init_state


# --------------------------------------------------------------------------- run directory


def provenance(cfg: TrainConfig) -> dict:
    """The config, package version, device and date that every result file carries."""
    return results_lib.provenance(cfg.to_dict())


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


def finished(run: str | os.PathLike, step: int) -> bool:
    """Whether run directory ``run`` holds a checkpoint at ``step`` or later (False where it
    holds no run yet): what a study that keeps finished runs asks before training one."""
    try:
        return load_run(run)[2] >= step
    except (FileNotFoundError, ValueError):
        return False


def load_run(out: str | os.PathLike, step: int | None = None) -> tuple[TrainConfig, dict, int]:
    """(config, params, step) of the latest (or given) checkpoint of run directory ``out``."""
    cfg = load_config(out)
    state = restore_state(cfg, out, step)
    if state is None:
        raise FileNotFoundError(f"{out} has no checkpoint")
    return cfg, state["params"], int(state["step"])




def fork(src: str | os.PathLike, step: int, dst: str | os.PathLike, **changes) -> TrainConfig:
    """Start run ``dst`` from run ``src``'s checkpoint at ``step``, with ``changes`` to the data
    settings that act only after ``step`` (e.g. ``p_mix`` with ``mix_from >= step``): the new
    run's first ``step`` steps are then the source's exactly, and training it with
    ``resume=True`` continues from there (a dose study's arms share their single-task stage).
    Writes dst/config.json, the checkpoint, the metrics up to ``step`` and dst/fork.json."""
    import orbax.checkpoint as ocp

    from empirical.training.step import MEMBER_FIELDS, make_batch

    src, dst = Path(src), Path(dst)
    cfg = load_config(src)
    bad = sorted(set(changes) - (set(MEMBER_FIELDS) - {"seed", "curriculum"}) - {"target"})
    if bad:
        raise ValueError(f"a fork may change only the data settings, the target and the learning rate, "
                         f"not {', '.join(bad)}")
    new = cfg.replace(**changes)
    for s in sorted({1, step, *[until for until, _ in cfg.curriculum if until <= step]}):
        a, b = make_batch(cfg, s), make_batch(new, s)
        if any(not np.array_equal(a[k], b[k]) for k in a):
            raise ValueError(f"the fork's batches differ from {src}'s at step {s} <= {step}: "
                             "its changes must act only after the fork (e.g. mix_from >= the step)")
    if (dst / "config.json").exists():
        raise FileExistsError(f"{dst} already holds a run")
    state = restore_state(cfg, src, step)
    if state is None:
        raise FileNotFoundError(f"{src} has no checkpoint at step {step}")
    dst.mkdir(parents=True, exist_ok=True)
    results_lib.write_json(dst / "config.json", new.to_dict())
    mngr = _manager(dst)
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()
    mngr.close()
    lines = [line for line in (src / "metrics.jsonl").read_text().splitlines()
             if line.strip() and json.loads(line)["step"] <= step] if (src / "metrics.jsonl").is_file() else []
    results_lib.write_atomic(dst / "metrics.jsonl", lambda f: f.write("".join(line + "\n" for line in lines).encode()))
    results_lib.write_json(dst / "fork.json", {"from": src.name, "step": step, "changes": changes})
    return new
