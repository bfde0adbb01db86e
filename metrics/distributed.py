"""Sharing evaluation work between processes: every rank handles items rank, rank + num_gpus, ...; per-item rows are
gathered on rank 0 and re-sorted by item index, so results do not depend on the number of processes."""

import numpy as np
import torch


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


def gather_dicts(opts, obj):
    """Rank 0 gets the merged dicts of all ranks; the others get None."""
    if not ddp_active(opts):
        return obj
    parts = [None] * opts.num_gpus
    torch.distributed.all_gather_object(parts, obj)
    if opts.rank != 0:
        return None
    merged = {}
    for part in parts:
        merged.update(part)
    return merged


def broadcast_flag(opts, flag):
    """Rank 0's boolean, on every rank."""
    if not ddp_active(opts):
        return bool(flag)
    obj = [bool(flag)]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]
