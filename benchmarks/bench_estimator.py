"""Throughput of the importance-sampled log p(x) against the same work written by hand in plain torch.

The hand-written estimator does what the package's must: the encoder once per image, K reparameterized
samples of z, the decoder on each, the Bernoulli log-density from the logits, the two Normal
log-densities, logsumexp - log K; vectorized over samples and images in the same blocks (batch x chunk).
The hand-written one runs twice: with torch's Bernoulli log-density (binary_cross_entropy_with_logits,
what one writes by hand) and with pyro_vae's (distributions.bernoulli_log_prob, several times faster on
AVX-512 CPUs); against the second, the ratio (hand-written time / package time) is what Pyro's tracing
costs, goal >= 0.9. All score the same test images with the same K, in rounds that alternate them, so
that machine noise falls on all alike. Their mean log p^(x) is printed too: they must agree to Monte
Carlo error.

    python benchmarks/bench_estimator.py --dataset binarized-mnist --data-dir ../shared/data
    python benchmarks/bench_estimator.py --images 200 --rounds 3  # a quick look (mnist, or mnist5k offline)

The VAE is the untrained 784-400-20 network unless --checkpoint names a trained one: the cost does not
depend on the weights.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from functools import partial

import pyro
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from pyro_vae import VAE, DataConfig, ModelConfig, build, log_marginal_likelihood
from pyro_vae.models.distributions import bernoulli_log_prob
from pyro_vae.runs.experiment import load_run, resolve_device


def torch_bernoulli(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")


@torch.no_grad()
def by_hand(vae: VAE, x: torch.Tensor, num_samples: int, batch_size: int, chunk_size: int,
            log_density: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch_bernoulli) -> torch.Tensor:
    """log p^(x) of each image of ``x`` (N, D), Bernoulli likelihood with pixel log-densities
    ``log_density(logits, x)``, in plain torch.   -> (N,)"""
    result = []
    for batch in x.split(batch_size):
        loc, scale = vae.encoder(batch)  # (B, Z), (B, Z)
        q, prior = Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(scale))
        log_w = []
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            z = loc + scale * torch.randn(k, *loc.shape, device=loc.device)  # (k, B, Z)
            logits = vae.decoder(z)  # (k, B, D)
            log_px_z = log_density(logits, batch).sum(-1)
            log_w.append(log_px_z + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1))  # (k, B)
        result.append(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(num_samples))
    return torch.cat(result)


@torch.no_grad()
def package(vae: VAE, x: torch.Tensor, num_samples: int, batch_size: int, chunk_size: int) -> torch.Tensor:
    """The same through pyro_vae's estimator on the VAE's Pyro model and guide.   -> (N,)"""
    return torch.cat([log_marginal_likelihood(vae.model, vae.guide, batch, num_samples=num_samples,
                                              chunk_size=chunk_size, max_plate_nesting=1)
                      for batch in x.split(batch_size)])


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
    p.add_argument("--checkpoint", help="a trained Bernoulli VAE's checkpoint.pt (default: an untrained 784-400-20)")
    a = p.parse_args()

    pyro.set_rng_seed(0)
    device = resolve_device(a.device)
    if a.checkpoint:
        vae, data, state = load_run(a.checkpoint, a.device)
        used = DataConfig(dataset=state["data_config"]["dataset"])
    else:
        vae, data, used = build(ModelConfig(), DataConfig(dataset=a.dataset, data_dir=a.data_dir), device)
    if vae.config.likelihood != "bernoulli":
        raise SystemExit("error: the hand-written estimator is the Bernoulli one: pass a Bernoulli VAE")
    vae.eval()
    pyro.enable_validation(False)  # as evaluate.py: build() checked the data's support once
    x = data.test[: a.images]
    samples = len(x) * a.num_samples
    print(f"{used.dataset}: {len(x)} test images x K={a.num_samples} = {samples:,} samples per round on {device}; "
          f"blocks of {a.batch_size} images x {a.chunk_size} samples; {torch.get_num_threads()} threads")
    functions = (("by hand", by_hand), ("by hand, pyro_vae's kernel", partial(by_hand, log_density=bernoulli_log_prob)),
                 ("pyro_vae", package))
    seconds: dict[str, list[float]] = {name: [] for name, _ in functions}
    means: dict[str, list[float]] = {name: [] for name, _ in functions}
    for r in range(a.rounds):
        for name, fn in functions if r % 2 == 0 else functions[::-1]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            log_px = fn(vae, x, a.num_samples, a.batch_size, a.chunk_size)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
            means[name].append(log_px.mean().item())
            print(f"round {r + 1} {name:>26}: {seconds[name][-1]:7.2f} s  {samples / seconds[name][-1]:12,.0f} "
                  f"samples/s  mean log p^(x) {means[name][-1]:.3f}", flush=True)
    best = {name: min(s) for name, s in seconds.items()}
    print(f"best of {a.rounds}: " + ", ".join(f"{name} {samples / t:,.0f} samples/s" for name, t in best.items()))
    for name, _ in functions[:2]:
        print(f"ratio pyro_vae / {name} = {best[name] / best['pyro_vae']:.2f}")


if __name__ == "__main__":
    main()
