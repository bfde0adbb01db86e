"""The web app's HTTP API through FastAPI's test client: every method, seeds as in generate.py, known pixels kept
exactly, and each bad input answered with a one-line 4xx while the server stays up."""

import base64
import json
import re

import numpy as np
import pytest
from app_helpers import decode_png, hole_mask, make_tiny_snapshot, photo, png_bytes

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
fastapi_testclient = pytest.importorskip("fastapi.testclient")

from app_lib.inputs import Limits  # noqa: E402
from app_lib.server import STATIC_DIR, create_app  # noqa: E402
from app_lib.service import Service, offered_baselines  # noqa: E402
from inference.inpaint import inpaint_image  # noqa: E402

BASELINE_METHODS = offered_baselines()

H, W = 40, 56  # not square, not the model's 32
BOX = (8, 12, 30, 40)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return make_tiny_snapshot(tmp_path_factory.mktemp("snap") / "network-snapshot-000000.pt")


@pytest.fixture(scope="module")
def service(snapshot):
    return Service(snapshot, "cpu", limits=Limits(max_bytes=2 * 1024 * 1024, max_side=1024))


@pytest.fixture(scope="module")
def client(service):
    with fastapi_testclient.TestClient(create_app(service)) as c:
        yield c


@pytest.fixture(scope="module")
def pair():
    return photo(H, W, 1), hole_mask(H, W, BOX)


def _post(client, image, mask, **fields):
    files = {}
    if image is not None:
        files["image"] = ("photo.png", image, "image/png")
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return client.post("/api/v1/inpaint", files=files, data={k: str(v) for k, v in fields.items()})


def _check_known_exact(out, img, mask_file):
    known = mask_file < 128
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[known], img[known])
    assert (out[~known] != img[~known]).any(), "the hole did not change"


def test_model_info_lists_the_gan_and_every_traditional_method(client):
    info = client.get("/api/v1/model").json()
    assert info["resolution"] == 32 and info["name"] == "network-snapshot-000000.pt"
    assert [m["id"] for m in info["methods"]] == ["gan", *BASELINE_METHODS]
    assert all(m["label"] for m in info["methods"])
    assert info["fits"] == ["auto", "resize", "crop", "face"] and info["default_fit"] == "auto"  # generate.py's
    assert info["max_seeds"] == 16 and info["help"] is None


@pytest.mark.parametrize("method", ["gan", *BASELINE_METHODS])
def test_each_method_keeps_known_pixels_exactly(client, pair, method):
    img, mask = pair
    res = _post(client, png_bytes(img), png_bytes(mask), method=method, seeds="5")
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "image/png"
    _check_known_exact(decode_png(res.content), img, mask)


def test_the_interactive_traditional_methods_are_offered_and_match_metrics_baselines(client, pair):
    from metrics.baselines import inpaint_image as baseline_inpaint

    ids = [m["id"] for m in client.get("/api/v1/model").json()["methods"]]
    assert ids[1:] == ["telea", "ns", "patchmatch", "criminisi"]  # FSR and ShiftMap take too long for a request
    img, mask = pair
    res = _post(client, png_bytes(img), png_bytes(mask), method="criminisi")
    assert res.status_code == 200, res.text
    expected = baseline_inpaint("criminisi", img, (mask < 128).astype(np.float32))
    np.testing.assert_array_equal(decode_png(res.content), expected)


@pytest.mark.parametrize("fit", ["resize", "crop"])
def test_each_fit_strategy_matches_generate_py_and_keeps_known_pixels(client, service, pair, fit):
    img, mask = pair
    res = _post(client, png_bytes(img), png_bytes(mask), seeds="2", fit=fit)
    assert res.status_code == 200, res.text
    out = decode_png(res.content)
    _check_known_exact(out, img, mask)
    ref = inpaint_image(service.G, img, (mask < 128).astype(np.float32), [2], device=service.device, fit=fit)
    np.testing.assert_array_equal(out, ref[0])


def test_a_face_fit_without_a_face_is_a_one_line_400(client, pair):
    img, mask = pair  # random pixels: no face to frame
    res = _post(client, png_bytes(img), png_bytes(mask), seeds="0", fit="face")
    assert res.status_code == 400 and "face" in res.json()["detail"] and "\n" not in res.json()["detail"]


def test_several_seeds_give_json_matching_generate_py(client, service, pair):
    img, mask = pair
    res = _post(client, png_bytes(img), png_bytes(mask), seeds="0-2,7", truncation=0.8)
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert [r["seed"] for r in body["results"]] == [0, 1, 2, 7] and body["method"] == "gan"
    outs = [decode_png(base64.b64decode(r["png"])) for r in body["results"]]
    for out in outs:
        _check_known_exact(out, img, mask)
    assert not np.array_equal(outs[0], outs[1]), "two seeds gave the same fill"
    # The same function generate.py runs, with its defaults: identical pixels.
    ref = inpaint_image(service.G, img, (mask < 128).astype(np.float32), [0, 1, 2, 7], device=service.device,
                        truncation_psi=0.8)
    for out, expected in zip(outs, ref):
        np.testing.assert_array_equal(out, expected)
    # A seed's result does not depend on the other seeds of the request.
    alone = decode_png(_post(client, png_bytes(img), png_bytes(mask), seeds="7", truncation=0.8).content)
    np.testing.assert_array_equal(alone, outs[3])


