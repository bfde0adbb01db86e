"""The CoModGAN objectives (non-saturating logistic G/D loss with masks, lazy R1, optional path length and L1)
and the generator's exponential moving average."""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils.misc import assert_mask_convention


class CoModGANLoss:
    """Accumulates gradients for one phase at a time; each phase method runs backward and returns detached stats.

    Every generator forward here is a training forward of the official G_main (training/co_mod_gan.py,
    is_training=True): it updates the tracked w average from this batch's mapping output (before mixing), mixes
    styles, then truncates all layers toward that average by `truncation_psi` (0.5 in the official training,
    whose "Validate arguments" block resets only truncation_cutoff when is_training), in the G and D phases alike.

    Stats are per-sample sums (so the caller can average over rounds and ranks exactly) keyed by name.
    Randomness (style-mixing cutoff, mixing z, generator noise, path-length noise) comes from torch's global
    RNG, which the training loop re-seeds from the step counter so that runs are reproducible and resumable.
    """

    def __init__(self, G, D, r1_gamma=10.0, style_mixing_prob=0.5, truncation_psi=0.5, pl_weight=0.0,
                 pl_decay=0.01, pl_batch_shrink=2, l1_weight=0.0, augment_pipe=None):
        self.G = G                                  # Generator (not wrapped: gradients are all-reduced by hand)
        self.D = D                                  # Discriminator
        self.r1_gamma = float(r1_gamma)             # R1 weight; the penalty is |grad|^2 * gamma / 2
        self.style_mixing_prob = float(style_mixing_prob)
        self.truncation_psi = float(truncation_psi)  # training truncation, all layers (official 0.5; 1 = none)
        self.pl_weight = float(pl_weight)           # 0 disables path length regularisation (CoModGAN default)
        self.pl_decay = float(pl_decay)             # running-mean decay of the path lengths
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.l1_weight = float(l1_weight)           # 0 in the published training
        self.pl_mean = None                         # lazily created on the right device
        self.augment_pipe = augment_pipe            # training.augment.AugmentPipe (image and mask) or None

    # -- building blocks ------------------------------------------------------------------------------------
    def run_G(self, img, mask, z, update_emas=True):
        """Map z (updating the w average), mix styles, truncate, inpaint. Returns (composited image, ws).

        ws is what the synthesis receives (after truncation); the path-length term differentiates with respect to
        it. update_emas=False leaves the w average alone (callers outside a training step)."""
        ws = self.G.mapping(z, update_emas=update_emas)
        if self.style_mixing_prob > 0 and ws.shape[1] > 1:
            # Drawn on the CPU generator: no device sync, and the same decision on every device type.
            if float(torch.rand([])) < self.style_mixing_prob:
                cutoff = int(torch.randint(1, ws.shape[1], []))
                mixed = self.G.mapping(torch.randn_like(z), update_emas=False)
                ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        if self.truncation_psi != 1:
            # Toward the average as updated by this very forward (the official update op runs before the
            # dlatents are read); all layers, no cutoff.
            ws = self.G.mapping.w_avg.to(ws.dtype).lerp(ws, self.truncation_psi)
        return self.G(img, mask, ws=ws), ws

    def run_D(self, img, mask):
        """D on what it is shown: with augmentation, the augmented image and its mask (reals, fakes and R1's
        reals alike, as stylegan2-ada's run_D); gradients flow back to the un-augmented image."""
        if self.augment_pipe is not None:
            img, mask = self.augment_pipe(img, mask)
        return self.D(img, mask)

    # -- phases ---------------------------------------------------------------------------------------------
    def g_main(self, real_img, mask, z, gain=1.0):
        """Generator: maximise D's logits on inpainted images (softplus(-D(G))), plus the optional L1 term."""
        assert_mask_convention(mask, "mask (G phase)")
        fake, _ws = self.run_G(real_img, mask, z)
        logits = self.run_D(fake, mask)
        loss = F.softplus(-logits).flatten()
        stats = {"loss_G": loss.detach().sum(), "scores_fake": logits.detach().sum()}
        if self.l1_weight != 0:
            l1 = (fake - real_img).abs().mean(dim=[1, 2, 3])
            loss = loss + l1 * self.l1_weight
            stats["l1"] = l1.detach().sum()
        loss.mean().mul(gain).backward()
        return stats

    def g_pl(self, real_img, mask, z, gain=1.0):
        """Generator path length regularisation on a shrunk batch (off unless pl_weight != 0)."""
        n = max(real_img.shape[0] // self.pl_batch_shrink, 1)
        fake, ws = self.run_G(real_img[:n], mask[:n], z[:n])
        noise = torch.randn_like(fake) / np.sqrt(fake.shape[2] * fake.shape[3])
        (grads,) = torch.autograd.grad(outputs=[(fake * noise).sum()], inputs=[ws], create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        if self.pl_mean is None:
            self.pl_mean = torch.zeros([], device=lengths.device)
        pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.pl_decay)
        self.pl_mean.copy_(pl_mean)
        penalty = (lengths - pl_mean).square()
        (fake[:, 0, 0, 0] * 0 + penalty * self.pl_weight).mean().mul(gain).backward()
        return {"pl_penalty": penalty.detach().sum() * (real_img.shape[0] / n)}

    def d_main(self, real_img, mask, z, gain=1.0):
        """Discriminator: softplus(D(fake)) + softplus(-D(real)), both conditioned on the mask."""
        assert_mask_convention(mask, "mask (D phase)")
        with torch.no_grad():
            fake, _ws = self.run_G(real_img, mask, z)
        fake_logits = self.run_D(fake, mask)
        real_logits = self.run_D(real_img.detach(), mask)
        loss = F.softplus(fake_logits) + F.softplus(-real_logits)
        loss.mean().mul(gain).backward()
        return {"loss_D": loss.detach().sum(), "scores_fake": fake_logits.detach().sum(),
                "scores_real": real_logits.detach().sum(), "signs_real": real_logits.detach().sign().sum()}

    def d_r1(self, real_img, mask, gain=1.0):
        """R1: gamma/2 * |dD(x)/dx|^2 on reals, gradient w.r.t. the image only (the mask is a detached input),
        and w.r.t. the image before augmentation, as stylegan2-ada takes it."""
        real = real_img.detach().requires_grad_(True)
        logits = self.run_D(real, mask.detach())
        (grads,) = torch.autograd.grad(outputs=[logits.sum()], inputs=[real], create_graph=True)
        penalty = grads.square().sum(dim=[1, 2, 3])
        (logits.flatten() * 0 + penalty * (self.r1_gamma / 2)).mean().mul(gain).backward()
        # Its signs count towards ADA's statistic too (stylegan2-ada reports Loss/signs/real in Dr1 as well).
        return {"r1_penalty": penalty.detach().sum(), "signs_real": logits.detach().sign().sum()}


def ema_beta(batch_size, ema_kimg, cur_nimg, ema_rampup=None):
    """Per-step EMA decay for a half-life of `ema_kimg` thousand images, shortened early on by `ema_rampup`.

    Without rampup (None, the official recipe) it is constant: Gs_beta = 0.5 ** (minibatch / (G_smoothing_kimg *
    1000)) of the official training_loop.py. With rampup r (our `tiny` preset), the half-life is
    min(ema_kimg * 1000, cur_nimg * r) images, so a short run does not drag in the random initial weights.
    """
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema, G, beta):
    """G_ema <- beta * G_ema + (1 - beta) * G for parameters; buffers (w average, noise) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b.detach())
