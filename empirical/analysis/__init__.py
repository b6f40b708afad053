"""The analysis kit: every measure the experiments share, written once, one kind per module.

- :mod:`~empirical.analysis.divergence`: KL (one floor convention) and total variation, row-wise;
- :mod:`~empirical.analysis.grid`: the lambda grid of the two-task sweeps;
- :mod:`~empirical.analysis.prompts`: prompt sets over a task set (Dirichlet groups, two-task mixtures);
- :mod:`~empirical.analysis.probes`: held-out ridge probes;
- :mod:`~empirical.analysis.similarity`: linear CKA of representations;
- :mod:`~empirical.analysis.circuits`: head circuits in a feature basis, Hungarian head matching,
  averaging heads and head ablation.

The experiments (:mod:`empirical.compare`, :mod:`empirical.sweep`, :mod:`empirical.verify`, ...)
combine these over a :class:`empirical.models.Model`.
"""
