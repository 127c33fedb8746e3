"""Data-parallel training across processes with torch.distributed, as launched by torchrun.

Every process (rank) holds the whole dataset and the same VAE. Each global minibatch of B images
is cut into one shard per rank; the Pyro ELBO of each shard runs inside a DistributedDataParallel
module, whose backward pass averages the gradients over ranks. Scaled by shard size (see
train.train_epoch), that average is exactly the gradient of the single-process ELBO of the global
minibatch: the same objective, computed by several processes.

    torchrun --nproc_per_node=2 scripts/train_svi.py ...                       # one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 scripts/train_svi.py ...   # several
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger("pyro_vae")


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank r of world_size processes (1: not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, metrics, figures and checkpoints."""
        return self.rank == 0

    def shard(self, x: Tensor) -> Tensor:
        """This rank's contiguous part of ``x`` (along dim 0); parts differ in size by at most one."""
        return x.tensor_split(self.world_size)[self.rank] if self.distributed else x

    def sum(self, x: Tensor) -> Tensor:
        """The sum of ``x`` over ranks (in place on a copy)."""
        if not self.distributed:
            return x
        x = x.clone()
        dist.all_reduce(x)
        return x

    def max(self, x: Tensor) -> Tensor:
        if not self.distributed:
            return x
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return x

    def broadcast(self, x: Tensor) -> Tensor:
        """Rank 0's ``x`` on every rank."""
        if self.distributed:
            dist.broadcast(x, src=0)
        return x

    def cat(self, x: Tensor) -> Tensor:
        """Every rank's ``x`` concatenated along dim 0, in rank order, on every rank."""
        if not self.distributed:
            return x
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, x.cpu())
        return torch.cat(parts).to(x.device)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, obj)
        return parts


SINGLE = Context()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_name: str) -> tuple[Context, str]:
    """Join the process group when torchrun started this process (WORLD_SIZE > 1): nccl on GPUs,
    gloo on CPUs. Returns the context and the device this rank should use."""
    if not launched_by_torchrun():
        return SINGLE, device_name
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    context = Context(dist.get_rank(), dist.get_world_size())
    if not context.is_main:
        logging.getLogger("pyro_vae").setLevel(logging.ERROR)  # rank 0 speaks for all
    return context, f"cuda:{local_rank}" if use_cuda else "cpu"


def finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class Objective(nn.Module):
    """The ELBO loss of a minibatch as a module, for DistributedDataParallel to wrap. The VAE's
    model and guide are used unchanged; DDP sees the VAE's parameters through ``self.vae``."""

    def __init__(self, vae: nn.Module, elbo: Any) -> None:
        super().__init__()
        self.vae = vae
        self.elbo = elbo

    def forward(self, x: Tensor, size: int, subsample: Tensor | None = None) -> Tensor:
        return self.elbo.differentiable_loss(self.vae.model, self.vae.guide, x, size=size, subsample=subsample)


def objective(vae: nn.Module, elbo: Any, context: Context) -> nn.Module:
    """Objective(vae, elbo), wrapped in DistributedDataParallel when distributed (which also makes
    every rank start from rank 0's weights)."""
    module = Objective(vae, elbo)
    if not context.distributed:
        return module
    device_ids = [vae_device.index] if (vae_device := next(vae.parameters()).device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
