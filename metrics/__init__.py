"""Evaluation metrics (FID, P-IDS/U-IDS, pixel metrics) behind one registry."""
