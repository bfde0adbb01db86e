"""--init (a new run from an official pickle, a port .pth or one of our snapshots) and --freeze-d, on CPU with
tiny networks: the weights a run starts from, mismatches named, frozen layers bitwise unchanged (R1 on, one and
two processes), the legacy.py -> train.py --init -> --resume path a user takes, and exact resume."""

import hashlib
import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner
from port_state_dict_maker import make_port_state_dict
from test_training import MICRO, make_zip, opts_for
from test_training_ddp import _free_port
from tf_pickle_maker import write_official_pickle

import train
from dnnlib import UserError
from inference.loading import read_network_file
from legacy import main as legacy_main
from training import checkpoint, freeze_d, training_loop
from training.training_loop import launch

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

RES = 32
# The official static kwargs and the port's shapes that give exactly MICRO's networks (z = w = 16, 16 maps, a
# 2-layer mapping of width 512 as MappingNetwork's default).
MICRO_OFFICIAL = dict(fmap_base=256, fmap_max=16, latent_size=16, dlatent_size=16, mapping_layers=2,
                      mapping_fmaps=512)
# The same for `--cfg tiny` (z = w = 64, 32 maps).
TINY_OFFICIAL = dict(fmap_base=2048, fmap_max=32, latent_size=64, dlatent_size=64, mapping_layers=2,
                     mapping_fmaps=512)


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory):
    return make_zip(tmp_path_factory.mktemp("data") / "tiny.zip", res=RES)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, data_zip):
    """A synthetic official pickle, a synthetic port .pth and one of our training snapshots, all MICRO-shaped."""
    folder = tmp_path_factory.mktemp("sources")
    pkl = folder / "co-mod-gan-micro.pkl"
    write_official_pickle(pkl, RES, seed=1, **MICRO_OFFICIAL)
    pth = folder / "micro_net_G_ema.pth"
    torch.save(make_port_state_dict(RES, seed=2, **MICRO_OFFICIAL), pth)
    run = launch(opts_for(folder, data_zip, "pretrain", kimg=0.004, seed=5), overrides=MICRO)
    return {"pkl": str(pkl), "pth": str(pth), "pt": run.snapshot}


def _first_step_state(monkeypatch):
    """Record G, G_ema, D, the optimizers' state and cur_nimg when the first training step starts."""
    seen = {}
    real_step = training_loop.training_step

    def recording(c, state, *args, **kwargs):
        if not seen:
            seen.update({key: {k: v.detach().clone() for k, v in state[key].state_dict().items()}
                         for key in ("G", "G_ema", "D")})
            seen.update(cur_nimg=state.cur_nimg, opt_G=dict(state.opt_G.state), opt_D=dict(state.opt_D.state))
        return real_step(c, state, *args, **kwargs)

    monkeypatch.setattr(training_loop, "training_step", recording)
    return seen


def _assert_same(actual, expected, what):
    assert set(actual) == set(expected), what
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), f"{what}.{name}"


@pytest.mark.parametrize("kind", ["pkl", "pth", "pt"])
def test_init_starts_at_kimg_0_from_the_files_weights(tmp_path, data_zip, sources, monkeypatch, kind):
    path = sources[kind]
    seen = _first_step_state(monkeypatch)
    result = launch(opts_for(tmp_path, data_zip, kimg=0.004, init=path), overrides=MICRO,
                    network_reader=read_network_file)
    expected = read_network_file(path)
    assert seen["cur_nimg"] == 0 and seen["opt_G"] == {} and seen["opt_D"] == {}
    if kind == "pth":  # G_ema only: the trained G starts from it, D from scratch
        _assert_same(seen["G"], expected["G_ema"], "G")
        assert any(not torch.equal(seen["G"][k], v) for k, v in read_network_file(sources["pkl"])["G"].items())
    else:
        _assert_same(seen["G"], expected["G"], "G")
        _assert_same(seen["D"], expected["D"], "D")
        assert any(not torch.equal(expected["G"][k], v) for k, v in expected["G_ema"].items())  # G != G_ema
    _assert_same(seen["G_ema"], expected["G_ema"], "G_ema")
    assert torch.equal(seen["G_ema"]["mapping.w_avg"], expected["G_ema"]["mapping.w_avg"])
    log = open(os.path.join(result.run_dir, "log.txt")).read()
    assert f"starting from --init {os.path.abspath(path)}" in log
    assert ("D starts from scratch" in log) == (kind == "pth")
    # The source is recorded in training_options.json and in every snapshot; the EMA ramp-up is off.
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    options = json.load(open(os.path.join(result.run_dir, "training_options.json")))
    snap = checkpoint.load_snapshot(result.snapshot)
    for recorded in (options, snap["training_options"]):
        assert recorded["init_source"]["sha256"] == sha and recorded["init_source"]["path"] == os.path.abspath(path)
        assert recorded["ema_rampup"] is None and recorded["init"] == path
    assert snap["progress"]["cur_nimg"] == 4 and os.path.basename(result.run_dir).startswith("00000-")


