"""Data sources and splits."""
