"""--task=generate: its spec (spec.py), its Task and Target (task.py) and what only it needs."""
