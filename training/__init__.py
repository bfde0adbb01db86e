"""Networks, losses, snapshots and the training loop (its metric registry is handed in by train.py)."""
