"""Shared machinery of every metric: the feature detector loader (with download cache), the feature-statistics
accumulator, and the evaluation-set iterator that turns validation images into reproducible real/fake pairs."""

import copy
import hashlib
import os
import sys
import time
import uuid
import warnings

import numpy as np
import requests
import torch

from dnnlib import EasyDict, UserError
from inference import fast_path
from inference.inpaint import run_inpainter
from metrics import constants
from torch_utils.misc import assert_mask_convention, assert_shape


class DetectorError(UserError):
    """The feature detector cannot be found, downloaded, loaded or called; the message names the file or URL."""


# ---------------------------------------------------------------------------------------------------------------------
# Detector: local path, URL (downloaded once into the cache) or the COMODGAN_DETECTOR environment variable.

_loaded_detectors = {}  # (resolved path, device) -> (module, detector_id); loading Inception takes seconds


def _is_url(source):
    return source.startswith("http://") or source.startswith("https://")


def resolve_detector_source(detector=None):
    """--detector value if given, else $COMODGAN_DETECTOR, else the public Inception URL."""
    if detector:
        return str(detector)
    return os.environ.get(constants.DETECTOR_ENV) or constants.DETECTOR_URL


def download_cached(url, cache_dir=None, retries=constants.DOWNLOAD_RETRIES, timeout=constants.DOWNLOAD_TIMEOUT_S):
    """Download `url` once into `<cache_dir>/downloads/` and return the local path.

    The file is streamed to a temporary name in the same folder, fsynced and renamed into place, so an interrupted
    download never leaves a truncated file under the final name. Failures are retried with a short back-off.
    """
    folder = os.path.join(cache_dir or constants.default_cache_root(), "downloads")
    url_hash = hashlib.md5(url.encode("utf-8")).hexdigest()[:10]
    path = os.path.join(folder, f"{url_hash}-{os.path.basename(url.split('?')[0]) or 'download'}")
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    last_err = None
    for attempt in range(retries):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with requests.get(url, stream=True, timeout=timeout) as resp:
                resp.raise_for_status()
                with open(tmp, "wb") as f:
                    for chunk in resp.iter_content(chunk_size=1 << 20):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
            if os.path.getsize(tmp) == 0:
                raise OSError("server sent an empty file")
            os.replace(tmp, path)
            return path
        except (requests.RequestException, OSError) as err:
            last_err = err
            if os.path.exists(tmp):
                os.remove(tmp)
            if attempt + 1 < retries:
                time.sleep(min(2.0**attempt, 10.0))
    raise DetectorError(
        f"could not download {url} after {retries} attempts ({last_err}); on an offline machine download it "
        f"elsewhere and pass the local file with --detector PATH or ${constants.DETECTOR_ENV}"
    )


