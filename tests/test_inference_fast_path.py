"""Tests of the fast CPU inference path of the Generator: same numbers as the reference, used when it should be."""

import copy
import os

import pytest
import torch

from inference import conv_plan, fast_path, fast_path_calibration
from torch_utils import cpu_malloc
from training.networks import Discriminator, Generator, NetworkInputError

TOLERANCE = 1e-4  # max abs difference allowed on the composited float32 output


def _generator(resolution, channel_base, channel_max, seed=0):
    """An eval-mode G whose biases and noise strengths are non-zero, so that every term is exercised."""
    torch.manual_seed(seed)
    G = Generator(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max).eval()
    fast_path.attach(G)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") or name.endswith("noise_strength"):
                p.normal_(0, 0.3)
    return G


def _inputs(batch, resolution, seed=0):
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand([batch, 3, resolution, resolution], generator=gen) * 2 - 1
    mask = torch.ones([batch, 1, resolution, resolution])
    mask[:, :, resolution // 4 : 3 * resolution // 4, resolution // 8 : resolution // 2] = 0
    return img, mask, torch.randn([batch, 512], generator=gen)


def _both(G, img, mask, z, **kwargs):
    """(reference, fast) outputs of G under no_grad, each drawing its random numbers from the same seed."""
    outs = []
    for impl in ("ref", "fast"):
        torch.manual_seed(123)
        with torch.no_grad():
            outs.append(G(img, mask, z, impl=impl, **kwargs))
    return outs


@pytest.fixture(scope="module")
def g64():
    # channel_max 64 at 64x64: the 4x4..16x16 layers take the scaled-activation branch at batch 1, the 32x32
    # and 64x64 layers the modulated-weight branch.
    return _generator(64, 1024, 64)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_fast_path_matches_the_reference(g64, batch, noise_mode):
    img, mask, z = _inputs(batch, 64)
    (ref, ref_raw), (fast, fast_raw) = _both(g64, img, mask, z, noise_mode=noise_mode, return_raw=True)
    assert fast.shape == ref.shape and fast.is_contiguous()
    assert (fast - ref).abs().max().item() <= TOLERANCE
    assert (fast_raw - ref_raw).abs().max().item() <= TOLERANCE
    assert ref_raw.abs().max().item() > 1  # not a trivially small output
    known = mask.expand_as(img).bool()
    assert torch.equal(fast[known], img[known])  # known pixels pass through exactly


@pytest.mark.parametrize("plan", ["rules", "avx2", "avx512", "nnpack"])
def test_fast_path_matches_the_reference_at_full_width_and_with_dropout(monkeypatch, plan):
    G = _generator(32, 16384, 512)  # 512 channels: the published widths of the low resolutions
    if plan == "nnpack":
        if not conv_plan.nnpack_available():
            pytest.skip("torch without NNPACK")
        _force(monkeypatch, G, 1, "nnpack", "weight-nnpack", "weight-polyphase")
    else:
        chosen = conv_plan.Plan(conv_plan.shipped_table(plan) if plan != "rules" else {})
        monkeypatch.setattr(conv_plan, "current_plan", lambda: chosen)
    img, mask, z = _inputs(1, 32, seed=1)
    ref, fast = _both(G, img, mask, z, noise_mode="const", dropout=True)
    assert (fast - ref).abs().max().item() <= TOLERANCE
    _, no_dropout = _both(G, img, mask, z, noise_mode="const")
    assert (fast - no_dropout).abs().max().item() > 1e-3  # dropout did draw a mask on the fast path


@pytest.fixture(autouse=True)
def _no_user_calibration(tmp_path, monkeypatch):
    """The plan of this machine without the user's calibration (the shipped table and the rules only)."""
    monkeypatch.setenv("COMODGAN_CACHE_DIR", str(tmp_path / "cache"))
    conv_plan.forget_loaded_plans()
    yield
    conv_plan.forget_loaded_plans()


def _force(monkeypatch, G, batch, conv, synth, synth_up):
    """Make every planned layer of G at `batch` run the given variants (the weight modes fall back to the
    activation mode at batch > 1, as conv_plan.variants allows)."""
    chosen = {"conv": conv, "synth": synth, "synth_up": synth_up}
    choices = {}
    for kind, _, x_shape, c_out in fast_path_calibration.planned_layers(G, batch):
        allowed = conv_plan.variants(kind, x_shape)
        variant = chosen[kind] if chosen[kind] in allowed else chosen[kind].replace("weight-", "activation-")
        choices[conv_plan.layer_key(kind, x_shape, c_out)] = variant
    plan = conv_plan.Plan(choices, "test")
    monkeypatch.setattr(conv_plan, "current_plan", lambda: plan)
    return plan


# Every variant of each kind appears at least once.
FORCED = [("direct", "weight-direct", "weight-transposed"), ("winograd4", "weight-winograd4", "weight-polyphase"),
          ("winograd2", "weight-winograd2", "activation-transposed"),
          ("direct", "activation-direct", "activation-polyphase"),
          ("winograd4", "activation-winograd4", "activation-polyphase"),
          ("winograd2", "activation-winograd2", "weight-polyphase"),
          ("nnpack", "weight-nnpack", "weight-transposed"), ("nnpack", "activation-nnpack", "activation-polyphase")]


@pytest.mark.parametrize("batch,conv,synth,synth_up", [(1, *f) for f in FORCED] + [(2, *f) for f in FORCED[2:4]]
                         + [(2, *FORCED[-1])])
def test_every_variant_matches_the_reference(g64, monkeypatch, batch, conv, synth, synth_up):
    if conv == "nnpack" and not conv_plan.nnpack_available():
        pytest.skip("torch without NNPACK")
    _force(monkeypatch, g64, batch, conv, synth, synth_up)
    img, mask, z = _inputs(batch, 64)
    (ref, ref_raw), (fast, fast_raw) = _both(g64, img, mask, z, noise_mode="const", return_raw=True)
    assert (fast_raw - ref_raw).abs().max().item() <= TOLERANCE
    assert ref_raw.abs().max().item() > 1


def test_forced_variants_run_their_algorithms(g64, monkeypatch):
    from torch_utils.ops import polyphase, winograd

    calls = []
    real_wino, real_poly = winograd.conv3x3, polyphase.conv_transpose2d_phases
    monkeypatch.setattr(winograd, "conv3x3", lambda x, u, *a: calls.append(("wino", u.shape[0])) or
                        real_wino(x, u, *a))
    monkeypatch.setattr(polyphase, "conv_transpose2d_phases", lambda *a: calls.append(("poly",)) or real_poly(*a))
    _force(monkeypatch, g64, 1, "winograd2", "activation-winograd4", "activation-polyphase")
    img, mask, z = _inputs(1, 64)
    with torch.no_grad():
        g64(img, mask, z, noise_mode="const")
    n_res = len(g64.synthesis.block_resolutions)
    assert calls.count(("poly",)) == n_res
    assert calls.count(("wino", 16)) == len(g64.encoder.block_resolutions)  # the encoder's 3x3 stride-1 convs
    assert calls.count(("wino", 36)) == n_res + 1  # synthesis conv1 of each block and b4.conv


@pytest.mark.parametrize("resolution,channel_base,channel_max", [(32, 16384, 512), (64, 8192, 256)])
def test_wide_layers_take_winograd_by_the_rules_and_still_match(monkeypatch, resolution, channel_base, channel_max):
    # 512 channels up to 32 px: the cached-weight branch; 256 channels at 64 px: the per-call modulated weight.
    from torch_utils.ops import winograd

    rules = conv_plan.Plan()
    monkeypatch.setattr(conv_plan, "current_plan", lambda: rules)
    calls, real = [], winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(tuple(a[0].shape[1:3])) or real(*a, **k))
    G = _generator(resolution, channel_base, channel_max, seed=2)
    img, mask, z = _inputs(1, resolution, seed=2)
    ref, fast = _both(G, img, mask, z, noise_mode="const")
    assert (channel_max, resolution) in calls and (channel_max, 8) in calls
    assert all(c >= conv_plan.WINOGRAD_MIN_CHANNELS and r >= conv_plan.WINOGRAD_MIN_SIZE for c, r in calls)
    assert (fast - ref).abs().max().item() <= TOLERANCE


