"""``trainers.loop.Dist`` over ``torch.distributed``: whoever launched the processes (Ray Train,
``torch.multiprocessing``, torchrun) has set up the default process group; nothing here knows which."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class TorchDist:
    """Rank and world size of the default process group (gloo on CPU, NCCL on CUDA); sums over it; DDP."""

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def wrap_model(self, model: nn.Module) -> nn.Module:
        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
