"""Evaluation metrics (FID, P-IDS/U-IDS, pixel metrics) behind one registry, the traditional baselines they compare
against, the multi-method comparison run with its report files, and the evaluation protocol as files (exported for
other methods' code, their completions read back as rows of the comparison)."""
