"""Mask-consistent adaptive discriminator augmentation: stylegan2-ada's 'bgc' pipeline applied to an image batch and
its mask together (geometry moves both, colour touches RGB only), and the ADA heuristic that tunes its strength p.

The operations, their defaults and the order of the random draws follow NVlabs stylegan2-ada-pytorch
`training/augment.py` (AugmentPipe) and the heuristic its `training/training_loop.py` ("Execute ADA heuristic").
What is ours: the mask. D receives (image, mask), so a geometric op that moved the image but not the mask would
show D holes where none are; the mask therefore takes the image's geometry and stays binary (see augment()).
"""

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils.misc import assert_shape
from torch_utils.ops import upfirdn2d

GEOMETRIC_OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
# stylegan2-ada train.py `augpipe_specs['bgc']`: blit + geometric + colour, every probability multiplier 1.
BGC = {name: 1.0 for name in GEOMETRIC_OPS + COLOR_OPS}

# Low-pass filter of the geometric resampling: the orthogonal symlet-6 wavelet (PyWavelets 'sym6' dec_lo, the
# filter stylegan2-ada's AugmentPipe calls Hz_geom). Orthogonality makes upsample-then-downsample an identity.
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)


# ---------------------------------------------------------------------------------------------------------------
# Batched homogeneous matrices: every entry is a number or a per-image tensor [N].


def _matrix(rows, like):
    """[N, R, C] float tensor from R rows of C entries (numbers or [N] tensors shaped like `like`)."""
    entries = [e if isinstance(e, torch.Tensor) else torch.full_like(like, float(e)) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(like.shape[0], len(rows), len(rows[0]))


def _translate2d(tx, ty, like):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def _scale2d(sx, sy, like):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def _rotate2d(theta, like):
    return _matrix([[torch.cos(theta), -torch.sin(theta), 0], [torch.sin(theta), torch.cos(theta), 0], [0, 0, 1]],
                   like)


def _translate3d(t, like):
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], like)


def _scale3d(s, like):
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], like)


def _rotate3d(v, theta, like):
    """Rotation by `theta` about the unit axis v (Rodrigues), as a homogeneous 4x4 matrix per image."""
    vx, vy, vz = (float(c) for c in v[:3])
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                    [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                    [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                    [0, 0, 0, 1]], like)


# ---------------------------------------------------------------------------------------------------------------
# The geometric resampling's filtering as matrices: on the CPU a dense matmul with these small banded matrices is
# several times faster than depthwise (transposed) convolutions, and autograd differentiates it to any order.


