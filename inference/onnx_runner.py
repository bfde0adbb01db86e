"""Running an exported inpainter (export.py) with ONNX Runtime's CPU provider, called like a Generator so that
inference.inpaint (fitting, seeds, compositing) and the web app use it unchanged.

The file's metadata is checked before the first call (inference.onnx_format): a file without it, or one whose
resolution, mask convention or value range differ from what we feed, is refused with an OnnxModelError.
"""

import os
import types

import numpy as np
import torch

from dnnlib import UserError
from inference.onnx_format import INPUTS, OUTPUT, OnnxModelError, check_metadata
from torch_utils.misc import assert_mask_convention


def _session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or 0)  # 0 = ONNX Runtime's default (one per physical core)
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime raises its own pybind classes (InvalidProtobuf, Fail, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OnnxModelError(f"{path}: ONNX Runtime cannot load it ({first})") from None


class OnnxGenerator:
    """An exported inpainter behind ONNX Runtime, with the attributes and call of a Generator that inference
    needs: img_resolution, img_channels, z_dim, synthesis.style_mod / cond_mod and G(img, mask, z, truncation_psi,
    noise_mode, dropout)."""

    def __init__(self, path, resolution=None, threads=None):
        if not os.path.isfile(path):
            raise UserError(f"{path}: no such ONNX file")
        self.path = os.fspath(path)
        self.session = _session(path, threads)
        shapes = {i.name: list(i.shape) for i in self.session.get_inputs()}
        meta = self.session.get_modelmeta().custom_metadata_map
        self.meta = check_metadata(meta, self.path, shapes, resolution)
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs != [OUTPUT]:
            raise OnnxModelError(f"{self.path}: graph outputs are {outputs}; expected [{OUTPUT!r}]")
        self.img_resolution, self.img_channels = self.meta["resolution"], self.meta["img_channels"]
        self.z_dim, self.batch, self.noise_mode = self.meta["z_dim"], self.meta["batch"], self.meta["noise"]
        # The modulation switches, where inference reads them on a Generator (G.synthesis.style_mod).
        self.synthesis = types.SimpleNamespace(style_mod=self.meta["style_mod"], cond_mod=self.meta["cond_mod"])

    def check_options(self, truncation_psi=1.0, noise_mode="const", dropout=False):
        """Refuse what the exported graph cannot do (it has no random noise and no dropout), naming the option."""
        if noise_mode != self.noise_mode:
            raise UserError(f"noise mode {noise_mode!r}: {os.path.basename(self.path)} was exported with noise "
                            f"{self.noise_mode!r} baked in; choose {self.noise_mode!r} (--noise-mode)")
        if dropout:
            raise UserError(f"dropout: {os.path.basename(self.path)} was exported without the global code's "
                            "dropout; turn it off (--no-dropout)")
        if not np.isfinite(truncation_psi):
            raise UserError(f"truncation psi {truncation_psi}: must be a finite number")

    def run(self, image, mask, z, truncation_psi=1.0):
        """NumPy float32 in and out (see inference.onnx_format.INPUT_MEANING), any batch: a file exported for a
        fixed batch runs in chunks of it, the last one padded."""
        n = image.shape[0]
        step = self.batch or n
        psi = np.array([truncation_psi], np.float32)
        outs = []
        for i in range(0, n, step):
            chunk = [np.ascontiguousarray(a[i : i + step], dtype=np.float32) for a in (image, mask, z)]
            short = step - chunk[0].shape[0]
            if short:
                chunk = [np.concatenate([a, np.repeat(a[-1:], short, axis=0)]) for a in chunk]
            out = self.session.run([OUTPUT], dict(zip(INPUTS, chunk + [psi])))[0]
            outs.append(out[: step - short])
        return np.concatenate(outs)

    def __call__(self, img, mask, z, truncation_psi=1.0, noise_mode="const", dropout=False):
        """Torch tensors in and out, as Generator.forward (z only, no ws): the composite [N, C, R, R]."""
        self.check_options(truncation_psi, noise_mode, dropout)
        r, c = self.img_resolution, self.img_channels
        if list(img.shape[1:]) != [c, r, r] or list(mask.shape) != [img.shape[0], 1, r, r]:
            raise UserError(f"{os.path.basename(self.path)}: expects img [N, {c}, {r}, {r}] and mask "
                            f"[N, 1, {r}, {r}], got {list(img.shape)} and {list(mask.shape)}")
        if z is None or list(z.shape) != [img.shape[0], self.z_dim]:
            raise UserError(f"{os.path.basename(self.path)}: expects z [{img.shape[0]}, {self.z_dim}]")
        assert_mask_convention(mask, f"{os.path.basename(self.path)}: mask")
        out = self.run(*(t.detach().float().cpu().numpy() for t in (img, mask, z)), float(truncation_psi))
        return torch.from_numpy(out).to(img.device)


def load_onnx_generator(path, resolution=None, threads=None):
    """The exported inpainter at `path` behind ONNX Runtime's CPU provider (see OnnxGenerator); `resolution`, when
    given, must match the file's; `threads`: intra-op threads (None = ONNX Runtime's default)."""
    return OnnxGenerator(path, resolution=resolution, threads=threads)


def check_engine_file(path, engine):
    """A clear error when the file and the engine do not go together (an .onnx file needs onnxruntime)."""
    is_onnx = os.fspath(path).lower().endswith(".onnx")
    if engine == "onnxruntime" and not is_onnx:
        raise UserError(f"--network {path}: --engine onnxruntime runs an .onnx file written by export.py")
    if engine == "torch" and is_onnx:
        raise UserError(f"--network {path}: an ONNX file; run it with --engine onnxruntime")
