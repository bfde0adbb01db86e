"""Loss phases on tiny stand-in networks: R1 against the analytic value, logistic losses, style mixing, EMA."""

import math

import pytest
import torch
import torch.nn.functional as F

from training.loss import CoModGANLoss, ema_beta, update_ema

N, C, R = 3, 3, 4


class LinearD(torch.nn.Module):
    """D(x, m) = <w, x> + <v, m>: R1 penalty is exactly |w|^2 per sample."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(C, R, R))
        self.v = torch.nn.Parameter(torch.randn(1, R, R))

    def forward(self, img, mask):
        return (img * self.w).sum(dim=[1, 2, 3])[:, None] + (mask * self.v).sum(dim=[1, 2, 3])[:, None]


class Mapping(torch.nn.Module):
    def __init__(self, z_dim=5, num_ws=4):
        super().__init__()
        self.num_ws = num_ws
        self.fc = torch.nn.Linear(z_dim, 6)
        self.calls = 0
        self.register_buffer("w_avg", torch.zeros(6))

    def forward(self, z, update_emas=False):
        self.calls += 1
        w = self.fc(z)
        if update_emas:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.9))
        return w[:, None, :].repeat(1, self.num_ws, 1)


class TinyG(torch.nn.Module):
    """Stand-in with the real interface: G(img, mask, ws=ws) composites a ws-driven fill into the holes."""

    def __init__(self):
        super().__init__()
        self.mapping = Mapping()
        self.out = torch.nn.Linear(6, C)

    def forward(self, img, mask, ws):
        fill = self.out(ws.mean(1))[:, :, None, None].expand_as(img)
        return img * mask + fill * (1 - mask)


def _batch():
    torch.manual_seed(0)
    img = torch.rand(N, C, R, R) * 2 - 1
    mask = torch.ones(N, 1, R, R)
    mask[:, :, 1:3, 1:3] = 0
    return img, mask, torch.randn(N, 5)


def test_r1_matches_analytic_penalty():
    img, mask, _z = _batch()
    D = LinearD()
    gamma, gain = 10.0, 16.0
    stats = CoModGANLoss(TinyG(), D, r1_gamma=gamma).d_r1(img, mask, gain=gain)
    w2 = D.w.detach().square().sum()
    torch.testing.assert_close(stats["r1_penalty"] / N, w2)
    # loss = gain * gamma/2 * |w|^2  ->  dloss/dw = gain * gamma * w; the mask term gets no gradient.
    torch.testing.assert_close(D.w.grad, gain * gamma * D.w.detach())
    assert D.v.grad is None or torch.count_nonzero(D.v.grad) == 0


def test_logistic_losses_and_gradient_routing():
    img, mask, z = _batch()
    G, D = TinyG(), LinearD()
    loss = CoModGANLoss(G, D, style_mixing_prob=0.0, truncation_psi=1.0)
    D.requires_grad_(False)
    stats = loss.g_main(img, mask, z)
    with torch.no_grad():
        fake = G(img, mask, G.mapping(z).detach())
        expected_g = F.softplus(-D(fake, mask)).sum()
    torch.testing.assert_close(stats["loss_G"], expected_g)
    assert G.out.weight.grad is not None and torch.count_nonzero(G.out.weight.grad) > 0
    assert torch.equal(fake * mask, img * mask)  # known pixels pass through the composite

    G.zero_grad(set_to_none=True)
    G.requires_grad_(False)
    D.requires_grad_(True)
    stats = loss.d_main(img, mask, z)
    with torch.no_grad():
        expected_d = (F.softplus(D(fake, mask)) + F.softplus(-D(img, mask))).sum()
    torch.testing.assert_close(stats["loss_D"], expected_d)
    assert G.out.weight.grad is None and D.w.grad is not None
    assert torch.count_nonzero(G.mapping.w_avg) > 0  # the D phase updates the tracked w average


def test_l1_term_only_when_enabled():
    img, mask, z = _batch()
    assert "l1" not in CoModGANLoss(TinyG(), LinearD(), style_mixing_prob=0).g_main(img, mask, z)
    stats = CoModGANLoss(TinyG(), LinearD(), style_mixing_prob=0, l1_weight=1.0).g_main(img, mask, z)
    assert stats["l1"] > 0


def test_style_mixing_probability():
    img, mask, z = _batch()
    G = TinyG()
    loss = CoModGANLoss(G, LinearD(), style_mixing_prob=0.0, truncation_psi=1.0)
    loss.run_G(img, mask, z)
    assert G.mapping.calls == 1
    loss.style_mixing_prob = 1.0
    _fake, ws = loss.run_G(img, mask, z)
    assert G.mapping.calls == 3
    assert torch.equal(ws[:, 0], G.mapping(z)[:, 0]) and not torch.equal(ws[:, -1], G.mapping(z)[:, -1])


def test_path_length_regulariser_runs_and_tracks_mean():
    img, mask, z = _batch()
    G = TinyG()
    loss = CoModGANLoss(G, LinearD(), style_mixing_prob=0.0, pl_weight=2.0)
    stats = loss.g_pl(img, mask, z)
    assert torch.isfinite(stats["pl_penalty"]) and float(loss.pl_mean) > 0
    assert G.out.weight.grad is not None


def test_ema_half_life():
    batch, ema_kimg = 32, 10
    beta = ema_beta(batch, ema_kimg, cur_nimg=10**9, ema_rampup=0.05)
    steps_per_half_life = ema_kimg * 1000 / batch
    assert beta ** steps_per_half_life == pytest.approx(0.5)
    # Ramp-up: early on the half-life is cur_nimg * rampup images instead.
    assert ema_beta(batch, ema_kimg, cur_nimg=2000, ema_rampup=0.05) == pytest.approx(0.5 ** (batch / 100))
    assert ema_beta(batch, ema_kimg, cur_nimg=0, ema_rampup=None) == pytest.approx(0.5 ** (batch / 10000))

    G, G_ema = TinyG(), TinyG()
    with torch.no_grad():
        G.out.weight.fill_(1.0)
        G_ema.out.weight.fill_(3.0)
        G.mapping.w_avg.fill_(7.0)
    update_ema(G_ema, G, beta)
    # One step: w_ema = beta * w_ema + (1 - beta) * w.
    torch.testing.assert_close(G_ema.out.weight, torch.full_like(G.out.weight, 3 * beta + (1 - beta)))
    assert torch.equal(G_ema.mapping.w_avg, G.mapping.w_avg)
    assert math.isclose(beta, 0.5 ** (batch / 10000))
