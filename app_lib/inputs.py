"""What a client may send the web app, checked: image and mask bytes under the size limits, seeds, mask specs and
options, each problem a one-line UserError (or TooLarge) that the server turns into a 4xx."""

import dataclasses
import io
import re

import PIL.Image

from data.image_io import decode_image_rgb, decode_mask
from dnnlib import UserError

MAX_SEEDS = 16
# Mask specs a client may ask for: the generated kinds only (an `nvidia:PATH` spec would open a path it names).
MASK_SPEC_RE = re.compile(r"center(:0?\.\d+)?|free-form(-small|-large)?(:[01](\.\d+)?-[01](\.\d+)?)?")
MASK_SPECS = ("center", "free-form", "free-form-small", "free-form-large")  # what the page offers
NOISE_MODES = ("const", "random", "none")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class TooLarge(UserError):
    """An upload over the configured limits (HTTP 413)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold; app.py's --max-upload-mb and --max-side set the first two."""

    max_bytes: int = 25 * 1024 * 1024  # per uploaded file
    max_side: int = 8192  # pixels, either side of the image
    max_seeds: int = MAX_SEEDS


def _megabytes(n):
    return f"{n / (1024 * 1024):.1f} MB"


def _check_upload(data, what, limits):
    if not data:
        raise UserError(f"{what}: the file is empty")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{what}: {_megabytes(len(data))} is over the limit of {_megabytes(limits.max_bytes)}")
    try:  # The header alone gives the size: refuse a huge image before decoding a single pixel of it.
        with PIL.Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except PIL.Image.DecompressionBombError:
        raise TooLarge(f"{what}: too many pixels (the limit is {limits.max_side} px a side)") from None
    except (OSError, ValueError, SyntaxError):
        raise UserError(f"{what}: not an image file (PNG, JPEG, WebP or BMP expected)") from None
    if max(width, height) > limits.max_side:
        raise TooLarge(f"{what}: {width}x{height} is over the limit of {limits.max_side} px a side")


def read_image(data, limits):
    """Uploaded image bytes -> uint8 [H, W, 3] (EXIF orientation applied, like generate.py's files)."""
    _check_upload(data, "image", limits)
    return decode_image_rgb(data, name="image")


def read_mask(data, limits, height, width):
    """Uploaded mask bytes (white = hole) -> float32 [H, W], 1 = known, for an image of H x W pixels."""
    _check_upload(data, "mask", limits)
    mask = decode_mask(data, name="mask", hole="white")
    if mask.shape != (height, width):
        raise UserError(f"mask: {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
                        f"a mask must have its image's size")
    check_hole(mask)
    return mask


def check_hole(mask):
    """A mask must have a hole and some known pixels (white = hole in the file)."""
    if mask.min() == 1:
        raise UserError("mask: no hole; paint the region to fill (white = hole in a mask file)")
    if mask.max() == 0:
        raise UserError("mask: the hole covers the whole image; leave some known pixels")


def parse_seed_list(text, limits):
    """'0-3', '1,5,9' -> a list of at most limits.max_seeds seeds, counted before any range is expanded; the
    syntax and the seed limit are parse_seeds' (generate.py's)."""
    from inference.inpaint import parse_seeds  # here: this module stays torch-free

    text = str(text).strip()
    count = 0
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d{1,12})(?:-(\d{1,12}))?\s*", part)
        if not m:
            raise UserError(f"seeds {text[:40]!r}: '{part.strip()[:20]}' is not a number or a range like 0-7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        count += max(0, hi - lo + 1)
        if count > limits.max_seeds:
            raise UserError(f"seeds {text[:40]!r}: more than {limits.max_seeds} seeds")
    try:
        return parse_seeds(text)
    except UserError as err:
        raise UserError(str(err).replace("--seeds", "seeds")) from None


def parse_float(text, name, lo, hi):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(f"{name}: {str(text)[:20]!r} is not a number") from None
    if not lo <= value <= hi:
        raise UserError(f"{name}: {value:g} is outside [{lo:g}, {hi:g}]")
    return value


def parse_bool(text, name):
    value = str(text).strip().lower()
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no", ""):
        return False
    raise UserError(f"{name}: {str(text)[:20]!r} is not true or false")


def parse_choice(text, name, choices):
    if text not in choices:
        raise UserError(f"{name}: {str(text)[:40]!r} is not one of {', '.join(choices)}")
    return text


def check_mask_spec(spec):
    if not isinstance(spec, str) or not MASK_SPEC_RE.fullmatch(spec):
        raise UserError(f"mask spec {str(spec)[:40]!r}: choose center, center:FRACTION, free-form, "
                        f"free-form-small, free-form-large or free-form:LO-HI")
    return spec


def spec_mask(spec, width, height, seed, limits):
    """A mask drawn from a spec for a W x H image, as generate.py draws it (at the square max(W, H), then
    center-cropped so a center hole stays centered); float32 [H, W], 1 = known."""
    from data.masks import eval_mask_for_size

    check_mask_spec(spec)
    if width < 1 or height < 1:
        raise UserError(f"mask: {width}x{height} is not a size (width and height must be at least 1 px)")
    if width > limits.max_side or height > limits.max_side:
        raise TooLarge(f"mask: {width}x{height} is over the limit of {limits.max_side} px a side")
    return eval_mask_for_size(spec, height, width, int(seed), 0)
