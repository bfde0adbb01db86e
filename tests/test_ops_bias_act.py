"""bias_act reference against closed-form activations, its defaults and clamp, and float64 (grad)gradchecks."""

import math

import pytest
import torch

from torch_utils.ops.bias_act import activation_funcs, bias_act

SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772

# Closed forms written independently of torch.nn.functional.
NAIVE = {
    "linear": lambda v, a: v,
    "relu": lambda v, a: torch.where(v > 0, v, torch.zeros_like(v)),
    "lrelu": lambda v, a: torch.where(v > 0, v, a * v),
    "tanh": lambda v, a: (torch.exp(2 * v) - 1) / (torch.exp(2 * v) + 1),
    "sigmoid": lambda v, a: 1 / (1 + torch.exp(-v)),
    "elu": lambda v, a: torch.where(v > 0, v, torch.exp(v) - 1),
    "selu": lambda v, a: SELU_SCALE * torch.where(v > 0, v, SELU_ALPHA * (torch.exp(v) - 1)),
    "softplus": lambda v, a: torch.log(1 + torch.exp(v)),
    "swish": lambda v, a: v / (1 + torch.exp(-v)),
}
DEFAULT_GAIN = {"relu": math.sqrt(2), "lrelu": math.sqrt(2), "swish": math.sqrt(2)}
ACTS = sorted(NAIVE)


def test_every_activation_is_registered():
    assert sorted(activation_funcs) == ACTS


@pytest.mark.parametrize("act", ACTS)
def test_defaults_match_closed_form(act):
    x = torch.randn(3, 5, 4, 2, dtype=torch.float64) * 2
    b = torch.randn(5, dtype=torch.float64)
    alpha = 0.2 if act == "lrelu" else 0.0
    expected = NAIVE[act](x + b.reshape(1, 5, 1, 1), alpha) * DEFAULT_GAIN.get(act, 1.0)
    torch.testing.assert_close(bias_act(x, b, act=act, impl="ref"), expected)


def test_dim_alpha_gain_clamp():
    x = torch.randn(4, 3, 6, dtype=torch.float64) * 3
    b = torch.randn(6, dtype=torch.float64)
    y = bias_act(x, b, dim=2, act="lrelu", alpha=0.1, gain=2.0, clamp=1.5, impl="ref")
    expected = (NAIVE["lrelu"](x + b, 0.1) * 2.0).clamp(-1.5, 1.5)
    torch.testing.assert_close(y, expected)
    assert float(y.abs().max()) == 1.5
    torch.testing.assert_close(bias_act(x, act="linear"), x)  # no bias, no gain: identity


def test_impl_cuda_on_cpu_is_the_reference():
    x = torch.randn(2, 8, 5, 5)
    b = torch.randn(8)
    y1 = bias_act(x, b, act="lrelu", clamp=0.5, impl="cuda")
    y2 = bias_act(x, b, act="lrelu", clamp=0.5, impl="ref")
    assert torch.equal(y1, y2)


def test_bad_arguments():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu2")
    with pytest.raises(ValueError, match="bias has 4 entries"):
        bias_act(x, torch.zeros(4))
    with pytest.raises(ValueError, match="clamp"):
        bias_act(x, clamp=-1)


def _away_from_kinks(shape, gen):
    """float64 inputs away from 0 (relu kinks) so finite differences are valid."""
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    return x + torch.sign(x) * 0.1


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.8])
def test_gradcheck_gradgradcheck(act, clamp):
    gen = torch.Generator().manual_seed(ACTS.index(act))
    x = _away_from_kinks([2, 3, 2, 2], gen).requires_grad_(True)
    b = torch.zeros(3, dtype=torch.float64).requires_grad_(True)
    if clamp is not None:
        # Keep the outputs away from the clamp boundary, where the derivative jumps.
        with torch.no_grad():
            y = bias_act(x, b, act=act, impl="ref")
            near = (y.abs() - clamp).abs() < 0.05
            x[near] += 0.2
    assert torch.autograd.gradcheck(lambda t, u: bias_act(t, u, act=act, clamp=clamp, impl="ref"), (x, b))
    assert torch.autograd.gradgradcheck(lambda t, u: bias_act(t, u, act=act, clamp=clamp, impl="ref"), (x, b))
