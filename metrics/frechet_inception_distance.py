"""Fréchet Inception Distance between validation images and their inpainted versions (`fid<N>`, `fid_full`)."""

import numpy as np
import scipy.linalg

from metrics.detector_loader import detector_features, load_detector
from metrics.distributed import concat_rows, gather_rows
from metrics.eval_set import iterate_eval_pairs
from metrics.feature_stats import FeatureStats, compute_real_stats


def fid_from_stats(mu1, sigma1, mu2, sigma2):
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)); the imaginary part of sqrtm is numerical noise and dropped."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    mean_term = np.square(mu1 - mu2).sum()
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - 2 * covmean)))


def fid_from_features(real, fake):
    """FID of two feature matrices [N, F] (population covariance, as in stylegan2-ada-pytorch)."""
    stats = []
    for feats in (real, fake):
        acc = FeatureStats(capture_mean_cov=True)
        acc.append(feats)
        stats.append(acc.get_mean_cov())
    return fid_from_stats(*stats[0], *stats[1])


def compute_fid(opts, G, dataset, num_items):
    """Real statistics over the first min(N, len(dataset)) validation images (cached); fake statistics over N
    inpainted items (image i % len, mask eval_mask(spec, res, seed, i), z from (seed, i)). NaN on ranks != 0."""
    detector, detector_id = load_detector(opts.detector, opts.device, opts.cache_dir, opts.rank, opts.num_gpus)
    real_stats = compute_real_stats(opts, dataset, detector, detector_id, min(num_items, len(dataset)))
    all_idx, all_feats = [], []
    for pairs in iterate_eval_pairs(opts, G, dataset, num_items):
        all_idx.extend(pairs.indices)
        all_feats.append(detector_features(detector, pairs.fake))
    feats = gather_rows(opts, all_idx, concat_rows(all_feats))
    if opts.rank != 0:
        return {"fid": float("nan")}
    fake_stats = FeatureStats(capture_mean_cov=True)
    fake_stats.append(feats)
    return {"fid": fid_from_stats(*real_stats.get_mean_cov(), *fake_stats.get_mean_cov())}

