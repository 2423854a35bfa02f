"""Backbone registries and loaders (text: keras-hub)."""
