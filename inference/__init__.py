"""Users' inference: load a network file, fit any image to the model, fill its holes over several seeds.

`from inference import load_generator, inpaint_image` is the Python API (inpaint_photo also returns how the
image was fitted; FIT_CHOICES names the fit strategies; load_onnx_generator runs a file written by export.py
with ONNX Runtime in place of a Generator); the names load lazily so that the torch-free parts (the names in
inference.impls and inference.fit_names) stay quick to import.
"""

_LAZY = {"load_generator": "inference.loading", "inpaint_image": "inference.inpaint",
         "inpaint_photo": "inference.inpaint", "parse_seeds": "inference.inpaint",
         "fit_and_fill": "inference.fitting", "FIT_CHOICES": "inference.fit_names",
         "FIT_STRATEGIES": "inference.fit_names", "load_onnx_generator": "inference.onnx_runner"}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
