"""Every committed result whose experiment has a typed result reads back into it and writes
out unchanged (byte for byte), and a result file that does not fit its type is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from empirical.compare import CompareResult
from empirical.results import Record, ResultError, key, optional, record, result_class, result_types

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

#: The typed result of each experiment, by the ``command`` its result files record.
TYPED = result_types()


def _committed() -> list[tuple[Path, type]]:
    out = []
    for path in sorted(RESULTS.rglob("*.json")):
        cls = result_class(json.loads(path.read_text()))
        if cls is not None:
            out.append((path, cls))
    return out


COMMITTED = _committed()


#: Typed results that no committed file holds (``superpose verify`` writes under results/): their
#: round trip is tested on a file the test writes (tests/empirical/test_verify_cli.py).
WRITTEN_BY_TESTS = {"verify"}


def test_the_committed_typed_results_are_found():
    found = {cls for _, cls in COMMITTED}
    expected = {cls for command, cls in TYPED.items() if command not in WRITTEN_BY_TESTS}
    assert found == expected, "a typed experiment without a committed result file"
    assert not found & {TYPED[c] for c in WRITTEN_BY_TESTS}
    assert sum(cls is CompareResult for _, cls in COMMITTED) >= 5


@pytest.mark.parametrize("path,cls", COMMITTED, ids=[str(p.relative_to(RESULTS)) for p, _ in COMMITTED])
def test_a_committed_result_reads_back_and_writes_out_unchanged(path, cls):
    result = cls.from_json(path)
    assert isinstance(result, cls)
    text = path.read_text()
    assert result.to_text(indent=2 if text.startswith("{\n") else None) == text
    assert cls.from_json(result.to_json()) == cls.from_json(json.loads(path.read_text()))


def _payload() -> dict:
    path = next(p for p, cls in COMMITTED if cls is CompareResult)
    return json.loads(path.read_text())


def test_an_unknown_field_is_one_clear_error():
    payload = _payload()
    payload["behaviour"]["sweep"][3]["kl_learned_target"] = 0.1
    with pytest.raises(ResultError, match=r"behaviour\.sweep\[3\]: unknown field\(s\) \['kl_learned_target'\]"):
        CompareResult.from_json(payload)
    payload = _payload()
    payload["extra"] = 1
    with pytest.raises(ResultError, match=r"unknown field\(s\) \['extra'\] for CompareResult"):
        CompareResult.from_json(payload)


def test_a_missing_or_mistyped_field_is_an_error():
    payload = _payload()
    del payload["causal"]["learned"]["slope"]
    with pytest.raises(ResultError, match=r"causal\.learned: missing field 'slope'"):
        CompareResult.from_json(payload)
    payload = _payload()
    payload["mechanism"]["learned"]["roles"]["error"]["present"] = "yes"
    with pytest.raises(ResultError, match=r"roles\.error\.present: expected bool"):
        CompareResult.from_json(payload)
    payload = _payload()
    payload["weights"]["matching"]["pairs"][0]["a"] = [1, 2, 3]
    with pytest.raises(ResultError, match=r"pairs\[0\]\.a: expected 2 items"):
        CompareResult.from_json(payload)


@record
class _Inner(Record):
    x: float
    note: str | None = optional()


@record
class _Outer(Record):
    lam: float = key("lambda")
    inner: _Inner
    rows: tuple[_Inner, ...]
    table: dict[str, tuple[int, ...]]
    matrix: tuple[tuple[float, ...], ...]
    maybe: int | None = None


def test_records_round_trip_nested_records_tuples_dicts_and_numpy_values():
    rec = _Outer(lam=0.5, inner=_Inner(x=np.float64(1.5)), rows=(_Inner(x=1, note="a"), _Inner(x=2.0)),
                 table={"k": (np.int64(1), 2)}, matrix=np.eye(2))
    payload = rec.to_json()
    assert payload == {"lambda": 0.5, "inner": {"x": 1.5}, "rows": [{"x": 1, "note": "a"}, {"x": 2.0}],
                       "table": {"k": [1, 2]}, "matrix": [[1.0, 0.0], [0.0, 1.0]], "maybe": None}
    assert json.loads(rec.to_text()) == payload
    back = _Outer.from_json(payload)
    assert back.to_json() == payload and back.rows[0].note == "a" and back.matrix == ((1.0, 0.0), (0.0, 1.0))
    assert isinstance(back.rows, tuple) and isinstance(back.table["k"], tuple)
    with pytest.raises(ResultError, match=r"_Outer\.rows\[1\]: unknown field\(s\) \['y'\]"):
        _Outer.from_json({**payload, "rows": [{"x": 1}, {"x": 2, "y": 3}]})
    with pytest.raises(ResultError, match=r"inner\.x: expected a number"):
        _Outer.from_json({**payload, "inner": {"x": "1"}})
