"""Exporting a generator to ONNX: the graph wrapper, torch.onnx's dynamo exporter, and the metadata that
inference.onnx_format defines (the runner refuses a file without it).

Exporter: `torch.onnx.export(..., dynamo=True)`. The TorchScript exporter (dynamo=False) cannot trace
upfirdn2d's padding arithmetic (the traced paddings arrive as tensors), and the dynamo exporter is the one
torch keeps developing. Under torch.export the data-dependent mask check (torch_utils.misc) is skipped and the
synthesis takes the shared-weight modulated convolution (a grouped convolution's group count would have to be
the batch size, which a dynamic batch cannot give); the graph is the reference layers' arithmetic.
"""

import contextlib
import logging
import os
import warnings

import torch
from torch import nn

from dnnlib import UserError
from dnnlib.provenance import code_version
from inference import onnx_format

MIN_OPSET = 18  # the dynamo exporter's lowest opset
MAX_OPSET = 23  # the highest checked here: opsets 18, 20 and 23 export and run on onnxruntime 1.32
TOLERANCE = 1e-4  # largest |ONNX Runtime - reference| accepted, relative to the output's scale (max |reference|)


class InpainterGraph(nn.Module):
    """What is exported: G(image, mask, z) with truncation psi as a tensor input, the global code's dropout off
    and noise `noise_mode` ('const' or 'none') baked in; the reference layers."""

    def __init__(self, G, noise_mode):
        super().__init__()
        if noise_mode not in onnx_format.NOISE_MODES:
            raise UserError(f"--noise {noise_mode!r}: must be one of {', '.join(onnx_format.NOISE_MODES)}")
        self.G, self.noise_mode = G, noise_mode

    def forward(self, image, mask, z, truncation_psi):
        mapping = self.G.mapping
        # The official truncation (G_main, every layer): lerp toward w_avg, here with psi as a tensor.
        ws = mapping.w_avg.lerp(mapping(z), truncation_psi)
        return self.G(image, mask, ws=ws, noise_mode=self.noise_mode, dropout=False, impl="ref")


def example_inputs(G, batch, seed=0):
    """(image, mask, z, truncation_psi) tensors of the exported shapes: a centre hole, random image and z."""
    gen = torch.Generator().manual_seed(seed)
    r = G.img_resolution
    image = torch.rand([batch, G.img_channels, r, r], generator=gen) * 2 - 1
    mask = torch.ones([batch, 1, r, r])
    mask[:, :, r // 4 : 3 * r // 4, r // 4 : 3 * r // 4] = 0
    z = torch.randn([batch, G.z_dim], generator=gen)
    return image, mask, z, torch.ones([1])




def parse_batch(text):
    """'dynamic' -> 'dynamic'; '3' -> 3. Raises UserError naming --batch."""
    text = str(text).strip().lower()
    if text == "dynamic":
        return text
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--batch {text!r}: must be a positive whole number or 'dynamic'")
    return int(text)


def check_opset(opset):
    """The opset as an int; a UserError naming --opset outside MIN_OPSET..MAX_OPSET."""
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise UserError(f"--opset {opset}: the exporter writes opsets {MIN_OPSET} to {MAX_OPSET}")
    return int(opset)


@contextlib.contextmanager
def _quiet_exporter():
    """Hide the exporter's notes that concern neither this graph nor the user (torchvision's operators are not
    installed; a deprecation inside torch; the batch axis named twice, once per input that shares it)."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*axis name: batch will not be used.*")
            yield
    finally:
        registration.setLevel(level)


def export_generator(G, out_path, *, batch=1, opset=18, noise_mode="const", source="", source_sha256=""):
    """Write G (a Generator in eval mode) to `out_path` as one self-contained ONNX file with its metadata.

    batch: a positive int (fixed) or 'dynamic'; noise_mode: 'const' or 'none'; source and source_sha256 name
    the network file it came from. Returns the metadata written.
    """
    batch = parse_batch(batch)
    opset = check_opset(opset)
    graph = InpainterGraph(G, noise_mode).eval()
    # An example batch of 2 for a dynamic export: torch.export specialises a dimension of size 1.
    args = example_inputs(G, 2 if batch == "dynamic" else batch)
    dynamic_shapes = None
    if batch == "dynamic":
        n = torch.export.Dim("batch")
        dynamic_shapes = ({0: n}, {0: n}, {0: n}, None)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(graph, args, None, dynamo=True, opset_version=opset,
                                    input_names=list(onnx_format.INPUTS), output_names=[onnx_format.OUTPUT],
                                    dynamic_shapes=dynamic_shapes, verbose=False)
    meta = onnx_format.make_metadata(
        resolution=G.img_resolution, img_channels=G.img_channels, z_dim=G.z_dim, batch=batch, noise=noise_mode,
        style_mod=G.synthesis.style_mod, cond_mod=G.synthesis.cond_mod, source=source, source_sha256=source_sha256,
        code_version=code_version(),
        exporter=f"torch.onnx.export(dynamo=True), torch {torch.__version__}", opset=opset)
    program.model.metadata_props.update(meta)
    program.model.doc_string = ("CoModGAN inpainting generator: composite = image * mask + G(image, mask, z) * "
                                "(1 - mask); mask 1 = known pixel, 0 = hole; images in [-1, 1] NCHW. "
                                "See the metadata_props for inputs, noise, truncation and dropout.")
    out_path = os.fspath(out_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    partial = out_path + ".partial"
    program.save(partial, external_data=False)
    os.replace(partial, out_path)  # a file at out_path is always complete
    return meta


def compare_with_reference(G, path, truncation_psi=1.0, batch=1, seed=0):
    """(max |ONNX Runtime - reference|, max |reference|) of the exported file at `path` against G's reference
    layers on example inputs (a centre hole), psi `truncation_psi`, with the noise the file has baked in."""
    from inference.onnx_runner import load_onnx_generator

    runner = load_onnx_generator(path)
    n = runner.batch or batch
    image, mask, z, _ = example_inputs(G, n, seed)
    with torch.no_grad():
        ref = G(image, mask, z, truncation_psi=truncation_psi, noise_mode=runner.noise_mode, dropout=False,
                impl="ref").numpy()
    out = runner.run(image.numpy(), mask.numpy(), z.numpy(), truncation_psi)
    return float(abs(out - ref).max()), float(abs(ref).max())
