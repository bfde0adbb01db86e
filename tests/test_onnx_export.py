"""export.py and inference/onnx_*: ONNX Runtime's output against our reference forward, metadata checks, the CLIs
and the NumPy-only snippet of docs/deployment.md."""

import io
import os
import re
import sys

import numpy as np
import onnx
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import export
import generate
from inference.inpaint import inpaint_image
from inference.loading import load_generator
from inference.onnx_export import TOLERANCE, export_generator
from inference.onnx_format import OnnxModelError
from inference.onnx_runner import load_onnx_generator
from training.checkpoint import CheckpointError, save_snapshot
from training.networks import Discriminator, Generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(z_dim=16, w_dim=16, channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=None,
             mapping_kwargs=dict(num_layers=2))


def _randomise(G, seed=0):
    """A fresh G has zero noise strengths and a zero w average, which would hide noise and truncation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.5)
        G.mapping.w_avg.copy_(torch.randn(G.mapping.w_avg.shape, generator=gen))
    return G.eval().requires_grad_(False)


def _snapshot(path, resolution):
    torch.manual_seed(resolution)
    G = _randomise(Generator(img_resolution=resolution, **SMALL))
    D = Discriminator(img_resolution=resolution, channel_base=128, channel_max=16, num_fp16_res=0)
    save_snapshot(path, {"G_kwargs": G.init_kwargs, "D_kwargs": D.init_kwargs, "G": G.state_dict(),
                         "G_ema": G.state_dict(), "D": D.state_dict()})
    return str(path)


@pytest.fixture(scope="module")
def cli32(tmp_path_factory):
    """A 32 px snapshot exported by the command line: dynamic batch, const noise, opset 18."""
    tmp = tmp_path_factory.mktemp("onnx32")
    snap = _snapshot(tmp / "network-snapshot-000000.pt", 32)
    out = str(tmp / "G32.onnx")
    result = CliRunner().invoke(export.main, ["--network", snap, "--out", out])
    return snap, out, result


@pytest.fixture(scope="module")
def fixed64(tmp_path_factory):
    """A 64 px generator exported by the library: batch 3, no noise, opset 20, and the style-only ablation
    (cond_mod=False): the exporter takes whatever Generator it is given."""
    path = str(tmp_path_factory.mktemp("onnx64") / "G64.onnx")
    torch.manual_seed(64)
    G = _randomise(Generator(img_resolution=64, cond_mod=False, **SMALL))
    export_generator(G, path, batch=3, opset=20, noise_mode="none", source="random weights")
    return G, path


def _inputs(G, batch, seed):
    """A random image, a mask with a box hole and a stroke-like hole, and z: unlike the export's example."""
    gen = torch.Generator().manual_seed(seed)
    r = G.img_resolution
    image = torch.rand([batch, G.img_channels, r, r], generator=gen) * 2 - 1
    mask = torch.ones([batch, 1, r, r])
    for i in range(batch):
        t, left = torch.randint(0, r // 2, [2], generator=gen).tolist()
        mask[i, :, t : t + r // 3, left : left + r // 2] = 0
        mask[i, :, r - 4 - i : r - 2 - i, :] = 0
    return image, mask, torch.randn([batch, G.z_dim], generator=gen)


def _check_against_reference(G, runner, batch, psi, seed=1):
    image, mask, z = _inputs(G, batch, seed)
    with torch.no_grad():
        ref = G(image, mask, z, truncation_psi=psi, noise_mode=runner.noise_mode, dropout=False, impl="ref").numpy()
    out = runner.run(image.numpy(), mask.numpy(), z.numpy(), psi)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= TOLERANCE * np.abs(ref).max()
    known = mask.numpy().repeat(3, axis=1) == 1
    assert np.array_equal(out[known], image.numpy()[known])  # bit-exact, not merely close
    return out, mask.numpy()


def test_cli_export_writes_a_checked_file(cli32):
    _snap, out, result = cli32
    assert result.exit_code == 0, result.output
    assert re.search(r"check: ONNX Runtime vs the PyTorch reference, max \|difference\| [0-9.e+-]+", result.output)
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["resolution"] == "32" and meta["batch"] == "dynamic" and meta["noise"] == "const"
    assert meta["mask_convention"] == "1=known,0=hole" and meta["truncation_psi"] == "input"
    assert meta["source"] == "network-snapshot-000000.pt" and len(meta["source_sha256"]) == 64


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("psi", [1.0, 0.5])
def test_dynamic_const_noise_matches_reference(cli32, batch, psi):
    snap, out, _ = cli32
    G = load_generator(snap, impl="ref")
    _check_against_reference(G, load_onnx_generator(out, threads=1), batch, psi)


@pytest.mark.parametrize("batch", [1, 3, 4])
@pytest.mark.parametrize("psi", [1.0, 0.5])
def test_fixed_batch_no_noise_matches_reference(fixed64, batch, psi):
    """Batch 3 as exported; 1 and 4 through the runner's padded chunks."""
    G, path = fixed64
    runner = load_onnx_generator(path, threads=1)
    assert (runner.synthesis.style_mod, runner.synthesis.cond_mod) == (True, False)
    _check_against_reference(G, runner, batch, psi)


def test_latent_and_truncation_are_live_inputs(cli32):
    """z and psi change the fill (they are inputs of the graph, not constants folded in at export)."""
    snap, out, _ = cli32
    runner = load_onnx_generator(out, threads=1)
    image, mask, z = (t.numpy() for t in _inputs(load_generator(snap, impl="ref"), 1, 2))
    hole = mask.repeat(3, axis=1) == 0
    base = runner.run(image, mask, z, 1.0)
    assert np.abs(runner.run(image, mask, -z, 1.0) - base)[hole].max() > 1e-2
    assert np.abs(runner.run(image, mask, z, 0.5) - base)[hole].max() > 1e-2


@pytest.mark.slow
def test_official_shape_256_matches_reference(tmp_path):
    """The released architecture (channel_base 16384, channel_max 512, z = w = 512) at 256 with random weights."""
    torch.manual_seed(256)
    G = _randomise(Generator(img_resolution=256))
    path = str(tmp_path / "G256.onnx")
    export_generator(G, path, batch=1, noise_mode="const", source="random weights")
    runner = load_onnx_generator(path, resolution=256, threads=2)
    _check_against_reference(G, runner, 1, 0.5)


# ----------------------------------------------------------------------------------------------------------------
# Files the runner refuses.


def _edited(src, dst, edit):
    model = onnx.load(src)
    meta = {p.key: p.value for p in model.metadata_props}
    edit(meta)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, dst)
    return str(dst)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(resolution="64"), r"input image has shape .* metadata says resolution 64"),
    (lambda m: m.update(mask_convention="1=hole,0=known"), r"mask_convention='1=hole,0=known'"),
    (lambda m: m.update(value_range="0,1"), r"value_range='0,1'"),
    (lambda m: m.clear(), r"carries no metadata"),
    (lambda m: m.pop("mask_convention"), r"lacks mask_convention"),
    (lambda m: m.update(format="lama"), r"format 'lama'"),
])
def test_runner_refuses_mismatched_metadata(cli32, tmp_path, edit, message):
    path = _edited(cli32[1], tmp_path / "edited.onnx", edit)
    with pytest.raises(OnnxModelError, match=message):
        load_onnx_generator(path)


