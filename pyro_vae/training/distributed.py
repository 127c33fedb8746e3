"""Data-parallel training across processes with torch.distributed, as launched by torchrun.

Every process (rank) holds the whole dataset and the same VAE. Each global minibatch of B images
is cut into one shard per rank; the Pyro ELBO of each shard runs inside a DistributedDataParallel
module, whose backward pass averages the gradients over ranks. Scaled by shard size (see
Context.minibatches), that average is exactly the gradient of the single-process ELBO of the global
minibatch: the same objective, computed by several processes.

    torchrun --nproc_per_node=2 scripts/train_svi.py ...                       # one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 scripts/train_svi.py ...   # several
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from pyro.infer import JitTrace_ELBO, JitTraceMeanField_ELBO
from torch import Tensor, nn

from pyro_vae.errors import UsageError

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

    def minibatches(
        self, n: int, batch_size: int, drop_last: bool = False, device: torch.device | str = "cpu",
    ) -> list[tuple[Tensor, float]]:
        """One epoch of minibatches of ``n`` training images: for each, the indices of this process's
        part of it (B_r,) and the weight of the loss computed from them.

        The order is a random permutation (rank 0's, on every rank). ``drop_last`` drops a final
        minibatch smaller than ``batch_size``; in a data-parallel run, one smaller than the number
        of processes is dropped as well.

        The weight is R * B_r / B_full: R processes average their gradients, and R * B_r / B makes
        that average the gradient of the whole minibatch of B images (1 in one process); B / B_full
        weights a partial last minibatch by its size. Pyro's plate scales each minibatch's loss to
        the whole-dataset ELBO, n/B times its sum, so unweighted, the B < B_full images of a partial
        last minibatch would get as large an Adam step as a full one from a far noisier gradient
        (measured on mnist5k, 26 x 128 + 6 images: 2.3 nats worse than pytorch/examples after 30
        epochs). With the weight every image counts the same in an epoch, as in pytorch/examples'
        summed loss, and full minibatches keep the unbiased whole-dataset ELBO.
        """
        batches = self.broadcast(torch.randperm(n, device=device)).split(batch_size)
        if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
            batches = batches[:-1]
        if self.distributed and len(batches[-1]) < self.world_size:
            batches = batches[:-1]
        full = len(batches[0])  # a full minibatch: batch_size, or n when the dataset is smaller
        parts = [self.shard(index) for index in batches]
        return [(part, self.world_size * len(part) / full) for part in parts]

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

    def all_ranks(self, obj: Any) -> Any:
        """Every process's ``obj`` as a list in a data-parallel run, ``obj`` itself in one process."""
        return self.gather(obj) if self.distributed else obj

    def own(self, value: Any) -> Any:
        """This process's part of what all_ranks() returned, or None (with a warning) when that came
        from a run with another number of processes."""
        if not isinstance(value, list):
            return value
        if len(value) != self.world_size:
            log.warning("the checkpoint holds random states for %d processes, this run has %d: the processes start "
                        "from fresh seeds, so the run will differ from an uninterrupted one", len(value),
                        self.world_size)
            return None
        return value[self.rank]

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


def finish(completed: bool = True) -> None:
    """Leave the process group. After work that completed, first wait for every rank to be done with
    it: a rank that tears gloo down while another is still at work can abort (std::terminate). After
    a failure, leave at once: the other ranks may be waiting in a collective this one never reaches."""
    if dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()


def in_process_group(body: Callable[[Context, str], None], device_name: str) -> None:
    """``body(context, device)`` inside the process group torchrun started (see init), left when it ends."""
    context, device = init(device_name)
    completed = False
    try:
        body(context, device)
        completed = True
    finally:
        finish(completed)


class MinibatchLoss(nn.Module):
    """Minus the objective of a dataset of ``size`` images, estimated from a minibatch, as a module
    for DistributedDataParallel to wrap. The VAE's model and guide are used unchanged; DDP sees the
    VAE's parameters through ``self.vae``."""

    def __init__(self, vae: nn.Module, elbo: Any) -> None:
        super().__init__()
        self.vae = vae
        self.elbo = elbo

    def forward(self, x: Tensor, size: int, subsample: Tensor | None = None) -> Tensor:
        return self.elbo.differentiable_loss(self.vae.model, self.vae.guide, x, size=size, subsample=subsample)


def loss_module(vae: nn.Module, elbo: Any, context: Context = SINGLE) -> nn.Module:
    """MinibatchLoss(vae, elbo), wrapped in DistributedDataParallel in a data-parallel run (which
    also makes every process start from rank 0's weights)."""
    module = MinibatchLoss(vae, elbo)
    if not context.distributed:
        return module
    if isinstance(elbo, (JitTrace_ELBO, JitTraceMeanField_ELBO)):
        raise UsageError("`jit` is not available with torchrun (data-parallel) training: drop `jit`")
    device_ids = [vae_device.index] if (vae_device := next(vae.parameters()).device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
