"""Tests of the co-modulated generator and the discriminator: sizes, API, composite, determinism, gradients."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import network_summary
from dnnlib import UserError
from training import networks
from training.networks import Discriminator, Generator, NetworkInputError, block_dtype, count_params

SMALL = dict(channel_base=512, channel_max=32)


def _inputs(batch, resolution, channels=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand([batch, channels, resolution, resolution], generator=gen) * 2 - 1
    mask = torch.ones([batch, 1, resolution, resolution])
    q = resolution // 4
    mask[:, :, q : 3 * q, q : 2 * q + 3] = 0
    z = torch.randn([batch, 512], generator=gen)
    return img, mask, z


@pytest.fixture(scope="module")
def small_g():
    torch.manual_seed(0)
    return Generator(img_resolution=32, **SMALL).eval()


def test_parameter_counts_match_the_published_architecture_at_512():
    torch.manual_seed(0)
    G, D = Generator(), Discriminator()
    assert count_params(G.mapping) == 2_101_248
    assert count_params(G.encoder) == 31_952_000
    assert count_params(G.synthesis) == 45_738_983
    assert count_params(G) == 79_792_231
    assert count_params(D) == 28_982_913
    assert G.num_ws == 16 and G.z_dim == 512 and G.w_dim == 512
    assert G.synthesis.code_dim == 1024  # the global code, 2 * nf(1)
    # Buffers are not parameters: 15 noise maps and w_avg.
    assert sum(1 for k in G.state_dict() if k.endswith("noise_const")) == 15
    assert "mapping.w_avg" in G.state_dict()


def test_parameter_names_follow_the_documented_scheme():
    G = Generator(img_resolution=64, **SMALL)
    D = Discriminator(img_resolution=64, **SMALL)
    g_keys, d_keys = set(G.state_dict()), set(D.state_dict())
    for key in [
        "mapping.fc0.weight", "mapping.fc7.bias", "mapping.w_avg",
        "encoder.b64.fromrgb.weight", "encoder.b64.conv0.weight", "encoder.b8.conv1.bias",
        "encoder.b4.conv.weight", "encoder.b4.fc.weight",
        "synthesis.b4.fc.weight", "synthesis.b4.conv.affine.weight", "synthesis.b4.conv.noise_strength",
        "synthesis.b4.torgb.affine.bias", "synthesis.b64.conv0.weight", "synthesis.b64.conv1.noise_const",
        "synthesis.b64.torgb.weight",
    ]:
        assert key in g_keys, key
    for key in ["b64.fromrgb.weight", "b64.conv0.bias", "b64.conv1.weight", "b64.skip.weight", "b4.conv.weight",
                "b4.fc.bias", "b4.out.weight"]:
        assert key in d_keys, key
    assert "b64.skip.bias" not in d_keys and "encoder.b32.fromrgb.weight" not in g_keys
    assert not any("resample_filter" in k for k in g_keys | d_keys)  # constants stay out of checkpoints
    # TF semantics: mod_bias starts at 0 (1 is added at run time), noise strengths at 0.
    assert not G.synthesis.b8.conv0.affine.bias.detach().any()
    assert float(G.synthesis.b8.conv0.noise_strength.detach()) == 0
    assert [G.synthesis.b8.conv0.ws_index, G.synthesis.b8.conv1.ws_index, G.synthesis.b8.torgb.ws_index] == [1, 2, 3]
    assert G.synthesis.b64.torgb.ws_index == G.num_ws - 1


@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_output_shapes(resolution):
    torch.manual_seed(0)
    G = Generator(img_resolution=resolution, **SMALL).eval()
    D = Discriminator(img_resolution=resolution, **SMALL)
    img, mask, z = _inputs(2, resolution)
    out, raw = G(img, mask, z, return_raw=True)
    assert out.shape == raw.shape == img.shape and out.dtype == torch.float32
    assert G.mapping(z).shape == (2, G.num_ws, 512) and G.num_ws == 2 * int(math.log2(resolution)) - 2
    logits = D(out, mask)
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()


def test_known_pixels_pass_through_bit_exactly(small_g):
    img, mask, z = _inputs(2, 32)
    out, raw = small_g(img, mask, z, return_raw=True)
    known = mask.expand_as(img).bool()
    assert torch.equal(out[known], img[known])
    assert torch.equal(out[~known], raw[~known])
    assert not torch.equal(out[~known], img[~known])


def test_hole_content_of_the_input_is_ignored(small_g):
    img, mask, z = _inputs(1, 32)
    scrambled = torch.where(mask.bool(), img, -img)
    a = small_g(img, mask, z, noise_mode="const")
    b = small_g(scrambled, mask, z, noise_mode="const")
    assert torch.equal(a, b)


def test_same_z_const_noise_is_deterministic_and_other_z_changes_holes(small_g):
    img, mask, z = _inputs(2, 32)
    a = small_g(img, mask, z, noise_mode="const")
    b = small_g(img, mask, z, noise_mode="const")
    assert torch.equal(a, b)
    c = small_g(img, mask, torch.randn_like(z), noise_mode="const")
    holes = (mask == 0).expand_as(img)
    assert (a - c)[holes].abs().mean() > 1e-4
    assert torch.equal(a[~holes], c[~holes])


def test_z_and_ws_paths_agree_and_exactly_one_is_required(small_g):
    img, mask, z = _inputs(2, 32)
    ws = small_g.mapping(z)
    assert torch.equal(small_g(img, mask, z, noise_mode="none"), small_g(img, mask, ws=ws, noise_mode="none"))
    with pytest.raises(NetworkInputError, match="exactly one of z and ws"):
        small_g(img, mask)
    with pytest.raises(NetworkInputError, match="exactly one of z and ws"):
        small_g(img, mask, z, ws=ws)


def test_truncation_psi_zero_yields_the_w_average():
    torch.manual_seed(1)
    G = Generator(img_resolution=32, **SMALL).eval()
    for _ in range(3):
        G.mapping(torch.randn(8, 512), update_emas=True)
    w_avg = G.mapping.w_avg.clone()
    assert w_avg.abs().sum() > 0
    ws = G.mapping(torch.randn(4, 512), truncation_psi=0)
    assert torch.allclose(ws, w_avg.expand_as(ws), atol=1e-6)
    img, mask, _ = _inputs(2, 32)
    a = G(img, mask, torch.randn(2, 512), truncation_psi=0, noise_mode="const")
    b = G(img, mask, torch.randn(2, 512), truncation_psi=0, noise_mode="const")
    assert torch.allclose(a, b, atol=1e-5)
    # A cutoff truncates only the first layers.
    z = torch.randn(4, 512)
    ws_cut, ws_full = G.mapping(z, truncation_psi=0, truncation_cutoff=3), G.mapping(z)
    assert torch.allclose(ws_cut[:, :3], w_avg.expand(4, 3, -1), atol=1e-6)
    assert torch.equal(ws_cut[:, 3:], ws_full[:, 3:])


def test_w_avg_moves_only_with_update_emas():
    G = Generator(img_resolution=32, **SMALL)
    before = G.mapping.w_avg.clone()
    G.mapping(torch.randn(4, 512))
    assert torch.equal(G.mapping.w_avg, before)
    w = G.mapping(torch.randn(4, 512), update_emas=True)[:, 0]
    assert torch.allclose(G.mapping.w_avg, before.lerp(w.mean(0), 1 - 0.995), atol=1e-7)


def test_dropout_on_the_global_code():
    torch.manual_seed(0)
    G = Generator(img_resolution=32, **SMALL).eval()
    img, mask, z = _inputs(1, 32)
    off1, off2 = (G(img, mask, z, noise_mode="const") for _ in range(2))
    assert torch.equal(off1, off2)  # default at inference: off
    torch.manual_seed(1)
    on1 = G(img, mask, z, noise_mode="const", dropout=True)
    on2 = G(img, mask, z, noise_mode="const", dropout=True)
    assert not torch.equal(on1, on2) and not torch.equal(on1, off1)
    G.train()
    code_a, _ = G.encoder(img, mask, dropout=True)
    assert (code_a == 0).float().mean() > 0.2  # about half the code is dropped (after lrelu some are 0 anyway)
    t1, t2 = (G(img, mask, z, noise_mode="const") for _ in range(2))
    assert not torch.equal(t1, t2)  # training mode: on


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    G = Generator(img_resolution=32, **SMALL).train()
    D = Discriminator(img_resolution=32, **SMALL)
    img, mask, z = _inputs(4, 32)
    fake = G(img, mask, z)
    loss = F.softplus(-D(fake, mask)).mean() + F.softplus(D(img, mask)).mean()
    loss.backward()
    for net in (G, D):
        missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not missing, missing
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_float16_is_selected_only_on_cuda():
    assert block_dtype(True, torch.device("cuda")) == torch.float16
    assert block_dtype(True, "cuda:0") == torch.float16
    assert block_dtype(True, torch.device("cpu")) == torch.float32
    assert block_dtype(False, torch.device("cuda")) == torch.float32
    assert networks.fp16_resolutions(9, 4) == [64, 128, 256, 512]
    assert networks.fp16_resolutions(5, 4) == [8, 16, 32]
    assert networks.fp16_resolutions(9, 0) == []
    G = Generator(img_resolution=64, num_fp16_res=2, **SMALL).eval()
    assert [G.synthesis.b64.use_fp16, G.synthesis.b32.use_fp16, G.synthesis.b16.use_fp16] == [True, True, False]
    assert G.encoder.b64.use_fp16 and not G.encoder.b16.use_fp16
    dtypes = []
    hook = G.synthesis.b64.conv1.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    img, mask, z = _inputs(1, 64)
    assert G(img, mask, z).dtype == torch.float32
    hook.remove()
    assert dtypes == [torch.float32]  # an fp16 block runs in float32 on the CPU


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_float16_blocks_run_in_half_on_cuda():
    G = Generator(img_resolution=64, num_fp16_res=2, **SMALL).eval().cuda()
    dtypes = []
    G.synthesis.b64.conv1.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    img, mask, z = (t.cuda() for t in _inputs(1, 64))
    assert G(img, mask, z).dtype == torch.float32 and dtypes == [torch.float16]


@pytest.mark.parametrize("resolution", [16, 48, 2048, 512.0])
def test_invalid_resolution_is_a_clear_error(resolution):
    with pytest.raises(UserError, match="img_resolution: must be .*power of two"):
        Generator(img_resolution=resolution, **SMALL)
    with pytest.raises(UserError, match="img_resolution"):
        Discriminator(img_resolution=resolution, **SMALL)


def test_bad_inputs_are_clear_errors(small_g):
    D = Discriminator(img_resolution=32, **SMALL)
    img, mask, z = _inputs(2, 32)
    with pytest.raises(NetworkInputError, match=r"img must be \[N, 3, 32, 32\], got \[2, 4, 32, 32\]"):
        small_g(torch.zeros(2, 4, 32, 32), mask, z)
    with pytest.raises(NetworkInputError, match=r"Discriminator: img must be"):
        D(torch.zeros(2, 1, 32, 32), mask)
    with pytest.raises(NetworkInputError, match=r"mask must be \[2, 1, 32, 32\] to match img, got \[2, 1, 16, 16\]"):
        small_g(img, mask[:, :, :16, :16], z)
    with pytest.raises(NetworkInputError, match="to match img"):
        D(img, mask[:1])
    with pytest.raises(NetworkInputError, match="binary with 1 = known"):
        small_g(img, mask * 0.5, z)
    with pytest.raises(NetworkInputError, match=r"z must be \[N, 512\]"):
        small_g(img, mask, torch.zeros(2, 8))
    with pytest.raises(NetworkInputError, match="2 latents for a batch of 1"):
        small_g(img[:1], mask[:1], z)
    with pytest.raises(NetworkInputError, match="noise_mode"):
        small_g(img, mask, z, noise_mode="zero")
    with pytest.raises(NetworkInputError, match="divisible by the mbstd group size 4"):
        D(torch.zeros(6, 3, 32, 32), torch.ones(6, 1, 32, 32))
    with pytest.raises(NetworkInputError, match="img_channels: must be an integer >= 1, got 0"):
        Generator(img_resolution=32, img_channels=0, **SMALL)
    with pytest.raises(NetworkInputError, match="channel_max"):
        Discriminator(img_resolution=32, channel_max=0)


def test_init_kwargs_rebuild_the_same_networks():
    G = Generator(img_resolution=32, mapping_kwargs=dict(num_layers=2), **SMALL)
    D = Discriminator(img_resolution=32, **SMALL)
    for net, cls in ((G, Generator), (D, Discriminator)):
        kwargs = json.loads(json.dumps(net.init_kwargs))
        clone = cls(**kwargs)
        clone.load_state_dict(net.state_dict())
        assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert G.init_kwargs["mapping_kwargs"] == {"num_layers": 2} and G.mapping.num_layers == 2


def test_synthesis_layer_matches_the_tf_modulated_convolution():
    torch.manual_seed(0)
    layer = networks.SynthesisLayer(6, 5, mod_dim=7, resolution=8, ws_index=0)
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
        layer.affine.bias.normal_()
    x, mod = torch.randn(2, 6, 8, 8), torch.randn(2, 7)
    got = layer(x, mod, noise_mode="const", fused_modconv=False)
    # Official TF formula, written out naively per sample.
    s = mod @ (layer.affine.weight / math.sqrt(7)).t() + layer.affine.bias + 1
    w = layer.weight / math.sqrt(6 * 9)
    ww = w[None] * s[:, None, :, None, None]
    ww = ww * (ww.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    ref = torch.cat([F.conv2d(x[i : i + 1], ww[i], padding=1) for i in range(2)])
    ref = F.leaky_relu(ref + layer.noise_const * 0.3 + layer.bias[None, :, None, None], 0.2) * math.sqrt(2)
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(layer(x, mod, noise_mode="const", fused_modconv=True), ref, atol=1e-5)
    # ToRGB: the same modulation, 1x1, no demodulation, linear.
    torgb = networks.ToRGBLayer(6, 3, mod_dim=7, ws_index=1)
    s = mod @ (torgb.affine.weight / math.sqrt(7)).t() + 1
    ref = torch.einsum("oi,ni,nihw->nohw", torgb.weight[:, :, 0, 0] / math.sqrt(6), s, x)
    assert torch.allclose(torgb(x, mod, fused_modconv=False), ref, atol=1e-5)


def test_mapping_applies_the_lr_multiplier_and_normalizes_z():
    torch.manual_seed(0)
    mapping = networks.MappingNetwork(z_dim=16, w_dim=8, num_ws=3, num_layers=1, layer_features=8)
    with torch.no_grad():
        mapping.fc0.bias.normal_()
    z = torch.randn(5, 16)
    zn = z / z.square().mean(dim=1, keepdim=True).add(1e-8).sqrt()
    ref = zn @ (mapping.fc0.weight * 0.01 / 4).t() + mapping.fc0.bias * 0.01
    ref = F.leaky_relu(ref, 0.2) * math.sqrt(2)
    assert torch.allclose(mapping(z * 7)[:, 1], ref, atol=1e-5)


def test_minibatch_stddev_groups_like_tf():
    layer = networks.MinibatchStdLayer(group_size=2, num_channels=1)
    x = torch.randn(4, 3, 2, 2)
    y = layer(x)
    # Group size 2 with 4 samples: samples (0, 2) and (1, 3) form the groups.
    for i, j in ((0, 2), (1, 3)):
        std = torch.stack([x[i], x[j]]).var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
        assert torch.allclose(y[i, 3], std.expand(2, 2), atol=1e-6) and torch.allclose(y[j, 3], y[i, 3])
    assert torch.equal(y[:, :3], x)


def test_summary_cli_prints_layers_and_totals():
    result = CliRunner().invoke(network_summary.main, ["--resolution", "32", "--channel-base", "512",
                                                       "--channel-max", "32"])
    assert result.exit_code == 0, result.output
    out = result.output
    G = Generator(img_resolution=32, **SMALL)
    D = Discriminator(img_resolution=32, **SMALL)
    assert "synthesis.b32.torgb" in out and "[1, 3, 32, 32]" in out and "b4.mbstd" in out
    assert f"{count_params(G):,}" in out.split("Discriminator")[0]
    assert f"{count_params(D):,}" in out.split("Discriminator")[1]
    rows = networks.summarize(G.eval(), *_inputs(1, 32))
    assert sum(c for _, _, c in rows) == count_params(G)
    result = CliRunner().invoke(network_summary.main, ["--resolution", "48"])
    assert result.exit_code == 2
    assert "error: img_resolution: must be a power of two" in result.output


def _blur(x, gain):
    """Depthwise [1, 3, 3, 1] low-pass filter (sum normalised to `gain`), no padding."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = (f[:, None] * f[None, :]) / 64 * gain
    return F.conv2d(x, f.expand(x.shape[1], 1, 4, 4), groups=x.shape[1])


