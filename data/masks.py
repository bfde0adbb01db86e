"""Every inpainting mask: the spec parser, one generator class per kind, reproducible evaluation masks, hole buckets.

Convention: a mask is float32 numpy [H, W] with 1 = known pixel and 0 = hole. Files on disk mark the hole in
white by default (`nvidia:PATH:black` for the opposite). Every generator draws from a numpy Generator that the
caller injects; nothing here touches numpy's global RNG.

Spec strings (one parser, used by every CLI):
    center                     centered square hole, side = 0.5 * R (25% of the area)
    center:0.4                 side = 0.4 * R
    free-form                  the CoModGAN free-form generator (rectangles + brush strokes), any hole ratio
    free-form:0.2-0.4          ... redrawn until 0.2 < hole ratio < 0.4
    free-form-small            MAT's "small mask" evaluation preset (also accepts :LO-HI)
    free-form-large            MAT's "large mask" evaluation preset (also accepts :LO-HI)
    nvidia:PATH                PNG masks from a folder or zip (e.g. the NVIDIA Irregular Mask Dataset), white = hole
    nvidia:PATH:black          ... black = hole
    mixed:free-form=0.8,center=0.2   weighted mix of the specs above (weights are normalised)

Stroke widths: the published generators draw strokes 12-48 px wide at 256 and at 512 (and above). Below 256 the
widths scale with R/256 (at least 1 px), so the tiny CPU resolutions get strokes of the same relative size
instead of strokes that cover the whole image.
"""

import functools
import math
import os
import warnings
import zlib

import cv2
import numpy as np
from tqdm import tqdm

from data.image_io import FileSource, decode_mask, is_image_name
from dnnlib import UserError

# Hole-ratio buckets of the two evaluation protocols: NVIDIA (Liu et al. 2018) and CoModGAN (-h0 .. -h4).
HOLE_BUCKETS = {
    "nvidia": [(0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6)],
    "comodgan": [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)],
}

# Free-form presets: (max small rectangles, max large rectangles, max strokes) before the hole-range coefficient.
# 'free-form' is the official CoModGAN generator (same at every resolution); the others are MAT's evaluation
# generators (mask_generator_{256,512}[_small].py). Resolutions above 256 use the 512 row.
FREE_FORM_PRESETS = {
    "free-form": {256: (10, 5, 20), 512: (10, 5, 20)},
    "free-form-large": {256: (4, 2, 8), 512: (5, 3, 9)},
    "free-form-small": {256: (2, 2, 3), 512: (3, 2, 4)},
}

SPEC_FORMS = (
    "center, center:0.4, free-form, free-form:0.2-0.4, free-form-small, free-form-large, "
    "nvidia:PATH, nvidia:PATH:black, mixed:free-form=0.8,center=0.2"
)


class MaskSpecError(UserError):
    """A malformed mask spec, or a mask source (folder/zip) that cannot provide usable masks."""


def hole_ratio(mask):
    """Fraction of hole pixels of a mask with 1 = known, 0 = hole."""
    return float(1.0 - np.mean(mask, dtype=np.float64))


def bucket_label(ratio, scheme):
    """The bucket of a hole ratio as a label like '10-20%', or None outside every bucket.

    Buckets are right-closed, (lo, hi], as in the NVIDIA protocol; a mask without any hole has no bucket.
    """
    if scheme not in HOLE_BUCKETS:
        raise ValueError(f"unknown hole-bucket scheme {scheme!r}; expected one of {sorted(HOLE_BUCKETS)}")
    eps = 1e-9  # 1 - mean(mask) is not exact: 0.2 may come back as 0.19999999999999996.
    for lo, hi in HOLE_BUCKETS[scheme]:
        if lo + eps < ratio <= hi + eps:
            return f"{round(lo * 100)}-{round(hi * 100)}%"
    return None


# ----------------------------------------------------------------------------------------------------------------
# Generators. Each: __call__(rng) -> training mask; sample_eval(rng, index) -> evaluation mask.


class CenterMask:
    """A centered square hole of side round(frac * R); identical for every draw."""

    def __init__(self, resolution, frac=0.5):
        self.resolution = resolution  # Output is resolution x resolution.
        self.frac = frac  # Hole side as a fraction of the image side.
        side = max(1, round(frac * resolution))
        start = (resolution - side) // 2
        self._mask = np.ones([resolution, resolution], dtype=np.float32)
        self._mask[start : start + side, start : start + side] = 0

    def __call__(self, rng):
        return self._mask.copy()

    def sample_eval(self, rng, index):
        return self._mask.copy()