def test_dropout_and_random_noise_are_reproducible(client, pair):
    img, mask = pair
    runs = [_post(client, png_bytes(img), png_bytes(mask), seeds="3", dropout="true", noise_mode="random").content
            for _ in range(2)]
    np.testing.assert_array_equal(decode_png(runs[0]), decode_png(runs[1]))


def test_jpeg_input_and_json_for_one_result(client, pair):
    img, mask = pair
    jpeg = png_bytes(img, "JPEG")
    res = _post(client, jpeg, png_bytes(mask), method="telea", format="json")
    out = decode_png(base64.b64decode(res.json()["results"][0]["png"]))
    _check_known_exact(out, decode_png(png_bytes(decode_png(jpeg))), mask)


def _bad_inputs(pair):
    img, mask = pair
    good_img, good_mask = png_bytes(img), png_bytes(mask)
    big = photo(1100, 20)
    noisy = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    return [
        ("not an image", dict(image=b"hello, I am text", mask=good_mask), 400, "not an image"),
        ("truncated", dict(image=good_img[: len(good_img) // 2], mask=good_mask), 400, "image"),
        ("empty file", dict(image=b"", mask=good_mask), 400, "empty"),
        ("no image field", dict(image=None, mask=good_mask), 400, "image: missing"),
        ("no hole", dict(image=good_img, mask=png_bytes(np.zeros((H, W), np.uint8))), 400, "no hole"),
        ("all hole", dict(image=good_img, mask=png_bytes(np.full((H, W), 255, np.uint8))), 400, "whole image"),
        ("mask size", dict(image=good_img, mask=png_bytes(hole_mask(H, W + 1, BOX))), 400, "57x40"),
        ("mask not an image", dict(image=good_img, mask=b"GIF89a-not"), 400, "mask"),
        ("17 seeds", dict(image=good_img, mask=good_mask, seeds="0-16"), 400, "more than 16 seeds"),
        ("huge range", dict(image=good_img, mask=good_mask, seeds="0-99999999999"), 400, "seeds"),
        ("past 2**32", dict(image=good_img, mask=good_mask, seeds="4294967296"), 400, "4294967296 is too large"),
        ("bad seeds", dict(image=good_img, mask=good_mask, seeds="a-b"), 400, "seeds"),
        ("too many px", dict(image=png_bytes(big), mask=good_mask), 413, "1024 px"),
        ("too many bytes", dict(image=png_bytes(noisy), mask=good_mask), 413, "limit of 2.0 MB"),
        ("method", dict(image=good_img, mask=good_mask, method="magic"), 400, "method"),
        ("fit", dict(image=good_img, mask=good_mask, fit="stretch"), 400, "fit"),
        ("truncation", dict(image=good_img, mask=good_mask, truncation="9"), 400, "truncation"),
        ("dropout", dict(image=good_img, mask=good_mask, dropout="maybe"), 400, "dropout"),
        ("format", dict(image=good_img, mask=good_mask, seeds="0-1", format="png"), 400, "format png"),
        ("token", dict(image=good_img, mask=good_mask, token="../../etc"), 400, "token"),
    ]


def test_each_bad_input_is_a_one_line_4xx_and_the_server_stays_up(client, pair):
    img, mask = pair
    for name, case, status, needle in _bad_inputs(pair):
        fields = {k: v for k, v in case.items() if k not in ("image", "mask")}
        res = _post(client, case["image"], case["mask"], **fields)
        assert res.status_code == status, (name, res.status_code, res.text)
        detail = res.json()["detail"]
        assert needle in detail and "\n" not in detail and "Traceback" not in detail, (name, detail)
    def chunked_body():  # no Content-Length: the limit holds while the body streams in
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(50):
            yield b"x" * 100000
        yield b"\r\n--b--\r\n"

    multipart = {"content-type": "multipart/form-data; boundary=b"}
    res = client.post("/api/v1/inpaint", content=chunked_body(), headers=multipart)
    assert res.status_code == 413 and "over the limit" in res.json()["detail"]
    res = client.post("/api/v1/inpaint", content=b"{}", headers={"content-type": "application/json"})
    assert res.status_code == 400 and "multipart" in res.json()["detail"]
    res = client.get("/api/v1/mask", params=dict(spec="nvidia:/etc", width=10, height=10))
    assert res.status_code == 400 and "mask spec" in res.json()["detail"]
    res = client.get("/api/v1/mask", params=dict(spec="center", width="abc"))
    assert res.status_code == 400 and res.json()["detail"].startswith("width:")
    res = client.get("/api/v1/mask", params=dict(spec="center", width=5000, height=10))
    assert res.status_code == 413
    for width in (0, -5):  # not a size at all: a bad request, not a too-large one
        res = client.get("/api/v1/mask", params=dict(spec="center", width=width, height=10))
        assert res.status_code == 400 and "is not a size" in res.json()["detail"], res.text
    # Still up and answering correctly.
    res = _post(client, png_bytes(img), png_bytes(mask), seeds="1")
    assert res.status_code == 200
    _check_known_exact(decode_png(res.content), img, mask)


def test_inspect_and_spec_masks(client, pair):
    img, mask = pair
    res = client.post("/api/v1/inspect", files={"image": ("a.png", png_bytes(img))})
    assert res.json() == {"width": W, "height": H}
    res = client.post("/api/v1/inspect", files={"image": ("a.png", png_bytes(img)),
                                                "mask": ("m.png", png_bytes(hole_mask(H + 2, W, BOX)))})
    assert res.status_code == 400 and "a mask must have its image's size" in res.json()["detail"]
    res = client.get("/api/v1/mask", params=dict(spec="center", width=W, height=H, seed=3))
    m = decode_png(res.content)[..., 0]
    assert m.shape == (H, W) and set(np.unique(m)) == {0, 255}
    hole = np.argwhere(m == 255)
    assert abs(hole[:, 0].mean() - (H - 1) / 2) < 1 and abs(hole[:, 1].mean() - (W - 1) / 2) < 1
    res = client.get("/api/v1/mask", params=dict(spec="center", width=3, height=3))  # under 4 px: a 4x4 draw, cropped
    assert res.status_code == 200 and decode_png(res.content).shape[:2] == (3, 3)
    a, b = (client.get("/api/v1/mask", params=dict(spec="free-form", width=W, height=H, seed=s)).content
            for s in (1, 2))
    assert a != b and a == client.get("/api/v1/mask", params=dict(spec="free-form", width=W, height=H, seed=1)).content


def test_progress_of_a_token(client, pair):
    img, mask = pair
    assert client.get("/api/v1/progress/nothing-yet").json()["state"] == "unknown"
    assert _post(client, png_bytes(img), png_bytes(mask), seeds="0-5", token="tok-1").status_code == 200
    assert client.get("/api/v1/progress/tok-1").json() == dict(state="done", ahead=0, done=6, total=6)


def test_uploads_never_touch_the_disk(client, pair, monkeypatch):
    import starlette.formparsers

    class NoDisk(starlette.formparsers.SpooledTemporaryFile):
        def rollover(self):
            raise AssertionError("an upload was spooled to disk")

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", NoDisk)
    img = photo(700, 700, 2)  # a PNG of about 1.5 MB: over starlette's 1 MB in-memory default
    mask = hole_mask(700, 700, (100, 100, 200, 200))
    data = png_bytes(img)
    assert len(data) > 1024 * 1024
    res = _post(client, data, png_bytes(mask), method="telea")
    assert res.status_code == 200, res.text


def test_without_a_network_or_with_a_foreign_one(tmp_path, pair):
    img, mask = pair
    text = tmp_path / "notes.pt"
    text.write_text("not a snapshot\n")
    for network in (None, str(text)):
        with fastapi_testclient.TestClient(create_app(Service(network, "cpu"))) as c:
            info = c.get("/api/v1/model").json()
            assert info["resolution"] is None and [m["id"] for m in info["methods"]] == list(BASELINE_METHODS)
            assert "make demo" in info["help"]
            res = _post(c, png_bytes(img), png_bytes(mask), method="gan")
            assert res.status_code == 400 and "no network" in res.json()["detail"]
            if network:
                assert "notes.pt" in info["network_error"]
                assert "not a comodgan-pytorch snapshot" in info["network_error"]
                assert "notes.pt" in res.json()["detail"]
            res = _post(c, png_bytes(img), png_bytes(mask))  # the default method is then a traditional one
            assert res.status_code == 200
            _check_known_exact(decode_png(res.content), img, mask)


def test_page_is_self_contained_and_documented(client):
    res = client.get("/")
    assert res.status_code == 200 and "default-src 'self'" in res.headers["content-security-policy"]
    names = sorted(f.name for f in STATIC_DIR.iterdir())
    assert names == ["app.js", "index.html", "style.css"]
    for name in names:
        text = STATIC_DIR.joinpath(name).read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), (name, "the page must load nothing from outside")
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/../app_lib/server.py").status_code == 404
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/inpaint"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"image", "mask", "seeds", "truncation", "dropout", "method", "fit"} <= set(body["properties"])
    assert body["properties"]["method"]["enum"] == ["gan", *BASELINE_METHODS]
    assert "/api/v1/model" in spec["paths"]
    json.dumps(spec)
