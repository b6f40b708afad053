"""The run directory: config.json, orbax checkpoints, and the result files' provenance."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import jax

from empirical import results as results_lib
from empirical.training.config import TrainConfig
from empirical.training.step import init_state


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


