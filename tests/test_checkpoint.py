"""Snapshot files: atomic writes, weights-only loading and clear errors for missing, truncated and foreign files."""

import os
import pickle

import pytest
import torch

from dnnlib import UserError
from training import checkpoint
from training.checkpoint import CheckpointError, latest_snapshot, load_snapshot, save_snapshot, snapshot_name


def _payload(value=1.0):
    lin = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(lin.weight, value)
    opt = torch.optim.Adam(lin.parameters(), lr=0.002, betas=(0.0, 0.99))
    weights = {k: v.clone() for k, v in lin.state_dict().items()}
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {
        "G_kwargs": {"z_dim": 8, "mapping_kwargs": {"num_layers": 2}},
        "D_kwargs": {"channel_base": 256},
        "G": weights, "G_ema": weights, "D": weights,
        "opt_G": opt.state_dict(),
        "progress": {"cur_nimg": 4000, "cur_tick": 1, "batch_idx": 7},
        "rng": {"torch": torch.get_rng_state(), "numpy": {"state": 2**100}},
    }


def test_roundtrip_weights_only(tmp_path):
    path = tmp_path / snapshot_name(4)
    save_snapshot(path, _payload(0.5))
    assert path.name == "network-snapshot-000004.pt"
    raw = torch.load(path, weights_only=True)  # The format promise: plain torch.load with weights_only works.
    assert raw["format"] == "comodgan-pytorch-snapshot" and raw["version"] == 1
    data = load_snapshot(path)
    assert torch.equal(data["G"]["weight"], torch.full((2, 3), 0.5))
    assert data["progress"]["cur_nimg"] == 4000 and data["rng"]["numpy"]["state"] == 2**100
    assert data["opt_G"]["param_groups"][0]["betas"] == (0.0, 0.99)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_snapshot_gets_the_umask_mode_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        save_snapshot(tmp_path / "a.pt", _payload())
        os.umask(0o077)
        save_snapshot(tmp_path / "b.pt", _payload())
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.pt").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "b.pt").st_mode & 0o777 == 0o600


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_snapshot(tmp_path / "nope.pt")
    good = tmp_path / "good.pt"
    save_snapshot(good, _payload())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_snapshot(truncated)
    foreign_pickle = tmp_path / "foreign.pkl"
    foreign_pickle.write_bytes(pickle.dumps(_Foreign()))
    with pytest.raises(CheckpointError, match="not a comodgan-pytorch snapshot"):
        load_snapshot(foreign_pickle)
    foreign_torch = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, foreign_torch)
    with pytest.raises(CheckpointError, match="format None"):
        load_snapshot(foreign_torch)
    assert issubclass(CheckpointError, UserError)


class _Foreign:
    """A pickled object like a stylegan2-ada .pkl: loading it would need code, which weights_only refuses."""


def test_failed_write_keeps_previous_snapshot(tmp_path, monkeypatch):
    path = tmp_path / snapshot_name(8)
    save_snapshot(path, _payload(1.0))
    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.write(b"partial")
        raise KeyboardInterrupt("killed during the snapshot write")

    monkeypatch.setattr(checkpoint.torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(path, _payload(2.0))
    monkeypatch.undo()
    assert torch.equal(load_snapshot(path)["G"]["weight"], torch.full((2, 3), 1.0))
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_latest_snapshot_picks_highest_kimg(tmp_path):
    assert latest_snapshot(tmp_path) is None
    for kimg in (0, 12, 4):
        save_snapshot(tmp_path / snapshot_name(kimg), _payload())
    (tmp_path / "network-snapshot-999999.pt.tmp").write_bytes(b"")
    assert latest_snapshot(tmp_path) == os.path.join(tmp_path, "network-snapshot-000012.pt")


@pytest.mark.parametrize("content", [b"hello\n", b"e" * 100, b"\x80\x02}q\x00.", b"", b"PK\x03\x04junk",
                                     bytes(range(256))])
def test_any_torch_load_failure_is_a_checkpoint_error(tmp_path, content):
    # A text file made torch's unpickler raise a bare KeyError: 101 ('e') from deep inside; every failure of
    # torch.load must come out as our one-line CheckpointError.
    path = tmp_path / "not-a-snapshot.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not-a-snapshot.pt") as info:
        load_snapshot(path)
    assert "\n" not in str(info.value)


def test_generate_on_a_text_file_says_not_a_snapshot(tmp_path):
    from click.testing import CliRunner

    import generate

    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    result = CliRunner().invoke(generate.main, ["--network", str(text), "--images", str(text), "--masks", "center",
                                                "--outdir", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "notes.txt" in result.stderr and "not a comodgan-pytorch snapshot" in result.stderr
    assert "Traceback" not in result.stderr