def test_mismatches_and_conflicts_are_named(tmp_path, data_zip, sources):
    wide = tmp_path / "wide.pkl"
    write_official_pickle(wide, RES, **dict(MICRO_OFFICIAL, latent_size=32, fmap_max=32))
    with pytest.raises(UserError, match=r"--init .*wide\.pkl: the file's generator does not fit this run's: "
                                        r"z_dim 32 \(file\) vs 16 \(run\); .*feature maps"):
        launch(opts_for(tmp_path, data_zip, init=str(wide)), overrides=MICRO, network_reader=read_network_file)
    big = tmp_path / "big.pkl"
    write_official_pickle(big, 64, **MICRO_OFFICIAL)
    with pytest.raises(UserError, match=r"resolution 64 \(file\) vs 32 \(run\)"):
        launch(opts_for(tmp_path, data_zip, init=str(big)), overrides=MICRO, network_reader=read_network_file)
    with pytest.raises(UserError, match=r"style_mod True \(file\) vs False \(run\)"):
        launch(opts_for(tmp_path, data_zip, init=sources["pkl"], style_mod=False), overrides=MICRO,
               network_reader=read_network_file)
    with pytest.raises(UserError, match=r"--init .* with --resume latest: .*pass one"):
        launch(opts_for(tmp_path, data_zip, init=sources["pkl"], resume="latest"), overrides=MICRO)
    with pytest.raises(UserError, match=r"--init .*nothing\.pt: file not found"):
        launch(opts_for(tmp_path, data_zip, init=str(tmp_path / "nothing.pt")), overrides=MICRO,
               network_reader=read_network_file)
    (tmp_path / "text.pt").write_text("not a network")
    with pytest.raises(UserError, match=r"--init: .*text\.pt: .*not a comodgan-pytorch snapshot"):
        launch(opts_for(tmp_path, data_zip, init=str(tmp_path / "text.pt")), overrides=MICRO,
               network_reader=read_network_file)
    with pytest.raises(UserError, match=r"--freeze-d 11: D at 32x32 has 10 layers"):
        launch(opts_for(tmp_path, data_zip, freeze_d=11), overrides=MICRO)
    assert not os.path.exists(tmp_path / "runs")  # every error before a run directory


def test_layers_are_counted_as_stylegan2_ada_counts_them():
    from training.networks import Discriminator

    D = Discriminator(img_resolution=32, channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None)
    assert freeze_d.layer_names(D) == ["b32.fromrgb", "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0",
                                       "b16.conv1", "b16.skip", "b8.conv0", "b8.conv1", "b8.skip"]
    assert freeze_d.layer_count(dict(img_resolution=512)) == 22
    frozen = freeze_d.freeze(D, 5)
    names = {n for n, p in D.named_parameters() if not p.requires_grad}
    assert names == {"b32.fromrgb.weight", "b32.fromrgb.bias", "b32.conv0.weight", "b32.conv0.bias",
                     "b32.conv1.weight", "b32.conv1.bias", "b32.skip.weight", "b16.conv0.weight", "b16.conv0.bias"}
    assert len(frozen) == len(names)


def _check_frozen(before, after, n):
    frozen = tuple(f"{name}." for name in freeze_d.layer_names(_micro_D())[:n])
    params = [name for name in before if not name.endswith("resample_filter")]
    assert any(name.startswith(frozen) for name in params) and not all(name.startswith(frozen) for name in params)
    for name in params:
        if name.startswith(frozen):
            assert torch.equal(after[name], before[name]), f"frozen D.{name} changed"
        else:
            assert not torch.equal(after[name], before[name]), f"trainable D.{name} did not change"


def _micro_D():
    from training.networks import Discriminator

    return Discriminator(img_resolution=RES, **MICRO["D_kwargs"])


def test_freeze_d_keeps_the_first_layers_bitwise_and_out_of_the_optimizer(tmp_path, data_zip, monkeypatch):
    seen = _first_step_state(monkeypatch)
    result = launch(opts_for(tmp_path, data_zip, freeze_d=4, kimg=0.012), overrides=MICRO)  # R1 every step
    records = [json.loads(line) for line in open(os.path.join(result.run_dir, "stats.jsonl"))]
    assert all(r["r1_penalty"] > 0 for r in records)
    _check_frozen(seen["D"], result.state.D.state_dict(), 4)
    held = {id(p) for group in result.state.opt_D.param_groups for p in group["params"]}
    assert not held & {id(p) for p in result.state.frozen} and len(result.state.frozen) == 7
    assert len(held) == sum(1 for p in result.state.D.parameters()) - 7
    assert all(p.grad is None for p in result.state.frozen)  # no gradient was ever computed for them
    assert all(p.grad is not None for p in result.state.D.parameters() if id(p) in held)
    # A resume must freeze the same layers (D's optimizer state holds only the others).
    with pytest.raises(UserError, match=r"--freeze-d 2: the run in --resume .* was trained with --freeze-d 4"):
        launch(opts_for(tmp_path, data_zip, freeze_d=2, kimg=0.016, resume="latest"), overrides=MICRO)