def _check_detector(module, path, device):
    """One tiny forward pass, so a wrong file fails here with its name rather than deep inside a metric."""
    probe = torch.zeros([1, 3, 32, 32], dtype=torch.uint8, device=device)
    try:
        with torch.no_grad():
            out = module(probe, return_features=True)
    except Exception as err:  # any failure of a foreign TorchScript file is the file's problem
        raise DetectorError(
            f"detector {path}: calling it as detector(uint8 images, return_features=True) failed ({err})"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DetectorError(f"detector {path}: expected features of shape [N, F], got {shape}")


def load_detector(detector=None, device="cpu", cache_dir=None, rank=0, num_gpus=1):
    """Load the TorchScript feature detector; returns (module, detector_id).

    `detector` is a local path, a URL or None (then $COMODGAN_DETECTOR, then the public Inception URL).
    `detector_id` names the file (basename and size) for the real-statistics cache key. Under DDP rank 0
    downloads first while the others wait, so the cache is written once.
    """
    device = torch.device(device)
    source = resolve_detector_source(detector)
    if source.startswith("file://"):
        source = source[len("file://"):]
    ddp = num_gpus > 1 and torch.distributed.is_initialized()
    if _is_url(source):
        if ddp and rank != 0:
            torch.distributed.barrier()
        path = download_cached(source, cache_dir)
        if ddp and rank == 0:
            torch.distributed.barrier()
    else:
        path = os.path.abspath(os.path.expanduser(source))
        if not os.path.isfile(path):
            raise DetectorError(f"detector {source}: no such file (give a TorchScript file or a URL)")
    key = (path, str(device))
    if key not in _loaded_detectors:
        try:
            with warnings.catch_warnings():  # the published detector is TorchScript, deprecated or not
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(path, map_location=device).eval()
        except Exception as err:  # torch raises RuntimeError/ValueError/zipfile errors for foreign files
            raise DetectorError(f"detector {path}: not a loadable TorchScript file ({type(err).__name__}: {err})"
                                ) from None
        _check_detector(module, path, device)
        detector_id = f"{os.path.splitext(os.path.basename(path))[0]}-{os.path.getsize(path)}"
        _loaded_detectors[key] = (module, detector_id)
    return _loaded_detectors[key]


def detector_features(detector, images_u8):
    """2-D float64 numpy features of uint8 images [N, 3, H, W] (the detector resizes internally)."""
    assert images_u8.dtype == torch.uint8
    with torch.no_grad():
        feats = detector(images_u8, return_features=True)
    return feats.to(torch.float64).cpu().numpy()


# ---------------------------------------------------------------------------------------------------------------------
# Feature statistics.

class FeatureStats:
    """Accumulates features batch by batch: all rows (for IDS) and/or running sums for the mean and covariance (FID).

    The covariance is the population covariance (divide by N), the stylegan2-ada-pytorch / MAT convention.
    """

    def __init__(self, capture_all=False, capture_mean_cov=False):
        self.capture_all = capture_all  # keep every row (memory N x F)
        self.capture_mean_cov = capture_mean_cov  # keep sum and sum of outer products in float64
        self.num_items = 0
        self.num_features = None
        self.rows = []
        self.raw_sum = None
        self.raw_outer = None

    def append(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"FeatureStats.append: expected [N, F] features, got shape {list(x.shape)}")
        if self.num_features is None:
            self.num_features = x.shape[1]
            self.raw_sum = np.zeros([self.num_features], dtype=np.float64)
            self.raw_outer = np.zeros([self.num_features, self.num_features], dtype=np.float64)
        elif x.shape[1] != self.num_features:
            raise ValueError(f"FeatureStats.append: {x.shape[1]} features, expected {self.num_features}")
        self.num_items += x.shape[0]
        if self.capture_all:
            self.rows.append(x)
        if self.capture_mean_cov:
            self.raw_sum += x.sum(axis=0)
            self.raw_outer += x.T @ x

    def get_all(self):
        assert self.capture_all
        return np.concatenate(self.rows, axis=0) if self.rows else np.zeros([0, self.num_features or 0])

    def get_mean_cov(self):
        assert self.capture_mean_cov and self.num_items > 0
        mean = self.raw_sum / self.num_items
        cov = self.raw_outer / self.num_items - np.outer(mean, mean)
        return mean, cov

    def save(self, path):
        """Atomic: temp file in the same folder, fsync, rename."""
        assert self.capture_mean_cov and not self.capture_all
        tmp = f"{path}.tmp-{uuid.uuid4().hex}.npz"
        with open(tmp, "wb") as f:
            np.savez(f, num_items=self.num_items, raw_sum=self.raw_sum, raw_outer=self.raw_outer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @staticmethod
    def load(path):
        with np.load(path, allow_pickle=False) as data:
            stats = FeatureStats(capture_mean_cov=True)
            stats.num_items = int(data["num_items"])
            stats.raw_sum = data["raw_sum"]
            stats.raw_outer = data["raw_outer"]
            stats.num_features = stats.raw_sum.shape[0]
        return stats


# ---------------------------------------------------------------------------------------------------------------------
# Distributed helpers: every rank handles indices rank, rank + num_gpus, ...; rows are gathered and re-sorted by index,
# so results do not depend on the number of processes.

def ddp_active(opts):
    return opts.num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_indices(num_items, rank=0, num_gpus=1):
    return list(range(rank, num_items, num_gpus))


def concat_rows(parts):
    """Concatenate per-batch row blocks; an empty list (a rank with no items) gives an empty array."""
    return np.concatenate(parts, axis=0) if parts else np.zeros([0, 0])


def gather_rows(opts, indices, rows):
    """Gather per-item rows from all ranks; rank 0 gets them sorted by item index, other ranks get None."""
    indices = np.asarray(indices, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.float64)
    if ddp_active(opts):
        parts = [None] * opts.num_gpus
        torch.distributed.all_gather_object(parts, (indices, rows))
        if opts.rank != 0:
            return None
        parts = [p for p in parts if len(p[0]) > 0]  # a rank with no items sends an empty, shapeless array
        indices = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts], axis=0)
    order = np.argsort(indices, kind="stable")
    return rows[order]


