"""Exports for TF Serving: signatures and versions, publishing with parity and warmup, and loading an export back."""
