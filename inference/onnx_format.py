"""What an exported ONNX generator promises: its input and output names, the metadata it carries, and the check
that a runner makes before trusting a file (inference.onnx_export writes it, inference.onnx_runner reads it).

The graph computes the composite `image * mask + G(image, mask, z) * (1 - mask)` of the reference layers with
the truncation psi as an input, the global code's dropout off and the per-layer noise baked in ('const' or
'none'). All metadata values are strings (ONNX metadata_props); `check_metadata` names the key that is missing
or wrong.
"""

import json

from dnnlib import UserError

FORMAT = "comodgan-inpainter"
FORMAT_VERSION = "1"
INPUTS = ("image", "mask", "z", "truncation_psi")
OUTPUT = "composite"
MASK_CONVENTION = "1=known,0=hole"
VALUE_RANGE = "-1,1"
NOISE_MODES = ("const", "none")
DROPOUT = "off"
TRUNCATION = "input"

INPUT_MEANING = {
    "image": "float32 [N, C, R, R], RGB in [-1, 1] (uint8 / 127.5 - 1), NCHW; pixels in the hole are ignored",
    "mask": "float32 [N, 1, R, R], 1 = known pixel, 0 = hole, nothing in between",
    "z": "float32 [N, z_dim] latent, one per image (N(0, 1) samples; a different z gives a different fill)",
    "truncation_psi": "float32 [1]: 1 = no truncation, lower pulls w toward its average (more typical fills)",
}
OUTPUT_MEANING = ("float32 [N, C, R, R]: image * mask + G(image) * (1 - mask), in about [-1, 1] "
                  "(clip, then (x + 1) * 127.5 for uint8); known pixels are the input's exactly")


class OnnxModelError(UserError):
    """An ONNX file that is not an inpainter we exported, or one whose metadata contradicts its graph or the
    caller's expectations (resolution, mask convention, value range)."""


def make_metadata(*, resolution, img_channels, z_dim, batch, noise, style_mod, cond_mod, source, source_sha256,
                  code_version, exporter, opset):
    """The metadata_props of an exported file (every value a string)."""
    if noise not in NOISE_MODES:
        raise UserError(f"--noise {noise!r}: must be one of {', '.join(NOISE_MODES)}")
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "resolution": str(int(resolution)), "img_channels": str(int(img_channels)), "z_dim": str(int(z_dim)),
        "batch": str(batch), "mask_convention": MASK_CONVENTION, "value_range": VALUE_RANGE,
        "inputs": json.dumps(INPUT_MEANING), "output": OUTPUT_MEANING,
        "truncation_psi": TRUNCATION, "dropout": DROPOUT, "noise": noise,
        "style_mod": _flag(style_mod), "cond_mod": _flag(cond_mod),
        "source": source, "source_sha256": source_sha256, "code_version": code_version,
        "exporter": exporter, "opset": str(int(opset)),
    }


REQUIRED = ("format", "format_version", "resolution", "img_channels", "z_dim", "batch", "mask_convention",
            "value_range", "truncation_psi", "dropout", "noise", "style_mod", "cond_mod")


def _flag(value):
    return "true" if value else "false"


def _int(meta, key, name):
    try:
        return int(meta[key])
    except ValueError:
        raise OnnxModelError(f"{name}: metadata {key}={meta[key]!r} is not a whole number") from None


def check_metadata(meta, name, input_shapes, resolution=None):
    """The checked metadata of an exported file: a dict with ints for resolution, img_channels, z_dim and batch
    (None = dynamic) and bools for style_mod and cond_mod (the generator's modulation switches). Raises
    OnnxModelError naming the key that is missing or does not match.

    meta: {key: str} (ONNX metadata_props); name: the file, for messages; input_shapes: {input name: shape
    list} of the graph (str or None for a symbolic dimension); resolution: what the caller expects, or None.
    """
    if not meta:
        raise OnnxModelError(f"{name}: the ONNX file carries no metadata; only files written by export.py can be run "
                             "(the metadata states the mask convention, value range and resolution)")
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise OnnxModelError(f"{name}: metadata lacks {', '.join(missing)}; re-export it with export.py")
    if meta["format"] != FORMAT or meta["format_version"] != FORMAT_VERSION:
        raise OnnxModelError(f"{name}: metadata format {meta['format']!r} version {meta['format_version']!r}; "
                             f"this runner reads {FORMAT!r} version {FORMAT_VERSION!r}")
    expected = dict(mask_convention=MASK_CONVENTION, value_range=VALUE_RANGE, truncation_psi=TRUNCATION,
                    dropout=DROPOUT)
    for key, value in expected.items():
        if meta[key] != value:
            raise OnnxModelError(f"{name}: metadata {key}={meta[key]!r}, but this runner feeds {key}={value!r}")
    if meta["noise"] not in NOISE_MODES:
        raise OnnxModelError(f"{name}: metadata noise={meta['noise']!r} is not one of {', '.join(NOISE_MODES)}")
    for key in ("style_mod", "cond_mod"):
        if meta[key] not in ("true", "false"):
            raise OnnxModelError(f"{name}: metadata {key}={meta[key]!r} is not 'true' or 'false'")
    out = dict(meta, resolution=_int(meta, "resolution", name), img_channels=_int(meta, "img_channels", name),
               z_dim=_int(meta, "z_dim", name), batch=None if meta["batch"] == "dynamic" else _int(meta, "batch", name),
               style_mod=meta["style_mod"] == "true", cond_mod=meta["cond_mod"] == "true")
    if resolution is not None and out["resolution"] != resolution:
        raise OnnxModelError(f"{name}: the model is {out['resolution']}x{out['resolution']}, not the resolution "
                             f"{resolution} asked for")
    _check_inputs(out, name, input_shapes)
    return out


def _check_inputs(meta, name, shapes):
    """The graph's inputs must be the ones the metadata describes (a file edited by hand, or another model)."""
    if sorted(shapes) != sorted(INPUTS):
        raise OnnxModelError(f"{name}: graph inputs are {', '.join(sorted(shapes))}; expected {', '.join(INPUTS)}")
    r, c, n = meta["resolution"], meta["img_channels"], meta["batch"]
    want = {"image": [n, c, r, r], "mask": [n, 1, r, r], "z": [n, meta["z_dim"]], "truncation_psi": [1]}
    for key, shape in want.items():
        got = [d if isinstance(d, int) else None for d in shapes[key]]
        if got != shape:
            raise OnnxModelError(f"{name}: input {key} has shape {shapes[key]}, but the metadata says resolution "
                                 f"{r}, batch {n or 'dynamic'}: {['N' if d is None else d for d in shape]}")
