"""Traditional (non-learned) inpainters from OpenCV, wrapped with the generator's calling convention so that the
metrics can evaluate them with the same protocol: `fn(img, mask, z) -> img`, img float [-1, 1] NCHW, mask
[N, 1, H, W] float with 1 = known pixel, z ignored, result composited (known pixels unchanged)."""

import cv2
import numpy as np
import torch

from dnnlib import UserError
from torch_utils.misc import assert_mask_convention, assert_shape

BASELINE_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}  # Telea 2004 fast marching; Navier-Stokes
DEFAULT_RADIUS = 3  # neighbourhood radius in pixels considered around each inpainted point (OpenCV's usual value)


class OpenCVInpainter:
    """Callable baseline; `name` is 'telea' or 'ns'."""

    z_dim = 0  # no latent: the evaluation passes z=None

    def __init__(self, name, radius=DEFAULT_RADIUS):
        if name not in BASELINE_METHODS:
            raise UserError(f"--baseline {name}: unknown method (choose from {', '.join(BASELINE_METHODS)})")
        self.name = name
        self.flag = BASELINE_METHODS[name]
        self.radius = radius

    def __call__(self, img, mask, z=None):
        del z  # deterministic method
        assert_shape(img, [None, 3, None, None], "img")
        assert_shape(mask, [img.shape[0], 1, img.shape[2], img.shape[3]], "mask")
        assert_mask_convention(mask, "mask")
        img_u8 = ((img.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        img_u8 = img_u8.permute(0, 2, 3, 1).numpy()
        holes = (mask.detach().cpu()[:, 0].numpy() == 0).astype(np.uint8) * 255  # OpenCV: non-zero = fill
        out = np.stack([cv2.inpaint(np.ascontiguousarray(im), hole, self.radius, self.flag)
                        for im, hole in zip(img_u8, holes)])
        out = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=img.device, dtype=torch.float32) / 127.5 - 1
        return img * mask + out * (1 - mask)


def make_baseline(name, radius=DEFAULT_RADIUS):
    """The OpenCV inpainter named `name` ('telea' | 'ns')."""
    return OpenCVInpainter(name, radius)
