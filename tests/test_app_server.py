"""The web app as users meet it: `app.py` serving on a free localhost port, driven by headless Chromium through
Playwright (open an image, paint a stroke, Inpaint, download a result; the API docs at /docs render offline), and a
bounded load of concurrent requests that must all be answered correctly without the server's memory growing."""

import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

import numpy as np
import psutil
import pytest
from app_helpers import decode_png, hole_mask, make_tiny_snapshot, photo, png_bytes

from app_lib.service import offered_baselines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own browser download is not used
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Pixels of the mask layer that are painted (alpha over half): the hole as the page will send it.
COUNT_HOLE_PIXELS = """() => {
  const c = document.getElementById("mask-layer");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) n += d[i] >= 128;
  return n;
}"""


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port, method, path, body=None, headers=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, res.getheader("content-type", ""), res.read()
    finally:
        conn.close()


def _multipart(files, fields):
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` with a tiny snapshot on a free 127.0.0.1 port; stopped at the end of the module."""
    folder = tmp_path_factory.mktemp("app")
    snap = make_tiny_snapshot(folder / "network-snapshot-000000.pt")
    port = _free_port()
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "app.py"), "--network", snap, "--device", "cpu",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, stdout=log, stderr=log)
    deadline = time.time() + 90
    while True:
        try:
            if _request(port, "GET", "/api/v1/model", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"app.py did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield dict(port=port, proc=proc, url=f"http://127.0.0.1:{port}/")
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _chromium_or_skip():
    if not os.path.exists(CHROMIUM) and os.geteuid() == 0 and shutil.which("apt-get") and shutil.which("make"):
        subprocess.run(["make", "browser"], cwd=REPO, timeout=900, check=False)
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent and cannot be installed here (as root: make browser)")


def test_browser_paint_inpaint_download(server, tmp_path):
    _chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    h, w = 60, 90
    img = photo(h, w, 4)
    (tmp_path / "face.png").write_bytes(png_bytes(img))
    seeds = 3
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(server["url"])
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            page.set_input_files("#image-file", str(tmp_path / "face.png"))
            page.wait_for_selector("#stage[data-ready='1']", timeout=30000)
            box = page.locator("#mask-layer").bounding_box()
            assert abs(box["width"] / box["height"] - w / h) < 0.02, "the image is not shown at its aspect ratio"
            page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
            page.mouse.down()
            for i in range(1, 11):
                page.mouse.move(box["x"] + box["width"] * (0.25 + 0.05 * i), box["y"] + box["height"] * 0.5, steps=2)
            page.mouse.up()
            painted = page.evaluate(COUNT_HOLE_PIXELS)
            assert painted > 0
            page.keyboard.press("Control+z")
            assert page.evaluate(COUNT_HOLE_PIXELS) == 0, "undo left the stroke"
            page.keyboard.press("Control+Shift+z")
            assert page.evaluate(COUNT_HOLE_PIXELS) == painted, "redo did not bring the stroke back"
            page.fill("#seed-count", str(seeds))
            page.click("#inpaint")
            page.wait_for_selector("#gallery[data-done='1']", timeout=60000)
            figures = page.locator("#gallery figure")
            assert figures.count() == seeds + len(offered_baselines())
            labels = figures.locator("figcaption span").all_inner_texts()
            assert [lab.startswith("seed") for lab in labels] == [True] * seeds + [False] * len(offered_baselines())
            with page.expect_download() as result_download:
                figures.nth(1).locator("a.download").click()
            with page.expect_download() as mask_download:
                page.click("#mask-download")
            result_name = result_download.value.suggested_filename
            out = decode_png(open(result_download.value.path(), "rb").read())
            mask = decode_png(open(mask_download.value.path(), "rb").read())[..., 0]
            figures.nth(0).locator("img").click()
            page.wait_for_selector("#viewer:not([hidden])")
            result_src = page.get_attribute("#viewer-img", "src")
            page.keyboard.down(" ")  # holding Space shows the input instead of the result
            assert page.get_attribute("#viewer-img", "src") != result_src
            page.keyboard.up(" ")
            assert page.get_attribute("#viewer-img", "src") == result_src
            page.screenshot(path=str(tmp_path / "app-viewer.png"))
            page.click("#viewer-close")
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert result_name == "face-gan-seed0001.png"
    assert out.shape == img.shape and mask.shape == (h, w)
    known = mask < 128
    assert 0.02 < 1 - known.mean() < 0.5, "the stroke did not paint a hole"
    np.testing.assert_array_equal(out[known], img[known])
    assert (out[~known] != img[~known]).any()
    assert (tmp_path / "app.png").stat().st_size > 10000


def test_api_docs_render_offline(server):
    """/docs draws Swagger UI from files this server sends: every request the page makes stays on 127.0.0.1."""
    _chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            requested, errors = [], []
            page.on("request", lambda req: requested.append(req.url))
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(server["url"] + "docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30000)
            page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/inpaint']", timeout=30000)
            title = page.inner_text(".swagger-ui .info .title")
            page.wait_for_load_state("networkidle")
        finally:
            browser.close()
    assert "CoModGAN inpainting" in title
    outside = [url for url in requested if urllib.parse.urlsplit(url).hostname != "127.0.0.1"
               and not url.startswith(("data:", "blob:"))]
    assert not outside, outside
    assert any(url.endswith("/openapi.json") for url in requested) and not errors, (requested, errors)


def _load_cases():
    img = png_bytes(photo(48, 64, 5))
    mask = png_bytes(hole_mask(48, 64, (10, 10, 30, 40)))
    good_gan = (_multipart({"image": img, "mask": mask}, {"seeds": "0-1"}), 200, "application/json")
    good_one = (_multipart({"image": img, "mask": mask}, {"seeds": "3"}), 200, "image/png")
    good_telea = (_multipart({"image": img, "mask": mask}, {"method": "telea"}), 200, "image/png")
    not_image = (_multipart({"image": b"text, not an image", "mask": mask}, {}), 400, "not an image")
    no_hole = (_multipart({"image": img, "mask": png_bytes(np.zeros((48, 64), np.uint8))}, {}), 400, "no hole")
    seeds = (_multipart({"image": img, "mask": mask}, {"seeds": "0-20"}), 400, "more than 16")
    return [good_gan, good_one, good_telea, not_image, no_hole, seeds, good_one, not_image]


def test_load_32_concurrent_requests(server):
    port = server["port"]
    cases = _load_cases()
    first = cases[0]
    status, ctype, _ = _request(port, "POST", "/api/v1/inpaint", *first[0])
    assert status == 200
    proc = psutil.Process(server["proc"].pid)
    rss_first = proc.memory_info().rss
    jobs = [cases[i % len(cases)] for i in range(32)]

    def send(case):
        (body, headers), status, expect = case
        got_status, got_type, got_body = _request(port, "POST", "/api/v1/inpaint", body, headers)
        return case, got_status, got_type, got_body

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, jobs))
    for (_, status, expect), got_status, got_type, got_body in answers:
        assert got_status == status, (status, got_status, got_body[:200])
        if status == 200:
            assert got_type.startswith(expect)
            if expect == "image/png":
                assert decode_png(got_body).shape == (48, 64, 3)
            else:
                assert len(json.loads(got_body)["results"]) == 2
        else:
            assert expect in json.loads(got_body)["detail"]
    rss_after = proc.memory_info().rss
    print(f"server RSS after the first request {rss_first / 2**20:.1f} MiB, after 32 concurrent "
          f"{rss_after / 2**20:.1f} MiB ({(rss_after / rss_first - 1) * 100:+.1f}%)")
    assert rss_after <= 1.10 * rss_first, (rss_first, rss_after)
    assert _request(port, "GET", "/api/v1/model")[0] == 200