def test_prepared_weights_are_not_copies_of_every_parameter(monkeypatch):
    # With the rules at 32 px and 64 channels nothing takes Winograd: the cache holds at most one packed copy of
    # each convolution weight (the modulated-weight layers none), not a second full set of weights.
    rules = conv_plan.Plan()
    monkeypatch.setattr(conv_plan, "current_plan", lambda: rules)
    G = _generator(32, 1024, 64)
    img, mask, z = _inputs(1, 32)
    with torch.no_grad():
        G(img, mask, z, noise_mode="const")
    cache = fast_path._caches[G][torch.float32]
    conv_bytes = sum(m.weight.numel() * 4 for m in G.modules() if getattr(m, "weight", None) is not None
                     and m.weight.ndim == 4)
    assert 0 < cache.nbytes() <= conv_bytes * 1.1
    assert not any(m in cache.layers and "w" in cache.layers[m] for m in G.modules() if m.__class__.__name__ in
                   ("SynthesisLayer", "Conv2dLayer", "FullyConnectedLayer"))


def _spy(monkeypatch):
    calls = []
    real = fast_path.synthesize

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_path, "synthesize", spy)
    return calls


def test_fast_path_is_the_default_only_for_eval_inference(g64, monkeypatch):
    calls = _spy(monkeypatch)
    img, mask, z = _inputs(1, 64)
    with torch.no_grad():
        g64(img, mask, z)
    with torch.inference_mode():
        g64(img, mask, z)
    assert len(calls) == 2
    g64(img, mask, z)  # autograd on: the reference (what training differentiates)
    with torch.no_grad():
        g64(img, mask, z, impl="ref")
        g64.train()
        try:
            g64(img, mask, z)
        finally:
            g64.eval()
        g64.set_impl("ref")
        try:
            g64(img, mask, z)
        finally:
            g64.set_impl("fast")
        handle = g64.synthesis.b8.conv0.register_forward_hook(lambda *_: None)
        try:
            g64(img, mask, z)  # hooks must see every layer: the reference
        finally:
            handle.remove()
    assert len(calls) == 2


