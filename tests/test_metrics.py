"""Metrics: feature statistics, FID, P-IDS/U-IDS, pixel metrics and buckets, the detector loader, the baselines and
calc_metric end to end on tiny generated data with a tiny TorchScript detector (nothing downloads)."""

import io
import os
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
import requests
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from dnnlib import UserError
from metrics import detector_loader, metric_main, pixel_metrics
from metrics.baselines import BASELINE_METHODS, DEFAULT_BASELINES, inpaint_image, list_baselines, make_baseline
from metrics.feature_stats import FeatureStats
from metrics.frechet_inception_distance import fid_from_features, fid_from_stats
from metrics.inception_discriminative_score import ids_from_features

# Our detector stand-in is TorchScript like the published Inception; torch 2.13 calls that deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

# ---------------------------------------------------------------------------------------------------------------------
# Helpers shared with test_metrics_cli.py.


class TinyDetector(torch.nn.Module):
    """Inception's calling convention at toy size: uint8 [N, 3, H, W] in, resized internally, 4-d features (so that
    P-/U-IDS accept validation sets of 4 images and more)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn([4, 3, 3, 3], generator=gen) * 0.5)
        self.fc = torch.nn.Parameter(torch.randn([10, 4], generator=gen))

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 127.5 - 1
        x = F.interpolate(x, size=[16, 16], mode="bilinear", align_corners=False)
        x = torch.tanh(F.conv2d(x, self.weight, stride=2, padding=1))
        feats = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if return_features:
            return feats
        return torch.softmax(feats @ self.fc.t(), dim=1)


def save_tiny_detector(folder):
    path = os.path.join(str(folder), "tiny-detector.pt")
    torch.jit.script(TinyDetector()).save(path)
    return path


def make_zip(path, count=12, resolution=16, seed=0):
    """Smooth random colour images (a blurred 4x4 grid upsampled), so inpainting and SSIM have structure."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(count):
            small = rng.integers(0, 256, size=[4, 4, 3], dtype=np.uint8)
            img = PIL.Image.fromarray(small).resize([resolution, resolution], PIL.Image.BILINEAR)
            buf = io.BytesIO()
            img.save(buf, format="png")
            zf.writestr(f"{i:05d}/img{i:08d}.png", buf.getvalue())
    return str(path)


class StandInG(torch.nn.Module):
    """A generator stand-in with G's calling convention: the hole gets a z-dependent colour plus global-RNG noise."""

    z_dim = 4

    def __init__(self, img_resolution=16):
        super().__init__()
        self.img_resolution = img_resolution
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, img, mask, z=None, noise_mode="random"):
        raw = torch.tanh(self.scale * z.mean(1)[:, None, None, None] + 0.1 * torch.randn_like(img))
        return img * mask + raw * (1 - mask)


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    return save_tiny_detector(tmp_path_factory.mktemp("detector"))


@pytest.fixture(scope="module")
def val_zip(tmp_path_factory):
    return make_zip(tmp_path_factory.mktemp("data") / "val16.zip")


# ---------------------------------------------------------------------------------------------------------------------
# Feature statistics, FID, IDS.