def test_runner_refuses_another_resolution_and_bad_files(cli32, tmp_path):
    with pytest.raises(OnnxModelError, match=r"the model is 32x32, not the resolution 64"):
        load_onnx_generator(cli32[1], resolution=64)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(OnnxModelError, match=r"junk.onnx: ONNX Runtime cannot load it"):
        load_onnx_generator(str(junk))
    with pytest.raises(CheckpointError, match=r"an ONNX export"):
        load_generator(cli32[1])


# ----------------------------------------------------------------------------------------------------------------
# generate.py and the documented NumPy snippet.


def _face(tmp_path, size=32):
    from skimage.data import lfw_subset

    face = (lfw_subset()[0] * 255).round().astype(np.uint8)
    img = np.asarray(PIL.Image.fromarray(face).convert("RGB").resize((size, size), PIL.Image.BICUBIC))
    hole = np.zeros((size, size), np.uint8)
    hole[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255  # white = hole, the file convention
    PIL.Image.fromarray(img).save(tmp_path / "face.png")
    PIL.Image.fromarray(hole).save(tmp_path / "mask.png")
    return img, hole


def test_generate_with_onnxruntime_matches_torch(cli32, tmp_path):
    snap, out, _ = cli32
    _face(tmp_path)
    common = ["--images", str(tmp_path / "face.png"), "--masks", str(tmp_path / "mask.png"), "--seeds", "0-2"]
    runner = CliRunner()
    res = runner.invoke(generate.main, ["--engine", "onnxruntime", "--network", out, "--outdir",
                                        str(tmp_path / "onnx"), "--trunc", "0.7"] + common)
    assert res.exit_code == 0, res.output
    res = runner.invoke(generate.main, ["--network", snap, "--impl", "ref", "--outdir", str(tmp_path / "torch"),
                                        "--trunc", "0.7"] + common)
    assert res.exit_code == 0, res.output
    for seed in range(3):
        a, b = (np.asarray(PIL.Image.open(tmp_path / d / f"face-seed{seed:04d}.png")).astype(int)
                for d in ("onnx", "torch"))
        assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("args, message", [
    (["--noise-mode", "random"], r"noise mode 'random': G32.onnx was exported with noise 'const'"),
    (["--dropout"], r"dropout: G32.onnx was exported without"),
    (["--resolution", "64"], r"not the resolution 64"),
    (["--engine", "torch"], r"an ONNX file; run it with --engine onnxruntime"),
])
def test_generate_refuses_what_the_file_cannot_do(cli32, tmp_path, args, message):
    _face(tmp_path)
    engine = [] if "--engine" in args else ["--engine", "onnxruntime"]
    res = CliRunner().invoke(generate.main, engine + args + [
        "--network", cli32[1], "--images", str(tmp_path / "face.png"), "--masks", "center", "--outdir",
        str(tmp_path / "out")])
    assert res.exit_code == 2 and re.search(message, res.output), res.output


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], r"--batch '0': must be a positive whole number or 'dynamic'"),
    (["--out", "G.bin"], r"--out G.bin: name it \*.onnx"),
    (["--network", "missing.pt"], r"missing.pt"),
])
def test_export_cli_refuses_bad_options(cli32, tmp_path, args, message):
    base = {"--network": cli32[0], "--out": str(tmp_path / "G.onnx")}
    for key, value in zip(args[::2], args[1::2]):
        base[key] = value
    res = CliRunner().invoke(export.main, [x for kv in base.items() for x in kv])
    assert res.exit_code == 2 and re.search(message, res.output), res.output


