"""Fixed names and addresses the metrics depend on: the detector URL, its environment override, cache folders."""

import os

# TorchScript translation of TensorFlow's inception-2015-12-05 graph, as published with stylegan2-ada-pytorch and
# used by MAT: takes uint8 images [N, 3, H, W] (any H, W: it resizes to 299 internally) and, called as
# `detector(img, return_features=True)`, returns the 2048-d pool features [N, 2048].
DETECTOR_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"

# Environment variable naming a local path or URL of the detector, for offline machines (overridden by --detector).
DETECTOR_ENV = "COMODGAN_DETECTOR"

# Environment variable moving the whole download/statistics cache (default ~/.cache/comodgan).
CACHE_ENV = "COMODGAN_CACHE_DIR"

DOWNLOAD_RETRIES = 3  # attempts per download before giving up with a UserError
DOWNLOAD_TIMEOUT_S = 60  # per-request connect/read timeout


def default_cache_root():
    """~/.cache/comodgan unless COMODGAN_CACHE_DIR says otherwise."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "comodgan")
