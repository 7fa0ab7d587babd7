"""Experiments: config-driven, seeded grids of runs (``kadapter-experiment``); see docs/experiments.md."""
