"""Fused bias + activation + gain + clamp (bias_act): reference, CUDA dispatch and its autograd Functions."""

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib import EasyDict
from torch_utils import custom_ops

_IMPLS = ("ref", "cuda")


def _swish(x, **_):
    return torch.sigmoid(x) * x


# def_gain keeps the signal magnitude of a unit Gaussian roughly constant (He-style) for the rectifiers;
# cuda_idx is the activation's number in ops_cuda/bias_act.cu.
activation_funcs = {
    "linear": EasyDict(func=lambda x, **_: x, def_alpha=0.0, def_gain=1.0, cuda_idx=0),
    "relu": EasyDict(func=lambda x, **_: F.relu(x), def_alpha=0.0, def_gain=float(np.sqrt(2)), cuda_idx=1),
    "lrelu": EasyDict(func=lambda x, alpha, **_: F.leaky_relu(x, alpha), def_alpha=0.2, def_gain=float(np.sqrt(2)),
                      cuda_idx=2),
    "tanh": EasyDict(func=lambda x, **_: torch.tanh(x), def_alpha=0.0, def_gain=1.0, cuda_idx=3),
    "sigmoid": EasyDict(func=lambda x, **_: torch.sigmoid(x), def_alpha=0.0, def_gain=1.0, cuda_idx=4),
    "elu": EasyDict(func=lambda x, **_: F.elu(x), def_alpha=0.0, def_gain=1.0, cuda_idx=5),
    "selu": EasyDict(func=lambda x, **_: F.selu(x), def_alpha=0.0, def_gain=1.0, cuda_idx=6),
    "softplus": EasyDict(func=lambda x, **_: F.softplus(x), def_alpha=0.0, def_gain=1.0, cuda_idx=7),
    "swish": EasyDict(func=_swish, def_alpha=0.0, def_gain=float(np.sqrt(2)), cuda_idx=8),
}


class _Cfg(NamedTuple):
    """Resolved, hashable parameters of one bias_act call."""

    dim: int
    act: str
    alpha: float
    gain: float
    clamp: float  # < 0 disables clamping


