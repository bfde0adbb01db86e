"""Evaluation metrics (FID, P-IDS/U-IDS, pixel metrics) behind one registry, the traditional baselines they compare
against, and the multi-method comparison run with its report files."""
