"""Two CPU processes over gloo (as torchrun would start them): parameters stay identical on every rank and only
rank 0 writes files."""

import os
import socket

import torch
import torch.multiprocessing as mp

from training import checkpoint


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, opts, overrides, out_dir):
    # The same environment torchrun sets up for each process.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from training.training_loop import launch

    result = launch(opts, overrides=overrides)
    state = result.state
    torch.save({"G": state.G.state_dict(), "D": state.D.state_dict(), "G_ema": state.G_ema.state_dict(),
                "cur_nimg": state.cur_nimg, "snapshot": result.snapshot,
                "augment_p": None if state.augment_pipe is None else state.augment_pipe.p},
               os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_process_gloo_keeps_ranks_identical(tmp_path):
    from test_training import MICRO, make_zip, opts_for

    data = make_zip(tmp_path / "tiny.zip")
    opts = opts_for(tmp_path, data, kimg=0.008)  # batch 4 = 2 ranks x 2, two steps, R1 every step
    opts["batch_gpu"] = None
    mp.spawn(_worker, args=(2, _free_port(), opts, MICRO, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["cur_nimg"] == ranks[1]["cur_nimg"] == 8
    for key in ("G", "D", "G_ema"):
        for name, tensor in ranks[0][key].items():
            assert torch.equal(tensor, ranks[1][key][name]), f"{key}.{name} differs between ranks"
    snapshot = checkpoint.load_snapshot(ranks[0]["snapshot"])
    for name, tensor in snapshot["G"].items():
        assert torch.equal(tensor, ranks[0]["G"][name])
    assert snapshot["training_options"]["world_size"] == 2 and snapshot["training_options"]["batch_gpu"] == 2
    # Only rank 0 wrote: one run directory.
    assert len(os.listdir(tmp_path / "runs")) == 1


def test_two_process_ada_moves_p_alike_on_every_rank(tmp_path):
    # Each rank augments its own half of the batch with its own draws; the sign statistics are all-reduced, so
    # the update after step 4 gives one p everywhere, and the weights stay identical.
    from test_training import MICRO, make_zip, opts_for

    data = make_zip(tmp_path / "tiny.zip")
    opts = opts_for(tmp_path, data, kimg=0.016, tick_kimg=0.016, aug="ada", aug_p=0.5, ada_target=0.0,
                    ada_kimg=0.1)
    opts["batch_gpu"] = None
    mp.spawn(_worker, args=(2, _free_port(), opts, MICRO, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["augment_p"] == ranks[1]["augment_p"] != 0.5
    for name, tensor in ranks[0]["D"].items():
        assert torch.equal(tensor, ranks[1]["D"][name]), f"D.{name} differs between ranks"