def test_feature_stats_mean_cov_match_numpy(tmp_path):
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=[n, 6]) for n in (5, 17, 40)]
    stats = FeatureStats(capture_all=True, capture_mean_cov=True)
    for b in batches:
        stats.append(b)
    allx = np.concatenate(batches)
    mean, cov = stats.get_mean_cov()
    assert stats.num_items == 62
    np.testing.assert_allclose(mean, allx.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(allx, rowvar=False, bias=True), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(stats.get_all(), allx)
    with pytest.raises(ValueError, match="features"):
        stats.append(np.zeros([2, 5]))
    saved = FeatureStats(capture_mean_cov=True)
    saved.append(allx)
    saved.save(str(tmp_path / "s.npz"))
    loaded = FeatureStats.load(str(tmp_path / "s.npz"))
    np.testing.assert_allclose(loaded.get_mean_cov()[1], cov, rtol=1e-9, atol=1e-12)
    assert os.listdir(tmp_path) == ["s.npz"]  # no temp file left behind


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    feats = np.random.default_rng(2).normal(size=[400, 8])
    assert abs(fid_from_features(feats, feats)) < 1e-6
    fids = [fid_from_features(feats, feats + s) for s in (0.25, 0.5, 1.0)]
    assert fids[0] < fids[1] < fids[2]
    # A pure shift changes only the mean term: 8 features * s^2.
    np.testing.assert_allclose(fids, [8 * 0.25**2, 8 * 0.5**2, 8 * 1.0], rtol=1e-6)


def test_fid_from_stats_matches_closed_form_for_diagonal_covariances():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))  # 5 + (1 + 1 + 4)
    assert fid_from_stats(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(11.0)


def test_ids_is_near_half_for_one_distribution_and_zero_for_separable_sets():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=[600, 8]), rng.normal(size=[600, 8])
    p_ids, u_ids = ids_from_features(real, fake)
    assert 0.4 < p_ids < 0.6 and 0.35 < u_ids < 0.6
    p_ids, u_ids = ids_from_features(real, real + 5.0)
    assert p_ids == 0.0 and u_ids == 0.0
    with pytest.raises(ValueError, match="paired"):
        ids_from_features(real, fake[:10])


# ---------------------------------------------------------------------------------------------------------------------
# Registry.

def test_metric_names_parse_and_registry():
    assert metric_main.parse_metric("fid10k") == ("fid", 10000)
    assert metric_main.parse_metric("ids36k5") == ("ids", 36500)
    assert metric_main.parse_metric("pix2993") == ("pix", 2993)
    assert metric_main.parse_metric("fid_full") == ("fid", None)
    for bad in ("foo10k", "fid", "fid0", "FID10k", "fid10m"):
        assert not metric_main.is_valid_metric(bad)
        with pytest.raises(UserError, match="metric"):
            metric_main.parse_metric(bad)
    names = metric_main.list_valid_metrics()
    assert {"fid10k", "ids10k", "ids36k5", "pix2k", "fid_full"} <= set(names)
    assert all(metric_main.is_valid_metric(n) for n in names)


# ---------------------------------------------------------------------------------------------------------------------
# Pixel metrics and buckets.

def test_pixel_metrics_on_a_hand_computed_case():
    real = np.full([3, 16, 16], 100, np.uint8)
    fake = real.copy()
    fake[:, 0:4, 0:4] = 110  # 16 of 256 pixels off by 10 in every channel
    mask = np.ones([16, 16], np.float32)
    mask[0:4, 0:8] = 0  # hole of 32 pixels; half of it is exact
    ratio, l1_hole, l1, psnr, ssim, center = pixel_metrics.pixel_row(real, fake, mask)
    assert ratio == pytest.approx(32 / 256)
    assert l1_hole == pytest.approx(10 / 255 * 16 / 32)
    assert l1 == pytest.approx(10 / 255 * 16 / 256)
    assert psnr == pytest.approx(10 * np.log10(255**2 / (100 * 16 / 256)))
    expected_ssim = structural_similarity(real.transpose(1, 2, 0), fake.transpose(1, 2, 0), data_range=255,
                                          channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)
    assert ssim == pytest.approx(expected_ssim) and 0 < ssim < 1
    assert center == 0.0
    same = pixel_metrics.pixel_row(real, real, mask)
    assert same[1] == 0 and same[3] == pytest.approx(10 * np.log10(255**2 / 1e-10)) and same[4] == pytest.approx(1)
    # Below 11 px the window shrinks to the largest odd size that fits instead of failing.
    assert pixel_metrics.ssim_uint8(real[:, :8, :8].transpose(1, 2, 0), real[:, :8, :8].transpose(1, 2, 0)) == 1


def _mask_with_hole_ratio(ratio, res=20):
    mask = np.ones([res, res], np.float32)
    mask.flat[: int(round(ratio * res * res))] = 0
    return mask


