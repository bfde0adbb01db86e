"""Test helper: compare our float32 torch output with a float64 NumPy reference, relative to the reference's scale."""

import numpy as np


def assert_rel_close(ours, theirs, tol=2e-4):
    """Max |ours - theirs| over max |theirs| below tol; ours is a torch tensor, theirs a NumPy array."""
    ours = ours.detach().double().numpy()
    err = np.abs(ours - theirs).max() / (np.abs(theirs).max() + 1e-12)
    assert err < tol, f"relative error {err:.2e}"
