"""The training configuration: one frozen TrainingConfig, every option in --dry-run's print-out, and the record
in snapshots and training_options.json, whose keys and resume behaviour a fixture snapshot pins.

tests/fixtures/nano-init-ada-snapshot.pt and nano-init-ada-training_options.json were written at commit
2a16278 (training options held in an EasyDict) with `launch(opts_for(root, make_zip(root / "tiny.zip"), "runs",
kimg=0.004, init=PKL, freeze_d=2, **ADA), overrides=NANO, network_reader=read_network_file)`, where PKL is
`write_official_pickle(PKL, 32, seed=1, **NANO_OFFICIAL)`: one step of batch 4 from an official pickle, ADA's
sums half collected, two D layers frozen; 240 KB.
"""

import dataclasses
import json
import os

import pytest
import torch
from click.testing import CliRunner
from test_training import make_zip, opts_for
from tf_pickle_maker import write_official_pickle

import train
from dnnlib.provenance import file_sha256
from inference.loading import load_generator, read_network_file
from training import checkpoint, config, training_loop
from training.distributed import DistInfo
from training.options import RunFacts, TrainingConfig, field_names, options_record
from training.training_loop import launch

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
OLD_SNAPSHOT = os.path.join(FIXTURES, "nano-init-ada-snapshot.pt")
OLD_OPTIONS = os.path.join(FIXTURES, "nano-init-ada-training_options.json")

# Networks of a few thousand weights (4 feature maps, z = w = 4), so that the fixture stays small.
NANO = dict(
    G_kwargs=dict(z_dim=4, w_dim=4, img_channels=3, channel_base=64, channel_max=4, num_fp16_res=0,
                  conv_clamp=None, mapping_kwargs=dict(num_layers=2, layer_features=4)),
    D_kwargs=dict(img_channels=3, channel_base=64, channel_max=4, num_fp16_res=0, conv_clamp=None),
    d_reg_interval=1, grid=[2, 1])
NANO_OFFICIAL = dict(fmap_base=64, fmap_max=4, latent_size=4, dlatent_size=4, mapping_layers=2, mapping_fmaps=4)
ADA = dict(aug="ada", aug_p=0.25, ada_target=0.0, ada_kimg=0.1)
RUN_FACTS = {f.name for f in dataclasses.fields(RunFacts)}


def _opts(**kw):
    return dict(dict(cfg="tiny", data="x.zip", mask="center", outdir="runs"), **kw)


