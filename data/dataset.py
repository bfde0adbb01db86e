"""Reading image datasets (stylegan2-ada-pytorch style zip archives or folders) as uint8 CHW arrays.

Layout: image files anywhere inside the zip or folder (sorted by relative path), optionally a `dataset.json`
(ignored here: training is unconditional). `dataset_tool.py` writes this layout; zips made by
stylegan2-ada-pytorch's dataset_tool read unchanged, and ours read in theirs.

Subsets and flips follow stylegan2-ada-pytorch so that the same (max_size, random_seed, xflip) selects the
same images: `max_size` keeps a random subset chosen by np.random.RandomState(random_seed), kept in file order;
`xflip=True` doubles the length, items [n, 2n) being the mirrored copies of items [0, n).
"""

import io
import os

import numpy as np
import PIL.Image

from data.image_io import FileSource, ImageReadError, decode_png_fast
from dnnlib import UserError


class DatasetError(UserError):
    """A dataset path or file that cannot be used: the message names the file and the problem."""


def _image_extensions():
    """Every extension Pillow can open (as stylegan2-ada-pytorch does), so their archives list the same files."""
    PIL.Image.init()
    return {ext.lower() for ext in PIL.Image.EXTENSION}


class ImageDataset:
    """A zip or folder of same-sized square RGB images; ds[i] -> uint8 numpy [3, H, W].

    The zip is opened lazily and once per process (see FileSource), so the object can be handed to
    DataLoader workers and DDP ranks as is. PNGs decode with pyspng when installed, other formats with Pillow.
    """

    def __init__(self, path, resolution=None, max_size=None, xflip=False, random_seed=0):
        self._source = FileSource(path, what="dataset", error_cls=DatasetError)
        self._path = str(path)
        self._name = os.path.splitext(os.path.basename(os.path.normpath(self._path)))[0]
        self._fnames = self._list_images()
        first = self._load_raw(0)
        self._check_first(first, resolution)
        self._shape = list(first.shape)  # [C, H, W]

        # Subset and flips exactly as stylegan2-ada-pytorch (same seed -> same subset).
        self._raw_idx = np.arange(len(self._fnames), dtype=np.int64)
        if max_size is not None:
            if int(max_size) < 1:
                raise DatasetError(f"{self._path}: max_size must be >= 1, got {max_size}")
            if self._raw_idx.size > max_size:
                np.random.RandomState(random_seed).shuffle(self._raw_idx)
                self._raw_idx = np.sort(self._raw_idx[: int(max_size)])
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _list_images(self):
        all_files = self._source.list_files()
        exts = _image_extensions()
        fnames = [f for f in all_files if os.path.splitext(f)[1].lower() in exts]
        if not all_files:
            raise DatasetError(f"{self._path}: the dataset {self._source.kind} is empty")
        if not fnames:
            shown = ", ".join(all_files[:5]) + (" ..." if len(all_files) > 5 else "")
            raise DatasetError(f"{self._path}: no image files among its {len(all_files)} file(s) ({shown})")
        return fnames

    def _check_first(self, image, resolution):
        c, h, w = image.shape
        fname = self._where(0)
        if h != w:
            raise DatasetError(f"{fname}: image is {w}x{h}, not square (re-create the dataset with dataset_tool.py)")
        if resolution is not None and h != resolution:
            raise DatasetError(f"{fname}: image is {w}x{h}, expected the requested {resolution}x{resolution}")

    def _where(self, raw_idx):
        """'archive/member' or the file path, for error messages."""
        if self._source.kind == "zip":
            return f"{self._path}/{self._fnames[raw_idx]}"
        return os.path.join(self._path, self._fnames[raw_idx])

    def _load_raw(self, raw_idx):
        """Decode image raw_idx as uint8 [3, H, W]; DatasetError naming the file when it is not 3-channel."""
        fname = self._fnames[raw_idx]
        data = self._source.read(fname)
        try:
            if fname.lower().endswith(".png"):
                image = decode_png_fast(data, name=self._where(raw_idx))
            else:
                with PIL.Image.open(io.BytesIO(data)) as img:
                    image = np.asarray(img)
                if image.ndim == 2:
                    image = image[:, :, np.newaxis]
        except (ImageReadError, OSError, ValueError, SyntaxError) as err:
            raise DatasetError(f"{self._where(raw_idx)}: cannot decode image ({err})") from None
        if image.dtype != np.uint8:
            raise DatasetError(f"{self._where(raw_idx)}: image is {image.dtype}, expected 8-bit")
        if image.shape[2] != 3:
            raise DatasetError(
                f"{self._where(raw_idx)}: image has {image.shape[2]} channel(s), expected 3 (RGB); "
                "re-create the dataset with dataset_tool.py, which converts gray and RGBA to RGB"
            )
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def __len__(self):
        return int(self._raw_idx.size)

    def __getitem__(self, idx):
        raw_idx = int(self._raw_idx[idx])
        image = self._load_raw(raw_idx)
        if list(image.shape) != self._shape:
            raise DatasetError(
                f"{self._where(raw_idx)}: image shape {list(image.shape)} (CHW) differs from the dataset's "
                f"{self._shape} (set by {self._fnames[0]})"
            )
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image)

    def fname(self, idx):
        """Relative file name inside the archive/folder of item idx (flipped copies share their source's name)."""
        return self._fnames[int(self._raw_idx[idx])]

    def is_flipped(self, idx):
        return bool(self._xflip[idx])

    def close(self):
        self._source.close()

    @property
    def name(self):
        return self._name

    @property
    def path(self):
        return self._path

    @property
    def image_shape(self):
        return list(self._shape)

    @property
    def num_channels(self):
        return self._shape[0]

    @property
    def resolution(self):
        return self._shape[1]

