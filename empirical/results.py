"""Result files: JSON that carries its config, the package version, the device and the date,
written atomically (a temporary file renamed into place, so nothing half-written remains)."""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

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


def read_json(path: str | os.PathLike, what: str) -> dict:
    """The JSON content of an input file; a missing or malformed file is one ValueError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def read_task_set(path: str | os.PathLike | None):
    """The :class:`construction.tasks.TaskSet` of a task file (None without one)."""
    if path is None:
        return None
    from construction.tasks import TaskSet

    return TaskSet.from_json(read_json(path, "task file"))


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


# --------------------------------------------------------------------------- typed results


#: The modules that define typed results (imported by :func:`result_types`).
RESULT_MODULES = (
    "empirical.compare", "empirical.sweep", "empirical.within_prompt", "empirical.scaling", "empirical.calibration",
    "empirical.seed_spread", "empirical.mixture_study", "empirical.task_vectors", "empirical.verify",
    "empirical.llm.probe", "empirical.llm.decode_study", "empirical.training.commands", "proofs_check.report",
)
_RESULT_TYPES: dict[str, type] = {}


def result_type(*commands: str):
    """Class decorator: the typed result of the result files whose ``command`` (or, for a
    benchmark, ``benchmark``) field is one of ``commands``."""

    def register(cls):
        for c in commands:
            if _RESULT_TYPES.get(c, cls) is not cls:
                raise ValueError(f"two typed results for command {c!r}: {_RESULT_TYPES[c].__name__}, {cls.__name__}")
            _RESULT_TYPES[c] = cls
        return cls

    return register


def result_types() -> dict[str, type]:
    """Every typed result by the command its files record (importing :data:`RESULT_MODULES`)."""
    for name in RESULT_MODULES:
        importlib.import_module(name)
    return dict(_RESULT_TYPES)


def result_class(payload) -> type | None:
    """The typed result of a result file's payload (None for an untyped one)."""
    if not isinstance(payload, dict):
        return None
    types_ = result_types()
    return types_.get(payload.get("command")) or types_.get(payload.get("benchmark"))


def read_result(path: str | os.PathLike, *commands: str):
    """The typed result in the file ``path``, written by one of ``commands`` (e.g. ``"sweep"``):
    one ValueError naming the file when it does not fit that command's record or another
    command wrote it."""
    kinds = f"`superpose {commands[0]}`" + "".join(f" or `{c}`" for c in commands[1:])
    doc = read_json(path, "result")
    types_ = result_types()
    cls = types_.get(doc.get("command") if isinstance(doc, dict) else None)
    if cls is None or doc.get("command") not in commands:
        cls = types_[commands[0]]
    try:
        result = cls.from_json(doc)
    except ResultError as err:
        raise ValueError(f"{path} is not a {kinds} result ({err})") from None
    if result.command is not None and result.command not in commands:
        raise ValueError(f"{path} is not a {kinds} result (its command is {result.command!r})")
    return result


class ResultError(ValueError):
    """A result file that does not fit its typed result (unknown or missing fields, wrong shapes)."""


def key(name: str, *, omit_none: bool = False, **kw):
    """A result field stored under JSON key ``name`` (for keys that are no Python name, such as
    ``lambda`` or ``tv@0.5``); ``omit_none``: left out of the JSON when None (and None when absent)."""
    return field(metadata={"json": name, "omit_none": omit_none}, **kw)


def optional(**kw):
    """A result field that is left out of the JSON when None (and None when the JSON lacks it)."""
    kw.setdefault("default", None)
    return field(metadata={"omit_none": True}, **kw)


def record(cls):
    """The decorator of a typed result: a frozen, keyword-only dataclass (with :class:`Record`)."""
    return dataclass(frozen=True, kw_only=True)(cls)


class Record:
    """Mixin for a frozen dataclass result (:func:`record`): :meth:`to_json` gives its JSON payload (fields in
    declaration order under their JSON keys, nested records, tuples as lists, numpy scalars and
    arrays as numbers and lists), :meth:`from_json` reads one back (a payload or a file),
    checking every field (an unknown, missing or mistyped one is a :class:`ResultError` that
    names its path); ``from_json(x).to_json() == x`` for a payload that spells out every field
    other than the ``optional`` ones it lacks. Numbers are kept as written (an int stays an
    int), so a result file reads back and writes out byte for byte."""

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.metadata.get("json", f.name)] = _to_json(value)
        return out

    def to_text(self, indent: int | None = 2) -> str:
        """The JSON text :func:`write_json` writes."""
        return json.dumps(self.to_json(), indent=indent, allow_nan=True) + "\n"

    def write(self, path: str | os.PathLike, *, indent: int | None = 2) -> Path:
        return write_json(path, self.to_json(), indent=indent)

    @classmethod
    def from_json(cls, source):
        """The record of a payload (a dict) or of a JSON file (a path)."""
        if isinstance(source, (str, os.PathLike)):
            where = str(source)
            source = json.loads(Path(source).read_text())
        else:
            where = cls.__name__
        return _from_json(cls, source, where)


