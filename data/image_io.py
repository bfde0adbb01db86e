"""Decoding user image and mask files into the in-memory conventions, with errors that name the file.

Images come back as uint8 RGB [H, W, 3] with EXIF orientation applied; masks as float32 [H, W] with
1 = known pixel and 0 = hole. On disk a mask is white = hole by default (`hole='black'` inverts).
"""

import io
import os
import zipfile

import cv2
import numpy as np
import PIL.Image
import PIL.ImageOps

from dnnlib import UserError

try:
    import pyspng
except ImportError:  # Pillow decodes PNG too, only slower.
    pyspng = None

# Extensions the dataset tool and the mask loader accept as images (lower case, with the dot).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
HOLE_COLORS = ("white", "black")


class ImageReadError(UserError):
    """A file that cannot be decoded as an image (missing, truncated, not an image)."""


def is_image_name(name):
    """True when `name` ends in one of IMAGE_EXTENSIONS (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _open_pil(data, name):
    try:
        img = PIL.Image.open(io.BytesIO(data))
        img.load()  # Force the full decode here so truncated files fail now, not later.
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as err:
        raise ImageReadError(f"{name}: cannot decode image ({type(err).__name__}: {err})") from None
    return img


def _to_rgb(img):
    """Any Pillow mode -> RGB. Alpha is composited onto white (a transparent background reads as white paper)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float grayscale: Pillow's own convert clips to 255, so rescale to 8 bits first.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode != "F" else max(float(arr.max()), 1.0)
        img = PIL.Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PIL.Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def decode_image_rgb(data, name="<bytes>"):
    """Encoded image bytes -> uint8 [H, W, 3]: EXIF orientation applied, gray/palette/RGBA/16-bit to RGB."""
    img = _open_pil(data, name)
    try:
        img = PIL.ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError) as err:  # A malformed EXIF block is the file's fault, not ours.
        raise ImageReadError(f"{name}: cannot apply EXIF orientation ({err})") from None
    return np.ascontiguousarray(np.asarray(_to_rgb(img), dtype=np.uint8))


def _read_bytes(path, what):
    if not os.path.exists(path):
        raise ImageReadError(f"{path}: {what} file does not exist")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: expected a {what} file, found a folder")
    with open(path, "rb") as f:
        return f.read()


def read_image_rgb(path):
    """Read an image file as uint8 [H, W, 3] (EXIF orientation applied, converted to RGB); ImageReadError if not."""
    return decode_image_rgb(_read_bytes(path, "image"), name=path)


def decode_png_fast(data, name="<bytes>"):
    """PNG bytes -> uint8 [H, W, C] array (C in 1..4, squeezed gray as [H, W, 1]); pyspng when available."""
    if pyspng is not None:
        try:
            arr = pyspng.load(data)
        except Exception as err:  # pyspng raises a bare Exception on bad data; re-raise as the user's error.
            raise ImageReadError(f"{name}: cannot decode PNG ({err})") from None
    else:
        arr = np.asarray(_open_pil(data, name))
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    return arr


def decode_mask(data, name="<bytes>", hole="white", resolution=None):
    """Mask image bytes -> float32 [H, W] with 1 = known, 0 = hole.

    The file is read as grayscale (alpha ignored, EXIF orientation applied) and thresholded at 128; `hole` says
    which colour marks the hole on disk. With `resolution` the mask is resized to resolution x resolution with
    nearest-neighbour sampling at pixel centres, so it stays binary.
    """
    if hole not in HOLE_COLORS:
        raise UserError(f"{name}: hole colour must be one of {HOLE_COLORS}, got {hole!r}")
    # OpenCV decodes 8-bit gray PNGs several times faster than Pillow, which matters when a mask folder of
    # tens of thousands of files is checked at start-up.
    gray = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if gray is None:  # A format OpenCV lacks, or a broken file: Pillow decodes it or names the problem.
        img = _open_pil(data, name)
        try:
            img = PIL.ImageOps.exif_transpose(img)
        except (OSError, ValueError, SyntaxError) as err:
            raise ImageReadError(f"{name}: cannot apply EXIF orientation ({err})") from None
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            img = _to_rgb(img)
        gray = np.asarray(img.convert("L"))
    if resolution is not None and gray.shape != (resolution, resolution):
        gray = cv2.resize(gray, (resolution, resolution), interpolation=cv2.INTER_NEAREST_EXACT)
    white = gray >= 128
    known = ~white if hole == "white" else white
    return known.astype(np.float32)


def read_mask_file(path, hole="white", resolution=None):
    """Read a mask file as float32 [H, W], 1 = known (see decode_mask); ImageReadError naming the file."""
    return decode_mask(_read_bytes(path, "mask"), name=path, hole=hole, resolution=resolution)


class FileSource:
    """Lists and reads the files of a folder (recursively) or a zip, reopening the zip once per process.

    A zip handle must not be shared across fork()ed DataLoader workers or DDP ranks (their seeks would
    interleave), so the handle remembers the pid that opened it and is reopened in any other process.
    """

    def __init__(self, path, what="dataset", error_cls=UserError):
        self.path = str(path)
        self.error_cls = error_cls  # Callers pick the UserError subclass their users will see.
        if not os.path.exists(self.path):
            raise error_cls(f"{self.path}: {what} path does not exist")
        if os.path.isdir(self.path):
            self.kind = "dir"
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
        else:
            raise error_cls(f"{self.path}: {what} must be a folder or a .zip archive")
        self._zip = None
        self._zip_pid = None

    def list_files(self):
        """Sorted relative names ('/' separated) of every regular file."""
        if self.kind == "dir":
            names = []
            for root, _dirs, files in os.walk(self.path):
                for fname in files:
                    names.append(os.path.relpath(os.path.join(root, fname), self.path).replace(os.sep, "/"))
            return sorted(names)
        return sorted(info.filename for info in self._zipfile().infolist() if not info.is_dir())

    def _zipfile(self):
        if self._zip is None or self._zip_pid != os.getpid():
            # Drop (never close) a handle inherited from the parent: closing it could disturb the parent's reads.
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile) as err:
                raise self.error_cls(f"{self.path}: cannot open zip archive ({err})") from None
            self._zip_pid = os.getpid()
        return self._zip

    def read(self, name):
        """The bytes of one file; UserError naming the archive and the member when it cannot be read."""
        try:
            if self.kind == "dir":
                with open(os.path.join(self.path, name), "rb") as f:
                    return f.read()
            return self._zipfile().read(name)
        except (OSError, KeyError, zipfile.BadZipFile) as err:
            raise self.error_cls(f"{self.path}: cannot read {name} ({err})") from None

    def close(self):
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None
        self._zip_pid = None

    def __getstate__(self):
        return dict(self.__dict__, _zip=None, _zip_pid=None)
