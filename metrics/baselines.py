"""The traditional (non-learned) inpainters, listed once: OpenCV's Telea and Navier-Stokes, PatchMatch
(PyPI `pypatchmatch`), OpenCV contrib's FSR and ShiftMap, and Criminisi's exemplar-based method (metrics/criminisi.py),
each callable with our conventions.

Two ways in, the same pixels out:

- `inpaint_image(name, image, mask, seed=0)`: one uint8 RGB image [H, W, 3] and a float mask [H, W] (1 = known,
  0 = hole) -> uint8 [H, W, 3] with every known pixel unchanged. For callers outside the metrics (the web app).
- `make_baseline(name)`: a callable with the generator's calling convention, `fn(img, mask, z, seeds=None)`:
  img float [-1, 1] NCHW, mask [N, 1, H, W] with 1 = known, z ignored, result composited. The metrics run it.

`list_baselines()` names the methods whose library loads on this machine; `BASELINE_METHODS` lists them all.
"""

import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from dnnlib import UserError
from metrics import criminisi
from torch_utils.misc import assert_mask_convention, assert_shape

DEFAULT_RADIUS = 3  # Telea/NS: neighbourhood radius in pixels around each filled point (OpenCV's usual value)
PATCHMATCH_PATCH_SIZE = 3  # PatchMatch patch radius: 7x7 patches, the library's examples' choice (15 is ~10x slower)


@dataclass(frozen=True)
class BaselineMethod:
    """One traditional method: what to call it, where it comes from, whether the default comparison runs it."""

    label: str  # name in tables and sheets
    reference: str  # the paper, for the README and the report
    library: str  # 'opencv', 'opencv-contrib', 'pypatchmatch' or 'ours': what must load for it to run
    default: bool  # in DEFAULT_BASELINES (fast enough for thousands of images at 256 and 512)
    seeded: bool  # has a randomised search, so it takes a per-image seed
    interactive: bool  # a few seconds at most per 512 px photo: the web app offers it


# Timings per image: docs/evaluation.md and, against Criminisi, docs/baselines.md (benchmarks/baselines.py). FSR "best"
# is not offered: at 64x64 it already takes about 10 s per image here, hours for one evaluation set.
BASELINE_METHODS = {
    "telea": BaselineMethod("Telea", "Telea 2004, fast marching", "opencv", True, False, True),
    "ns": BaselineMethod("Navier-Stokes", "Bertalmio et al. 2001, Navier-Stokes", "opencv", True, False, True),
    "patchmatch": BaselineMethod("PatchMatch", "Barnes et al. 2009, PatchMatch", "pypatchmatch", True, True, True),
    "fsr-fast": BaselineMethod("FSR (fast)", "Genser et al. 2018, frequency-selective reconstruction",
                               "opencv-contrib", False, False, False),
    "shiftmap": BaselineMethod("ShiftMap", "He and Sun 2012, statistics of patch offsets", "opencv-contrib",
                               False, False, False),
    "criminisi": BaselineMethod("Criminisi", "Criminisi et al. 2004, exemplar-based inpainting", "ours", False, False,
                                True),
}
DEFAULT_BASELINES = tuple(name for name, m in BASELINE_METHODS.items() if m.default)

# PatchMatch keeps its seed in the native library (one global): a seed and the call that uses it must not interleave
# with another thread's.
_patchmatch_lock = threading.Lock()


def check_baseline_name(name):
    """The method's entry; an unknown name is a UserError listing the valid ones."""
    if name not in BASELINE_METHODS:
        raise UserError(f"--baseline {name}: unknown method (choose from {', '.join(BASELINE_METHODS)})")
    return BASELINE_METHODS[name]


def _load_patchmatch():
    """The pypatchmatch module, or a UserError saying why it cannot run here."""
    try:
        from patchmatch import patch_match
    except ImportError as err:
        raise UserError(f"baseline patchmatch: cannot import pypatchmatch ({err}); "
                        "install it with `pip install pypatchmatch==2.2.0`") from None
    if not patch_match.patchmatch_available:
        raise UserError("baseline patchmatch: pypatchmatch is installed but its native library libpatchmatch.so did "
                        "not load (see the warning above); reinstall pypatchmatch==2.2.0 for this platform")
    return patch_match


def _check_xphoto(name):
    if not hasattr(cv2, "xphoto"):
        raise UserError(f"baseline {name}: this OpenCV has no contrib module xphoto; install "
                        "opencv-contrib-python-headless (same version) in place of opencv-python-headless")


def baseline_unavailable_reason(name):
    """None if method `name` can run on this machine, else the one-line reason."""
    method = check_baseline_name(name)
    try:
        if method.library == "pypatchmatch":
            _load_patchmatch()
        elif method.library == "opencv-contrib":
            _check_xphoto(name)
    except UserError as err:
        return str(err)
    return None


def list_baselines(include_unavailable=False):
    """Names of the traditional methods that can run here (all of BASELINE_METHODS with include_unavailable)."""
    return [name for name in BASELINE_METHODS if include_unavailable or baseline_unavailable_reason(name) is None]