def _init_worker(rank, world_size, port, opts, out_dir):
    # The environment torchrun sets up for each process (as in test_training_ddp), with the reader train.py passes.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = launch(opts, overrides=MICRO, network_reader=read_network_file)
    torch.save({"D": result.state.D.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))


def test_freeze_d_from_init_under_two_processes(tmp_path, data_zip, sources):
    opts = opts_for(tmp_path, data_zip, kimg=0.008, init=sources["pt"], freeze_d=3)
    opts["batch_gpu"] = None  # batch 4 = 2 ranks x 2, R1 every step
    mp.spawn(_init_worker, args=(2, _free_port(), opts, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    _assert_same(ranks[1]["D"], ranks[0]["D"], "D on rank 1")
    _check_frozen(checkpoint.load_snapshot(sources["pt"])["D"], ranks[0]["D"], 3)


def test_legacy_then_train_init_then_resume_from_the_command_line(tmp_path):
    pkl = tmp_path / "co-mod-gan-tiny-000000.pkl"
    write_official_pickle(pkl, RES, **TINY_OFFICIAL)
    converted = tmp_path / "tiny.pt"
    result = CliRunner().invoke(legacy_main, ["--source", str(pkl), "--dest", str(converted)])
    assert result.exit_code == 0, result.output
    data = make_zip(tmp_path / "mine.zip", count=4, res=RES)
    args = ["--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "tiny", "--mask", "center", "--batch",
            "4", "--tick-kimg", "0.004", "--snap", "1", "--workers", "0", "--device", "cpu", "--freeze-d", "2"]
    result = CliRunner().invoke(train.main, args + ["--init", str(converted), "--kimg", "0.004"])
    assert result.exit_code == 0, result.output
    assert "starting from --init" in result.output and "D from the file" in result.output
    run_dir = str(tmp_path / "runs" / os.listdir(tmp_path / "runs")[0])
    result = CliRunner().invoke(train.main, args + ["--resume", "latest", "--kimg", "0.008"])
    assert result.exit_code == 0, result.output
    assert f"resuming from {run_dir}" in result.output
    snap = checkpoint.load_snapshot(checkpoint.latest_snapshot(run_dir))
    assert snap["progress"]["cur_nimg"] == 8
    assert snap["training_options"]["init_source"]["path"] == str(converted)
    assert snap["training_options"]["ema_rampup"] is None  # the resumed run keeps what --init decided
    result = CliRunner().invoke(train.main, args + ["--init", str(converted), "--resume", "latest"])
    assert result.exit_code == 2 and "with --resume latest" in result.stderr


def test_run_started_with_init_resumes_exactly(tmp_path, data_zip, sources):
    def opts(outdir, **kw):
        return opts_for(tmp_path, data_zip, outdir, init=sources["pkl"], freeze_d=2, **kw)

    full = launch(opts("full"), overrides=MICRO, network_reader=read_network_file)
    first = launch(opts("split", kimg=0.008), overrides=MICRO, network_reader=read_network_file)
    resumed_opts = opts_for(tmp_path, data_zip, "split", freeze_d=2, resume="latest")
    resumed = launch(resumed_opts, overrides=MICRO)  # no reader needed: the weights come from the snapshot
    assert resumed.run_dir == first.run_dir
    a, b = checkpoint.load_snapshot(full.snapshot), checkpoint.load_snapshot(resumed.snapshot)
    assert b["progress"] == a["progress"] and a["progress"]["cur_nimg"] == 12
    assert b["training_options"]["init_source"] == a["training_options"]["init_source"]
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(b[key][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")
    torch.testing.assert_close(b["opt_D"]["state"], a["opt_D"]["state"], rtol=1e-5, atol=1e-6)
    start = read_network_file(sources["pkl"])["G_ema"]  # and training moved G_ema off the file's weights
    assert any(not torch.allclose(a["G_ema"][k], v) for k, v in start.items() if k.endswith("weight"))


def test_transfer_benchmark_data_and_scores(tmp_path, sources):
    from benchmarks import few_images_transfer as transfer
    from data.dataset import ImageDataset

    ds = ImageDataset(transfer.write_face_zip(str(tmp_path / "ten.zip"), transfer.SPLITS["finetune"]))
    assert len(ds) == 10 and ds.resolution == RES and ds[0].shape == (3, RES, RES)
    faces = transfer.heldout_faces()
    assert faces.shape == (20, 3, RES, RES) and faces.dtype.name == "uint8"
    scores = transfer.evaluate(sources["pt"], faces[:4], seeds=[0, 1], mask_seed=0)
    assert set(scores) == {"center", "free-form"}
    for values in scores.values():
        assert 0 < values["l1_hole"] < 1 and 0 < values["ssim"] < 1 and values["psnr"] > 0
        assert values["diversity"] > 0  # two latent seeds, random noise: the fills differ
    row = dict(arm="init", kimg=4, minutes=1.5, scores=scores)
    assert transfer.table([row], None).splitlines()[2].startswith("| init | 4 | 1.5 | ")
