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


def write_json(path: str | os.PathLike, payload: dict, *, indent: int | None = 2) -> Path:
    """Write ``payload`` as JSON (indented; ``indent=None``: one line, for large per-prompt
    records), atomically."""
    text = json.dumps(_jsonable(payload), indent=indent, allow_nan=True) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically (format from the suffix), every legend first moved
    off the data (:func:`clear_legends`)."""
    path = Path(path)
    clear_legends(fig)
    return write_atomic(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight"))


def legend_outside(ax, **kw):
    """The axes' legend to the right of its plotting area, never over the data (the saved
    figure's tight bounding box grows to hold it)."""
    kw.setdefault("fontsize", 7)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kw)


#: Legend positions tried inside the axes, in order, before one goes outside.
_INSIDE = ("upper right", "upper left", "lower right", "lower left", "center right", "center left",
           "upper center", "lower center", "center")


def _along(xy, steps: int = 16) -> np.ndarray:
    """A polyline's vertices and ``steps`` points along each of its segments."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if len(xy) < 2:
        return xy
    t = np.linspace(0.0, 1.0, steps, endpoint=False)[None, :, None]
    inner = xy[:-1, None, :] + t * (xy[1:, None, :] - xy[:-1, None, :])
    return np.concatenate([inner.reshape(-1, 2), xy[-1:]])


def _overlaps(ax, legend, renderer) -> bool:
    from matplotlib.collections import PathCollection

    box = legend.get_window_extent(renderer)
    points = [line.get_transform().transform(_along(line.get_xydata())) for line in ax.get_lines()
              if len(line.get_xydata())]
    points += [c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections
               if isinstance(c, PathCollection) and len(c.get_offsets())]
    points += [ax.transData.transform([(p.get_x() + p.get_width() * fx, p.get_y() + p.get_height() * fy)
                                       for fx in (0, 0.5, 1) for fy in (0, 0.5, 1)])
               for p in ax.patches if hasattr(p, "get_width")]
    for xy in points:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if ((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)).any():
            return True
    return False


def legend_overlaps(fig) -> list[str]:
    """Every legend of ``fig`` that covers a plotted point (a line's vertex, a scatter point,
    a bar's corner or centre) of its own axes; an empty list means every legend is clear."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [f"axes {ax.get_title()!r}: the legend covers plotted points" for ax in fig.axes
            if ax.get_legend() is not None and _overlaps(ax, ax.get_legend(), renderer)]


def clear_legends(fig) -> None:
    """Move every legend that covers data to the first clear place inside its axes, or else
    to the right of the axes (:func:`legend_outside`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not _overlaps(ax, legend, renderer):
            continue
        handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
        kw = dict(fontsize=legend.get_texts()[0].get_fontsize() if labels else 7, ncols=legend._ncols)
        for loc in _INSIDE:
            legend = ax.legend(handles, labels, loc=loc, **kw)
            fig.canvas.draw()
            if not _overlaps(ax, legend, renderer):
                break
        else:
            legend_outside(ax, handles=handles, labels=labels, **kw)