# ---------------------------------------------------------------------------------------------------------------------
# The methods on one image: uint8 RGB [H, W, 3], a uint8 hole map [H, W] (255 = hole), a seed -> uint8 RGB.

def _telea(image, holes, seed):
    return cv2.inpaint(image, holes, DEFAULT_RADIUS, cv2.INPAINT_TELEA)


def _ns(image, holes, seed):
    return cv2.inpaint(image, holes, DEFAULT_RADIUS, cv2.INPAINT_NS)


def _patchmatch(image, holes, seed):
    patch_match = _load_patchmatch()
    with _patchmatch_lock:
        patch_match.set_random_seed(int(seed) % 2**32)
        return patch_match.inpaint(image, holes, patch_size=PATCHMATCH_PATCH_SIZE)


def _xphoto(image, holes, algorithm, to_lab):
    known = np.where(holes == 0, 255, 0).astype(np.uint8)  # xphoto's mask is the other way round: non-zero = known
    src = cv2.cvtColor(image, cv2.COLOR_RGB2Lab) if to_lab else image
    dst = np.zeros_like(src)
    cv2.xphoto.inpaint(src, known, dst, algorithm)  # writes into dst, returns None
    return cv2.cvtColor(dst, cv2.COLOR_Lab2RGB) if to_lab else dst


def _fsr_fast(image, holes, seed):
    return _xphoto(image, holes, cv2.xphoto.INPAINT_FSR_FAST, to_lab=False)


def _shiftmap(image, holes, seed):
    # ShiftMap compares colours as intensity + two chroma channels (its documentation asks for CIELab).
    return _xphoto(image, holes, cv2.xphoto.INPAINT_SHIFTMAP, to_lab=True)


def _criminisi(image, holes, seed):
    return criminisi.inpaint(image, holes == 0)  # deterministic: no seed


_FILLERS = {"telea": _telea, "ns": _ns, "patchmatch": _patchmatch, "fsr-fast": _fsr_fast, "shiftmap": _shiftmap,
            "criminisi": _criminisi}


class Baseline:
    """Traditional inpainter `name` with our conventions (see the module docstring); make one with make_baseline."""

    z_dim = 0  # no latent: the evaluation passes z=None

    def __init__(self, name):
        self.method = check_baseline_name(name)
        reason = baseline_unavailable_reason(name)
        if reason is not None:
            raise UserError(reason)
        self.name = name
        self.label = self.method.label
        self.takes_seeds = self.method.seeded  # the metrics pass one seed per item (see metrics/eval_set.py)
        self._fill = _FILLERS[name]

    def inpaint_image(self, image, mask, seed=0):
        """uint8 RGB [H, W, 3] and float mask [H, W] (1 = known, 0 = hole) -> uint8 RGB [H, W, 3]; known pixels
        are returned unchanged; the same seed gives the same result."""
        image = np.asarray(image)
        mask = np.asarray(mask)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{self.name}: image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        if mask.shape != image.shape[:2] or not np.issubdtype(mask.dtype, np.floating):
            raise ValueError(f"{self.name}: mask must be float [H, W] = {list(image.shape[:2])} (1 = known), "
                             f"got {mask.dtype} {list(mask.shape)}")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{self.name}: mask must be binary with 1 = known pixel and 0 = hole")
        image = np.ascontiguousarray(image)
        holes = np.where(mask == 0, 255, 0).astype(np.uint8)
        if not holes.any():
            return image.copy()
        out = self._fill(image, holes, seed)
        return np.where((mask == 1)[..., None], image, out).astype(np.uint8)

    def __call__(self, img, mask, z=None, seeds=None):
        """Generator convention: img [N, 3, H, W] in [-1, 1] (holes may hold anything), mask [N, 1, H, W] with
        1 = known; seeds: one int per image (None: 0 for all) for the randomised methods."""
        del z  # no latent
        assert_shape(img, [None, 3, None, None], "img")
        assert_shape(mask, [img.shape[0], 1, img.shape[2], img.shape[3]], "mask")
        assert_mask_convention(mask, "mask")
        seeds = [0] * img.shape[0] if seeds is None else list(seeds)
        img_u8 = ((img.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        img_u8 = img_u8.permute(0, 2, 3, 1).numpy()
        masks = mask.detach().float().cpu()[:, 0].numpy()
        out = np.stack([self.inpaint_image(im, m, s) for im, m, s in zip(img_u8, masks, seeds)])
        out = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=img.device, dtype=torch.float32) / 127.5 - 1
        return img * mask + out * (1 - mask)


def make_baseline(name):
    """The traditional inpainter `name` (a key of BASELINE_METHODS); a UserError if the name is unknown (it lists
    the valid ones) or its library cannot load here (it says what to install)."""
    return Baseline(name)


def inpaint_image(name, image, mask, seed=0):
    """Fill the holes of one image with method `name`: image uint8 RGB [H, W, 3], mask float [H, W] with 1 = known,
    0 = hole; returns uint8 RGB [H, W, 3] with every known pixel unchanged, identical for the same seed."""
    return make_baseline(name).inpaint_image(image, mask, seed)
