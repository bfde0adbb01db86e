"""The feature detector of FID and IDS: found at a local path, a URL (downloaded once into the cache) or the
COMODGAN_DETECTOR environment variable, loaded once per process and device, and called on uint8 images."""

import hashlib
import os
import time
import uuid
import warnings

import requests
import torch

from dnnlib import UserError
from metrics import constants


class DetectorError(UserError):
    """The feature detector cannot be found, downloaded, loaded or called; the message names the file or URL."""


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
