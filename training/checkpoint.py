"""Our snapshot format on disk: atomic writes, weights-only loading with clear errors, finding a run's snapshots."""

import os
import pickle
import re
import tempfile
import warnings
import zipfile

import torch

from dnnlib import UserError, default_file_mode

SNAPSHOT_FORMAT = "comodgan-pytorch-snapshot"
SNAPSHOT_VERSION = 1
SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d{6,})\.pt$")
# A snapshot's `kind` says what it holds. Snapshots written before the field existed are training ones.
SNAPSHOT_KIND_TRAINING = "training"  # G, D, G_ema (+ optimizers, progress): a run's snapshot or a full import
SNAPSHOT_KIND_GENERATOR = "generator"  # G_ema only (e.g. the PyTorch port's net_G_ema.pth): no G, no D
SNAPSHOT_KINDS = {SNAPSHOT_KIND_TRAINING: ("G_kwargs", "D_kwargs", "G", "G_ema", "D"),
                  SNAPSHOT_KIND_GENERATOR: ("G_kwargs", "G_ema")}
REQUIRED_KEYS = SNAPSHOT_KINDS[SNAPSHOT_KIND_TRAINING]


class CheckpointError(UserError):
    """A snapshot file is missing, truncated, or not one of ours."""


def snapshot_name(kimg):
    """File name for the snapshot taken at `kimg` thousand images (6 digits, zero padded)."""
    return f"network-snapshot-{int(kimg):06d}.pt"


def save_snapshot(path, data):
    """Write `data` to `path` atomically: temp file in the same folder, flush + fsync, then os.replace.

    A crash at any moment leaves either the old file or the new one, never a torn file. `format` and `version`
    are filled in when absent, so callers only provide the payload.
    """
    data = dict(data)
    data.setdefault("format", SNAPSHOT_FORMAT)
    data.setdefault("version", SNAPSHOT_VERSION)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp_path, default_file_mode())  # mkstemp makes owner-only files; a snapshot is like any output
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder):
    # Make the rename itself durable; not every platform lets us open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_snapshot(path):
    """Load a snapshot on the CPU with `weights_only=True` (never executes code from the file) and check its format."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: snapshot file not found")
    data = load_weights_only(path, CheckpointError, "comodgan-pytorch snapshot")
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not a comodgan-pytorch snapshot (format {found!r}, "
                              f"expected {SNAPSHOT_FORMAT!r})")
    if data.get("version") != SNAPSHOT_VERSION:
        raise CheckpointError(f"{path}: snapshot version {data.get('version')!r} is not supported "
                              f"(this code reads version {SNAPSHOT_VERSION})")
    kind = snapshot_kind(data)
    if kind not in SNAPSHOT_KINDS:
        raise CheckpointError(f"{path}: snapshot kind {kind!r} is not supported "
                              f"(this code reads {', '.join(map(repr, SNAPSHOT_KINDS))})")
    missing = [key for key in SNAPSHOT_KINDS[kind] if key not in data]
    if missing:
        raise CheckpointError(f"{path}: snapshot lacks {', '.join(missing)}")
    # Every required entry is a dict: the kwargs of a network, or its state dict (a mapping of tensors).
    wrong = [f"{key} is {type(data[key]).__name__}" for key in SNAPSHOT_KINDS[kind] if not isinstance(data[key], dict)]
    if wrong:
        raise CheckpointError(f"{path}: not a usable snapshot ({', '.join(wrong)}, expected a dict)")
    return data


def snapshot_kind(data):
    """'training' (G, D, G_ema) or 'generator' (G_ema only); a snapshot without the field is a training one."""
    return data.get("kind", SNAPSHOT_KIND_TRAINING)


def check_resumable(data, path):
    """Raise CheckpointError unless the snapshot dict holds what training resumes from (G, D and G_ema)."""
    if snapshot_kind(data) != SNAPSHOT_KIND_TRAINING:
        source = f", converted from {data['imported_from']}" if data.get("imported_from") else ""
        raise CheckpointError(f"{path}: a generator-only snapshot (G_ema only{source}): G and D are absent, so "
                              f"training cannot resume from it. Use it with generate.py or calc_metrics.py, "
                              f"or train without --resume")


def load_weights_only(path, error, what):
    """torch.load(path, map_location='cpu', weights_only=True), with every failure turned into `error` (a UserError
    class) with one line naming the file; `what` says what the file should have been.

    A pickled object is refused by torch's weights-only unpickler and nothing from the file runs; the message names
    the refused global. Foreign bytes can make torch's unpickler raise anything (a text file gave KeyError: 101),
    so no exception escapes as a traceback.
    """
    try:
        with warnings.catch_warnings():
            # Foreign pickles trigger a protocol warning just before the refusal we turn into a clear error.
            warnings.filterwarnings("ignore", message=".*pickle protocol.*", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise error(_refusal_message(path, err, what)) from None
    except PermissionError as err:
        raise error(f"{path}: cannot read ({err.strerror})") from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError) as err:
        raise error(f"{path}: not a readable {what}, or truncated ({first_error_line(err)})") from None
    except Exception as err:
        raise error(f"{path}: not a {what} ({type(err).__name__}: {first_error_line(err)})") from None


def _refusal_message(path, err, what):
    # torch's first line is generic ("Weights only load failed"); the reason is further down.
    text = str(err)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (f"{path}: refusing to load: the file holds a pickled object ({refused.group(1)}), not a {what}; "
                f"weights-only loading refused it and nothing from the file ran")
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, flags=re.S)
    reason = " ".join(detail.group(1).split())[:200] if detail else first_error_line(err)
    return (f"{path}: refusing to load: not a state dict that weights-only loading accepts ({reason}), so not a "
            f"{what}; nothing from the file ran")


def first_error_line(err):
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def state_dict_problem(err):
    """The first concrete line of load_state_dict's error (missing / unexpected keys, a size mismatch), not its
    'Error(s) in loading state_dict for X:' header."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else first_error_line(err))[:300]


def list_snapshots(run_dir):
    """Snapshots in `run_dir` as a list of (kimg, path), oldest first."""
    if not os.path.isdir(run_dir):
        return []
    found = []
    for name in os.listdir(run_dir):
        match = SNAPSHOT_RE.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(run_dir, name)))
    return sorted(found)


def latest_snapshot(run_dir):
    """Path of the newest snapshot in `run_dir`, or None."""
    snaps = list_snapshots(run_dir)
    return snaps[-1][1] if snaps else None
