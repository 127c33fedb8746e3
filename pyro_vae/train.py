"""Stochastic variational inference: Pyro's ELBO objects minimized by a torch optimizer.

``elbo.differentiable_loss(model, guide, x)`` is the same objective ``pyro.infer.SVI`` steps on;
calling it from our own loop lets one Adam own every parameter (one state_dict to checkpoint)
and keeps the loop free of per-step host syncs of our own (SVI.step returns a float each step).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyro
import torch
from pyro.infer import ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor
from tqdm.auto import tqdm

from pyro_vae.config import TrainConfig
from pyro_vae.data import PreparedData
from pyro_vae.errors import UsageError
from pyro_vae.vae import VAE

log = logging.getLogger("pyro_vae")

# name -> (plain, JIT-compiled) ELBO class
ELBOS: dict[str, tuple[type[ELBO], type[ELBO]]] = {
    "trace": (Trace_ELBO, JitTrace_ELBO),  # KL term sampled: log q(z|x) - log p(z)
    "meanfield": (TraceMeanField_ELBO, JitTraceMeanField_ELBO),  # KL term analytic: lower variance
}
PROGRESS_EVERY = 25  # steps between progress-bar updates, each one host sync


def make_elbo(name: str, num_particles: int = 1, jit: bool = False) -> ELBO:
    """The ELBO named ``name`` with ``num_particles`` samples of z per datapoint, vectorized."""
    if name not in ELBOS:
        raise UsageError(f"unknown ELBO {name!r}: choose one of {', '.join(ELBOS)}")
    plain, compiled = ELBOS[name]
    options = dict(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    if jit:
        return compiled(ignore_jit_warnings=True, **options)
    return plain(**options)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_elbo: float  # nats per image, averaged over the epoch's minibatches while training
    test_elbo: float  # nats per image, at the end of the epoch
    seconds: float  # wall time of the epoch, test evaluation included


def train_epoch(
    vae: VAE, elbo: ELBO, optimizer: torch.optim.Optimizer, data: PreparedData, batch_size: int,
    drop_last: bool = False, progress: tqdm | None = None,
) -> tuple[Tensor, int]:
    """One pass over a random permutation of the training set.

    Returns the sum of the ELBO estimates of the images seen (a 0-dim tensor left on the device)
    and how many images that was. ``drop_last`` skips a final partial batch: Pyro's JIT caches
    one trace per argument structure, not per shape, so a smaller batch would reuse a trace
    built for the full batch size.
    """
    n = len(data.train)
    batches = torch.randperm(n, device=data.train.device).split(batch_size)
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    total = data.train.new_zeros(())
    seen = 0
    for step, index in enumerate(batches, 1):
        x = data.minibatch(index)  # (B, D)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x, size=n)  # -ELBO of all n images
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total -= loss.detach() * (len(index) / n)  # undo the plate's n/B scaling
        seen += len(index)
        if progress is not None:
            progress.update(1)
            if step % PROGRESS_EVERY == 0 or step == len(batches):
                progress.set_postfix_str(f"ELBO {total.item() / seen:.2f}")
    return total, seen


@torch.no_grad()
def evaluate_elbo(vae: VAE, elbo: ELBO, x: Tensor, batch_size: int) -> Tensor:
    """Mean ELBO per image of ``x`` (N, D), as a 0-dim tensor. Use an ELBO without JIT here:
    the last batch may be smaller."""
    total = sum(elbo.differentiable_loss(vae.model, vae.guide, batch).detach() for batch in x.split(batch_size))
    return -total / len(x)


def fit(
    vae: VAE, optimizer: torch.optim.Optimizer, data: PreparedData, config: TrainConfig,
    progress: bool = True,
) -> list[EpochRecord]:
    """Train for ``config.epochs`` epochs; log and return one record per epoch."""
    # pyro.module registers the networks in Pyro's global param store by name; an entry left by an
    # earlier VAE in this process would shadow this one's parameters inside the JIT-compiled ELBO.
    pyro.clear_param_store()
    elbo = make_elbo(config.elbo, config.num_particles, config.jit)
    test_elbo_fn = make_elbo(config.elbo, config.num_particles)
    steps = -(-len(data.train) // config.batch_size)
    history = []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        vae.train()
        with tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False) as bar:
            total, seen = train_epoch(vae, elbo, optimizer, data, config.batch_size, config.jit, bar)
        vae.eval()
        test_elbo = evaluate_elbo(vae, test_elbo_fn, data.test, config.batch_size)
        record = EpochRecord(epoch, total.item() / seen, test_elbo.item(), time.perf_counter() - start)
        history.append(record)
        log.info(
            "epoch %d/%d  train ELBO %.2f  test ELBO %.2f nats/image  (%.1f s)",
            epoch, config.epochs, record.train_elbo, record.test_elbo, record.seconds,
        )
    return history
