"""Loading a generator for inference from any network file we read: our snapshots, the official TF pickles and
the PyTorch port's converted generators."""

import os

import torch

from converters.port_pth import convert_port_pth
from converters.tf_pickle import convert_tf_pickle
from inference import fast_path
from training.checkpoint import (
    SNAPSHOT_KIND_GENERATOR,
    CheckpointError,
    first_error_line,
    load_snapshot,
    snapshot_kind,
    state_dict_problem,
)
from training.networks import Generator


def read_network_file(path):
    """The snapshot dict of `path`, dispatched by suffix: an official `.pkl` and a port `.pth` are converted in
    memory (nothing from either runs); anything else is read as our snapshot.

    A `.pth` (the PyTorch port's net_G_ema file) gives a 'generator' snapshot: G_ema only, G and D are absent.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".onnx":
        raise CheckpointError(f"{path}: an ONNX export, not a network file; run it with ONNX Runtime "
                              "(inference.onnx_runner.load_onnx_generator, generate.py --engine onnxruntime)")
    if suffix == ".pkl":
        return convert_tf_pickle(path)
    if suffix == ".pth":
        return convert_port_pth(path)
    return load_snapshot(path)


def load_generator(path, device="cpu", ema=True, impl="fast"):
    """Rebuild the Generator of a network file: eval mode, no gradients, on `device`, with the fast CPU path
    attached and `impl` ('fast', 'fast-bf16' or 'ref') as its default implementation.

    `ema` picks G_ema over G; a generator-only file (a port `.pth`, or a snapshot converted from one) has only
    G_ema, so ema=False is refused there.
    """
    device = torch.device(device)
    data = read_network_file(path)
    if not ema and snapshot_kind(data) == SNAPSHOT_KIND_GENERATOR:
        raise CheckpointError(f"{path}: holds only G_ema (G and D are absent); load it with ema=True")
    try:
        G = Generator(**data["G_kwargs"])
    except (TypeError, ValueError) as err:  # an unknown keyword, or a value the networks refuse (NetworkInputError)
        raise CheckpointError(f"{path}: its G_kwargs do not describe a Generator ({first_error_line(err)})") from None
    try:
        G.load_state_dict(data["G_ema" if ema else "G"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: generator weights do not match its G_kwargs "
                              f"({state_dict_problem(err)})") from None
    G.eval().requires_grad_(False)
    fast_path.attach(G, impl)
    return G.to(device)
