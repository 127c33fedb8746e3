"""Evaluation against the machine's own matrix-product limit (issue 39): achieved GFLOP/s of importance
sampling and AIS, and their fraction of what the same machine does on the decoder's own matrix products.

    python benchmarks/bench_limit.py                        # CPU, all four VAEs
    python benchmarks/bench_limit.py --device cuda --images 1000 --samples 5000

For each VAE (the 784-400-20 and 784-200-200-50 MLPs of the literature, the 784-400-20 with a 2-layer IAF
guide, and the convolutional VAE), with random weights (the cost does not depend on them) on binary images:

- limit: the decoder's matrix products alone (torch.mm of its weight shapes, or for the conv decoder its
  no-grad forward pass), on as many rows as a pass of the estimator decodes (K x images for IS, capped by
  --chunk x --images-per-pass; chains x images for AIS), timed in a loop: FLOPs / s. This is what the
  decoder could run at; everything else an estimator does (sampling, log-densities, logsumexp, Pyro's
  tracing, HMC's bookkeeping) is overhead on it.
- IS: datapoint_bounds with K = --samples on --images images. FLOPs counted: K x images decoder passes and
  the encoder (and flow) on each.
- AIS: datapoint_ais with --ais-steps x --ais-chains x --ais-leapfrog; FLOPs counted: ais_work's decoder
  passes (a gradient is a forward and a backward pass, three forwards' worth), encoder included.

Each number is the best of --rounds rounds, alternating the three measurements, so that a busy moment of the
machine falls on all of them. Prints each estimator's GFLOP/s and its fraction of the limit.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import pyro
import torch
from torch import nn

from pyro_vae.config import ModelConfig
from pyro_vae.evaluation.bounds import ais_work, datapoint_ais, datapoint_bounds
from pyro_vae.models.vae import VAE

CONFIGS = {
    "784-400-20": (ModelConfig(z_dim=20, hidden=(400,)), None),
    "784-200-200-50": (ModelConfig(z_dim=50, hidden=(200, 200), activation="tanh"), None),
    "784-400-20 IAF": (ModelConfig(z_dim=20, hidden=(400,), guide="iaf", flow_layers=2), None),
    "conv 28x28": (ModelConfig(z_dim=20, hidden=(400,), arch="conv"), (1, 28, 28)),
}


def linear_flops(module: nn.Module) -> int:
    """FLOPs of one row through every nn.Linear of ``module`` (a multiply and an add per weight)."""
    return sum(2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def conv_flops(module: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one row through ``module``, counted by torch's FLOP counter on ``example`` (one row)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(example)
    return counter.get_total_flops()


def best_seconds(work: Callable[[], object], rounds: list[float]) -> None:
    start = time.perf_counter()
    work()
    rounds.append(time.perf_counter() - start)


def matmul_limit(vae: VAE, rows: int, device: torch.device, repeat: int) -> tuple[Callable[[], object], int]:
    """The decoder's matrix products on ``rows`` rows, and their FLOPs per call: torch.mm of every nn.Linear's
    weight shape for an MLP decoder; the no-grad forward pass for a conv decoder (its convolutions)."""
    if vae.config.arch == "conv":
        z = torch.randn(rows, vae.config.z_dim, device=device)
        flops = conv_flops(vae.decoder, z[:1]) * rows

        def forward() -> None:
            with torch.no_grad():
                for _ in range(repeat):
                    vae.decoder(z)
        return forward, flops * repeat
    layers = [m for m in vae.decoder.modules() if isinstance(m, nn.Linear)]
    inputs = [torch.randn(rows, m.in_features, device=device) for m in layers]
    weights = [m.weight.detach().t().contiguous() for m in layers]

    def products() -> None:
        for _ in range(repeat):
            for a, w in zip(inputs, weights):
                torch.mm(a, w)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return products, linear_flops(vae.decoder) * rows * repeat


def synced(work: Callable[[], object], device: torch.device) -> Callable[[], object]:
    def run() -> object:
        out = work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out
    return run


def measure(name: str, a: argparse.Namespace, device: torch.device) -> dict[str, float]:
    config, image_shape = CONFIGS[name]
    torch.manual_seed(0)
    vae = VAE(784, config, image_shape=image_shape).to(device).eval()
    x = (torch.rand(a.images, 784, device=device) < 0.13).float()  # binary images, MNIST's share of ink
    decoder = conv_flops(vae.decoder, torch.zeros(1, config.z_dim, device=device)) if config.arch == "conv" \
        else linear_flops(vae.decoder)
    encoder = conv_flops(vae.encoder, x[:1]) if config.arch == "conv" else linear_flops(vae.encoder)
    # the rows of one pass: K x images for IS, chains x images for AIS
    is_limit, is_limit_flops = matmul_limit(vae, min(a.chunk, a.samples) * min(a.images_per_pass, a.images), device,
                                            a.repeat)
    ais_limit, ais_limit_flops = matmul_limit(vae, a.ais_chains * a.ais_images, device, 20 * a.repeat)
    # IS: the decoder (and the flow: it runs per sample) on every sample; the encoder once per image
    flow = linear_flops(vae.flow) if vae.flow is not None else 0
    is_flops = a.images * (a.samples * (decoder + flow) + encoder)
    importance = synced(lambda: datapoint_bounds(vae, x, ks=(a.samples,), batch_size=a.images_per_pass,
                                                 chunk_size=a.chunk, diagnose=False), device)
    ais_images = x[: a.ais_images]
    ais_flops = len(ais_images) * (ais_work(a.ais_steps, a.ais_chains, a.ais_leapfrog) * (decoder + flow) + encoder)
    annealed = synced(lambda: datapoint_ais(vae, ais_images, a.ais_steps, a.ais_chains, a.ais_leapfrog,
                                            batch_size=a.ais_images), device)
    importance()  # warm-up: first calls allocate and trace
    seconds: dict[str, list[float]] = {"IS limit": [], "IS": [], "AIS limit": [], "AIS": []}
    for _ in range(a.rounds):
        best_seconds(is_limit, seconds["IS limit"])
        best_seconds(importance, seconds["IS"])
        best_seconds(ais_limit, seconds["AIS limit"])
        best_seconds(annealed, seconds["AIS"])
    best = {k: min(v) for k, v in seconds.items()}
    return {"IS limit": is_limit_flops / best["IS limit"] / 1e9, "IS": is_flops / best["IS"] / 1e9,
            "AIS limit": ais_limit_flops / best["AIS limit"] / 1e9, "AIS": ais_flops / best["AIS"] / 1e9,
            "IS_images_per_s": a.images / best["IS"], "AIS_images_per_s": len(ais_images) / best["AIS"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    p.add_argument("--images", type=int, default=100, help="images for IS (default: %(default)s)")
    p.add_argument("--samples", type=int, default=1000, help="K of IS (default: %(default)s)")
    p.add_argument("--images-per-pass", type=int, default=100)
    p.add_argument("--chunk", type=int, default=250, help="samples of z per image in one pass (CHUNK_SIZE)")
    p.add_argument("--ais-images", type=int, default=20)
    p.add_argument("--ais-steps", type=int, default=50)
    p.add_argument("--ais-chains", type=int, default=4)
    p.add_argument("--ais-leapfrog", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3, help="matrix-product passes per timed call of the limit")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    a = p.parse_args()
    pyro.enable_validation(False)  # as the commands run the estimators (their inputs are checked once, up front)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    print(f"device {device}{'' if device.type != 'cuda' else ' (' + torch.cuda.get_device_name(device) + ')'}, "
          f"{torch.get_num_threads()} threads; IS K = {a.samples} on {a.images} images; AIS {a.ais_steps} x "
          f"{a.ais_chains} x {a.ais_leapfrog} on {a.ais_images}; best of {a.rounds} rounds")
    print("GFLOP/s: each estimator's, and the limit: the decoder's matrix products at the rows of its passes")
    print(f"{'VAE':>16}  {'IS limit':>8}  {'IS':>6}  {'of it':>5}  {'AIS limit':>9}  {'AIS':>6}  {'of it':>5}  "
          f"{'IS img/s':>8}  {'AIS img/s':>9}")
    for name in a.models.split(","):
        r = measure(name, a, device)
        print(f"{name:>16}  {r['IS limit']:8.1f}  {r['IS']:6.1f}  {r['IS'] / r['IS limit']:5.0%}  "
              f"{r['AIS limit']:9.1f}  {r['AIS']:6.1f}  {r['AIS'] / r['AIS limit']:5.0%}  "
              f"{r['IS_images_per_s']:8.1f}  {r['AIS_images_per_s']:9.2f}", flush=True)


if __name__ == "__main__":
    main()
