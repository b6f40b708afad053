"""The result every check returns: the lemma, its configuration, the analytic bound, the worst
value measured on adversarial and random inputs, and whether the claim holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Relative slack for comparing a float64 measurement with a bound it can attain exactly (the
#: measurement's own rounding is ~1e-16 relative: 1e-9 is far above it and far below any real
#: violation, which the mutation tests show to be orders of magnitude larger).
RTOL = 1e-9

#: The relations a check can claim between ``measured`` and ``bound``.
RELATIONS = ("<=", "==", ">=")


@dataclass(frozen=True)
class LemmaResult:
    """One lemma checked at one configuration.

    ``relation`` reads "measured <relation> bound": "<=" for error bounds (the usual case),
    "==" for exact identities (a gap, a width), ">=" for guaranteed minima. ``details`` holds
    sub-measurements (e.g. per layer) as ``(name, measured, bound, holds)`` tuples.
    """

    lemma: str
    config: dict
    bound: float
    measured: float
    holds: bool
    relation: str = "<="
    details: tuple = field(default=())

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def within(measured: float, bound: float, rtol: float = RTOL, atol: float = 0.0) -> bool:
    """measured <= bound up to a relative ``rtol`` (and an absolute ``atol``); NaN never holds."""
    return bool(measured <= bound + rtol * abs(bound) + atol)


def failed(results) -> list[LemmaResult]:
    return [r for r in results if not r.holds]