def test_upsampling_layer_equals_tf_upsample_conv_2d_with_the_flipped_kernel():
    # TF upsample_conv_2d: conv2d_transpose (stride 2, VALID) with the kernel flipped in (k, k), then the
    # [1, 3, 3, 1] filter (gain 4, padding 1). Our conv0 stores the TF kernel flipped, the one flip of the mapping.
    torch.manual_seed(0)
    layer = networks.SynthesisLayer(4, 3, mod_dim=5, resolution=16, ws_index=1, up=2)
    x, mod = torch.randn(2, 4, 8, 8), torch.randn(2, 5)
    got = layer(x, mod, noise_mode="none", fused_modconv=False)
    s = mod @ (layer.affine.weight / math.sqrt(5)).t() + 1
    ww = (layer.weight / 6)[None] * s[:, None, :, None, None]
    ww = ww * (ww.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    tf_kernel = ww.flip([3, 4])  # what the TF checkpoint holds (in our [out, in, k, k] layout)
    ref = torch.cat([F.conv_transpose2d(x[i : i + 1], tf_kernel[i].flip([2, 3]).transpose(0, 1), stride=2)
                     for i in range(2)])
    ref = _blur(F.pad(ref, [1, 1, 1, 1]), gain=4)
    assert ref.shape == got.shape
    assert torch.allclose(got, F.leaky_relu(ref, 0.2) * math.sqrt(2), atol=1e-5)
    assert torch.allclose(layer(x, mod, noise_mode="none", fused_modconv=True), got, atol=1e-5)


def test_downsampling_layers_equal_tf_filter_then_strided_conv():
    torch.manual_seed(0)
    conv = networks.Conv2dLayer(3, 5, 3, activation="lrelu", down=2)
    skip = networks.Conv2dLayer(3, 5, 1, bias=False, down=2)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, 8, 8)
    ref = F.conv2d(_blur(F.pad(x, [2, 2, 2, 2]), 1), conv.weight / math.sqrt(27), conv.bias, stride=2)
    assert torch.allclose(conv(x), F.leaky_relu(ref, 0.2) * math.sqrt(2), atol=1e-5)
    ref = F.conv2d(_blur(F.pad(x, [1, 1, 1, 1]), 1), skip.weight / math.sqrt(3), stride=2)
    assert torch.allclose(skip(x, gain=0.5), ref * 0.5, atol=1e-5)
