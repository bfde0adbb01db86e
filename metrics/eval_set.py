"""The evaluation set and its iteration: item i is validation image i % len(dataset) with mask
eval_mask(spec, resolution, seed, i) and a latent (or search seed) drawn from (seed, i); this module turns the items
into batches of reproducible (real, inpainted, mask) triples for every metric and the comparison run."""

import copy

import numpy as np
import torch

from dnnlib import EasyDict, UserError
from inference import fast_path
from inference.inpaint import run_inpainter
from metrics.distributed import rank_indices
from metrics.progress import Progress
from torch_utils.misc import assert_mask_convention, assert_shape


def open_eval_dataset(data_path, resolution=None):
    """The validation ImageDataset; a resolution other than the network's is a UserError naming the file."""
    from data.dataset import ImageDataset

    dataset = ImageDataset(data_path, resolution=resolution)
    if resolution is not None and dataset.resolution != resolution:
        raise UserError(f"--data {data_path}: images are {dataset.resolution}x{dataset.resolution} but the network "
                        f"expects {resolution}x{resolution}")
    if len(dataset) == 0:
        raise UserError(f"--data {data_path}: the dataset holds no images")
    return dataset


def check_mask_spec(mask_spec, resolution, seed):
    """Draw item 0's mask now, so a malformed spec fails before any image or detector is loaded."""
    from data.masks import eval_mask

    eval_mask(mask_spec, resolution, seed, 0)


def item_z(seed, index, z_dim):
    """The latent of evaluation item `index`: depends only on (seed, index), not on batching or rank."""
    return np.random.default_rng([int(seed), int(index)]).standard_normal(z_dim).astype(np.float32)


def item_seed(seed, index):
    """The seed of evaluation item `index` for inpainters with a randomised search (PatchMatch): like item_z, it
    depends only on (seed, index)."""
    return int(np.random.SeedSequence([int(seed), int(index), 1]).generate_state(1)[0])


def to_uint8(img):
    """[-1, 1] float images -> uint8, rounding so that u8 -> float -> u8 is exact on known pixels."""
    return ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def prepare_inpainter(G):
    """The generator the metrics run: a copy in eval mode if the caller's module is training (its flags stay as
    they are), with the fast CPU path attached if it has none, so that the training loop's G_ema and a loaded
    snapshot in calc_metrics.py compute the same arithmetic (the default impl of inference.load_generator)."""
    if isinstance(G, torch.nn.Module) and G.training:
        G = copy.deepcopy(G).eval()
    if getattr(G, "fast_path", False) is None:
        G = fast_path.attach(copy.copy(G))
    return G


class EvalItems(torch.utils.data.Dataset):
    """Item i -> (i, uint8 image [3, H, W] of dataset[i % len], float32 mask [1, H, W] or an empty array).

    A torch Dataset so that PNG decoding and mask drawing run in DataLoader workers; everything it returns
    depends only on i, so workers, batching and ranks cannot change the evaluation set.
    """

    def __init__(self, dataset, mask_spec, resolution, seed):
        self.dataset = dataset
        self.mask_spec = mask_spec  # None: real images only
        self.resolution = resolution
        self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        from data.masks import eval_mask

        img = np.asarray(self.dataset[i % len(self.dataset)])
        if img.shape[0] == 1:
            img = np.repeat(img, 3, axis=0)
        mask = np.zeros([0], np.float32)
        if self.mask_spec is not None:
            mask = eval_mask(self.mask_spec, self.resolution, self.seed, i)[None]
        return i, np.ascontiguousarray(img), np.ascontiguousarray(mask, dtype=np.float32)


def _batches(opts, dataset, num_items, with_masks):
    """(indices, real uint8 on device, mask on device or None) for this rank's share of items 0..num_items-1."""
    items = EvalItems(dataset, opts.mask_spec if with_masks else None, opts.resolution, opts.seed)
    sampler = rank_indices(num_items, opts.rank, opts.num_gpus)
    workers = opts.get("num_workers") or 0
    loader = torch.utils.data.DataLoader(items, sampler=sampler, batch_size=opts.batch_size, num_workers=workers,
                                         pin_memory=opts.device.type == "cuda")
    res = opts.resolution
    for idx, real, mask in loader:
        batch = [int(i) for i in idx]
        real = real.to(opts.device)
        assert_shape(real, [len(batch), 3, res, res], "real images")
        if not with_masks:
            yield batch, real, None
            continue
        mask = mask.to(opts.device)
        assert_mask_convention(mask, "evaluation mask")
        yield batch, real, mask


def _run_inpainter(opts, G, real, mask, batch):
    z_dim = int(getattr(G, "z_dim", 0) or 0)
    z = None
    if z_dim > 0:
        z = torch.from_numpy(np.stack([item_z(opts.seed, i, z_dim) for i in batch])).to(opts.device)
    img = real.to(torch.float32) / 127.5 - 1
    # Noise and dropout inside G draw from the global RNG: seed it per batch so that reruns are identical.
    batch_seed = int(np.random.SeedSequence([int(opts.seed), int(batch[0])]).generate_state(1)[0])
    G_kwargs = opts.G_kwargs if isinstance(G, torch.nn.Module) else {}
    if not isinstance(G, torch.nn.Module) and getattr(G, "takes_seeds", False):
        G_kwargs = dict(seeds=[item_seed(opts.seed, i) for i in batch])  # PatchMatch: one search seed per item
    if getattr(G, "takes_items", False):
        G_kwargs = dict(items=batch, mask_spec=opts.mask_spec)  # stored completions (--results): read per item
    out = run_inpainter(G, img * mask, mask, z, torch_seed=batch_seed, **G_kwargs)
    assert_shape(out, list(img.shape), "inpainted images")
    # Re-composite in uint8 so known pixels equal the real ones bit for bit, whatever the inpainter returns.
    return torch.where(mask.bool(), real, to_uint8(out))


def iterate_eval_pairs(opts, G, dataset, num_items):
    """Yield EasyDict(indices, real, fake, mask) for this rank's share of items 0..num_items-1.

    real/fake: uint8 [N, 3, H, W] on opts.device; mask: float [N, 1, H, W], 1 = known. Items beyond the dataset
    reuse image i % len(dataset) with their own mask and z.
    """
    progress = Progress(opts, "inpainted", len(rank_indices(num_items, opts.rank, opts.num_gpus)))
    for batch, real, mask in _batches(opts, dataset, num_items, with_masks=True):
        fake = _run_inpainter(opts, G, real, mask, batch)
        yield EasyDict(indices=batch, real=real, fake=fake, mask=mask)
        progress.update(len(batch))


def iterate_real_images(opts, dataset, num_items):
    """Yield (indices, uint8 real images) for this rank's share of dataset items 0..num_items-1."""
    progress = Progress(opts, "real", len(rank_indices(num_items, opts.rank, opts.num_gpus)))
    for batch, real, _mask in _batches(opts, dataset, num_items, with_masks=False):
        yield batch, real
        progress.update(len(batch))
