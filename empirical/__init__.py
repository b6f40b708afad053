"""Experiments: the verify job, training from scratch, real LLMs, plots and the CLI."""
