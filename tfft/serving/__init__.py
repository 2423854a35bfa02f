"""Exports for TF Serving: signatures and versions, the parity check, warmup requests, and an export read back."""