def test_buckets_assign_known_masks_and_center_holes():
    from data.masks import eval_mask

    real = np.full([3, 20, 20], 50, np.uint8)
    fake = np.full([3, 20, 20], 60, np.uint8)
    masks = [_mask_with_hole_ratio(r) for r in (0.15, 0.15, 0.45, 0.7)]
    center = eval_mask("center", 20, 0, 0)
    assert pixel_metrics.is_center_hole(center)
    assert not any(pixel_metrics.is_center_hole(m) for m in masks)
    shifted = np.roll(center, 3, axis=1)
    assert not pixel_metrics.is_center_hole(shifted)
    # Composites: the hole is off by 10, known pixels are exact. The center hole covers 25% of the image.
    rows = [pixel_metrics.pixel_row(real, np.where(m == 0, fake, real), m) for m in masks + [center]]
    res = pixel_metrics.summarize_rows(rows)
    assert res["num"] == 5
    assert res["nvidia:10-20%/num"] == 2 and res["nvidia:40-50%/num"] == 1 and res["nvidia:20-30%/num"] == 1
    assert "nvidia:60-70%/num" not in res and "nvidia:0-10%/num" not in res  # 70% is outside NVIDIA's buckets
    assert res["comodgan:0-20%/num"] == 2 and res["comodgan:20-40%/num"] == 1
    assert res["comodgan:40-60%/num"] == 1 and res["comodgan:60-80%/num"] == 1
    assert res["center/num"] == 1
    assert res["center/l1_hole"] == pytest.approx(10 / 255) and res["l1_hole"] == pytest.approx(10 / 255)
    assert res["nvidia:10-20%/l1"] == pytest.approx(10 / 255 * 60 / 400)


# ---------------------------------------------------------------------------------------------------------------------
# Detector loading.

def test_detector_loads_and_bad_files_give_clear_errors(tmp_path, tiny_detector, monkeypatch):
    module, detector_id = detector_loader.load_detector(tiny_detector, "cpu")
    assert detector_id.startswith("tiny-detector-")
    feats = detector_loader.detector_features(module, torch.zeros([2, 3, 24, 24], dtype=torch.uint8))
    assert feats.shape == (2, 4)
    monkeypatch.setenv("COMODGAN_DETECTOR", tiny_detector)
    assert detector_loader.load_detector(None, "cpu")[0] is module
    corrupt = tmp_path / "inception-2015-12-05.pt"
    corrupt.write_bytes(b"\x00not a torchscript file" * 10)
    with pytest.raises(detector_loader.DetectorError, match="inception-2015-12-05.pt.*not a loadable TorchScript"):
        detector_loader.load_detector(str(corrupt), "cpu")
    with pytest.raises(UserError, match="no such file"):
        detector_loader.load_detector(str(tmp_path / "missing.pt"), "cpu")

    class NoFeatures(torch.nn.Module):
        def forward(self, img: torch.Tensor) -> torch.Tensor:
            return img.float().mean()

    wrong = tmp_path / "wrong.pt"
    torch.jit.script(NoFeatures()).save(str(wrong))
    with pytest.raises(detector_loader.DetectorError, match="wrong.pt"):
        detector_loader.load_detector(str(wrong), "cpu")


class _FakeResponse:
    def __init__(self, payload):
        self.payload = payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def raise_for_status(self):
        pass

    def iter_content(self, chunk_size):
        yield self.payload[:5]
        yield self.payload[5:]


def test_download_cache_retries_renames_atomically_and_reuses(tmp_path, monkeypatch):
    calls = []

    def fake_get(url, stream, timeout):
        calls.append(url)
        if len(calls) == 1:
            raise requests.ConnectionError("connection reset")
        return _FakeResponse(b"detector-bytes")

    monkeypatch.setattr(requests, "get", fake_get)
    monkeypatch.setattr(detector_loader.time, "sleep", lambda s: None)
    url = "https://example.invalid/metrics/inception-2015-12-05.pt"
    path = detector_loader.download_cached(url, str(tmp_path))
    assert open(path, "rb").read() == b"detector-bytes" and path.endswith("inception-2015-12-05.pt")
    assert len(calls) == 2 and os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    assert detector_loader.download_cached(url, str(tmp_path)) == path and len(calls) == 2  # cached: no request

    def always_fail(url, stream, timeout):
        raise requests.ConnectionError("offline")

    monkeypatch.setattr(requests, "get", always_fail)
    with pytest.raises(detector_loader.DetectorError, match="other.pt.*--detector"):
        detector_loader.download_cached("https://example.invalid/other.pt", str(tmp_path), retries=2)


