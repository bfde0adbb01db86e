"""Detector-feature statistics: the accumulator of rows, mean and covariance, and the cached statistics of the real
validation images that FID compares against."""

import hashlib
import os
import uuid

import numpy as np

from metrics import constants
from metrics.detector_loader import detector_features
from metrics.distributed import broadcast_flag, concat_rows, gather_rows
from metrics.eval_set import iterate_real_images


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
