"""What the web app computes: the network loaded once, the methods on offer (the GAN and every traditional method
of metrics.baselines), and one inpainting job from uploaded bytes to PNG bytes, run on the worker thread.

The GAN goes through inference.inpaint.inpaint_image, the function generate.py runs, with the same options and
defaults, so a seed gives the same picture here as on the command line. Traditional methods run on the image
at its own size (they work at any resolution); every result keeps the known pixels of the input exactly.
"""

import dataclasses
import io
import os

import numpy as np
import PIL.Image
import torch

from app_lib import inputs
from dnnlib import UserError
from inference.fitting import DEFAULT_FIT, FIT_CHOICES
from inference.inpaint import inpaint_image
from inference.pictures import mask_to_png
from metrics.baselines import BASELINE_METHODS, list_baselines
from metrics.baselines import inpaint_image as baseline_inpaint

GAN = "gan"


def offered_baselines():
    """The traditional methods the app offers: those of metrics.baselines fast enough for a request (`interactive`;
    FSR and ShiftMap take seconds to minutes per photo) that load on this machine."""
    available = set(list_baselines())
    return [name for name, method in BASELINE_METHODS.items() if method.interactive and name in available]
SEEDS_PER_STEP = 4  # GAN seeds per forward pass; progress is reported after each
NO_MODEL_HELP = ("No network loaded: only the traditional methods are offered. Run `make demo` (about 8 minutes "
                 "on a CPU) and then `make app`, or start `python app.py --network SNAPSHOT.pt` (or an official "
                 "co-mod-gan .pkl).")


def _load(network, device, impl):
    """A network file on `device` with `impl`, or an exported .onnx file behind ONNX Runtime (CPU)."""
    if os.fspath(network).lower().endswith(".onnx"):
        from inference.onnx_runner import load_onnx_generator

        return load_onnx_generator(network)
    from inference.loading import load_generator

    return load_generator(network, device, impl=impl)


@dataclasses.dataclass
class InpaintRequest:
    """One POST /api/v1/inpaint, checked (see server.py): the raw uploads and the parsed options."""

    image: bytes
    mask: bytes
    method: str = GAN
    seeds: tuple = (0,)
    truncation: float = 1.0
    dropout: bool = False
    noise_mode: str = "const"
    fit: str = DEFAULT_FIT


def encode_png(arr):
    """uint8 [H, W] or [H, W, 3] -> PNG bytes (in memory; nothing is written to disk)."""
    buf = io.BytesIO()
    PIL.Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


class Service:
    """The loaded network (or the reason there is none) and the jobs the worker runs."""

    def __init__(self, network=None, device="cpu", impl="fast", limits=None):
        self.limits = limits or inputs.Limits()
        self.device = torch.device(device)
        self.G, self.network_name, self.network_error = None, None, None
        if network is not None:
            try:
                self.G = _load(network, self.device, impl)
                self.network_name = os.path.basename(os.fspath(network))
            except UserError as err:
                self.network_error = str(err)

    @property
    def methods(self):
        """Method ids in the order of the gallery: the GAN when loaded, then metrics.baselines' methods."""
        return ([GAN] if self.G is not None else []) + offered_baselines()

    def label(self, method):
        if method == GAN:
            return f"CoModGAN ({self.network_name})"
        return BASELINE_METHODS[method].label

    def info(self):
        """GET /api/v1/model."""
        return dict(
            name=self.network_name,
            resolution=int(self.G.img_resolution) if self.G is not None else None,
            methods=[dict(id=m, label=self.label(m), seeded=m == GAN) for m in self.methods],
            fits=list(FIT_CHOICES), default_fit=DEFAULT_FIT,
            mask_specs=list(inputs.MASK_SPECS), noise_modes=list(inputs.NOISE_MODES),
            max_seeds=self.limits.max_seeds, max_bytes=self.limits.max_bytes, max_side=self.limits.max_side,
            network_error=self.network_error, help=None if self.G is not None else NO_MODEL_HELP,
        )

    def check_method(self, method):
        if method == GAN and self.G is None:
            raise UserError(f"method gan: no network is loaded ({self.network_error or 'start app.py --network'})")
        return inputs.parse_choice(method, "method", self.methods)

    def inspect(self, image, mask=None):
        """Decode and check the uploads as an inpainting request would; {'width', 'height'}."""
        img = inputs.read_image(image, self.limits)
        if mask is not None:
            inputs.read_mask(mask, self.limits, *img.shape[:2])
        return dict(width=int(img.shape[1]), height=int(img.shape[0]))

    def inpaint(self, req, report):
        """Run one request on the worker: [(label, seed or None, PNG bytes)], one per seed for the GAN."""
        img = inputs.read_image(req.image, self.limits)
        mask = inputs.read_mask(req.mask, self.limits, *img.shape[:2])
        if req.method != GAN:
            report(0, 1)
            out = baseline_inpaint(req.method, img, mask)  # at the photo's own size; known pixels kept
            report(1, 1)
            return [(self.label(req.method), None, encode_png(out))]
        seeds, results = list(req.seeds), []
        report(0, len(seeds))
        for i in range(0, len(seeds), SEEDS_PER_STEP):  # a result depends on its seed only, not on the chunking
            chunk = seeds[i : i + SEEDS_PER_STEP]
            outs = inpaint_image(self.G, img, mask, chunk, device=self.device, truncation_psi=req.truncation,
                                 noise_mode=req.noise_mode, dropout=req.dropout, batch_size=SEEDS_PER_STEP,
                                 fit=req.fit)
            results.extend((f"seed {s}", s, encode_png(o)) for s, o in zip(chunk, outs))
            report(len(results), len(seeds))
        return results

    def spec_mask_png(self, spec, width, height, seed):
        """A mask drawn from a spec for a W x H image, as a PNG in the file convention (white = hole)."""
        mask = inputs.spec_mask(spec, width, height, seed, self.limits)
        return encode_png(mask_to_png(mask))
