"""Boundary checks shared by every module: shapes, the mask convention and device choice."""

import pytest
import torch

from dnnlib import EasyDict, UserError
from torch_utils.misc import assert_mask_convention, assert_shape, resolve_device


def test_assert_shape_accepts_wildcards_and_rejects_mismatch():
    x = torch.zeros(2, 3, 8, 8)
    assert_shape(x, [2, 3, None, None])
    with pytest.raises(ValueError, match="dim 1 is 3, expected 4"):
        assert_shape(x, [None, 4, None, None], name="x")
    with pytest.raises(ValueError, match="expected 3 dims"):
        assert_shape(x, [2, 3, 8])


def test_mask_convention_rejects_soft_and_integer_masks():
    assert_mask_convention(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="binary"):
        assert_mask_convention(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="float"):
        assert_mask_convention(torch.tensor([0, 1]))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")


def test_easydict_attribute_access():
    d = EasyDict(a=1)
    d.b = 2
    assert d["b"] == 2 and d.a == 1
    with pytest.raises(AttributeError):
        _ = d.missing
