"""Checks at module boundaries (shapes, the mask convention) and device selection."""

import torch

from dnnlib import UserError


def assert_shape(tensor, ref_shape, name="tensor"):
    """Raise ValueError unless `tensor` has len(ref_shape) dims and matches every non-None entry."""
    if tensor.ndim != len(ref_shape):
        raise ValueError(f"{name}: expected {len(ref_shape)} dims {list(ref_shape)}, got shape {list(tensor.shape)}")
    for idx, (size, ref) in enumerate(zip(tensor.shape, ref_shape)):
        if ref is None:
            continue
        if isinstance(ref, torch.Tensor):
            ref = int(ref)
        if size != ref:
            raise ValueError(f"{name}: dim {idx} is {size}, expected {ref} (shape {list(tensor.shape)})")


def assert_mask_convention(mask, name="mask"):
    """The one internal convention: float mask, 1 = known pixel, 0 = hole, values in {0, 1}.

    Called where masks enter G, D, the dataset pipeline and the metrics. Soft values are rejected because
    every composite (`img * mask + fake * (1 - mask)`) and every hole-ratio bucket assumes a binary mask.
    While torch.export traces (ONNX export) only the dtype is checked.
    """
    if not torch.is_floating_point(mask):
        raise ValueError(f"{name}: must be a float tensor (1 = known, 0 = hole), got dtype {mask.dtype}")
    if torch.compiler.is_exporting():
        return  # a check on the values cannot be traced into a graph; the ONNX runner makes it before the graph
    if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name}: must be binary with 1 = known pixel and 0 = hole; found values outside {{0, 1}}")


def resolve_device(spec="auto"):
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is a UserError, not a deep CUDA traceback."""
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {spec}: no CUDA device is available on this machine (use --device cpu)")
    try:
        return torch.device(spec)
    except RuntimeError as err:
        raise UserError(f"--device {spec}: not a valid device ({err})") from None