def test_cached_weights_follow_parameter_changes(g64):
    img, mask, z = _inputs(1, 64)
    with torch.no_grad():
        before = g64(img, mask, z, noise_mode="const")
        other = _generator(64, 1024, 64, seed=5)
        saved = {k: v.clone() for k, v in g64.state_dict().items()}
        g64.load_state_dict(other.state_dict())
        try:
            ref, fast = _both(g64, img, mask, z, noise_mode="const")
        finally:
            g64.load_state_dict(saved)
        after = g64(img, mask, z, noise_mode="const")
    assert (fast - ref).abs().max().item() <= TOLERANCE
    assert (fast - before).abs().max().item() > 1e-2
    assert torch.equal(after, before)


def test_bad_impl_is_a_clear_error(g64):
    img, mask, z = _inputs(1, 64)
    with pytest.raises(NetworkInputError, match="impl must be one of ref, fast, fast-bf16, got 'cuda'"):
        g64(img, mask, z, impl="cuda")
    with pytest.raises(NetworkInputError, match="impl"):
        g64.set_impl("fastest")
    assert g64.impl == "fast"


needs_bf16 = pytest.mark.skipif(not fast_path.bf16_supported(), reason="CPU without native bfloat16")


@needs_bf16
def test_bf16_path_is_close_to_the_reference_and_keeps_known_pixels(g64, monkeypatch):
    calls = _spy(monkeypatch)
    img, mask, z = _inputs(1, 64)
    with torch.no_grad():
        ref, ref_raw = g64(img, mask, z, noise_mode="const", impl="ref", return_raw=True)
        out, raw = g64(img, mask, z, noise_mode="const", impl="fast-bf16", return_raw=True)
    assert len(calls) == 1 and out.dtype == raw.dtype == torch.float32
    diff = (raw - ref_raw).abs()
    # bfloat16 keeps 8 significant bits: ~1-3% of the output's scale after 20 layers (seen: 0.8-2%), not float32's 1e-6.
    assert diff.mean() <= 0.05 * ref_raw.abs().mean() and diff.max() <= 0.05 * ref_raw.abs().max()
    assert diff.max() > 1e-3  # it did run in bfloat16
    known = mask.expand_as(img).bool()
    assert torch.equal(out[known], img[known])


def test_bf16_without_cpu_support_is_a_clear_error(g64, monkeypatch):
    monkeypatch.setattr(fast_path, "bf16_supported", lambda: False)
    img, mask, z = _inputs(1, 64)
    with torch.no_grad(), pytest.raises(fast_path.FastPathError, match="'fast-bf16' needs a CPU with native bfloat16"):
        g64(img, mask, z, impl="fast-bf16")
    with torch.no_grad():
        g64(img, mask, z, impl="ref")  # the reference does not care


def test_a_plain_generator_runs_the_reference_until_the_fast_path_is_attached(monkeypatch):
    calls = _spy(monkeypatch)
    G = Generator(img_resolution=32, channel_base=128, channel_max=16).eval()
    img, mask, z = _inputs(1, 32)
    assert G.impl == "ref" and G.impl_names() == ("ref",)
    with pytest.raises(NetworkInputError, match="inference.fast_path.attach"):
        G.set_impl("fast")
    with torch.no_grad():
        ref = G(img, mask, z, noise_mode="const")
        assert not calls
        fast = fast_path.attach(G)(img, mask, z, noise_mode="const")
    assert len(calls) == 1 and G.impl == "fast"
    assert (fast - ref).abs().max().item() <= TOLERANCE
    assert copy.deepcopy(G).fast_path is not None  # the EMA copy and metric copies keep it


def test_summary_still_lists_every_layer():
    from click.testing import CliRunner

    import network_summary

    out = CliRunner().invoke(network_summary.main, ["--resolution", "32", "--channel-base", "256",
                                                    "--channel-max", "16"]).output
    assert "synthesis.b32.conv0" in out and "encoder.b32.conv1" in out


