"""Theorem 1's lemmas and bounds (docs/theory.md section 5) as executable float64 checks.

Each check takes a configuration (or a built model) and returns a :class:`LemmaResult`: the
analytic bound (from the construction's own formulas), the worst value measured on
adversarial and random inputs, and whether the claim holds.

    from proofs_check import run_all, format_table
    print(format_table(run_all(grid="quick")))
"""

from proofs_check.composition import adversarial_prompts, attention_leak, end_to_end, readout_kl, score_gap, width
from proofs_check.lemmas import (
    averaging_error,
    binary_code_gap,
    indicator_exactness,
    log_approximation,
    product_approximation,
    relu_identities,
    softmax_hard_attention,
)
from proofs_check.report import GRIDS, check, format_table, run_all
from proofs_check.results import LemmaResult, failed

__all__ = [
    "GRIDS", "LemmaResult", "adversarial_prompts", "attention_leak", "averaging_error", "binary_code_gap",
    "check", "end_to_end", "failed", "format_table", "indicator_exactness", "log_approximation", "product_approximation",
    "readout_kl", "relu_identities", "run_all", "score_gap", "softmax_hard_attention", "width",
]
