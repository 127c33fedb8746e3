"""Throughput of the importance-sampled log p(x) against a bare encoder + decoder forward pass.

Both process the same test images with the same K samples per image, in the same batch x chunk
blocks; the two are interleaved, round by round, so that machine noise falls on both alike.
The ratio (estimator / bare) is the price of Pyro's tracing plus the log-densities; goal >= 0.8.

    python benchmarks/bench_estimator.py                          # 784-400-20 VAE, K = 5000, whole test set
    python benchmarks/bench_estimator.py --images 200 --rounds 3  # a quick look
"""

from __future__ import annotations

import argparse
import time

import pyro
import torch

from pyro_vae import DataConfig, ModelConfig, VAE, build, log_marginal_likelihood
from pyro_vae.experiment import resolve_device


@torch.no_grad()
def bare_forward(vae: VAE, x: torch.Tensor, num_samples: int, batch_size: int, chunk_size: int) -> None:
    """Encoder once per image, reparameterized z, decoder on every sample: nothing else."""
    for batch in x.split(batch_size):
        loc, scale = vae.encoder(batch)  # (B, Z), (B, Z)
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            z = loc + scale * torch.randn(k, *loc.shape, device=loc.device)  # (k, B, Z)
            vae.decoder(z)  # (k, B, D)


@torch.no_grad()
def estimator(vae: VAE, x: torch.Tensor, num_samples: int, batch_size: int, chunk_size: int) -> None:
    for batch in x.split(batch_size):
        log_marginal_likelihood(vae.model, vae.guide, batch, num_samples=num_samples, chunk_size=chunk_size,
                                max_plate_nesting=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", help="test images from this dataset (default: %(default)s)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--images", type=int, help="first N test images per round (default: all)")
    p.add_argument("--num-samples", type=int, default=5000, help="K (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--chunk-size", type=int, default=250)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each (default: %(default)s)")
    p.add_argument("--device", default="auto")
    a = p.parse_args()

    pyro.set_rng_seed(0)
    device = resolve_device(a.device)
    vae, data, used = build(ModelConfig(), DataConfig(dataset=a.dataset, data_dir=a.data_dir), device)
    vae.eval()
    pyro.enable_validation(False)  # as evaluate.py: build() checked the data's support once
    x = data.test[: a.images]
    samples = len(x) * a.num_samples
    print(f"{used.dataset}: {len(x)} test images x K={a.num_samples} = {samples:,} samples per round on {device}; "
          f"blocks of {a.batch_size} images x {a.chunk_size} samples; {torch.get_num_threads()} threads")
    seconds = {"bare": [], "estimator": []}
    for r in range(a.rounds):
        for name, fn in (("bare", bare_forward), ("estimator", estimator)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn(vae, x, a.num_samples, a.batch_size, a.chunk_size)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
            print(f"round {r + 1} {name:>9}: {seconds[name][-1]:7.2f} s  {samples / seconds[name][-1]:12,.0f} samples/s")
    best = {name: min(s) for name, s in seconds.items()}
    print(f"best of {a.rounds}: bare {samples / best['bare']:,.0f} samples/s, estimator "
          f"{samples / best['estimator']:,.0f} samples/s, ratio estimator/bare = {best['bare'] / best['estimator']:.2f}")


if __name__ == "__main__":
    main()
