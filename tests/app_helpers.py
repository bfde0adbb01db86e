"""Shared by the web app's tests: a tiny 32x32 snapshot, test pictures and multipart forms."""

import io

import numpy as np
import PIL.Image
import torch

from training.checkpoint import save_snapshot
from training.networks import Discriminator, Generator

SMALL = dict(img_resolution=32, channel_base=128, channel_max=16, num_fp16_res=0)


def make_tiny_snapshot(path):
    """A random 32x32 generator with nonzero noise strengths (a fresh G has zero ones), saved as our snapshot."""
    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, mapping_kwargs=dict(num_layers=2), **SMALL).eval()
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.5)
    D = Discriminator(**SMALL)
    save_snapshot(path, {"G_kwargs": G.init_kwargs, "D_kwargs": D.init_kwargs, "G": G.state_dict(),
                         "G_ema": G.state_dict(), "D": D.state_dict()})
    return str(path)


def photo(h, w, seed=0):
    """A smooth colourful uint8 [H, W, 3] picture with some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def hole_mask(h, w, box):
    """uint8 mask file content, white = hole inside box (top, left, bottom, right)."""
    m = np.zeros((h, w), np.uint8)
    t, l, b, r = box
    m[t:b, l:r] = 255
    return m


def png_bytes(arr, fmt="PNG"):
    buf = io.BytesIO()
    PIL.Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def decode_png(data):
    return np.asarray(PIL.Image.open(io.BytesIO(data)).convert("RGB"))