def _resolve(x, b, dim, act, alpha, gain, clamp):
    if act not in activation_funcs:
        raise ValueError(f"bias_act: unknown activation {act!r}; expected one of {sorted(activation_funcs)}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"bias_act: clamp must be None or >= 0, got {clamp}")
    if b is not None:
        if not (isinstance(b, torch.Tensor) and b.ndim == 1):
            raise ValueError("bias_act: b must be None or a 1-D tensor")
        if not 0 <= dim < x.ndim:
            raise ValueError(f"bias_act: dim {dim} out of range for a {x.ndim}-D input")
        if b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias_act: bias has {b.shape[0]} entries but x.shape[{dim}] = {x.shape[dim]}")
    spec = activation_funcs[act]
    return _Cfg(
        dim=int(dim),
        act=act,
        alpha=float(alpha if alpha is not None else spec.def_alpha),
        gain=float(gain if gain is not None else spec.def_gain),
        clamp=float(clamp if clamp is not None else -1),
    )


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
    """Add bias `b` along `dim`, apply activation `act`, multiply by `gain`, clamp to [-clamp, clamp].

    Args:
        x:     input tensor of any shape (float16/32/64).
        b:     1-D bias with x.shape[dim] entries, or None.
        dim:   the dimension of `x` that `b` runs along (ignored without `b`).
        act:   'linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus' or 'swish'.
        alpha: shape parameter (lrelu slope; default 0.2), None = the activation's default.
        gain:  output scale, None = the activation's default (sqrt(2) for relu, lrelu, swish; 1 otherwise).
        clamp: clamp the output to [-clamp, clamp], None = no clamping.
        impl:  'cuda' (our kernel on CUDA tensors, reference elsewhere) or 'ref'.

    Returns:
        tensor of the same shape and dtype as `x`; first and second order gradients are supported.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"bias_act: x must be a tensor, got {type(x).__name__}")
    if impl not in _IMPLS:
        raise ValueError(f"bias_act: impl must be one of {_IMPLS}, got {impl!r}")
    cfg = _resolve(x, b, dim, act, alpha, gain, clamp)
    if impl == "cuda" and custom_ops.use_cuda(x) and custom_ops.get_plugin() is not None:
        return _BiasActCuda.apply(x, b, cfg)
    return _bias_act_ref(x, b, cfg)


def _bias_act_ref(x, b, cfg):
    """Reference with standard PyTorch ops; PyTorch autograd provides every gradient order."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == cfg.dim else 1 for i in range(x.ndim)])
    x = activation_funcs[cfg.act].func(x, alpha=cfg.alpha)
    if cfg.gain != 1:
        x = x * cfg.gain
    if cfg.clamp >= 0:
        x = x.clamp(-cfg.clamp, cfg.clamp)
    return x


# ---------------------------------------------------------------------------------------------------------
# CUDA path: the kernel computes y (mode 0), dx = dy * d y/d x (mode 1) and d/dx of that (mode 2).

_EMPTY = torch.empty([0])


def _memory_format(t):
    return torch.channels_last if t.ndim == 4 and t.stride(1) == 1 and t.shape[1] > 1 else torch.contiguous_format


def _run(cfg, mode, g, b, ref_x, dy):
    """One kernel launch (all tensors share g's layout; device guard and stream are handled here in Python).

    mode 0: y = clamp(gain * f(g + b));  mode 1: g * gain * f'(ref_x + b);  mode 2: g * dy * gain * f''(ref_x + b),
    the derivatives being zero where the clamp is active.
    """
    plugin = custom_ops.get_plugin()
    empty = _EMPTY.to(g.device, g.dtype)
    with custom_ops.device_stream(g.device) as stream:
        return plugin.bias_act(
            g, b if b is not None else empty, ref_x if ref_x is not None else empty,
            dy if dy is not None else empty, mode, cfg.dim, activation_funcs[cfg.act].cuda_idx,
            cfg.alpha, cfg.gain, cfg.clamp, stream,
        )


def _sum_to_bias(t, dim):
    return t.sum([i for i in range(t.ndim) if i != dim])


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, cfg):
        fmt = _memory_format(x)
        x = x.contiguous(memory_format=fmt)
        b = b.contiguous().to(x.dtype) if b is not None else None
        y = _run(cfg, 0, x, b, None, None)
        ctx.cfg, ctx.fmt, ctx.has_b = cfg, fmt, b is not None
        ctx.save_for_backward(x, b if b is not None else _EMPTY)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        b = b if ctx.has_b else None
        dx = _BiasActCudaGrad.apply(dy.contiguous(memory_format=ctx.fmt), x, b, ctx.cfg)
        db = _sum_to_bias(dx, ctx.cfg.dim) if ctx.has_b and ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActCudaGrad(torch.autograd.Function):
    """dx = dy * f'(x + b) as its own op, so that R1's double backward runs through the kernel too."""

    @staticmethod
    def forward(ctx, dy, x, b, cfg):
        dx = _run(cfg, 1, dy, b, x, None)
        ctx.cfg, ctx.fmt, ctx.has_b = cfg, _memory_format(dy), b is not None
        ctx.save_for_backward(dy, x, b if b is not None else _EMPTY)
        return dx

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_dx):
        dy, x, b = ctx.saved_tensors
        b = b if ctx.has_b else None
        d_dx = d_dx.contiguous(memory_format=ctx.fmt)
        d_dy = _run(ctx.cfg, 1, d_dx, b, x, None) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if ctx.needs_input_grad[1] or (ctx.has_b and ctx.needs_input_grad[2]):
            d_x = _run(ctx.cfg, 2, d_dx, b, x, dy)
            if ctx.has_b and ctx.needs_input_grad[2]:
                d_b = _sum_to_bias(d_x, ctx.cfg.dim)
        return d_dy, d_x, d_b, None
