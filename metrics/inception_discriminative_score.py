"""Paired / Unpaired Inception Discriminative Scores (P-IDS, U-IDS) of CoModGAN (`ids<N>`), with the FID of the
same paired features reported alongside, as the official release does."""

import numpy as np
import sklearn.svm
import torch

from dnnlib import UserError
from metrics.detector_loader import detector_features, load_detector
from metrics.distributed import concat_rows, gather_rows
from metrics.eval_set import iterate_eval_pairs
from metrics.frechet_inception_distance import fid_from_features


def ids_from_features(real, fake):
    """(P-IDS, U-IDS) of paired features real[i] <-> fake[i].

    A linear SVM (LinearSVC, dual=False) is fit to separate real (label 1) from fake (label 0).
    U-IDS = its misclassification rate on the data it was fit to; P-IDS = fraction of pairs whose fake gets a
    larger "real" decision value than its own real image. Both are 0 for a hopeless inpainter; 0.5 is the ideal.
    """
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if real.shape != fake.shape or real.ndim != 2:
        raise ValueError(f"IDS needs paired features of equal shape [N, F], got {real.shape} and {fake.shape}")
    svm = sklearn.svm.LinearSVC(dual=False)
    inputs = np.concatenate([real, fake])
    targets = np.concatenate([np.ones(len(real), np.int64), np.zeros(len(fake), np.int64)])
    svm.fit(inputs, targets)
    u_ids = 1.0 - float(svm.score(inputs, targets))
    p_ids = float(np.mean(svm.decision_function(fake) > svm.decision_function(real)))
    return p_ids, u_ids


def check_ids_size(metric, num_items, num_images, num_features):
    """UserError unless the IDS of `metric` rests on at least `num_features` distinct validation images.

    With fewer points than feature dimensions a linear SVM separates real from inpainted features by memorising
    them, so U-IDS is 0 and P-IDS noise whatever the inpainter: the numbers would look valid and mean nothing.
    """
    distinct = min(int(num_items), int(num_images))
    if distinct < num_features:
        raise UserError(f"{metric}: P-IDS/U-IDS need at least {num_features} distinct validation images (the "
                        f"detector's feature size); this run has {distinct} ({num_images} in the validation set, "
                        f"{num_items} items). With fewer, the SVM separates real from inpainted by memorising them. "
                        "Use a larger validation set, or leave the ids metric out")


def compute_ids(opts, G, dataset, num_items):
    """P-IDS, U-IDS and FID over N paired items (real image i % len, its inpainted version). NaN on ranks != 0."""
    detector, _detector_id = load_detector(opts.detector, opts.device, opts.cache_dir, opts.rank, opts.num_gpus)
    probe = torch.zeros([1, 3, 32, 32], dtype=torch.uint8, device=opts.device)
    check_ids_size(f"ids{num_items}", num_items, len(dataset),
                   detector_features(detector, probe).shape[1])
    all_idx, rows = [], []
    for pairs in iterate_eval_pairs(opts, G, dataset, num_items):
        all_idx.extend(pairs.indices)
        real = detector_features(detector, pairs.real)
        fake = detector_features(detector, pairs.fake)
        rows.append(np.concatenate([real, fake], axis=1))  # one row per pair keeps them paired through the gather
    both = gather_rows(opts, all_idx, concat_rows(rows))
    if opts.rank != 0:
        return {"pids": float("nan"), "uids": float("nan"), "fid": float("nan")}
    real, fake = np.split(both, 2, axis=1)
    p_ids, u_ids = ids_from_features(real, fake)
    return {"pids": p_ids, "uids": u_ids, "fid": fid_from_features(real, fake)}
