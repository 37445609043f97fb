"""Judging a model: metrics, pictures, the report and evaluate()."""
