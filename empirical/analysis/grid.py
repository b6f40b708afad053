"""The lambda grid of the two-task sweeps: the share of task A from 0 to 1 in steps of 0.1 (the paper's)."""

LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