def _docs_snippet():
    text = open(os.path.join(REPO, "docs", "deployment.md"), encoding="utf-8").read()
    section = text.split("## Calling the model from NumPy", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_documented_numpy_snippet_matches_our_runner(cli32, tmp_path, monkeypatch):
    """The docs' dozen lines (NumPy, Pillow, onnxruntime only) give what inference.inpaint gives for seed 0."""
    img, hole = _face(tmp_path)
    (tmp_path / "G.onnx").write_bytes(open(cli32[1], "rb").read())
    monkeypatch.chdir(tmp_path)
    exec(compile(_docs_snippet(), "docs/deployment.md", "exec"), {})
    result = np.asarray(PIL.Image.open(tmp_path / "result.png"))
    ours = inpaint_image(load_onnx_generator(cli32[1]), img, (hole == 0).astype(np.float32), [0], device="cpu",
                         fit="resize")[0]
    assert result.shape == ours.shape
    assert np.abs(result.astype(int) - ours.astype(int)).max() <= 1
    assert np.array_equal(result[hole == 0], img[hole == 0])



def test_app_serves_an_onnx_file(cli32, tmp_path):
    """The web app's service loads an .onnx file and answers as it does for the snapshot it came from."""
    from app_lib.service import InpaintRequest, Service

    _face(tmp_path)
    image, mask = ((tmp_path / name).read_bytes() for name in ("face.png", "mask.png"))
    req = InpaintRequest(image=image, mask=mask, seeds=(0, 1), truncation=0.8)
    answers = [Service(path, "cpu", impl="ref").inpaint(req, lambda done, total: None) for path in cli32[:2]]
    assert Service(cli32[1]).info()["resolution"] == 32
    for (_, seed_a, png_a), (_, seed_b, png_b) in zip(*answers):
        a, b = (np.asarray(PIL.Image.open(io.BytesIO(p))).astype(int) for p in (png_a, png_b))
        assert seed_a == seed_b and np.abs(a - b).max() <= 1


def test_benchmark_prints_a_row_per_engine():
    from benchmarks import onnx_runtime

    args = ["--resolution", "32", "--rounds", "1", "--threads", "1", "--channel-base", "128", "--channel-max", "16"]
    result = CliRunner().invoke(onnx_runtime.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = r"^\| 32 \| ([a-z ]+) \| (\d+) \| (\d+) \| ([\d.]+)x \| (\d+) \| ([\d.e+-]+) \|"
    rows = re.findall(row, result.output, re.M)
    assert [r[0] for r in rows][:3] == ["torch fast path", "torch reference", "onnxruntime"]
    assert all(float(r[5]) < 1e-3 for r in rows)  # every engine computes the same network
    assert re.search(r"openvino: ", result.output)


@pytest.mark.parametrize("kind", ["pkl", "pth"])
def test_cli_exports_an_official_pickle_and_a_port_pth(tmp_path, kind):
    """The foreign formats go through the same loaders as everywhere else (converted in memory)."""
    from port_state_dict_maker import make_port_state_dict
    from tf_pickle_maker import write_official_pickle

    small = dict(fmap_base=128, fmap_max=16, latent_size=32, dlatent_size=32, mapping_fmaps=32)
    src = tmp_path / f"net.{kind}"
    if kind == "pkl":
        write_official_pickle(src, 32, **small)
    else:
        torch.save(make_port_state_dict(32, seed=0, **small), src)
    out = tmp_path / "G.onnx"
    result = CliRunner().invoke(export.main, ["--network", str(src), "--out", str(out), "--batch", "1"])
    assert result.exit_code == 0, result.output
    runner = load_onnx_generator(str(out), resolution=32, threads=1)
    assert runner.meta["source"] == f"net.{kind}" and runner.z_dim == 32 and runner.batch == 1
    _check_against_reference(load_generator(str(src), impl="ref"), runner, 1, 0.5)


def test_benchmark_skips_openvino_when_absent(monkeypatch):
    from benchmarks import onnx_runtime

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    fn, note = onnx_runtime._openvino("unused.onnx", 1)
    assert fn is None and "not installed (pip install openvino)" in note