def broadcast_flag(opts, flag):
    """Rank 0's boolean, on every rank."""
    if not ddp_active(opts):
        return bool(flag)
    obj = [bool(flag)]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation set: validation image i is paired with mask eval_mask(spec, res, seed, i) and a z drawn from (seed, i).

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
    out = run_inpainter(G, img * mask, mask, z, torch_seed=batch_seed, **G_kwargs)
    assert_shape(out, list(img.shape), "inpainted images")
    # Re-composite in uint8 so known pixels equal the real ones bit for bit, whatever the inpainter returns.
    return torch.where(mask.bool(), real, to_uint8(out))


class Progress:
    """Rank 0 prints `<tag> images i/n` to stderr about every 10% when opts.progress is set (the CLI's runs)."""

    def __init__(self, opts, tag, total):
        self.enabled = bool(opts.get("progress")) and opts.rank == 0 and total > 0
        self.tag, self.total, self.done, self.next_report = tag, total, 0, 0.1
        self.start = time.time()

    def update(self, count):
        self.done += count
        if self.enabled and self.done >= self.next_report * self.total:
            self.next_report = np.floor(self.done / self.total * 10 + 1) / 10
            print(f"  {self.tag} images {self.done}/{self.total} (rank 0) {time.time() - self.start:.1f}s",
                  file=sys.stderr, flush=True)


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


def _dataset_fingerprint(dataset):
    path = os.path.abspath(str(dataset.path))
    st = os.stat(path)
    return f"{path}|{st.st_size}|{st.st_mtime_ns}|{len(dataset)}"


def compute_real_stats(opts, dataset, detector, detector_id, num_items):
    """Mean/cov of detector features of the first `num_items` validation images, cached per
    (dataset file, resolution, detector, count) in `<cache_dir>/gan-metrics/` (rank 0 writes, atomically)."""
    key = f"{_dataset_fingerprint(dataset)}|{opts.resolution}|{detector_id}|{num_items}"
    md5 = hashlib.md5(key.encode("utf-8")).hexdigest()
    folder = os.path.join(opts.cache_dir or constants.default_cache_root(), "gan-metrics")
    cache_file = os.path.join(folder, f"{dataset.name}-{opts.resolution}-{detector_id}-{num_items}-{md5}.npz")
    if broadcast_flag(opts, os.path.isfile(cache_file) if opts.rank == 0 else False):
        return FeatureStats.load(cache_file) if opts.rank == 0 else None
    all_idx, all_feats = [], []
    for batch, real in iterate_real_images(opts, dataset, num_items):
        all_idx.extend(batch)
        all_feats.append(detector_features(detector, real))
    feats = gather_rows(opts, all_idx, concat_rows(all_feats))
    if opts.rank != 0:
        return None
    stats = FeatureStats(capture_mean_cov=True)
    stats.append(feats)
    os.makedirs(folder, exist_ok=True)
    stats.save(cache_file)
    return stats
