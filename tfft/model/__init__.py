"""Backbones, heads, freezing policies and layers."""
