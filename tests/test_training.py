"""End to end on a tiny zip made here: CPU steps with R1 every step, snapshots, grids, stats, exact resume,
divergence and input errors before training."""

import io
import json
import math
import os
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import train
from inference.loading import load_generator
from metrics import metric_main
from training import checkpoint, training_loop
from training.loss import CoModGANLoss
from training.training_loop import TrainingDiverged, launch

# Very small networks: the whole file must stay well under a minute on two busy cores.
MICRO = dict(
    G_kwargs=dict(z_dim=16, w_dim=16, img_channels=3, channel_base=256, channel_max=16, num_fp16_res=0,
                  conv_clamp=None, mapping_kwargs=dict(num_layers=2)),
    D_kwargs=dict(img_channels=3, channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None),
    d_reg_interval=1,  # regularisation every step
    grid=[2, 1],
)


def make_zip(path, count=6, res=32, seed=0):
    """A stylegan2-ada style zip of random RGB PNGs."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(count):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(buf, format="png")
            zf.writestr(f"00000/img{i:08d}.png", buf.getvalue())
    return str(path)


def opts_for(tmp_path, data, outdir="runs", **kw):
    opts = dict(outdir=str(tmp_path / outdir), data=data, mask="center", cfg="tiny", batch=4, batch_gpu=2,
                kimg=0.012, tick_kimg=0.004, snap=1, workers=0, device="cpu", seed=3, metrics="none")
    opts.update(kw)
    return opts


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory):
    return make_zip(tmp_path_factory.mktemp("data") / "tiny.zip")


def _params(snapshot):
    data = checkpoint.load_snapshot(snapshot)
    return data


def test_train_resume_reproduces_uninterrupted_run(tmp_path, data_zip):
    full = launch(opts_for(tmp_path, data_zip, "full"), overrides=MICRO)
    run_dir = full.run_dir
    assert os.path.basename(run_dir).startswith("00000-tiny-tiny-center-batch4")
    for name in ("training_options.json", "log.txt", "stats.jsonl", "reals.png", "fakes_init.png",
                 "fakes000000.png"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    records = [json.loads(line) for line in open(os.path.join(run_dir, "stats.jsonl"))]
    assert [r["kimg"] for r in records] == [0.004, 0.008, 0.012]
    for r in records:
        assert all(math.isfinite(r[k]) for k in ("loss_G", "loss_D", "r1_penalty")), r
    assert Image.open(os.path.join(run_dir, "fakes000000.png")).size == (64, 32)
    options = json.load(open(os.path.join(run_dir, "training_options.json")))
    assert options["betas"] == [0.0, 0.99] and options["batch"] == 4 and options["num_rounds"] == 2

    raw = torch.load(full.snapshot, weights_only=True)
    assert raw["progress"]["cur_nimg"] == 12 and raw["progress"]["step"] == 3
    G = load_generator(full.snapshot, "cpu")
    assert not G.training and not any(p.requires_grad for p in G.parameters())

    # Interrupted after 2 steps, then `--resume latest` with the full length: same counters, same weights.
    first = launch(opts_for(tmp_path, data_zip, "split", kimg=0.008), overrides=MICRO)
    with open(os.path.join(first.run_dir, "stats.jsonl"), "a") as f:  # a tick logged after the last snapshot
        f.write(json.dumps({"tick": 2, "kimg": 0.01}) + "\n")
    resumed = launch(opts_for(tmp_path, data_zip, "split", resume="latest"), overrides=MICRO)
    assert resumed.run_dir == first.run_dir
    assert "resuming from" in open(os.path.join(first.run_dir, "log.txt")).read()
    records = [json.loads(line) for line in open(os.path.join(first.run_dir, "stats.jsonl"))]
    assert [r["kimg"] for r in records] == [0.004, 0.008, 0.012]
    times = [r["time_s"] for r in records]  # the training time goes on from the snapshot's, not from 0
    assert times == sorted(times) and times[2] > times[1] > 0, times
    a, b = _params(full.snapshot), _params(resumed.snapshot)
    assert b["progress"] == a["progress"]
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(b[key][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")
    torch.testing.assert_close(b["opt_D"]["state"], a["opt_D"]["state"], rtol=1e-5, atol=1e-6)
    # Sanity: training changed the weights (the comparison above is not trivially equal).
    fresh = launch(opts_for(tmp_path, data_zip, "other", kimg=0.004, seed=4), overrides=MICRO)
    other = _params(fresh.snapshot)["G"]
    assert any(not torch.allclose(other[k], v) for k, v in a["G"].items() if v.is_floating_point())


def test_resume_from_path_and_metrics_hook(tmp_path, data_zip):
    first = launch(opts_for(tmp_path, data_zip, kimg=0.004, metrics="pix2"), overrides=MICRO,
                   metric_registry=metric_main)
    lines = open(os.path.join(first.run_dir, "metric-pix2.jsonl")).read().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["snapshot_pkl"] == "network-snapshot-000000.pt"
    # An explicit PATH starts a new run directory; at or past --kimg there is nothing left to do.
    again = launch(opts_for(tmp_path, data_zip, kimg=0.004, resume=first.snapshot), overrides=MICRO)
    assert os.path.basename(again.run_dir).startswith("00001-") and again.state.cur_nimg == 4
    assert "nothing to do" in open(os.path.join(again.run_dir, "log.txt")).read()


def test_resume_keeps_adam_moments_but_takes_this_runs_lr(tmp_path, data_zip):
    # torch's Adam.load_state_dict brings back the saved lr and betas too; a resume with a new --lr must use it.
    first = launch(opts_for(tmp_path, data_zip, kimg=0.004, lr=0.002), overrides=MICRO)
    again = launch(opts_for(tmp_path, data_zip, kimg=0.008, lr=0.0005, resume=first.snapshot), overrides=MICRO)
    saved = checkpoint.load_snapshot(first.snapshot)
    for key, interval in (("opt_G", 4), ("opt_D", MICRO["d_reg_interval"])):
        ratio = interval / (interval + 1)  # lazy regularisation's rescaling (_adam)
        group = again.state[key].param_groups[0]
        assert group["lr"] == pytest.approx(0.0005 * ratio), key
        assert group["betas"] == pytest.approx((0.0, 0.99 ** ratio)), key
        assert saved[key]["param_groups"][0]["lr"] == pytest.approx(0.002 * ratio), key
        assert min(int(s["step"]) for s in again.state[key].state.values()) > 0, key  # moments carried on


def test_resume_from_weights_of_other_networks_is_a_named_error(tmp_path, data_zip):
    first = launch(opts_for(tmp_path, data_zip, kimg=0.004), overrides=MICRO)
    data = checkpoint.load_snapshot(first.snapshot)
    name = next(iter(data["G"]))
    data["G"][name] = data["G"][name][..., :1]  # same kwargs, a tensor of another shape
    bad = str(tmp_path / "bad.pt")
    checkpoint.save_snapshot(bad, data)
    with pytest.raises(checkpoint.CheckpointError, match=rf"--resume {bad}: its weights do not fit .*size mismatch"):
        launch(opts_for(tmp_path, data_zip, kimg=0.008, resume=bad), overrides=MICRO)


def test_resume_auto_starts_fresh_and_latest_needs_a_snapshot(tmp_path, data_zip):
    runner = CliRunner()
    args = ["--outdir", str(tmp_path / "empty"), "--data", data_zip, "--cfg", "tiny", "--device", "cpu",
            "--resume", "latest"]
    result = runner.invoke(train.main, args)
    assert result.exit_code == 2 and "--resume latest: no snapshot" in result.stderr
    result = runner.invoke(train.main, args[:-1] + ["auto", "--dry-run"])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.stdout)
    assert cfg["resume_path"] is None and cfg["resolution"] == 32 and cfg["gamma"] == 0.2
    assert not os.path.exists(tmp_path / "empty")  # a dry run writes nothing


@pytest.mark.parametrize("case", ["missing", "empty", "resolution", "mask", "metric", "batch", "outdir", "res48",
                                  "nan"])
def test_errors_before_training(tmp_path, data_zip, case):
    data, extra = data_zip, []
    if case == "missing":
        data = str(tmp_path / "nope.zip")
    elif case == "empty":
        data = str(tmp_path / "empty.zip")
        zipfile.ZipFile(data, "w").close()
    elif case == "resolution":
        extra = ["--cfg", "celebahq256"]
    elif case == "mask":
        extra = ["--mask", "blobs"]
    elif case == "metric":
        extra = ["--metrics", "fidd10k"]
    elif case == "batch":
        extra = ["--batch", "6", "--batch-gpu", "4"]
    elif case == "res48":  # a size no network trains at; --cfg auto takes the dataset's resolution
        data = make_zip(tmp_path / "size48.zip", count=2, res=48)
        extra = ["--cfg", "auto", "--dry-run"]
    elif case == "nan":
        extra = ["--lr", "nan"]
    outdir = tmp_path / "runs"
    if case == "outdir":
        outdir.write_text("a file where the runs would go")
    args = ["--outdir", str(outdir), "--data", data, "--device", "cpu", "--cfg", "tiny"] + extra
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 2, result.output
    message = result.stderr
    assert message.startswith("error: " if case != "nan" else "Usage: ") and "Traceback" not in message
    expected = {"missing": "nope.zip", "empty": "empty.zip", "resolution": "--cfg celebahq256",
                "mask": "blobs", "metric": "fidd10k", "batch": "--batch 6", "outdir": "is a file, not a folder",
                "res48": "size48.zip: images are 48x48", "nan": "'nan' is not a finite number"}[case]
    assert expected in message
    assert case == "outdir" or not outdir.exists() or not os.listdir(outdir)


def test_divergence_names_phase_and_last_snapshot(tmp_path, data_zip, monkeypatch):
    calls = {"n": 0}
    real_d_main = CoModGANLoss.d_main

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        stats = real_d_main(self, *args, **kwargs)
        if calls["n"] > 2:  # third round = second step: after the tick-0 snapshot
            stats["loss_D"] = stats["loss_D"] * float("nan")
        return stats

    monkeypatch.setattr(CoModGANLoss, "d_main", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss in phase Dmain .*network-snapshot-000000\.pt"):
        launch(opts_for(tmp_path, data_zip), overrides=MICRO)


def test_step_stream_is_independent_of_world_size():
    one = training_loop.StepSampler(100, 8, rank=0, world_size=1, seed=1, mirror=True)
    halves = [training_loop.StepSampler(100, 8, rank=r, world_size=2, seed=1, mirror=True) for r in (0, 1)]
    assert one.items(5) == halves[0].items(5) + halves[1].items(5)
    assert one.items(5) != one.items(6)
    flips = [f for step in range(20) for _i, f, _s in one.items(step)]
    assert 0.3 < np.mean(flips) < 0.7
    no_mirror = training_loop.StepSampler(100, 8, rank=0, world_size=1, seed=1, mirror=False)
    assert not any(f for _i, f, _s in no_mirror.items(5))


def test_kill_during_snapshot_write_then_resume_auto(tmp_path, data_zip, monkeypatch):
    real_save = checkpoint.torch.save
    calls = {"n": 0}

    def dies_on_second_snapshot(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"half a snapshot")
            raise KeyboardInterrupt("killed while writing")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", dies_on_second_snapshot)
    with pytest.raises(KeyboardInterrupt):
        launch(opts_for(tmp_path, data_zip), overrides=MICRO)
    monkeypatch.undo()
    run_dir = os.path.join(tmp_path, "runs", os.listdir(tmp_path / "runs")[0])
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]
    assert checkpoint.load_snapshot(checkpoint.latest_snapshot(run_dir))["progress"]["cur_nimg"] == 4
    resumed = launch(opts_for(tmp_path, data_zip, resume="auto"), overrides=MICRO)
    assert resumed.run_dir == run_dir and resumed.state.cur_nimg == 12
