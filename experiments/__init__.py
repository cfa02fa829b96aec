"""Experiments: one module per paper (configs, glue, evaluations, report section)."""
