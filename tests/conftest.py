"""Shared test settings: hypothesis profiles and pinned float32 matmul precision."""

import os

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_default_matmul_precision", "highest")

# "ci": bounded and deterministic, for the 2-core CI machine (the default).
settings.register_profile(
    "ci",
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# "thorough": many examples (HYPOTHESIS_PROFILE=thorough, make test-thorough): each example of
# the construction's property tests is a group of up to 32 task sets of one shape.
settings.register_profile(
    "thorough",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# The property run's summary (cases checked per test, failures, seconds, device), written
# where SUPERPOSE_CASES_SUMMARY points (make test-thorough does; see the README).
_OUTCOMES: dict[str, str] = {}
_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when == "call":
        _SECONDS[report.nodeid] = report.duration
    if (report.when == "call" or report.failed) and _OUTCOMES.get(report.nodeid) != "failed":
        _OUTCOMES[report.nodeid] = report.outcome


def pytest_sessionfinish(session, exitstatus):
    _bad_input_summary()
    path = os.environ.get("SUPERPOSE_CASES_SUMMARY")
    if not path:
        return
    import datetime
    import platform

    from empirical.results import device_name, write_json
    from tests.construction.strategies import CASES_PER_SHAPE, CHECKED

    tests = {node: {"cases": CHECKED.get(node, 0), "outcome": outcome, "seconds": round(_SECONDS.get(node, 0.0), 1)}
             for node, outcome in sorted(_OUTCOMES.items())}
    write_json(path, {
        "what": "construction property tests, generated cases grouped by shape (one compilation per shape)",
        "profile": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
        "hypothesis_examples_per_test": settings.default.max_examples,
        "cases_per_shape_at_most": CASES_PER_SHAPE,
        "cases": sum(t["cases"] for t in tests.values()),
        "failures": sum(t["outcome"] == "failed" for t in tests.values()),
        "seconds": round(sum(_SECONDS.values()), 1),
        "device": device_name(),
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tests": tests,
    })


def _bad_input_summary() -> None:
    """tests/test_bad_input.py's counts, where SUPERPOSE_BAD_INPUT_SUMMARY points."""
    import sys

    path = os.environ.get("SUPERPOSE_BAD_INPUT_SUMMARY")
    module = sys.modules.get("tests.test_bad_input")
    if not path or module is None:
        return
    import datetime

    from empirical.results import write_json

    failed = sorted(n for n, o in _OUTCOMES.items() if o == "failed" and "test_bad_input" in n)
    write_json(path, {
        "what": "bad input at every public entry point: cases tried, clean errors (one line naming the "
                "problem, CLI exit 2, no new file left), inputs that proved valid after all, and failed "
                "cases (neither)",
        "classes": {k: {**v, "failed": v["tried"] - v["clean"] - v["accepted"]}
                    for k, v in sorted(module.BAD_INPUT.items())},
        "tried": sum(v["tried"] for v in module.BAD_INPUT.values()),
        "clean": sum(v["clean"] for v in module.BAD_INPUT.values()),
        "failed_tests": failed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
