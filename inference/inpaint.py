"""Filling the holes of one image over several seeds: the seeds' latents, batching, and the generator call that
the chosen fit strategy (inference.fitting) wraps, once per canvas it makes.

Each seed gives its own latent z = np.random.RandomState(seed).randn(z_dim) (the stylegan2-ada convention);
with noise_mode 'random' (and any other randomness inside G, such as dropout on the global code) the torch RNG
is also seeded per seed, so a result depends on the seed only, never on the batch it ran in.
"""

import re

import numpy as np
import torch

from dnnlib import UserError
from inference.fitting import fit_and_fill
from torch_utils.misc import assert_mask_convention


class InpaintError(UserError):
    """A problem with one input file (unreadable image, mask of the wrong size, mask without a hole...)."""


# ---------------------------------------------------------------------------------------------------------------------
# Seeds.


SEED_LIMIT = 2**32 - 1  # numpy's RandomState (seed_to_z) takes seeds below 2**32


def parse_seeds(text):
    """'0-7' -> [0..7]; '1,3,10-12' -> [1, 3, 10, 11, 12]; a seed given twice runs once (first place kept). Raises
    UserError naming --seeds on bad input."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"--seeds {text!r}: '{part}' is not a number or a range like 0-7")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise UserError(f"--seeds {text!r}: range '{part}' goes backwards")
        if hi > SEED_LIMIT:  # checked before the range is expanded
            raise UserError(f"--seeds {text!r}: {hi} is too large (seeds go up to {SEED_LIMIT})")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise UserError(f"--seeds {text!r}: no seeds given")
    return list(dict.fromkeys(seeds))


def seed_to_z(seed, z_dim):
    """The latent of one seed: float32 [z_dim], independent of batching and of the device."""
    return np.random.RandomState(seed).randn(z_dim).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Running the generator.


def run_inpainter(G, img, mask, z, *, torch_seed=None, **G_kwargs):
    """The one call of an inpainter that every user makes (generate.py, the web app, the metrics): G(img, mask, z)
    without gradients, under torch_seed when given, with the caller's torch RNG left as it was.

    G: a Generator (G_kwargs such as truncation_psi, noise_mode, dropout go to it) or any callable
    fn(img, mask, z, **G_kwargs) -> img such as metrics.baselines' (G_kwargs: what it takes, e.g. seeds).
    img float [N, 3, H, W] in [-1, 1], mask [N, 1, H, W] with 1 = known, z [N, z_dim] or None.
    """
    assert_mask_convention(mask, "inpaint mask")
    devices = [img.device] if img.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        if torch_seed is not None:
            torch.manual_seed(torch_seed)
        return G(img, mask, z, **G_kwargs)


def _run_generator(G, canvas, canvas_mask, seeds, device, truncation_psi, noise_mode, dropout, seed_torch):
    img = torch.from_numpy(canvas).to(device)[None].repeat(len(seeds), 1, 1, 1)
    mask = torch.from_numpy(canvas_mask).to(device)[None].repeat(len(seeds), 1, 1, 1)
    z = torch.from_numpy(np.stack([seed_to_z(s, G.z_dim) for s in seeds])).to(device)
    out = run_inpainter(G, img, mask, z, torch_seed=seeds[0] if seed_torch else None,
                        truncation_psi=truncation_psi, noise_mode=noise_mode, dropout=dropout)
    return out.float().cpu().numpy()


def inpaint_photo(G, img, mask, seeds, *, device, truncation_psi=1.0, noise_mode="const", dropout=False,
                  batch_size=8, fit="auto", face_index=None, fit_fallback="none", name="image"):
    """Fill the holes of one uint8 [H, W, 3] image (mask float32 [H, W], 1 = known) once per seed.

    fit: auto, resize, crop or face (inference.fitting.FIT_CHOICES); face_index picks one of several faces and
    fit_fallback (none, crop, resize) runs instead when the face fit cannot frame a face; name is the image's
    name in error messages. Returns (one uint8 [H, W, 3] result per seed, fitting.FitReport). With noise_mode
    'const' and no dropout the seeds run batched (the output then depends on z only); with noise_mode 'random'
    or dropout=True (the global code's dropout, on at inference in the official code) each seed runs alone
    under its own torch seed so that results stay reproducible per seed whatever the batch size.
    """
    per_seed_rng = noise_mode == "random" or dropout
    step = 1 if per_seed_rng else max(1, int(batch_size))

    def fill(canvas, canvas_mask):
        outs = []
        for i in range(0, len(seeds), step):
            outs.extend(_run_generator(G, canvas, canvas_mask, list(seeds[i : i + step]), device, truncation_psi,
                                       noise_mode, dropout, per_seed_rng))
        return outs

    return fit_and_fill(img, mask, G.img_resolution, fill, fit=fit, face_index=face_index, fallback=fit_fallback,
                        name=name)


def inpaint_image(G, img, mask, seeds, **kwargs):
    """inpaint_photo without the report: one uint8 [H, W, 3] result per seed (the same keyword arguments)."""
    return inpaint_photo(G, img, mask, seeds, **kwargs)[0]
