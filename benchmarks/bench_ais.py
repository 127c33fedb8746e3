"""AIS throughput: pyro_vae's AIS (any Pyro model/guide) against a hand-written plain-torch AIS of the same VAE.

    python benchmarks/bench_ais.py --checkpoint runs/bm_vae/checkpoint.pt            # CPU
    python benchmarks/bench_ais.py --checkpoint runs/bm_vae/checkpoint.pt --device cuda --images 1000

Both anneal the same images along the same sigmoid schedule with the same number of chains, HMC
transitions and leapfrog steps, the same Metropolis test and the same pilot run that tunes the step sizes.
The hand-written one runs the encoder once and scores with closed-form log-densities; ours traces the Pyro
model and guide at every gradient. Rounds alternate between the two; the ratio of their chain-steps x images
per second is printed with both estimates (they should agree within Monte Carlo error) and each one's peak memory
(max RSS on a CPU, measured in a fresh process per variant; peak allocated on a GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import pyro
import torch
import torch.nn.functional as F
from torch import Tensor

from pyro_vae.inference.ais import (
    PILOT_GROWTH,
    PILOT_STEPS,
    PILOT_TRANSITIONS,
    TARGET_ACCEPT,
    ais,
    sigmoid_schedule,
)
from pyro_vae.inference.hmc import STEP_JITTER
from pyro_vae.runs.experiment import load_run

LOG_2PI = math.log(2 * math.pi)


def hand_ais(encoder: torch.nn.Module, decoder: torch.nn.Module, x: Tensor, num_steps: int, num_chains: int,
             num_leapfrog: int, step_size: float) -> Tensor:
    """Forward AIS of a Bernoulli VAE in plain torch: log-mean-exp over chains, (N,)."""
    with torch.no_grad():
        loc, log_var = encoder(x).chunk(2, dim=-1)  # (N, Z)
    std = torch.exp(0.5 * log_var)

    def log_q(z: Tensor) -> Tensor:
        return (-0.5 * ((z - loc) / std).square() - std.log() - 0.5 * LOG_2PI).sum(-1)  # (C, N)

    def log_joint(z: Tensor) -> Tensor:
        log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x.expand(z.shape[0], -1, -1), reduction="none")
        return log_px_z.sum(-1) + (-0.5 * z.square() - 0.5 * LOG_2PI).sum(-1)  # (C, N)

    def energy_and_grad(z: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_()
            energy = -((1 - beta) * log_q(z) + beta * log_joint(z))
            (grad,) = torch.autograd.grad(energy.sum(), z)
        return energy.detach(), grad

    def transition(z: Tensor, beta: float, eps: Tensor) -> tuple[Tensor, Tensor]:
        """One HMC transition at beta with step sizes eps (N, 1), jittered per chain; the new z and the
        acceptance rate over the chains (N,)."""
        energy, grad = energy_and_grad(z, beta)
        step = eps * (1 + STEP_JITTER * (2 * torch.rand_like(z[..., :1]) - 1))  # (C, N, 1)
        p0 = torch.randn_like(z)
        q, p = z, p0 - 0.5 * step * grad
        for i in range(num_leapfrog):
            q = q + step * p
            new_energy, grad = energy_and_grad(q, beta)
            if i < num_leapfrog - 1:
                p = p - step * grad
        p = p - 0.5 * step * grad
        log_accept = energy + 0.5 * p0.square().sum(-1) - new_energy - 0.5 * p.square().sum(-1)
        log_accept = log_accept.nan_to_num(nan=-math.inf)
        z = torch.where((torch.rand_like(log_accept).log() < log_accept).unsqueeze(-1), q, z)
        return z, log_accept.clamp(max=0).exp().mean(0)

    z = loc + std * torch.randn(num_chains, *loc.shape, device=x.device)  # the run's chains
    betas = sigmoid_schedule(num_steps).tolist()
    # the pilot: chains of its own tune a step size per image at min(T, PILOT_STEPS) points of the path
    points = min(num_steps, PILOT_STEPS)
    pilot = loc + std * torch.randn(num_chains, *loc.shape, device=x.device)
    eps = torch.full((x.shape[0], 1), step_size, device=x.device)
    tuned = []
    for beta in sigmoid_schedule(points)[1:-1].tolist():
        log_eps = torch.zeros_like(eps)
        for _ in range(PILOT_TRANSITIONS):
            pilot, rate = transition(pilot, beta, eps)
            log_eps += eps.log()
            eps = eps * torch.where(rate > TARGET_ACCEPT, PILOT_GROWTH, 1 / PILOT_GROWTH).unsqueeze(-1)
        tuned.append((log_eps / PILOT_TRANSITIONS).exp())
    log_w = torch.zeros(num_chains, x.shape[0], device=x.device)
    for t in range(1, len(betas) - 1):
        with torch.no_grad():
            log_w += (betas[t] - betas[t - 1]) * (log_joint(z) - log_q(z))
        nearest = max(min(round(t * (points + 1) / (num_steps + 1)), points), 1)
        z, _ = transition(z, betas[t], tuned[nearest - 1])
    with torch.no_grad():
        log_w += (betas[-1] - betas[-2]) * (log_joint(z) - log_q(z))
    return torch.logsumexp(log_w, 0) - math.log(num_chains)


def run_variant(name: str, vae, x: Tensor, a: argparse.Namespace) -> Tensor:
    if name == "hand":
        return hand_ais(vae.encoder.net, vae.decoder.net, x, a.steps, a.chains, a.leapfrog, 0.05)
    return ais(vae.model, vae.guide, x, num_steps=a.steps, num_chains=a.chains, num_leapfrog=a.leapfrog,
               step_size=0.05, max_plate_nesting=1).bound()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--leapfrog", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--one", choices=("pyro_vae", "hand"), help="run one variant once and print its peak memory")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    pyro.enable_validation(False)
    vae, data, _ = load_run(a.checkpoint, a.device, a.data_dir)
    x = data.test[: a.images]
    if a.one:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        run_variant(a.one, vae, x, a)
        resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = torch.cuda.max_memory_allocated() if x.is_cuda else resident
        print(json.dumps({"peak_bytes": peak, "before_bytes": 0 if x.is_cuda else before}))
        return
    work = a.images * a.chains * a.steps
    times: dict[str, list[float]] = {"pyro_vae": [], "hand": []}
    estimates: dict[str, list[Tensor]] = {"pyro_vae": [], "hand": []}
    for round_ in range(a.rounds):
        for name in (("pyro_vae", "hand") if round_ % 2 == 0 else ("hand", "pyro_vae")):
            pyro.set_rng_seed(round_)
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            estimates[name].append(run_variant(name, vae, x, a))
            if x.is_cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    print(f"{a.images} images x {a.chains} chains x {a.steps} steps, {a.leapfrog} leapfrog steps, {x.device}, "
          f"{a.threads} thread(s); best of {a.rounds} interleaved rounds")
    for name in best:
        estimate = torch.stack(estimates[name]).mean(0)
        print(f"{name:>9}: {work / best[name]:10.0f} chain-steps x images / s ({best[name]:.2f} s); "
              f"mean log p^(x) {estimate.mean():.3f}")
    difference = (torch.stack(estimates["pyro_vae"]).mean(0) - torch.stack(estimates["hand"]).mean(0))
    print(f"ratio pyro_vae / hand-written: {best['hand'] / best['pyro_vae']:.2f}; estimates differ by "
          f"{difference.mean():+.3f} ± {difference.std() / math.sqrt(len(difference)):.3f} nats/image")
    for name in best:
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", name], capture_output=True, text=True)
        memory = json.loads(done.stdout.strip().splitlines()[-1])
        where = "allocated on the GPU" if x.is_cuda else (
            f"max RSS of the process, {(memory['peak_bytes'] - memory['before_bytes']) / 2**20:.0f} MiB above it "
            "before AIS ran")
        print(f"{name:>9}: peak memory {memory['peak_bytes'] / 2**20:.0f} MiB ({where})")


if __name__ == "__main__":
    main()
