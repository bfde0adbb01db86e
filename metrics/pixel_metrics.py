"""Pixel metrics of inpainted vs. real images (`pix<N>`): L1 in the hole and over the whole image, PSNR and SSIM,
reported overall, per hole-ratio bucket (NVIDIA and CoModGAN schemes) and for center holes. No detector needed.

Conventions (MAT's evaluation scripts): uint8 images; L1 in [0, 1] units (|a - b| / 255) averaged per image;
PSNR with data range 255 per image, its mean over images (a zero error is clipped at MSE 1e-10, i.e. ~148 dB, so
one perfect image cannot make the mean infinite); SSIM of Wang et al. 2004 (11x11 Gaussian window, sigma 1.5,
population statistics, data range 255, mean over the three channels). Images smaller than 11 pixels (only tiny
test/demo sets) use the largest odd uniform window that fits, at least 3: such numbers are not comparable to papers.
"""

import numpy as np
from skimage.metrics import structural_similarity

from metrics.distributed import gather_rows
from metrics.eval_set import iterate_eval_pairs

ROW_FIELDS = ("hole_ratio", "l1_hole", "l1", "psnr", "ssim", "center")
VALUE_FIELDS = ("l1_hole", "l1", "psnr", "ssim")
SSIM_GAUSSIAN_MIN_SIZE = 11  # the 11x11 Gaussian window of Wang et al. (sigma 1.5, truncated at 3.5 sigma)


def ssim_uint8(real, fake):
    """SSIM of two uint8 HWC images (see the module docstring for the window choice)."""
    size = min(real.shape[0], real.shape[1])
    kwargs = dict(data_range=255, channel_axis=-1, use_sample_covariance=False)
    if size >= SSIM_GAUSSIAN_MIN_SIZE:
        kwargs.update(gaussian_weights=True, sigma=1.5)
    else:
        win = size if size % 2 == 1 else size - 1
        if win < 3:
            raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {real.shape[0]}x{real.shape[1]}")
        kwargs.update(win_size=win)
    return float(structural_similarity(real.astype(np.float64), fake.astype(np.float64), **kwargs))


def psnr_uint8(real, fake):
    mse = np.mean((real.astype(np.float64) - fake.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def is_center_hole(mask):
    """True if the hole (mask == 0) is one filled axis-aligned rectangle centred in the image (within a pixel)."""
    hole = np.asarray(mask) == 0
    if not hole.any():
        return False
    rows = np.flatnonzero(hole.any(axis=1))
    cols = np.flatnonzero(hole.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    filled = hole.sum() == (r1 - r0 + 1) * (c1 - c0 + 1)
    centred = abs((r0 + r1) - (hole.shape[0] - 1)) <= 1 and abs((c0 + c1) - (hole.shape[1] - 1)) <= 1
    return bool(filled and centred)


def pixel_row(real, fake, mask):
    """One row of ROW_FIELDS for uint8 CHW real/fake and an [H, W] mask (1 = known)."""
    real = np.asarray(real).transpose(1, 2, 0)
    fake = np.asarray(fake).transpose(1, 2, 0)
    mask = np.asarray(mask, np.float64)
    diff = np.abs(real.astype(np.float64) - fake.astype(np.float64)) / 255.0
    hole = mask == 0
    l1_hole = float(diff[hole].mean()) if hole.any() else float("nan")
    return [float(hole.mean()), l1_hole, float(diff.mean()), psnr_uint8(real, fake), ssim_uint8(real, fake),
            float(is_center_hole(mask))]


def _mean_values(rows):
    out = {"num": int(len(rows))}
    for name in VALUE_FIELDS:
        col = rows[:, ROW_FIELDS.index(name)]
        col = col[~np.isnan(col)]
        out[name] = float(col.mean()) if len(col) else float("nan")
    return out


def summarize_rows(rows):
    """Flat dict: overall `l1_hole, l1, psnr, ssim, num`, then `<scheme>:<bucket>/<field>` per hole-ratio bucket
    (NVIDIA 0-10%..50-60%, CoModGAN 0-20%..80-100%) and `center/<field>` for items with a center hole."""
    from data.masks import HOLE_BUCKETS, bucket_label

    rows = np.asarray(rows, np.float64).reshape(-1, len(ROW_FIELDS))
    results = _mean_values(rows)
    ratios = rows[:, ROW_FIELDS.index("hole_ratio")]
    for scheme in HOLE_BUCKETS:
        labels = np.array([bucket_label(float(r), scheme) or "" for r in ratios])
        for lo, hi in HOLE_BUCKETS[scheme]:
            label = bucket_label((lo + hi) / 2, scheme)
            sel = labels == label
            if sel.any():
                results.update({f"{scheme}:{label}/{k}": v for k, v in _mean_values(rows[sel]).items()})
    center = rows[:, ROW_FIELDS.index("center")] == 1
    if center.any():
        results.update({f"center/{k}": v for k, v in _mean_values(rows[center]).items()})
    return results


def compute_pixel_metrics(opts, G, dataset, num_items):
    """Pixel metrics over N inpainted items. Loads no detector. Empty dict on ranks != 0."""
    all_idx, rows = [], []
    for pairs in iterate_eval_pairs(opts, G, dataset, num_items):
        real, fake, mask = pairs.real.cpu().numpy(), pairs.fake.cpu().numpy(), pairs.mask.cpu().numpy()
        all_idx.extend(pairs.indices)
        rows.extend(pixel_row(real[k], fake[k], mask[k, 0]) for k in range(len(pairs.indices)))
    rows = gather_rows(opts, all_idx, np.asarray(rows, np.float64).reshape(-1, len(ROW_FIELDS)))
    if opts.rank != 0:
        return {}
    return summarize_rows(rows)