# ---------------------------------------------------------------------------------------------------------------------
# Baselines.

@pytest.mark.parametrize("name", list(BASELINE_METHODS))
def test_baselines_keep_known_pixels_and_fill_holes(name):
    # 32 pixels: PatchMatch's 7x7 patches leave too little image at 16 (it then blends in stray values).
    img = torch.full([2, 3, 32, 32], 0.2)
    img[:, :, :, 16:] = -0.4
    mask = torch.ones([2, 1, 32, 32])
    mask[:, :, 12:20, 4:10] = 0
    out = make_baseline(name)(img * mask, mask, None)
    assert out.shape == img.shape
    assert torch.equal(out * mask, img * mask)
    hole = out[:, :, 12:20, 4:10].numpy()
    if name == "shiftmap":  # it shifts whole regions in, here maybe the other half's colour
        assert np.minimum(np.abs(hole - 0.2), np.abs(hole + 0.4)).max() <= 3 / 127.5
    else:
        np.testing.assert_allclose(hole, 0.2, atol=3 / 127.5)  # flat region stays ~flat
    with pytest.raises(UserError, match="baseline"):
        make_baseline("fmm")


def test_patchmatch_on_one_image_keeps_known_pixels_fills_holes_and_follows_its_seed():
    colours = np.array([[200, 40, 40], [30, 60, 220]], np.uint8)
    image = colours[(np.arange(64) // 8) % 2][None].repeat(64, axis=0)  # vertical stripes, 8 pixels wide
    mask = np.ones([64, 64], np.float32)
    mask[21:43, 16:38] = 0
    out = inpaint_image("patchmatch", image, mask, seed=3)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out[mask == 1], image[mask == 1])
    assert not np.array_equal(out[mask == 0], np.zeros_like(out[mask == 0]))  # the hole holds image colours
    def hole_error(result):
        return np.abs(result.astype(int) - image)[mask == 0].mean()

    # Patches continue the stripes into the hole; diffusion (Telea) smears them into a blend.
    assert hole_error(out) < 0.5 * hole_error(inpaint_image("telea", image, mask))
    assert np.array_equal(out, inpaint_image("patchmatch", image, mask, seed=3))
    assert not np.array_equal(out, inpaint_image("patchmatch", image, mask, seed=4))
    with pytest.raises(ValueError, match="1 = known"):
        inpaint_image("patchmatch", image, mask.astype(np.uint8))
    assert list_baselines()[:3] == ["telea", "ns", "patchmatch"] and DEFAULT_BASELINES == ("telea", "ns", "patchmatch")


def test_patchmatch_that_cannot_load_is_a_clear_error(monkeypatch):
    from patchmatch import patch_match

    monkeypatch.setattr(patch_match, "patchmatch_available", False)
    with pytest.raises(UserError, match="native library"):
        make_baseline("patchmatch")
    assert "patchmatch" not in list_baselines() and "patchmatch" in list_baselines(include_unavailable=True)
    monkeypatch.setitem(sys.modules, "patchmatch", None)  # not installed at all
    with pytest.raises(UserError, match="pip install pypatchmatch"):
        make_baseline("patchmatch")


def test_ids_refuses_fewer_distinct_images_than_feature_dimensions(tmp_path, tiny_detector):
    small = make_zip(tmp_path / "three.zip", 3, 16)
    with pytest.raises(UserError, match="at least 4 distinct validation images"):
        _calc("ids10", make_baseline("telea"), small, tiny_detector, tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# calc_metric end to end.

def _calc(metric, G, data, tiny_detector, cache_dir, mask="free-form", seed=0, **kwargs):
    return metric_main.calc_metric(metric, G=G, data_path=data, mask_spec=mask, device="cpu", seed=seed,
                                   detector=tiny_detector, batch_size=5, cache_dir=str(cache_dir), **kwargs)


def test_calc_metric_is_reproducible_and_caches_real_stats(val_zip, tiny_detector, tmp_path):
    G = StandInG(16)
    first = _calc("ids12", G, val_zip, tiny_detector, tmp_path)
    again = _calc("ids12", G, val_zip, tiny_detector, tmp_path)
    assert first.results == again.results
    assert set(first.results) == {"ids12_pids", "ids12_uids", "ids12_fid"}
    assert all(0 <= first.results[k] <= 1 for k in ("ids12_pids", "ids12_uids"))
    other_seed = _calc("ids12", G, val_zip, tiny_detector, tmp_path, seed=1)
    assert other_seed.results != first.results

    fid = _calc("fid_full", G, val_zip, tiny_detector, tmp_path)
    assert fid.num_items == 12 and fid.results.fid_full > 0
    cached = os.listdir(tmp_path / "gan-metrics")
    assert len(cached) == 1 and cached[0].startswith("val16-16-tiny-detector-")
    assert _calc("fid_full", G, val_zip, tiny_detector, tmp_path).results == fid.results  # from the cache

    # More items than images: images are reused with fresh masks and latents.
    assert _calc("fid20", G, val_zip, tiny_detector, tmp_path).num_items == 20


def test_pix_metric_needs_no_detector_and_reports_center(val_zip, tmp_path):
    G = StandInG(16)
    res = _calc("pix12", G, val_zip, str(tmp_path / "no-such-detector.pt"), tmp_path, mask="center")
    r = res.results
    assert r.pix12_num == 12 and r["pix12_center/num"] == 12
    assert r["pix12_center/psnr"] == pytest.approx(r.pix12_psnr)
    assert 0 < r.pix12_l1 < r.pix12_l1_hole and 0 < r.pix12_ssim < 1
    assert r["pix12_comodgan:20-40%/num"] == 12  # center hole = 25% of the image
    assert not os.path.exists(tmp_path / "gan-metrics")
    perfect = _calc("pix4", lambda img, mask, z: torch.zeros_like(img), val_zip, None, tmp_path, mask="center")
    telea = _calc("pix4", make_baseline("telea"), val_zip, None, tmp_path, mask="center")
    assert telea.results.pix4_psnr > perfect.results.pix4_psnr  # OpenCV beats filling with grey


def test_loader_workers_do_not_change_the_numbers(val_zip, tmp_path):
    G = StandInG(16)
    inline = _calc("pix7", G, val_zip, None, tmp_path, num_workers=0)
    workers = _calc("pix7", G, val_zip, None, tmp_path, num_workers=2)
    assert inline.results == workers.results


def test_wrong_resolution_and_bad_mask_spec_give_clear_errors(val_zip, tiny_detector, tmp_path):
    with pytest.raises(UserError, match="16x16"):
        _calc("pix4", StandInG(32), val_zip, tiny_detector, tmp_path)
    with pytest.raises(UserError, match="mask"):
        _calc("pix4", StandInG(16), val_zip, tiny_detector, tmp_path, mask="squiggle")


def test_report_metric_appends_json_lines(tmp_path, val_zip):
    res = _calc("pix4", StandInG(16), val_zip, None, tmp_path, mask="center")
    metric_main.report_metric(res, run_dir=str(tmp_path), snapshot_path="/x/network-snapshot-000010.pt")
    metric_main.report_metric(res, run_dir=str(tmp_path))
    import json

    lines = (tmp_path / "metric-pix4.jsonl").read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])
    assert rec["snapshot_pkl"] == "network-snapshot-000010.pt" and rec["mask"] == "center"
    assert rec["results"]["pix4_psnr"] == pytest.approx(res.results.pix4_psnr)


def _ssim_wang_reference(a, b):
    """Wang et al. 2004 written out with cv2: 11x11 Gaussian (sigma 1.5), valid region only, mean over channels."""
    import cv2

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    win = k @ k.T

    def filt(x):
        return cv2.filter2D(x, -1, win)[5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean()


def test_ssim_matches_the_gaussian_window_definition_used_in_papers():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=[32, 32, 3]).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, size=a.shape), 0, 255).astype(np.uint8)
    assert pixel_metrics.ssim_uint8(a, b) == pytest.approx(_ssim_wang_reference(a, b), abs=1e-9)
