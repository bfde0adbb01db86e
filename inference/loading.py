"""Loading a generator for inference from any network file we read: our snapshots and the official TF pickles."""

import os

import torch

from converters.tf_pickle import convert_tf_pickle
from inference import fast_path
from training.checkpoint import CheckpointError, first_error_line, load_snapshot
from training.networks import Generator


def read_network_file(path):
    """The snapshot dict of `path`: ours as stored, an official `.pkl` converted in memory (nothing from it runs)."""
    if os.fspath(path).lower().endswith(".pkl"):
        return convert_tf_pickle(path)
    return load_snapshot(path)


def load_generator(path, device="cpu", ema=True, impl="fast"):
    """Rebuild the Generator of a network file: eval mode, no gradients, on `device`, with the fast CPU path
    attached and `impl` ('fast', 'fast-bf16' or 'ref') as its default implementation.

    `ema` picks G_ema over G.
    """
    device = torch.device(device)
    data = read_network_file(path)
    G = Generator(**data["G_kwargs"])
    try:
        G.load_state_dict(data["G_ema" if ema else "G"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: generator weights do not match its G_kwargs "
                              f"({first_error_line(err)})") from None
    G.eval().requires_grad_(False)
    fast_path.attach(G, impl)
    return G.to(device)
