"""Metrics, baselines, significance, plots and the model card."""
