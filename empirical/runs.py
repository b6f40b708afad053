"""Trained runs by name: run directories of ``superpose train`` and the models shipped in
the package (``empirical/pretrained/<name>/``), loaded through one function.

A *run directory* holds ``config.json`` and orbax checkpoints (``checkpoints/<step>``). A
*shipped model* holds ``config.json``, ``params.npz`` (the parameter tree, one array per
``/``-joined path), ``summary.json`` (how it was trained and what it measured) and
``metrics.jsonl`` (its learning curves). Wherever a run is accepted (``--run``,
:func:`load`), an existing directory is read as it is, and any other name is looked up among
the shipped models::

    cfg, params, step = runs.load("copy")          # shipped
    cfg, params, step = runs.load("runs/my-copy")  # trained here

A corrupted or mismatched checkpoint is one ValueError naming the problem.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np

from construction.transformer import param_shapes
from empirical import results as results_lib
from empirical import training

#: Where the shipped models live (inside the installed package).
PRETRAINED = Path(__file__).resolve().parent / "pretrained"
PARAMS_FILE = "params.npz"


def available() -> list[str]:
    """Names of the shipped models."""
    if not PRETRAINED.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED.iterdir() if (p / "config.json").is_file() and (p / PARAMS_FILE).is_file())


def resolve(run: str | os.PathLike) -> Path:
    """The directory of ``run``: an existing directory, or the shipped model of that name."""
    path = Path(run)
    if path.is_dir():
        return path
    if isinstance(run, str) and run in available():
        return PRETRAINED / run
    names = ", ".join(available()) or "none"
    raise FileNotFoundError(f"{run} is neither a run directory nor a shipped model (shipped: {names})")


# --------------------------------------------------------------------------- params as .npz


def _flatten(tree, prefix: str = "") -> dict:
    """{"a/b/c": leaf} for a nested dict of leaves."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def check_params(cfg: training.TrainConfig, params, where: str) -> None:
    """Raise ValueError unless ``params`` has exactly the tree, shapes and finite values ``cfg`` needs."""
    expected = {name: tuple(s.shape) for name, s in _flatten(param_shapes(cfg.model, cfg.seq_len)).items()}
    got = {name: np.asarray(value) for name, value in _flatten(params).items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise ValueError(f"{where} does not match its config.json: parameter {what} "
                         f"({len(missing)} missing, {len(extra)} unexpected)")
    for name, shape in expected.items():
        if got[name].shape != shape:
            raise ValueError(f"{where} does not match its config.json: {name!r} has shape {got[name].shape}, "
                             f"the config needs {shape}")
        if not np.all(np.isfinite(got[name])):
            raise ValueError(f"{where}: parameter {name!r} holds non-finite values")


def save_params(path: str | os.PathLike, params) -> Path:
    """Write the parameter tree to ``path`` (.npz, float32), atomically."""
    flat = {k: np.asarray(v, dtype=np.float32) for k, v in _flatten(jax.device_get(params)).items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **flat)
    return results_lib.write_atomic(path, lambda f: f.write(buffer.getvalue()))


def load_params(path: str | os.PathLike) -> dict:
    """The parameter tree stored in ``path`` by :func:`save_params`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return _unflatten({k: np.asarray(data[k]) for k in data.files})
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as err:
        raise ValueError(f"{path} is not a readable parameter file ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------- loading


def load(run: str | os.PathLike, step: int | None = None) -> tuple[training.TrainConfig, dict, int]:
    """(config, params, step) of a run directory's latest (or given) checkpoint or of a shipped model."""
    out = resolve(run)
    cfg = training.load_config(out)
    if (out / PARAMS_FILE).is_file():
        if step is not None:
            raise ValueError(f"{out} is a shipped model with one set of weights; it has no step {step}")
        params = load_params(out / PARAMS_FILE)
        summary = out / "summary.json"
        found = json.loads(summary.read_text()).get("step", 0) if summary.is_file() else 0
    else:
        try:
            state = training.restore_state(cfg, out, step)
        except (ValueError, KeyError, TypeError, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{out}: its checkpoint cannot be restored with its config.json ({first})") from None
        if state is None:
            raise FileNotFoundError(f"{out} has no checkpoint")
        params, found = state["params"], int(state["step"])
    check_params(cfg, params, str(out))
    return cfg, params, int(found)


def export(run: str | os.PathLike, dest: str | os.PathLike, *, summary: dict | None = None) -> Path:
    """Copy a run's latest weights into a shipped-model directory ``dest`` (config, params,
    summary with the run's evaluation, learning curves); the directory is replaced whole."""
    cfg, params, step = load(run)
    src, dest = resolve(run), Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    results_lib.write_json(tmp / "config.json", cfg.to_dict())
    save_params(tmp / PARAMS_FILE, params)
    info = {"step": step, "params": training.param_count(params), "trained_in": str(src)}
    if (src / "result.json").is_file():
        info["training"] = json.loads((src / "result.json").read_text())
    results_lib.write_json(tmp / "summary.json", {**info, **(summary or {})})
    if (src / "metrics.jsonl").is_file():
        shutil.copyfile(src / "metrics.jsonl", tmp / "metrics.jsonl")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest
