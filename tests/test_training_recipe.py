"""The default presets train as the official CoModGAN TF code does (zsyzzsoft/co-mod-gan, training/training_loop.py
and training/co_mod_gan.py G_main): truncation 0.5 in every training forward, lazy-regularisation rescaling of
both optimizers, a constant EMA, a fresh (real, mask) batch per phase, the w average in both phases, and metrics
during training equal to calc_metrics.py's (dropout on, no truncation)."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from test_training import MICRO, make_zip, opts_for

import calc_metrics
import train
from data.dataset import ImageDataset
from dnnlib import EasyDict
from metrics import metric_main
from training import checkpoint, config, training_loop
from training.distributed import DistInfo
from training.loss import CoModGANLoss
from training.networks import Discriminator, Generator

OFFICIAL_PRESETS = ("auto", "celebahq256", "celebahq512")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory):
    return make_zip(tmp_path_factory.mktemp("data") / "tiny.zip")




def _config(cfg, resolution=None, **opts):
    return config.build_config(dict(cfg=cfg, data="x.zip", mask="center", outdir=".", **opts),
                               data_resolution=resolution or config.preset_resolution(cfg) or 32,
                               overrides={k: v for k, v in MICRO.items() if k.endswith("_kwargs")})


# ----------------------------------------------------------------------------------------------------------------
# (2) Optimizers: official "Setup optimizers" rescales lr by I/(I+1) and each beta by ^(I/(I+1)) for G (I = 4,
# although CoModGAN has no G regulariser) and D (I = 16). Read back from the optimizer objects build_state makes.

@pytest.mark.parametrize("cfg", OFFICIAL_PRESETS + ("tiny",))
def test_optimizers_have_the_official_effective_lr_and_betas(cfg):
    c = _config(cfg)
    state = training_loop.build_state(c, DistInfo())
    expected = {"opt_G": 4 / 5, "opt_D": 16 / 17}
    for key, ratio in expected.items():
        (group,) = state[key].param_groups
        assert group["lr"] == pytest.approx(0.002 * ratio, rel=1e-12), key
        assert group["betas"][0] == 0.0
        assert group["betas"][1] == pytest.approx(0.99**ratio, rel=1e-12), key
        assert group["eps"] == 1e-8
    assert state.opt_G.param_groups[0]["lr"] == pytest.approx(0.0016)
    # No path-length term: no G regularisation phase runs, but the rescaling above still applies.
    assert [p.name for p in training_loop.make_phases(c, state)] == ["Gmain", "Dmain", "Dreg"]


@pytest.mark.parametrize("cfg", OFFICIAL_PRESETS)
def test_presets_resolve_to_the_official_recipe(cfg):
    c = _config(cfg, resolution={"celebahq256": 256, "celebahq512": 512}.get(cfg))
    assert (c.truncation_psi, c.ema_rampup, c.ema_kimg, c.g_reg_interval, c.d_reg_interval) == (0.5, None, 10.0, 4, 16)
    assert (c.gamma, c.style_mixing_prob, c.batch, c.lr, c.betas) == (10.0, 0.5, 32, 0.002, (0.0, 0.99))


def test_the_default_round_divides_each_processs_batch():
    # Without --batch-gpu the preset's cap is a ceiling, not a value that must divide --batch.
    for cfg, batch, world, expected in (("celebahq256", 24, 1, (12, 2)), ("celebahq512", 12, 1, (6, 2)),
                                        ("celebahq512", 32, 1, (8, 4)), ("celebahq256", 32, 2, (16, 1)),
                                        ("tiny", 7, 1, (7, 1)), ("celebahq512", 24, 2, (6, 2))):
        c = config.build_config(dict(cfg=cfg, data="x.zip", mask="center", outdir=".", batch=batch), world_size=world)
        assert (c.batch_gpu, c.num_rounds) == expected, (cfg, batch, world)
    with pytest.raises(config.UserError, match="--batch 9 must be a multiple"):  # 9 does not split over 2 processes
        config.build_config(dict(cfg="tiny", data="x.zip", mask="center", outdir=".", batch=9), world_size=2)


def test_cli_knobs_for_truncation_and_ema_rampup(tmp_path, data_zip):
    base = ["--outdir", str(tmp_path / "runs"), "--data", data_zip, "--device", "cpu", "--dry-run"]
    tiny = json.loads(CliRunner().invoke(train.main, base + ["--cfg", "tiny"]).stdout)
    assert (tiny["truncation_psi"], tiny["ema_rampup"]) == (0.5, 0.05)  # tiny keeps its own ramp-up only
    result = CliRunner().invoke(train.main, base + ["--cfg", "tiny", "--trunc", "1", "--ema-rampup", "0"])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.stdout)["truncation_psi"], json.loads(result.stdout)["ema_rampup"]) == (1.0, None)
    auto = json.loads(CliRunner().invoke(train.main, base).stdout)
    assert (auto["truncation_psi"], auto["ema_rampup"]) == (0.5, None)


# ----------------------------------------------------------------------------------------------------------------
# (1) Truncation and (5) w average in every training forward, on the real (micro) networks.

def _micro_nets(seed=0):
    torch.manual_seed(seed)
    G = Generator(img_resolution=32, **MICRO["G_kwargs"]).train()
    D = Discriminator(img_resolution=32, **MICRO["D_kwargs"]).train()
    with torch.no_grad():
        G.mapping.w_avg.normal_()  # far from the batch mean, so that truncation and the update both show
    return G, D


def _inputs(n=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand([n, 3, 32, 32], generator=gen) * 2 - 1
    mask = torch.ones([n, 1, 32, 32])
    mask[:, :, 8:24, 8:24] = 0
    return img, mask, torch.randn([n, 16], generator=gen)


@pytest.mark.parametrize("phase", ["g_main", "d_main"])
@pytest.mark.parametrize("mixing", [0.0, 1.0])
def test_training_forward_truncates_after_mixing_toward_the_updated_average(phase, mixing):
    G, D = _micro_nets()
    img, mask, z = _inputs()
    seen = []
    G.synthesis.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    loss = CoModGANLoss(G, D, style_mixing_prob=mixing, truncation_psi=0.5)
    old_avg = G.mapping.w_avg.clone()
    with torch.no_grad():
        w = G.mapping(z)[:, 0]  # the mapping output of this z (no update)
    if phase == "g_main":
        D.requires_grad_(False)
    getattr(loss, phase)(img, mask, z)
    (ws,) = seen
    # (5) G_main "Update moving average of W": lerp(batch mean of dlatents[:, 0], dlatent_avg, 0.995).
    new_avg = w.mean(0).lerp(old_avg, 0.995)
    torch.testing.assert_close(G.mapping.w_avg, new_avg, rtol=0, atol=1e-6)
    # (1) G_main "Apply truncation trick": lerp(dlatent_avg, dlatents, 0.5) on every layer.
    untruncated = new_avg + (ws - new_avg) / 0.5
    torch.testing.assert_close(untruncated[:, 0], w, rtol=0, atol=1e-5)
    if mixing == 0:
        torch.testing.assert_close(untruncated, w[:, None].expand_as(ws), rtol=0, atol=1e-5)
    else:  # the layers past the cutoff come from the second z, truncated like the others
        w2 = untruncated[:, -1]
        assert not torch.allclose(w2, w, atol=1e-3)
        for layer in range(ws.shape[1]):
            assert any(torch.allclose(untruncated[:, layer], ref, atol=1e-5) for ref in (w, w2)), layer
    assert (ws - new_avg).abs().max() < (untruncated - new_avg).abs().max()


def test_without_truncation_the_synthesis_gets_the_mapping_output():
    G, D = _micro_nets()
    img, mask, z = _inputs()
    seen = []
    G.synthesis.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    CoModGANLoss(G, D, style_mixing_prob=0, truncation_psi=1.0).d_main(img, mask, z)
    with torch.no_grad():
        w = G.mapping(z)
    torch.testing.assert_close(seen[0], w, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# (3) EMA, (4) batches per phase, through the real loop.

def test_loop_fetches_a_batch_per_phase_and_uses_a_constant_ema(tmp_path, data_zip, monkeypatch):
    calls = []
    for method in ("g_main", "d_main", "d_r1"):
        real = getattr(CoModGANLoss, method)

        def spy(self, real_img, mask, *args, _real=real, _name=method, **kwargs):
            calls.append((_name, real_img.clone(), mask.clone()))
            return _real(self, real_img, mask, *args, **kwargs)

        monkeypatch.setattr(CoModGANLoss, method, spy)
    betas = []
    real_update = training_loop.update_ema
    monkeypatch.setattr(training_loop, "update_ema", lambda G_ema, G, beta: (betas.append(beta),
                                                                            real_update(G_ema, G, beta)))
    # auto preset at the data's 32x32, micro networks; batch 4 in 2 rounds of 2; R1 every step (MICRO).
    opts = opts_for(tmp_path, data_zip, cfg="auto", mask="free-form", kimg=0.008, snap=100)
    launch_result = training_loop.launch(opts, overrides=MICRO)
    c = EasyDict(json.load(open(os.path.join(launch_result.run_dir, "training_options.json"))))
    assert c.ema_rampup is None and launch_result.state.loss.truncation_psi == 0.5  # the loss gets the recipe's psi
    assert betas == [pytest.approx(0.5 ** (4 / 10000))] * 2  # from the very first step: no ramp-up

    # 2 steps x 2 rounds x (G, D, R1): each phase's rounds together form that phase's batch of the step.
    names = [name for name, _img, _mask in calls]
    assert names == (["g_main"] * 2 + ["d_main"] * 2 + ["d_r1"] * 2) * 2

    def batch(step, name):
        rows = [i for i, n in enumerate(names) if n == name][2 * step:2 * step + 2]
        return torch.cat([calls[i][1] for i in rows]), torch.cat([calls[i][2] for i in rows])

    for step in range(2):
        g_img, g_mask = batch(step, "g_main")
        d_img, d_mask = batch(step, "d_main")
        r_img, r_mask = batch(step, "d_r1")
        assert not torch.equal(g_mask, d_mask) and not torch.equal(g_img, d_img)  # a fresh fetch for D
        assert torch.equal(r_img, d_img) and torch.equal(r_mask, d_mask)  # R1 reuses the D batch
        # The batches are the sampler's (step, part) draws: G first, then D.
        sampler = training_loop.StepSampler(6, 4, 0, 1, c.seed, c.mirror)
        data = training_loop.InpaintingData(ImageDataset(data_zip), c.mask, 32)
        for part, (img, mask) in enumerate([(g_img, g_mask), (d_img, d_mask)]):
            items = [data[item] for item in sampler.items(step, part)]
            torch.testing.assert_close(torch.stack([m for _i, m in items]), mask)
            torch.testing.assert_close(torch.stack([i for i, _m in items]).float() / 127.5 - 1, img)
    assert not torch.equal(batch(0, "g_main")[1], batch(1, "g_main")[1])


def test_sampler_streams_differ_per_part_and_replay_after_resume():
    sampler = training_loop.StepSampler(100, 8, 0, 1, seed=1, mirror=True)
    assert sampler.items(3, 0) != sampler.items(3, 1)
    stream = iter(training_loop.StepSampler(100, 8, 0, 1, seed=1, mirror=True, start_step=3))
    assert [next(stream) for _ in range(4)] == [sampler.items(3, 0), sampler.items(3, 1),
                                                sampler.items(4, 0), sampler.items(4, 1)]


# ----------------------------------------------------------------------------------------------------------------
# (6) Metrics during training = calc_metrics.py on the same snapshot and seed; (1) grids at psi 0.5.

def _metric_values(path, metric):
    lines = [json.loads(line) for line in open(path)]
    return {k: v for k, v in lines[-1]["results"].items() if k.startswith(metric)}


def test_training_metrics_equal_calc_metrics_and_grids_truncate(tmp_path, data_zip):
    metric = "pix6"
    opts = opts_for(tmp_path, data_zip, cfg="auto", kimg=0.008, snap=100, metrics=metric, seed=3)
    result = training_loop.launch(opts, overrides=MICRO, metric_registry=metric_main)
    during = _metric_values(os.path.join(result.run_dir, f"metric-{metric}.jsonl"), metric)
    assert during and all(np.isfinite(v) for v in during.values() if isinstance(v, float))

    def cli(*extra):
        out = tmp_path / f"calc{len(extra)}.json"
        args = ["--network", result.snapshot, "--data", data_zip, "--mask", "center", "--metrics", metric,
                "--seed", "3", "--device", "cpu", "--out", str(out), *extra]
        run = CliRunner().invoke(calc_metrics.main, args)
        assert run.exit_code == 0, run.output
        return {k: v for k, v in json.load(open(out))["results"][0]["results"].items() if k.startswith(metric)}

    after = cli()
    assert after == during
    # The comparison can fail: dropout off, or truncation as in training, change the numbers.
    assert cli("--no-dropout")[f"{metric}_l1_hole"] != during[f"{metric}_l1_hole"]
    G_ema = checkpoint_G_ema(result.snapshot)
    truncated = metric_main.calc_metric(metric, G=G_ema, data_path=data_zip, mask_spec="center", device="cpu",
                                        seed=3, G_kwargs=dict(dropout=True, truncation_psi=0.5))
    assert truncated.results[f"{metric}_l1_hole"] != during[f"{metric}_l1_hole"]

    # Snapshot grid: G_ema at psi 0.5 (official Gs.run default), const noise, dropout off.
    c = EasyDict(json.load(open(os.path.join(result.run_dir, "training_options.json"))))
    img, mask, z = training_loop.grid_inputs(c, ImageDataset(data_zip), DistInfo())
    grid = np.asarray(Image.open(os.path.join(result.run_dir, "fakes000000.png")))
    for psi, same in ((0.5, True), (1.0, False)):
        with torch.no_grad():
            fakes = G_ema(img, mask, z=z, truncation_psi=psi, noise_mode="const")
        path = tmp_path / f"grid{psi}.png"
        training_loop.save_grid(fakes, c.grid, path)
        assert np.array_equal(np.asarray(Image.open(path)), grid) == same, psi


def checkpoint_G_ema(path):
    data = checkpoint.load_snapshot(path)
    G = Generator(**data["G_kwargs"]).eval().requires_grad_(False)
    G.load_state_dict(data["G_ema"])
    return G
