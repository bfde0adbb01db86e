"""Users' inference: load a network file, fit any image to the model, fill its holes over several seeds.

`from inference import load_generator, inpaint_image` is the Python API; the names load lazily so that the
torch-free parts (the CLIs' options in inference.impls) stay quick to import.
"""

_LAZY = {"load_generator": "inference.loading", "inpaint_image": "inference.inpaint",
         "parse_seeds": "inference.inpaint"}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