class FreeFormMask:
    """The CoModGAN free-form generator: random rectangles at two scales plus random brush strokes.

    Redrawn until hole_range[0] < hole ratio < hole_range[1]. The maximum counts are scaled by
    coef = min(lo + hi, 1) as in the official code, so narrow low ranges start from sparser masks.
    """

    MEAN_ANGLE = 2 * math.pi / 5
    ANGLE_RANGE = 2 * math.pi / 15

    def __init__(self, resolution, hole_range=(0.0, 1.0), max_small_rects=10, max_large_rects=5, max_strokes=20,
                 min_width=12, max_width=48, max_attempts=10000):
        self.resolution = resolution  # Output is resolution x resolution.
        self.hole_range = tuple(float(x) for x in hole_range)  # Accepted open interval of hole ratios.
        coef = min(self.hole_range[0] + self.hole_range[1], 1.0)
        self.max_small_rects = int(max_small_rects * coef)  # randint(n) rectangles of side < R/2 ...
        self.max_large_rects = int(max_large_rects * coef)  # ... and of side < R.
        self.max_strokes = int(max_strokes * coef)  # randint(n) brush strokes.
        scale = min(1.0, resolution / 256)  # Published widths hold at 256 and above; scale them down below.
        self.width_range = (max(1.0, min_width * scale), max(1.0, max_width * scale))
        self.max_attempts = max_attempts  # Give up (error) when the hole range is practically unreachable.

    def __call__(self, rng):
        lo, hi = self.hole_range
        for _ in range(self.max_attempts):
            mask = self._draw(rng)
            ratio = hole_ratio(mask)
            if lo < ratio < hi:
                return mask
        raise MaskSpecError(
            f"free-form mask: no mask with hole ratio in ({lo}, {hi}) at resolution {self.resolution} "
            f"after {self.max_attempts} draws; widen the range"
        )

    def sample_eval(self, rng, index):
        return self(rng)

    def _draw(self, rng):
        s = self.resolution
        mask = np.ones([s, s], dtype=np.float32)
        self._fill_rects(rng, mask, self.max_small_rects, s // 2)
        self._fill_rects(rng, mask, self.max_large_rects, s)
        mask[self._strokes(rng)] = 0
        return mask

    @staticmethod
    def _fill_rects(rng, mask, max_tries, max_size):
        s = mask.shape[0]
        for _ in range(_randint_below(rng, max_tries)):
            w, h = int(rng.integers(max_size)), int(rng.integers(max_size))
            # Rectangles may hang up to half their size off the image, as in the official generator.
            x = int(rng.integers(-(w // 2), s - w + w // 2))
            y = int(rng.integers(-(h // 2), s - h + h // 2))
            mask[max(y, 0) : min(y + h, s), max(x, 0) : min(x + w, s)] = 0

    def _strokes(self, rng):
        """Boolean [R, R] layer of brush strokes (True = painted = hole)."""
        s = self.resolution
        layer = np.zeros([s, s], dtype=np.uint8)
        avg_radius = math.sqrt(2.0 * s * s) / 8
        for _ in range(_randint_below(rng, self.max_strokes)):
            num_vertex = int(rng.integers(4, 18))
            angle_min = self.MEAN_ANGLE - rng.uniform(0, self.ANGLE_RANGE)
            angle_max = self.MEAN_ANGLE + rng.uniform(0, self.ANGLE_RANGE)
            angles = rng.uniform(angle_min, angle_max, size=num_vertex)
            angles[0::2] = 2 * math.pi - angles[0::2]  # Alternate turning direction: a zig-zag stroke.
            radii = np.clip(rng.normal(avg_radius, avg_radius / 2, size=num_vertex), 0, 2 * avg_radius)
            x, y = float(rng.integers(0, s)), float(rng.integers(0, s))
            points = [(int(x), int(y))]
            for angle, r in zip(angles, radii):
                x = min(max(x + r * math.cos(angle), 0.0), float(s))
                y = min(max(y + r * math.sin(angle), 0.0), float(s))
                points.append((int(x), int(y)))
            width = max(1, int(rng.uniform(*self.width_range)))
            pts = np.array(points, dtype=np.int32)
            # OpenCV rounds thick lines to odd widths; width - 1 matches Pillow's width-w line (the official
            # drawing) exactly for odd w and within a few percent of area for even w.
            cv2.polylines(layer, [pts], isClosed=False, color=1, thickness=max(1, width - 1))
            for px, py in points:  # Round joints.
                cv2.circle(layer, (px, py), width // 2, color=1, thickness=-1)
        # The official code meant to flip the strokes at random but discarded the result; we do flip.
        if rng.random() > 0.5:
            layer = layer[::-1, :]
        if rng.random() > 0.5:
            layer = layer[:, ::-1]
        return layer.astype(bool)


# Results of NvidiaMask._scan per (real path, mtime, size, resolution, hole colour), for this process and its forks.
_NVIDIA_SCANS = {}


def _randint_below(rng, n):
    """numpy's randint(n) (0 .. n-1), with n <= 0 meaning 'draw nothing' instead of an error."""
    return int(rng.integers(n)) if n > 0 else 0


class NvidiaMask:
    """Masks read from image files in a folder or zip (e.g. the NVIDIA Irregular Mask Dataset).

    Each file is resized to R x R (nearest neighbour) and binarised at 128; `hole` says which colour is the hole.
    All files are checked when the generator is built: a file whose hole ratio is 0 or 1 at this resolution is
    left out and reported in one warning; no usable file at all is a MaskSpecError. The check (a decode of every
    file, ~1-2 ms each at 512) is remembered per process, so DataLoader workers forked after the main process
    built a generator for the same folder do not repeat it. Training draws a random file
    with random flips and 90-degree rotations; evaluation mask i is file i (modulo the count, in sorted order)
    without augmentation, so a fixed test set is used as published.
    """

    def __init__(self, resolution, path, hole="white"):
        self.resolution = resolution  # Output is resolution x resolution.
        self.path = path  # Folder or zip of mask images.
        self.hole = hole  # Colour of the hole in the files: 'white' (default) or 'black'.
        self._source = FileSource(path, what="mask", error_cls=MaskSpecError)
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, resolution, hole)
        if key not in _NVIDIA_SCANS:
            _NVIDIA_SCANS[key] = self._scan()
        self.files = list(_NVIDIA_SCANS[key])

    def _scan(self):
        """The usable files (hole ratio strictly between 0 and 1 at this resolution); warns about the others."""
        path, resolution, hole = self.path, self.resolution, self.hole
        names = [n for n in self._source.list_files() if is_image_name(n)]
        if not names:
            raise MaskSpecError(f"{path}: no mask images (.png, .jpg, ...) found in this {self._source.kind}")
        usable, degenerate = [], []
        for name in tqdm(names, desc=f"checking masks in {path}", unit="mask", disable=len(names) < 2000):
            ratio = hole_ratio(self._load(name))
            (usable if 0.0 < ratio < 1.0 else degenerate).append(name)
        if not usable:
            raise MaskSpecError(
                f"{path}: none of the {len(names)} mask files has a hole ratio strictly between 0 and 1 at "
                f"resolution {resolution} with hole colour '{hole}' (wrong colour? try :black / :white)"
            )
        if degenerate:
            shown = ", ".join(degenerate[:20]) + (f" and {len(degenerate) - 20} more" if len(degenerate) > 20 else "")
            warnings.warn(f"{path}: skipping {len(degenerate)} mask file(s) with hole ratio 0 or 1: {shown}",
                          stacklevel=3)
        return tuple(usable)

    def _load(self, name):
        data = self._source.read(name)
        try:
            return decode_mask(data, name=f"{self.path}/{name}", hole=self.hole, resolution=self.resolution)
        except UserError as err:
            raise MaskSpecError(str(err)) from None

    def __call__(self, rng):
        mask = self._load(self.files[int(rng.integers(len(self.files)))])
        if rng.random() < 0.5:
            mask = mask[:, ::-1]
        if rng.random() < 0.5:
            mask = mask[::-1, :]
        mask = np.rot90(mask, int(rng.integers(4)))
        return np.ascontiguousarray(mask)

    def sample_eval(self, rng, index):
        return self._load(self.files[index % len(self.files)])


class MixedMask:
    """A weighted mix: each draw picks one component generator with probability proportional to its weight."""

    def __init__(self, components, weights):
        self.components = list(components)  # Generators with __call__ and sample_eval.
        w = np.asarray(weights, dtype=np.float64)
        self.probs = w / w.sum()  # Normalised weights.

    def __call__(self, rng):
        return self.components[int(rng.choice(len(self.components), p=self.probs))](rng)

    def sample_eval(self, rng, index):
        return self.components[int(rng.choice(len(self.components), p=self.probs))].sample_eval(rng, index)


# ----------------------------------------------------------------------------------------------------------------
# Spec parsing and the public entry points.


def _spec_error(spec, problem):
    return MaskSpecError(f"mask spec {spec!r}: {problem}; valid forms: {SPEC_FORMS}")


def _parse_float(spec, text, what):
    try:
        return float(text)
    except ValueError:
        raise _spec_error(spec, f"{what} {text!r} is not a number") from None


def _parse_hole_range(spec, text):
    parts = text.split("-")
    if len(parts) != 2:
        raise _spec_error(spec, f"hole range {text!r} must be LO-HI, e.g. 0.2-0.4")
    lo, hi = (_parse_float(spec, p, "hole range bound") for p in parts)
    if not 0.0 <= lo < hi <= 1.0:
        raise _spec_error(spec, f"hole range {text!r} must satisfy 0 <= LO < HI <= 1")
    return lo, hi


def parse_mask_spec(spec):
    """Validate a spec string and return its parts as a dict: {'kind': ..., kind-specific parameters}."""
    if not isinstance(spec, str) or not spec.strip():
        raise _spec_error(spec, "empty spec")
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    if kind == "center":
        frac = 0.5 if not arg else _parse_float(spec, arg, "center fraction")
        if not 0.0 < frac < 1.0:
            raise _spec_error(spec, f"center fraction must be in (0, 1), got {frac}")
        return {"kind": "center", "frac": frac}
    if kind in FREE_FORM_PRESETS:
        hole_range = (0.0, 1.0) if not arg else _parse_hole_range(spec, arg)
        return {"kind": "free-form", "preset": kind, "hole_range": hole_range}
    if kind == "nvidia":
        path, hole = arg, "white"
        for color in ("white", "black"):
            if arg.endswith(":" + color):
                path, hole = arg[: -len(color) - 1], color
        if not path:
            raise _spec_error(spec, "nvidia needs a folder or zip path, e.g. nvidia:masks/ or nvidia:masks.zip:black")
        return {"kind": "nvidia", "path": path, "hole": hole}
    if kind == "mixed":
        return _parse_mixed(spec, arg)
    raise _spec_error(spec, f"unknown mask kind {kind!r}")


def _parse_mixed(spec, arg):
    if not arg:
        raise _spec_error(spec, "mixed needs components, e.g. mixed:free-form=0.8,center=0.2")
    components, weights = [], []
    for item in arg.split(","):
        sub, sep, weight = item.rpartition("=")
        if not sep or not sub:
            raise _spec_error(spec, f"mixed component {item!r} must be SPEC=WEIGHT")
        w = _parse_float(spec, weight, "mixed weight")
        if not (w > 0 and math.isfinite(w)):
            raise _spec_error(spec, f"mixed weight {weight!r} must be a positive number")
        if sub.partition(":")[0] == "mixed":
            raise _spec_error(spec, "mixed specs cannot be nested")
        components.append(parse_mask_spec(sub))
        weights.append(w)
    return {"kind": "mixed", "components": components, "weights": weights}


def _build(parsed, resolution):
    kind = parsed["kind"]
    if kind == "center":
        return CenterMask(resolution, frac=parsed["frac"])
    if kind == "free-form":
        table = FREE_FORM_PRESETS[parsed["preset"]]
        small, large, strokes = table[256] if resolution <= 256 else table[512]
        return FreeFormMask(resolution, hole_range=parsed["hole_range"], max_small_rects=small,
                            max_large_rects=large, max_strokes=strokes)
    if kind == "nvidia":
        return NvidiaMask(resolution, parsed["path"], hole=parsed["hole"])
    return MixedMask([_build(c, resolution) for c in parsed["components"]], parsed["weights"])


def make_mask_generator(spec, resolution):
    """A callable gen(rng: np.random.Generator) -> float32 [R, R] training mask (1 = known, 0 = hole).

    The callable also has sample_eval(rng, index) for fixed evaluation masks (see eval_mask).
    Raises MaskSpecError for a malformed spec or an unusable mask folder.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 4:
        raise UserError(f"mask resolution must be an integer >= 4, got {resolution!r}")
    return _build(parse_mask_spec(spec), int(resolution))


def _canonical(parsed):
    """A stable text key for a parsed spec; nvidia paths enter by base name so a moved folder keeps its masks."""
    if parsed["kind"] == "center":
        return f"center:{parsed['frac']!r}"
    if parsed["kind"] == "free-form":
        return f"{parsed['preset']}:{parsed['hole_range'][0]!r}-{parsed['hole_range'][1]!r}"
    if parsed["kind"] == "nvidia":
        return f"nvidia:{os.path.basename(os.path.normpath(parsed['path']))}:{parsed['hole']}"
    parts = [f"{_canonical(c)}={w!r}" for c, w in zip(parsed["components"], parsed["weights"])]
    return "mixed:" + ",".join(parts)


@functools.lru_cache(maxsize=16)
def _cached_eval_generator(spec, resolution):
    parsed = parse_mask_spec(spec)
    key = zlib.crc32(_canonical(parsed).encode("utf-8"))
    return make_mask_generator(spec, resolution), key


def eval_mask(spec, resolution, seed, index):
    """Evaluation mask `index` of the set (spec, resolution, seed): float32 [R, R], 1 = known, 0 = hole.

    Depends only on its arguments: the Generator is seeded from (seed, index, a hash of the spec), so every
    process, worker and rank draws the same mask i, and different specs do not share random streams.
    """
    if int(seed) < 0 or int(index) < 0:
        raise UserError(f"eval_mask: seed and index must be >= 0, got seed={seed}, index={index}")
    gen, key = _cached_eval_generator(spec, int(resolution))
    rng = np.random.default_rng([int(seed), int(index), key])
    return np.ascontiguousarray(gen.sample_eval(rng, int(index)), dtype=np.float32)


def eval_mask_for_size(spec, height, width, seed, index):
    """eval_mask for an H x W image (generate.py's and the web app's spec masks): drawn at the square max(H, W) and
    center-cropped, so a `center` hole stays centered; images under 4 px a side get the crop of a 4x4 draw (the
    generators' smallest)."""
    side = max(int(height), int(width), 4)
    square = eval_mask(spec, side, seed, index)
    top, left = (side - height) // 2, (side - width) // 2
    return np.ascontiguousarray(square[top : top + height, left : left + width])


# ----------------------------------------------------------------------------------------------------------------
# A fixed evaluation set and its hole-ratio histogram (mask_tool.py is the command line).


def bucket_histogram(ratios, scheme):
    """{label: count} over HOLE_BUCKETS[scheme] (in order) plus 'outside' for ratios in no bucket."""
    hist = {bucket_label(hi, scheme): 0 for _lo, hi in HOLE_BUCKETS[scheme]}
    hist["outside"] = 0
    for r in ratios:
        hist[bucket_label(r, scheme) or "outside"] += 1
    return hist


def save_preview_grid(masks, path, columns=8, gap=2):
    """Write masks as one grayscale PNG grid (white = hole, gray gaps between tiles)."""
    n, res = len(masks), masks[0].shape[0]
    rows = (n + columns - 1) // columns
    cols = min(columns, n)
    grid = np.full([rows * (res + gap) - gap, cols * (res + gap) - gap], 128, dtype=np.uint8)
    for i, m in enumerate(masks):
        r, c = divmod(i, columns)
        grid[r * (res + gap) : r * (res + gap) + res, c * (res + gap) : c * (res + gap) + res] = (1 - m) * 255
    _write_png(path, grid)


def _write_png(path, array):
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise UserError(f"{path}: could not encode PNG")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def write_eval_masks(spec, resolution, count, seed, out, save_masks=False, preview=64):
    """Draw eval_mask(spec, resolution, seed, i) for i < count, write the first `preview` as OUT/preview.png and,
    with save_masks, every mask as OUT/masks/NNNNNN.png (white = hole), a fixed evaluation set that
    `nvidia:OUT/masks` reads back in the same order. Returns the hole ratios. A bad spec raises before anything
    is created."""
    make_mask_generator(spec, resolution)
    os.makedirs(out, exist_ok=True)
    if save_masks:
        os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    shown, ratios = [], []
    for i in range(count):
        m = eval_mask(spec, resolution, seed, i)
        ratios.append(hole_ratio(m))
        if len(shown) < preview:
            shown.append(m)
        if save_masks:
            _write_png(os.path.join(out, "masks", f"{i:06d}.png"), ((1 - m) * 255).astype(np.uint8))
    save_preview_grid(shown, os.path.join(out, "preview.png"))
    return ratios