def test_malloc_tuning_can_be_turned_off(monkeypatch):
    """The public keep_large_allocations() reads the opt-out on every call: set after the settings were applied,
    it puts glibc's defaults back, and clearing it applies the heap settings again."""
    calls = []
    monkeypatch.setattr(cpu_malloc, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or 1)
    monkeypatch.setattr(cpu_malloc._State, "settings", None)
    monkeypatch.setattr(cpu_malloc._State, "in_effect", False)
    monkeypatch.setenv(cpu_malloc.OPT_OUT_ENV, "1")
    assert cpu_malloc.keep_large_allocations() is False and calls == []  # opted out from the start: untouched
    monkeypatch.delenv(cpu_malloc.OPT_OUT_ENV)
    assert cpu_malloc.keep_large_allocations() is True
    assert calls == [(cpu_malloc._M_TRIM_THRESHOLD, 1 << 30), (cpu_malloc._M_MMAP_MAX, 0)]
    assert cpu_malloc.keep_large_allocations() is True and len(calls) == 2  # applied once, not on every forward
    monkeypatch.setenv(cpu_malloc.OPT_OUT_ENV, "1")
    assert cpu_malloc.keep_large_allocations() is False
    assert calls[2:] == [(cpu_malloc._M_TRIM_THRESHOLD, 128 * 1024), (cpu_malloc._M_MMAP_MAX, 65536)]


@pytest.mark.skipif(cpu_malloc._mallopt() is None, reason="no glibc mallopt on this platform")
def test_malloc_tuning_applies_through_glibc(monkeypatch):
    monkeypatch.setattr(cpu_malloc._State, "settings", None)
    monkeypatch.setattr(cpu_malloc._State, "in_effect", False)
    monkeypatch.delenv(cpu_malloc.OPT_OUT_ENV, raising=False)
    assert cpu_malloc.keep_large_allocations() is True


def test_generate_cli_impl_switch_gives_the_same_images(tmp_path):
    import numpy as np
    import PIL.Image
    from click.testing import CliRunner

    import generate
    from training.checkpoint import save_snapshot

    G = _generator(32, 128, 16)
    path = str(tmp_path / "snapshot.pt")
    D = Discriminator(img_resolution=32, channel_base=128, channel_max=16)
    save_snapshot(path, {"G_kwargs": G.init_kwargs, "D_kwargs": D.init_kwargs, "G": G.state_dict(),
                         "G_ema": G.state_dict(), "D": D.state_dict()})
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    hole = np.zeros((32, 32), np.uint8)
    hole[8:24, 4:20] = 255
    PIL.Image.fromarray(hole).save(tmp_path / "mask.png")
    outs = {}
    for impl in ("fast", "ref") + (("fast-bf16",) if fast_path.bf16_supported() else ()):
        args = ["--network", path, "--images", tmp_path / "img.png", "--masks", tmp_path / "mask.png", "--seeds", "3",
                "--outdir", tmp_path / impl, "--device", "cpu", "--impl", impl]
        result = CliRunner().invoke(generate.main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        (name,) = os.listdir(tmp_path / impl)
        outs[impl] = np.asarray(PIL.Image.open(tmp_path / impl / name).convert("RGB")).astype(int)
    assert np.abs(outs["fast"] - outs["ref"]).max() <= 1  # float32 rounding may flip a uint8 level
    if "fast-bf16" in outs:
        assert np.abs(outs["fast-bf16"] - outs["ref"]).mean() < 4  # bfloat16: within a few levels
    assert np.abs(outs["fast"][8:24, 4:20] - np.asarray(PIL.Image.open(tmp_path / "img.png"))[8:24, 4:20]).max() > 0
    result = CliRunner().invoke(generate.main, ["--network", path, "--images", str(tmp_path), "--masks", "center",
                                                "--outdir", str(tmp_path / "x"), "--impl", "fastest"])
    assert result.exit_code == 2 and "--impl" in result.output


def test_cached_tensors_are_allocated_with_mmap_allowed(monkeypatch):
    calls = []
    monkeypatch.setattr(cpu_malloc, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or 1)
    monkeypatch.setattr(cpu_malloc._State, "in_effect", True)
    with cpu_malloc.outside_heap():
        assert calls == [(cpu_malloc._M_MMAP_MAX, 65536)]
    assert calls[-1] == (cpu_malloc._M_MMAP_MAX, 0)
    monkeypatch.setattr(cpu_malloc._State, "in_effect", False)  # opted out: malloc is left alone
    with cpu_malloc.outside_heap():
        pass
    assert len(calls) == 2
    cache = fast_path._Cache(None, torch.float32, conv_plan.Plan())
    monkeypatch.setattr(cpu_malloc._State, "in_effect", True)
    cache.weight("w", lambda: torch.zeros(4))
    cache.weight("w", lambda: torch.zeros(4))  # cached: no second preparation
    assert len(calls) == 4