def test_config_is_frozen_and_built_complete():
    c = config.build_config(_opts(batch=8, batch_gpu=2, aug="ada", init="release.pkl"), world_size=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.batch = 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.num_rounds = 1
    with pytest.raises(AttributeError):  # no list to append to either
        c.metrics.append("fid50k")
    # Derived values are there from the start, none added later.
    assert (c.resolution, c.world_size, c.batch_gpu, c.num_rounds) == (32, 2, 2, 2)
    assert c.G_kwargs["img_resolution"] == c.D_kwargs["img_resolution"] == 32
    assert (c.G_kwargs["style_mod"], c.G_kwargs["cond_mod"]) == (True, True)
    assert (c.init, c.ema_rampup, c.ada_kimg) == ("release.pkl", None, 100.0)  # --init: constant EMA, faster ADA
    # Split that does not add up is refused by the object itself, not only by the checks in build_config.
    with pytest.raises(ValueError, match="num_rounds"):
        dataclasses.replace(c, batch=12)
    with pytest.raises(ValueError, match="not TrainingConfig fields"):
        config.build_config(_opts(), overrides=dict(G_kwrags={}))


def test_building_the_training_state_leaves_the_config_as_built():
    # The network kwargs are dicts: nothing that reads them (networks, Freeze-D, the loop) may change them.
    c = config.build_config(_opts(freeze_d=2, aug="ada", fp32=True), overrides=NANO)
    before = options_record(c)
    config.validate_inputs(c)
    state = training_loop.build_state(c, DistInfo())
    training_loop.make_phases(c, state)
    assert options_record(c) == before and c.G_kwargs["num_fp16_res"] == 0 and len(state.frozen) > 0


def test_every_train_option_is_a_config_field():
    # train.py options that are not fields: --device (a run fact), --dry-run, and the modulation switches, which
    # are Generator arguments (G_kwargs).
    elsewhere = {"device", "dry_run", "style_mod", "cond_mod"}
    names = {p.name for p in train.main.params} - elsewhere
    assert names and names <= set(field_names()), names - set(field_names())


def test_dry_run_prints_every_option(tmp_path):
    data = make_zip(tmp_path / "tiny.zip", count=2)
    args = ["--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "tiny", "--device", "cpu", "--batch", "8",
            "--batch-gpu", "4", "--no-cond-mod", "--dry-run"]
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == set(field_names()) | RUN_FACTS
    assert (printed["num_rounds"], printed["resolution"], printed["device"], printed["resume_path"]) == \
        (2, 32, "cpu", None)
    assert printed["G_kwargs"]["cond_mod"] is False and printed["run_dir"].startswith(str(tmp_path / "runs"))
    built = config.build_config(dict(cfg="tiny", data=data, mask="free-form", outdir=str(tmp_path / "runs"),
                                     batch=8, batch_gpu=4, cond_mod=False), data_resolution=32)
    assert {k: v for k, v in printed.items() if k not in RUN_FACTS} == options_record(built)
    assert not os.path.exists(tmp_path / "runs")  # nothing written


def test_record_is_plain_json_with_every_field():
    c = TrainingConfig()
    record = options_record(c, RunFacts(device="cpu", run_dir="runs/00000-x"))
    assert record["betas"] == [0.0, 0.99] and record["grid"] == [8, 4] and record["metrics"] == []
    assert json.loads(json.dumps(record)) == record and set(record) == set(field_names()) | RUN_FACTS


def _keys(record):
    """The key paths of a training_options record (nested dicts included)."""
    out = set()
    for key, value in record.items():
        out.add(key)
        if isinstance(value, dict):
            out |= {f"{key}.{sub}" for sub in _keys(value)}
    return out


def test_old_snapshot_loads_resumes_and_matches_an_uninterrupted_run(tmp_path):
    old = checkpoint.load_snapshot(OLD_SNAPSHOT)  # weights_only
    assert old["progress"]["cur_nimg"] == 4 and old["training_options"]["init_source"]["format"].startswith("official")
    load_generator(OLD_SNAPSHOT, "cpu")
    # The inputs the fixture was made from, again: same images, same pickle (its sha256 is in the fixture).
    data = make_zip(tmp_path / "tiny.zip")
    pkl = tmp_path / "co-mod-gan-nano.pkl"
    write_official_pickle(pkl, 32, seed=1, **NANO_OFFICIAL)
    source = old["training_options"]["init_source"]
    assert file_sha256(pkl) == source["sha256"]

    full = launch(opts_for(tmp_path, data, "full", kimg=0.008, init=str(pkl), freeze_d=2, **ADA), overrides=NANO,
                  network_reader=read_network_file)
    # --resume PATH of the old snapshot: no --init (it comes from the snapshot's init_source), no reader.
    resumed = launch(opts_for(tmp_path, data, "resumed", kimg=0.008, resume=OLD_SNAPSHOT, freeze_d=2, **ADA),
                     overrides=NANO)
    a, b = checkpoint.load_snapshot(full.snapshot), checkpoint.load_snapshot(resumed.snapshot)
    assert b["progress"] == a["progress"] and a["progress"]["cur_nimg"] == 8
    assert b["training_options"]["init_source"] == source  # inherited, as the EMA without ramp-up
    assert a["training_options"]["ema_rampup"] is None and b["training_options"]["ema_rampup"] is None
    assert b["augment"] == a["augment"] and a["augment"]["p"] == 0.25  # ADA's half-collected sums carried on
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(b[key][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")
    torch.testing.assert_close(b["opt_D"]["state"], a["opt_D"]["state"], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(old["G"][k], v) for k, v in b["G"].items())  # the resumed step trained

    # The record keeps the keys the old one had, in the file and in the snapshot alike.
    expected = _keys(json.load(open(OLD_OPTIONS)))
    for run in (full, resumed):
        written = json.load(open(os.path.join(run.run_dir, "training_options.json")))
        assert _keys(written) == expected
    assert _keys(b["training_options"]) == expected
    assert b["training_options"]["resume_path"] == OLD_SNAPSHOT
