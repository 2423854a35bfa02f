"""Metrics, baselines, significance, plots, the model card and the summaries."""
