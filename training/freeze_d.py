"""Freeze-D (Mo et al. 2020; --freeze-d): which discriminator layers count as "the first N from the input side",
and taking their parameters out of training.

A layer is one convolution of a resolution block, counted as stylegan2-ada-pytorch's `freeze_layers` counts them
(training/networks.py, DiscriminatorBlock's `trainable_gen` and Discriminator's `cur_layer_idx`): blocks from the
highest resolution down to 8x8, inside each block in construction order fromrgb (top block only), conv0, conv1,
skip. So D has 3 * log2(resolution) - 5 such layers: 10 at 32x32, 22 at 512x512. The 4x4 epilogue (minibatch
stddev, conv, dense, output) is never frozen, as there. A frozen layer's weight and bias keep requires_grad off,
get no gradient (R1 included) and are left out of D's optimizer, so they stay bitwise what the run started with.
"""

from dnnlib import UserError

BLOCK_LAYERS = ("fromrgb", "conv0", "conv1", "skip")  # construction order inside a DiscriminatorBlock


def layer_names(D):
    """Names of D's freezable layers, input side first: ['b32.fromrgb', 'b32.conv0', ..., 'b8.skip']."""
    return [f"b{res}.{name}" for res in D.block_resolutions for name in BLOCK_LAYERS
            if hasattr(getattr(D, f"b{res}"), name)]


def layer_count(D_kwargs):
    """How many layers --freeze-d can freeze in a Discriminator(**D_kwargs). The layer list depends only on the
    resolution, so it is read from a one-channel copy (a full-width D at 512 would cost 29M random weights)."""
    from training.networks import Discriminator

    narrow = dict(D_kwargs, channel_base=1, channel_max=1, num_fp16_res=0, conv_clamp=None)
    return len(layer_names(Discriminator(**narrow)))


def check_count(n, D_kwargs):
    """UserError unless 0 <= n <= the layer count of the run's D."""
    count = layer_count(D_kwargs)
    if not 0 <= int(n) <= count:
        res = D_kwargs["img_resolution"]
        raise UserError(f"--freeze-d {n}: D at {res}x{res} has {count} layers that can be frozen (fromrgb, conv0, "
                        f"conv1 and skip of each block from {res}x{res} down to 8x8; the 4x4 epilogue is never "
                        f"frozen); use 0..{count}")


def freeze(D, n):
    """Turn requires_grad off for the parameters of D's first `n` layers; returns them as a list (empty for 0)."""
    names = layer_names(D)
    if not 0 <= int(n) <= len(names):
        raise UserError(f"--freeze-d {n}: D has {len(names)} layers that can be frozen")
    frozen = []
    for name in names[:int(n)]:
        for p in D.get_submodule(name).parameters():
            p.requires_grad_(False)
            frozen.append(p)
    return frozen


def check_resume(freeze_d, resume_data, resume_path):
    """A resume must freeze what the run froze: D's optimizer state holds exactly the unfrozen parameters."""
    before = int(resume_data.get("training_options", {}).get("freeze_d") or 0)
    if before != int(freeze_d):
        raise UserError(f"--freeze-d {freeze_d}: the run in --resume {resume_path} was trained with --freeze-d "
                        f"{before}; resume with --freeze-d {before} (D's optimizer state holds only the layers that "
                        f"were not frozen)")
