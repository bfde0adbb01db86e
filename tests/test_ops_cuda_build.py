"""CUDA extension: every source compiles (nvcc / host C++), the loader's cache and warn-once fallback, CUDA vs ref."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import types
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch.utils import cpp_extension

from torch_utils import custom_ops
from torch_utils.ops import bias_act as BA
from torch_utils.ops import upfirdn2d as U

NVCC = shutil.which("nvcc")
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
# The defines torch.utils.cpp_extension passes to nvcc: the kernels must not rely on implicit half conversions.
NVCC_TORCH_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                      "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]


def _nvcc_include_dirs():
    """CUDA include folders as nvcc itself resolves them (works when nvcc is a wrapper script)."""
    out = subprocess.run([NVCC, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                         capture_output=True, text=True, timeout=60)
    dirs = re.findall(r'-I"?([^"\s]+)', out.stdout + out.stderr)
    return [d for d in dirs if os.path.isfile(os.path.join(d, "cuda_runtime_api.h"))]


def _compile_commands(out_dir):
    sources, _ = custom_ops.source_files()
    cuda_inc = _nvcc_include_dirs()
    assert cuda_inc, "could not locate cuda_runtime_api.h through nvcc --dryrun"
    host_inc = cpp_extension.include_paths() + [sysconfig.get_paths()["include"]] + cuda_inc
    cmds = {}
    for src in sources:
        obj = os.path.join(out_dir, os.path.basename(src) + ".o")
        if src.endswith(".cu"):
            cmds[src] = [NVCC, "-c", src, "-o", obj, "-O1", "-std=c++20", "-arch=sm_80", "--use_fast_math",
                         "-Xcompiler", "-fPIC", *NVCC_TORCH_DEFINES]
        else:
            cmds[src] = [CXX, "-c", src, "-o", obj, "-O0", "-std=c++20", "-fPIC", "-w",
                         "-DTORCH_EXTENSION_NAME=comodgan_ops_check", "-DTORCH_API_INCLUDE_EXTENSION_H",
                         *[f"-I{d}" for d in host_inc]]
    return cmds


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
def test_every_cuda_source_compiles_to_an_object(tmp_path):
    if CXX is None:
        pytest.fail("no host C++ compiler (g++/c++) found for the binding")
    cmds = _compile_commands(str(tmp_path))
    assert any(s.endswith(".cu") for s in cmds) and any(s.endswith(".cpp") for s in cmds)

    def run(item):
        src, cmd = item
        return src, subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=len(cmds)) as pool:
        results = list(pool.map(run, cmds.items()))
    for src, res in results:
        assert res.returncode == 0, f"{os.path.basename(src)} failed to compile:\n{res.stderr[-4000:]}"
    symbols = ""
    nm = shutil.which("nm")
    for obj in sorted(tmp_path.glob("*.o")):
        assert obj.stat().st_size > 0
        if nm:
            symbols += subprocess.run([nm, "-C", str(obj)], capture_output=True, text=True).stdout
    if nm:
        for name in ("bias_act_launch", "upfirdn2d_launch", "PyInit_comodgan_ops_check"):
            assert name in symbols


def test_kernel_sources_include_only_cuda_and_our_headers():
    # The toolkit on build machines may have runtime headers only, and the CPU torch wheel lacks ATen/cuda:
    # kernels must not include torch, and the binding must not include torch's CUDA headers.
    sources, headers = custom_ops.source_files()
    for path in sources + headers:
        text = open(path).read()
        includes = re.findall(r'#include\s*[<"]([^>"]+)[>"]', text)
        if path.endswith(".cpp"):
            assert not any(i.startswith(("ATen/cuda", "c10/cuda")) for i in includes), path
        else:
            allowed = ("cuda_", "cstdint", "ops_")
            assert all(i.startswith(allowed) for i in includes), f"{path}: {includes}"


@pytest.fixture
def fresh_loader(monkeypatch):
    state = custom_ops._LoaderState()
    monkeypatch.setattr(custom_ops, "_STATE", state)
    return state


def test_failing_build_warns_once_builds_once_and_falls_back(monkeypatch, fresh_loader):
    calls = []

    def broken_build():
        calls.append(1)
        raise RuntimeError("nvcc exploded")

    monkeypatch.setattr(custom_ops, "_build", broken_build)
    monkeypatch.setattr(custom_ops, "use_cuda", lambda x: True)  # pretend every tensor is on a GPU
    x = torch.randn(2, 4, 9, 7)
    b = torch.randn(4)
    f = U.setup_filter([1, 3, 3, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            y = BA.bias_act(x, b, act="lrelu", clamp=0.5, impl="cuda")
            z = U.upsample2d(x, f, impl="cuda")
    assert len(calls) == 1
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "nvcc exploded" in messages[0] and custom_ops.cache_root() in messages[0]
    assert custom_ops.FORCE_REF_ENV in messages[0]
    assert torch.equal(y, BA.bias_act(x, b, act="lrelu", clamp=0.5, impl="ref"))
    assert torch.equal(z, U.upsample2d(x, f, impl="ref"))


def test_env_var_forces_reference(monkeypatch):
    fake_gpu_tensor = types.SimpleNamespace(device=torch.device("cuda"))
    monkeypatch.delenv(custom_ops.FORCE_REF_ENV, raising=False)
    assert custom_ops.use_cuda(fake_gpu_tensor)
    monkeypatch.setenv(custom_ops.FORCE_REF_ENV, "1")
    assert not custom_ops.use_cuda(fake_gpu_tensor)
    assert not custom_ops.use_cuda(torch.zeros(1))


def test_cache_key_follows_sources_and_headers(tmp_path, monkeypatch):
    for path in sum(custom_ops.source_files(), []):
        shutil.copy(path, tmp_path)
    monkeypatch.setattr(custom_ops, "SOURCE_DIR", str(tmp_path))
    before = custom_ops.source_hash(*custom_ops.source_files())
    with open(tmp_path / "ops_params.h", "a") as fh:
        fh.write("// edited\n")
    assert custom_ops.source_hash(*custom_ops.source_files()) != before


def test_build_renames_into_keyed_cache_then_reuses_it(tmp_path, monkeypatch, fresh_loader):
    loads = []

    def fake_load(name, sources, build_directory, **kwargs):
        loads.append(build_directory)
        assert all(os.path.dirname(s) == build_directory for s in sources)  # compiled from hashed copies
        open(os.path.join(build_directory, name + ".so"), "wb").close()
        return types.SimpleNamespace(name=name)

    monkeypatch.setenv(custom_ops.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    monkeypatch.setattr(custom_ops, "_import_from", lambda path, name: types.SimpleNamespace(name=name, path=path))
    first = custom_ops._build()
    entries = os.listdir(tmp_path)
    assert entries == [first.name]  # temp folder renamed into place, nothing else left behind
    second = custom_ops._build()
    assert len(loads) == 1 and second.path == os.path.join(tmp_path, first.name, first.name + ".so")


def test_gpu_environment_pins_match_requirements():
    root = os.path.dirname(custom_ops.SOURCE_DIR)
    with open(os.path.join(root, "requirements.txt")) as fh:
        req = {line.strip() for line in fh if "==" in line and not line.startswith("#")}
    with open(os.path.join(root, "environment.yml")) as fh:
        env = {m.group(1) for m in re.finditer(r"^\s+- ([A-Za-z0-9_.-]+==\S+)", fh.read(), re.M)}
    assert req and env == req


# ------------------------------------------------------------------------------------------------------------
# CUDA kernels against the reference (need a GPU).

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=1e-2, atol=1e-2),
       torch.float64: dict(rtol=1e-10, atol=1e-10)}


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.delenv(custom_ops.FORCE_REF_ENV, raising=False)
    p = custom_ops.get_plugin()
    assert p is not None, f"CUDA extension failed to build: {custom_ops._STATE.error}"
    return p


def _grads(fn, x, b):
    """Value, first-order grads and a double-backward quantity (as R1 computes it)."""
    y = fn(x, b)
    gy = torch.ones_like(y).mul_(0.5)
    gx, gb = torch.autograd.grad((y * gy).sum(), [x, b], create_graph=True)
    gg = torch.autograd.grad(gx.float().square().sum() + gb.float().sum(), [x, b], allow_unused=True)
    return [y, gx, gb] + [g if g is not None else torch.zeros_like(t) for g, t in zip(gg, [x, b])]


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", sorted(BA.activation_funcs))
@pytest.mark.parametrize("channels_last", [False, True])
def test_bias_act_cuda_matches_ref(plugin, dtype, act, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 6, device="cuda", dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    b = torch.randn(8, device="cuda", dtype=dtype)
    outs = []
    for impl in ("cuda", "ref"):
        xi, bi = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        outs.append(_grads(lambda t, u, impl=impl: BA.bias_act(t, u, act=act, clamp=1.5, impl=impl), xi, bi))
    for got, want in zip(*outs):
        torch.testing.assert_close(got.float(), want.float(), **TOL[dtype])


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("up,down,pad,sep", [(1, 1, [1, 2, 0, 1], False), (2, 1, [2, 1, 2, 1], True),
                                              (1, 2, [1, 1, -1, 2], False), ([2, 1], [1, 2], [-1, 2, 1, 0], False),
                                              (4, 2, [3, 2, 1, 0], True)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upfirdn2d_cuda_matches_ref(plugin, dtype, up, down, pad, sep, channels_last):
    torch.manual_seed(1)
    f = U.setup_filter([1, 3, 3, 1], separable=sep, device=torch.device("cuda"))
    x = torch.randn(2, 5, 11, 9, device="cuda", dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    outs = []
    for impl in ("cuda", "ref"):
        xi = x.clone().requires_grad_(True)
        y = U.upfirdn2d(xi, f, up=up, down=down, padding=pad, flip_filter=True, gain=2.0, impl=impl)
        (gx,) = torch.autograd.grad(y.float().square().sum(), [xi], create_graph=True)
        (ggx,) = torch.autograd.grad(gx.float().sum(), [xi])
        outs.append([y, gx, ggx])
    for got, want in zip(*outs):
        torch.testing.assert_close(got.float(), want.float(), **TOL[dtype])


@needs_gpu
def test_cuda_gradcheck_float64(plugin):
    x = torch.randn(2, 3, 5, 4, device="cuda", dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, device="cuda", dtype=torch.float64, requires_grad=True)
    f = U.setup_filter([1, 3, 3, 1], device=torch.device("cuda"))
    assert torch.autograd.gradcheck(lambda t, u: BA.bias_act(t, u, act="swish", impl="cuda"), (x, b))
    assert torch.autograd.gradgradcheck(lambda t, u: BA.bias_act(t, u, act="swish", impl="cuda"), (x, b))
    assert torch.autograd.gradgradcheck(lambda t: U.upfirdn2d(t, f, up=2, down=1, padding=1, impl="cuda"), (x,))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