def _to_json(x):
    if isinstance(x, Record):
        return x.to_json()
    if isinstance(x, dict):
        return {str(k): _to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        if all(type(v) is float or type(v) is int for v in x):
            return list(x)  # the common case (numbers), without a call per number
        return [_to_json(v) for v in x]
    return _jsonable(x)


class _Misfit(Exception):
    """A value that does not fit its type; ``path`` collects the keys and indices above it
    (innermost first) on the way out, so that the path is built only for an error."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message, self.path = message, []

    def text(self, where: str = "") -> str:
        return f"{where}{''.join(reversed(self.path))}: {self.message}"


def _from_json(tp, value, where: str):
    try:
        return _reader(tp)(value)
    except _Misfit as e:
        raise ResultError(e.text(where)) from None


def _number(value):
    if type(value) is float or type(value) is int:
        return value  # kept as written (an int stays an int), so that the JSON reads back unchanged
    raise _Misfit(f"expected a number, got {value!r}")


def _exact(tp):
    def read(value):
        if type(value) is not tp:
            raise _Misfit(f"expected {tp.__name__}, got {value!r}")
        return value

    return read


def _null(value):
    if value is not None:
        raise _Misfit(f"expected null, got {value!r}")
    return None


@functools.lru_cache(maxsize=None)
def _reader(tp):
    """The function that reads a JSON value as type ``tp`` (built once per type; raises
    :class:`_Misfit`)."""
    import collections.abc
    import dataclasses
    import types
    import typing

    if tp is typing.Any or tp is object:
        return lambda value: value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        nullable = type(None) in args
        inner = [a for a in args if a is not type(None)]

        def read_union(value):
            if value is None and nullable:
                return None
            errors = []
            for a in inner:
                try:
                    return _reader(a)(value)
                except _Misfit as e:
                    errors.append(e)
            if len(errors) == 1:
                raise errors[0]
            raise _Misfit(f"fits none of {tp}: " + "; ".join(e.text() for e in errors))

        return read_union
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record_reader(tp)
    if origin is tuple or origin is list or tp in (tuple, list):
        as_list = origin is list or tp is list
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            def read_fixed(value):
                if type(value) is not list:
                    raise _Misfit(f"expected a list, got {type(value).__name__}")
                if len(args) != len(value):
                    raise _Misfit(f"expected {len(args)} items, got {len(value)}")
                return tuple(_indexed(_reader(a), v, i) for i, (a, v) in enumerate(zip(args, value)))

            return read_fixed
        item = args[0] if args else typing.Any

        def read_items(value):
            if type(value) is not list:
                raise _Misfit(f"expected a list, got {type(value).__name__}")
            if item is float and all(type(v) is float or type(v) is int for v in value):
                out = value  # the common case (a list of numbers), without a call per number
            else:
                read = _reader(item)
                out = [_indexed(read, v, i) for i, v in enumerate(value)]
            return list(out) if as_list else tuple(out)

        return read_items
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        item = args[1] if len(args) == 2 else typing.Any

        def read_dict(value):
            if type(value) is not dict:
                raise _Misfit(f"expected an object, got {type(value).__name__}")
            read = _reader(item)
            out = {}
            for k, v in value.items():
                try:
                    out[k] = read(v)
                except _Misfit as e:
                    e.path.append(f".{k}")
                    raise
            return out

        return read_dict
    if tp is float:
        return _number
    if tp in (int, bool, str):
        return _exact(tp)
    if tp is type(None):
        return _null
    raise ResultError(f"cannot read type {tp!r}")


def _indexed(read, value, i: int):
    try:
        return read(value)
    except _Misfit as e:
        e.path.append(f"[{i}]")
        raise


def _record_reader(tp):
    """The reader of a record class: its fields by JSON key, each read by its type's reader
    (resolved on first use, so that a record may hold records of its own class)."""
    import dataclasses
    import typing

    fields_: list = []

    def layout():
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            if f.init:
                required = not (f.metadata.get("omit_none") or f.default is not dataclasses.MISSING
                                or f.default_factory is not dataclasses.MISSING)
                fields_.append((f.metadata.get("json", f.name), f.name, _reader(hints[f.name]), required))
        return {k for k, *_ in fields_}

    known: set = set()

    def read_record(value):
        if not known:
            known.update(layout())
        if type(value) is not dict:
            raise _Misfit(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        if len(value) > len(known) or not known.issuperset(value):
            unknown = [k for k in value if k not in known]
            raise _Misfit(f"unknown field(s) {unknown} for {tp.__name__} (known: {[k for k, *_ in fields_]})")
        kwargs = {}
        for k, name, read, required in fields_:
            if k in value:
                try:
                    kwargs[name] = read(value[k])
                except _Misfit as e:
                    e.path.append(f".{k}")
                    raise
            elif required:
                raise _Misfit(f"missing field {k!r} of {tp.__name__}")
        return tp(**kwargs)

    return read_record


@record
class Stamped(Record):
    """The fields a result file opens with (:func:`provenance`): the command that wrote it, its
    config, the package version, the device and the date. A result record subclasses this (or
    :class:`Stampable`) and may narrow ``config`` to a record of its own."""

    command: str
    config: dict[str, Any]
    package_version: str
    device: str
    date: str


@record
class Stampable(Record):
    """:class:`Stamped`'s fields for a result that a library call returns bare (each None, and
    left out of the JSON) and its command stamps (:meth:`with_provenance`)."""

    command: str | None = optional()
    config: dict[str, Any] | None = optional()
    package_version: str | None = optional()
    device: str | None = optional()
    date: str | None = optional()

    def with_provenance(self, provenance: dict, **more):
        """This result with the provenance fields (``config``, ``package_version``, ``device``,
        ``date``: :func:`provenance`) and ``more`` (e.g. ``command``, ``run``, plots) set."""
        import dataclasses

        return dataclasses.replace(self, **provenance, **more)


@record
class MeanCI(Record):
    """A mean over prompts with its 95% normal confidence interval (``ci95``: the half-width;
    :func:`empirical.within_prompt.mean_ci`)."""

    mean: float
    ci95: float
    lo: float
    hi: float

    @classmethod
    def of(cls, x) -> "MeanCI":
        from empirical.within_prompt import mean_ci

        return cls(**mean_ci(x))
