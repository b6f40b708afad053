"""Result files: JSON that carries its config, the package version, the device and the date,
written atomically (a temporary file renamed into place, so nothing half-written remains)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from importlib import metadata as _metadata
from pathlib import Path

import numpy as np


def package_version() -> str:
    try:
        return _metadata.version("superpose")
    except _metadata.PackageNotFoundError:
        return "unknown"


def device_name() -> str:
    import jax

    dev = jax.devices()[0]
    return f"{dev.platform}:{getattr(dev, 'device_kind', 'unknown')}"


def provenance(config) -> dict:
    """What every result file carries besides its numbers."""
    return {
        "config": config,
        "package_version": package_version(),
        "device": device_name(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


def write_atomic(path: str | os.PathLike, write) -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    text = json.dumps(_jsonable(payload), indent=2, allow_nan=True) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically (format from the suffix)."""
    path = Path(path)
    return write_atomic(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight"))
