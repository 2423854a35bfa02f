"""Backbones (registries and converters), heads, freezing policies and layers."""