@functools.lru_cache(maxsize=64)
def _fir_matrix(length, up, down, pad0, pad1, flip):
    """[length, out] float64 matrix of 1-D upfirdn (upfirdn2d's semantics, symlet-6 filter normalised to sum 1,
    gain `up`): zero-insert by `up`, pad by (pad0, pad1) (negative crops), convolve, keep every `down`-th."""
    f = np.asarray(SYM6, np.float64)
    f = f / f.sum() * up
    taps = len(f)
    if not flip:
        f = f[::-1]  # a true convolution reads the filter backwards
    out = (length * up + pad0 + pad1 - taps) // down + 1
    m = np.zeros([length, out])
    for k in range(out):
        for j in range(taps):
            src = k * down + j - pad0  # index into the zero-inserted signal
            if src % up == 0 and 0 <= src // up < length:
                m[src // up, k] += f[j]
    return m


def _filter_separable(x, up, down, pad, flip):
    """upfirdn2d with the symlet-6 filter along both axes of x [N, C, H, W] by matrix products."""
    mw = torch.from_numpy(_fir_matrix(x.shape[3], up, down, pad[0], pad[1], flip)).to(x.device, x.dtype)
    mh = torch.from_numpy(_fir_matrix(x.shape[2], up, down, pad[0], pad[1], flip)).to(x.device, x.dtype)
    n, c, h, _w = x.shape
    x = (x.reshape(-1, x.shape[3]) @ mw).reshape(n, c, h, -1)  # along rows: one product over all N * C * H rows
    x = x.transpose(2, 3).reshape(-1, h) @ mh  # along columns likewise (mh.t() @ x would batch N * C small ones)
    return x.reshape(n, c, -1, mh.shape[1]).transpose(2, 3)


def _upsample2x(x):
    """upfirdn2d.upsample2d(x, sym6, up=2)."""
    if x.device.type == "cuda":
        return upfirdn2d.upsample2d(x, upfirdn2d.setup_filter(list(SYM6), device=x.device), up=2)
    taps = len(SYM6)
    return _filter_separable(x, 2, 1, ((taps + 1) // 2, (taps - 2) // 2), flip=False)


def _downsample2x(x, crop):
    """upfirdn2d.downsample2d(x, sym6, down=2, padding=-crop, flip_filter=True)."""
    if x.device.type == "cuda":
        return upfirdn2d.downsample2d(x, upfirdn2d.setup_filter(list(SYM6), device=x.device), down=2,
                                      padding=-crop, flip_filter=True)
    taps = len(SYM6)
    return _filter_separable(x, 1, 2, (-crop + (taps - 1) // 2, -crop + (taps - 2) // 2), flip=True)


# ---------------------------------------------------------------------------------------------------------------
# The pipeline.


class AugmentPipe(torch.nn.Module):
    """Augments (image [N, 3, H, W] in [-1, 1], mask [N, 1, H, W] with 1 = known) with probability multiplier
    `p` (the ADA strength; 0 = identity). Every op is drawn per image: it applies with probability mult * p.

    Geometric ops build one inverse affine map per image (output pixel -> input pixel), which resamples the image
    as stylegan2-ada does (reflect padding, 2x upsampling with the symlet-6 filter, bilinear grid_sample, filtered
    2x downsampling) and the mask with the same map at its own resolution: the hole indicator is reflect-padded
    like the image, warped bilinearly and thresholded at 0.5, so the mask stays binary, follows every hole the
    image shows (including holes mirrored in by the padding), and reads "known" outside the padded image, where
    the image is a constant. The padding is mirrored rather than filled with "known" because a fake's mirrored
    border holds G's pixels: labelled known, D would see generated pixels where the mask promises real ones, and
    straight hole edges along the original frame. Colour ops are one 4x4 colour matrix per image on RGB; the
    mask is not touched.
    """

    def __init__(self, p=0.0,
                 # Probability multipliers of the ops (0 = off; 'bgc' sets every one to 1):
                 xflip=0.0, rotate90=0.0, xint=0.0, scale=0.0, rotate=0.0, aniso=0.0, xfrac=0.0,
                 brightness=0.0, contrast=0.0, lumaflip=0.0, hue=0.0, saturation=0.0,
                 xint_max=0.125,  # integer translation range, fraction of the image size
                 scale_std=0.2,  # log2 std of isotropic scaling
                 rotate_max=1.0,  # rotation range, 1 = full turn
                 aniso_std=0.2,  # log2 std of anisotropic scaling
                 xfrac_std=0.125,  # std of fractional translation, fraction of the image size
                 brightness_std=0.2,  # std of the brightness offset
                 contrast_std=0.5,  # log2 std of contrast
                 hue_max=1.0,  # hue rotation range, 1 = full turn
                 saturation_std=1.0):  # log2 std of saturation
        super().__init__()
        self.p = float(p)  # overall probability multiplier; the ADA heuristic moves it
        self.mult = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso,
                         xfrac=xfrac, brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue,
                         saturation=saturation)
        self.mult = {k: float(v) for k, v in self.mult.items()}
        self.xint_max, self.scale_std, self.rotate_max = float(xint_max), float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)

    def forward(self, img, mask):
        """Returns the augmented (img, mask); at p = 0 the inputs themselves, untouched."""
        if self.p <= 0:
            return img, mask
        assert_shape(img, [None, 3, None, None], "AugmentPipe img")
        assert_shape(mask, [img.shape[0], 1, img.shape[2], img.shape[3]], "AugmentPipe mask")
        G_inv = self._geometry(img.shape[0], img.shape[3], img.shape[2], img.device)
        if G_inv is not None:
            img, mask = self._warp(img, mask, G_inv)
        C = self._color(img.shape[0], img.device)
        if C is not None:
            n, ch, h, w = img.shape
            flat = img.reshape(n, ch, h * w)
            img = (C[:, :3, :3].to(img.dtype) @ flat + C[:, :3, 3:].to(img.dtype)).reshape(n, ch, h, w)
        return img, mask

    # -- drawing the per-image transforms -------------------------------------------------------------------------
    def _gate(self, value, identity, name, shape, device, prob=None):
        """`value` where a uniform draw is below mult * p (or `prob`), else `identity`."""
        prob = self.mult[name] * self.p if prob is None else prob
        return torch.where(torch.rand(shape, device=device) < prob, value, torch.full_like(value, identity))

    def _geometry(self, n, width, height, device):
        """Inverse map [N, 3, 3] in pixel units centred on the image, or None when no geometric op is enabled."""
        m = self.mult
        ones = torch.ones([n], device=device)
        G_inv, enabled = _scale2d(1, 1, ones), False
        if m["xflip"] > 0:
            i = self._gate(torch.floor(torch.rand([n], device=device) * 2), 0, "xflip", [n], device)
            G_inv, enabled = G_inv @ _scale2d(1 - 2 * i, 1, ones), True
        if m["rotate90"] > 0:
            i = self._gate(torch.floor(torch.rand([n], device=device) * 4), 0, "rotate90", [n], device)
            G_inv, enabled = G_inv @ _rotate2d(math.pi / 2 * i, ones), True
        if m["xint"] > 0:
            t = (torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max
            t = self._gate(t, 0, "xint", [n, 1], device)
            G_inv, enabled = G_inv @ _translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height),
                                                  ones), True
        if m["scale"] > 0:
            s = self._gate(torch.exp2(torch.randn([n], device=device) * self.scale_std), 1, "scale", [n], device)
            G_inv, enabled = G_inv @ _scale2d(1 / s, 1 / s, ones), True
        # A rotation before and one after the anisotropic scaling, each with p_rot: P(either) = mult * p.
        p_rot = 1 - math.sqrt(min(max(1 - m["rotate"] * self.p, 0.0), 1.0))
        if m["rotate"] > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.rotate_max
            theta = self._gate(theta, 0, "rotate", [n], device, prob=p_rot)
            G_inv, enabled = G_inv @ _rotate2d(theta, ones), True
        if m["aniso"] > 0:
            s = self._gate(torch.exp2(torch.randn([n], device=device) * self.aniso_std), 1, "aniso", [n], device)
            G_inv, enabled = G_inv @ _scale2d(1 / s, s, ones), True
        if m["rotate"] > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.rotate_max
            theta = self._gate(theta, 0, "rotate", [n], device, prob=p_rot)
            G_inv = G_inv @ _rotate2d(theta, ones)
        if m["xfrac"] > 0:
            t = self._gate(torch.randn([n, 2], device=device) * self.xfrac_std, 0, "xfrac", [n, 1], device)
            G_inv, enabled = G_inv @ _translate2d(-t[:, 0] * width, -t[:, 1] * height, ones), True
        return G_inv if enabled else None

    def _color(self, n, device):
        """Colour matrix [N, 4, 4] acting on (r, g, b, 1), or None when no colour op is enabled."""
        m = self.mult
        ones = torch.ones([n], device=device)
        C, enabled = _scale3d(1, ones), False
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)
        vv = torch.outer(luma, luma)
        eye = torch.eye(4, device=device)
        if m["brightness"] > 0:
            b = self._gate(torch.randn([n], device=device) * self.brightness_std, 0, "brightness", [n], device)
            C, enabled = _translate3d(b, ones) @ C, True
        if m["contrast"] > 0:
            c = self._gate(torch.exp2(torch.randn([n], device=device) * self.contrast_std), 1, "contrast", [n],
                           device)
            C, enabled = _scale3d(c, ones) @ C, True
        if m["lumaflip"] > 0:
            i = self._gate(torch.floor(torch.rand([n, 1, 1], device=device) * 2), 0, "lumaflip", [n, 1, 1], device)
            C, enabled = (eye - 2 * vv * i) @ C, True  # Householder reflection of the luma axis
        if m["hue"] > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.hue_max
            theta = self._gate(theta, 0, "hue", [n], device)
            C, enabled = _rotate3d(luma.tolist(), theta, ones) @ C, True
        if m["saturation"] > 0:
            s = self._gate(torch.exp2(torch.randn([n, 1, 1], device=device) * self.saturation_std), 1, "saturation",
                           [n, 1, 1], device)
            C, enabled = (vv + (eye - vv) * s) @ C, True
        return C if enabled else None

    # -- applying the geometry -----------------------------------------------------------------------------------
    def _warp(self, img, mask, G_inv):
        """Resample the images whose map is not the identity (the others are returned bit-exact: the filtered
        resampling of an identity map reproduces them only to rounding) and their masks."""
        eye = torch.eye(3, device=G_inv.device)
        moved = torch.nonzero((G_inv - eye).abs().amax(dim=[1, 2]) > 0).flatten()
        if moved.numel() == 0:
            return img, mask
        warped_img, warped_mask = self._warp_all(img[moved], mask[moved], G_inv[moved])
        return img.index_copy(0, moved, warped_img), mask.index_copy(0, moved, warped_mask)

    def _warp_all(self, img, mask, G_inv):
        n, _ch, height, width = img.shape
        ones = torch.ones([n], device=img.device)
        # Padding that covers every output pixel's source (plus the filter's reach), at most one image size.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=img.device)
        src = (G_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * 4]
        hz_pad = len(SYM6) // 4
        margin = torch.cat([-src, src]).amax(dim=1)  # [x0, y0, x1, y1]
        margin = margin + torch.tensor([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, device=img.device)
        margin = margin.clamp(min=0).minimum(torch.tensor([width - 1, height - 1] * 2, device=img.device))
        mx0, my0, mx1, my1 = (int(v) for v in margin.ceil().tolist())
        G_pad = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, ones) @ G_inv  # centred on the padded image

        # Image: reflect-pad, upsample 2x, sample the map at 2x, filter and downsample (stylegan2-ada).
        x = F.pad(img, [mx0, mx1, my0, my1], mode="reflect")
        x = _upsample2x(x)
        G_up = _scale2d(2, 2, ones) @ G_pad @ _scale2d(0.5, 0.5, ones)
        G_up = _translate2d(-0.5, -0.5, ones) @ G_up @ _translate2d(0.5, 0.5, ones)  # upsampling's half-pixel
        out_w, out_h = (width + hz_pad * 2) * 2, (height + hz_pad * 2) * 2
        theta = _scale2d(2 / x.shape[3], 2 / x.shape[2], ones) @ G_up @ _scale2d(out_w / 2, out_h / 2, ones)
        grid = F.affine_grid(theta[:, :2, :].to(x.dtype), [n, img.shape[1], out_h, out_w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = _downsample2x(x, hz_pad * 2)

        # Mask: the same map at the original resolution on the reflect-padded hole indicator, thresholded.
        with torch.no_grad():
            hole = F.pad(1 - mask.float(), [mx0, mx1, my0, my1], mode="reflect")
            theta = (_scale2d(2 / hole.shape[3], 2 / hole.shape[2], ones) @ G_pad
                     @ _scale2d(width / 2, height / 2, ones))
            grid = F.affine_grid(theta[:, :2, :], [n, 1, height, width], align_corners=False)
            hole = F.grid_sample(hole, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            new_mask = (hole < 0.5).to(mask.dtype)
        return x, new_mask


def make_augment_pipe(p=0.0):
    """The 'bgc' pipeline with stylegan2-ada's defaults, at strength p."""
    return AugmentPipe(p=p, **BGC)


# ---------------------------------------------------------------------------------------------------------------
# The ADA heuristic.


def ada_adjust(p, sign_mean, target, nimg, ada_kimg):
    """One ADA update: p + sign(sign_mean - target) * nimg / (ada_kimg * 1000), clamped to [0, 1].

    `sign_mean` is the mean of sign(D(real)) since the last update, `nimg` the images seen since then (batch x
    interval). stylegan2-ada clamps only at 0; above 1 every op already applies to every image, and users who let
    p grow past 1 saw the augmentations leak into the generator's outputs, so p stops at 1."""
    return float(min(max(p + float(np.sign(sign_mean - target)) * nimg / (ada_kimg * 1000), 0.0), 1.0))


class AdaTuner:
    """Collects sign(D(real)) (every D phase that sees reals, main and R1, as stylegan2-ada's 'Loss/signs/real')
    and every `interval` steps moves `pipe.p` by ada_adjust(). The counts are global (all-reduced by the caller),
    so every rank moves p alike."""

    def __init__(self, pipe, target=0.6, ada_kimg=500, batch=32, interval=4):
        self.pipe = pipe  # the AugmentPipe whose p is tuned
        self.target = float(target)  # wanted mean sign(D(real)); 0.6 in stylegan2-ada
        self.ada_kimg = float(ada_kimg)  # kimg for p to move by 1
        self.batch = int(batch)  # global batch per step
        self.interval = int(interval)  # steps between updates
        self.sign_sum, self.sign_count = 0.0, 0

    def accumulate(self, sign_sum, count):
        self.sign_sum += float(sign_sum)
        self.sign_count += int(count)

    def after_step(self, steps_done):
        """Call after every step with the number of steps done; updates p on every `interval`-th."""
        if steps_done % self.interval != 0 or self.sign_count == 0:
            return
        self.pipe.p = ada_adjust(self.pipe.p, self.sign_sum / self.sign_count, self.target,
                                 self.batch * self.interval, self.ada_kimg)
        self.sign_sum, self.sign_count = 0.0, 0

    def state_dict(self):
        return {"p": self.pipe.p, "sign_sum": self.sign_sum, "sign_count": self.sign_count}

    def load_state_dict(self, state):
        self.pipe.p = float(state["p"])
        self.sign_sum, self.sign_count = float(state["sign_sum"]), int(state["sign_count"])
