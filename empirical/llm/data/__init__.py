"""Checked-in data of the task families (see ``generate.py`` for their sources)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ("numbers.json", "countries.json", "words.json", "rare_words.json")


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def load(name: str) -> dict:
    """The parsed contents of one data file (``numbers.json``, ``countries.json``, ``words.json``, ``rare_words.json``)."""
    if name not in FILES:
        raise ValueError(f"unknown data file {name!r} (have: {', '.join(FILES)})")
    return json.loads(_read(name))
