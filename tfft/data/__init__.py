"""Data sources, splits, batching and windows of long texts."""
