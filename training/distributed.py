"""torch.distributed set-up from torchrun's environment (nccl on CUDA, gloo on CPU) and the collectives we use."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dnnlib import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank among world_size processes, and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def is_distributed(self):
        return self.world_size > 1


def env_world_size():
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device):
    """Join the process group described by torchrun's env vars (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    `device` is the user's choice ('auto', 'cpu', 'cuda' or a torch.device); with CUDA each process takes
    cuda:LOCAL_RANK. A single process without torchrun needs no process group.
    """
    world_size = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        device = torch.device("cuda", local_rank if device.index is None or world_size > 1 else device.index)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean_(tensor):
    """In-place mean over ranks (no-op for one process)."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(dist.get_world_size())
    return tensor


def all_reduce_sum_(tensor):
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_module_(module, src=0):
    """Copy parameters and buffers of rank `src` to every rank, so all start from the same weights."""
    if not _active():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def average_float_buffers_(module):
    """Average floating-point buffers (e.g. the tracked w average) so that ranks do not drift apart."""
    if not _active():
        return
    buffers = [b for b in module.buffers() if torch.is_floating_point(b)]
    if buffers:
        flat = torch.cat([b.detach().flatten() for b in buffers])
        all_reduce_mean_(flat)
        offset = 0
        for b in buffers:
            b.data.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def barrier():
    if _active():
        dist.barrier()


def broadcast_object(obj, src=0):
    """Send a picklable object (a small config or a decision) from `src` to every rank."""
    if not _active():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def check_consistency(module, name):
    """Raise if the parameters of `module` differ between ranks (a DDP bug would show here first)."""
    if not _active():
        return
    for pname, tensor in module.named_parameters():
        ref = tensor.detach().clone()
        dist.broadcast(ref, src=0)
        if not torch.equal(ref, tensor.detach()):
            raise RuntimeError(f"{name}.{pname} differs between rank 0 and rank {dist.get_rank()}")
