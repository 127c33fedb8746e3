"""Training throughput of pyro_vae against a hand-written PyTorch VAE, and end-to-end epochs against
a torchvision DataLoader + ToTensor pipeline (what pytorch/examples' VAE does).

Part 1, steps: the same 784-400-20 networks (pyro_vae's Encoder/Decoder), the same batch, the same
Adam, the same binary minibatches. (a) pyro_vae: `elbo.differentiable_loss(vae.model, vae.guide, x, size=N)`
for each ELBO option, with pyro_vae's optimizer (fused Adam); (b) by hand: BCE-with-logits + the analytic
Gaussian KL with torch.optim.Adam's defaults, as pytorch/examples, again with the fused Adam, and again
with pyro_vae's Bernoulli log-density as well (then Pyro's tracing is the only difference).
Variants alternate in rounds so that machine noise falls on all alike; the median round counts.

Part 2, epochs: one pass over Fashion-MNIST's 60,000 training images, (a) pyro_vae's train_epoch on the
tensor-resident dataset (index-slice minibatches, dynamic binarization on the device), (b) the hand-written
loop fed by DataLoader(FashionMNIST(transform=ToTensor()), shuffle=True), binarized per batch the same way.

    python benchmarks/bench_train.py                      # CPU, ~5 min
    python benchmarks/bench_train.py --device cuda --steps 500
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import pyro
import torch
import torch.nn.functional as F

from pyro_vae import VAE, ModelConfig, load_dataset
from pyro_vae.data.pixels import PreparedData
from pyro_vae.inference.objectives import make_elbo
from pyro_vae.models.distributions import bernoulli_log_prob
from pyro_vae.runs.experiment import resolve_device
from pyro_vae.training.distributed import SINGLE, MinibatchLoss
from pyro_vae.training.loop import make_optimizer, train_epoch

# pyro_vae variants, name -> (elbo, jit); each trains with pyro_vae's optimizer (fused Adam). The
# hand-written loop runs three times, name -> (fused Adam, pyro_vae's Bernoulli kernel): with
# torch.optim.Adam's defaults and torch's BCE, as pytorch/examples; with the fused Adam; and with both of
# pyro_vae's choices, so that the table shows what the optimizer and the kernel are worth, and what is left
# is Pyro's own cost.
HAND = {"by hand": (False, False), "by hand, fused Adam": (True, False),
        "by hand, fused Adam, pyro_vae's Bernoulli kernel": (True, True)}
VARIANTS = {  # name -> (elbo, jit)
    "trace": ("trace", False),
    "meanfield": ("meanfield", False),
    "trace + jit": ("trace", True),
    "meanfield + jit": ("meanfield", True),
}


def hand_loss(vae: VAE, x: torch.Tensor, n: int, kernel: bool = False) -> torch.Tensor:
    """-ELBO of pytorch/examples' VAE (BCE + analytic KL), scaled to the dataset like the plate does;
    ``kernel``: the BCE by pyro_vae's Bernoulli log-density instead of torch's."""
    loc, scale = vae.encoder(x)
    z = loc + scale * torch.randn_like(loc)
    logits = vae.decoder(z)
    bce = -bernoulli_log_prob(logits, x).sum() if kernel else F.binary_cross_entropy_with_logits(logits, x,
                                                                                                reduction="sum")
    kl = 0.5 * torch.sum(scale**2 + loc**2 - 1 - 2 * torch.log(scale))
    return (bce + kl) * (n / len(x))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(
    step: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor], device: torch.device
) -> float:
    sync(device)
    start = time.perf_counter()
    for x in batches:
        step(x)
    sync(device)
    return time.perf_counter() - start


def make_step(vae: VAE, optimizer: torch.optim.Optimizer, loss_fn: Callable[[torch.Tensor], torch.Tensor]):
    def step(x: torch.Tensor) -> torch.Tensor:
        loss = loss_fn(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def one_variant(name: str, a: argparse.Namespace, device: torch.device) -> dict:
    """Warm up, then time ``a.steps`` steps of one variant, in a process of its own: Pyro's global
    param store holds one set of networks named "encoder"/"decoder", as in a real run."""
    n = 60000
    pyro.set_rng_seed(0)
    batches = list(torch.bernoulli(torch.full((a.steps * a.batch_size, 784), 0.13, device=device)).split(a.batch_size))
    vae = VAE(784, ModelConfig()).to(device)
    fused, kernel = HAND.get(name, (True, True))
    optimizer = make_optimizer(vae.parameters(), 1e-3) if fused else torch.optim.Adam(vae.parameters(), lr=1e-3)
    if name in HAND:
        loss_fn = lambda x: hand_loss(vae, x, n, kernel)  # noqa: E731
    else:
        elbo = make_elbo(VARIANTS[name][0], jit=VARIANTS[name][1])
        loss_fn = lambda x: elbo.differentiable_loss(vae.model, vae.guide, x, size=n)  # noqa: E731
    step = make_step(vae, optimizer, loss_fn)
    time_steps(step, batches[:10], device)  # warm-up (and the JIT's compilation)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = time_steps(step, batches, device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"seconds": seconds, "peak_mib": peak}


def bench_steps(a: argparse.Namespace, device: torch.device) -> None:
    names = [*HAND, *VARIANTS]
    seconds, peaks = {name: [] for name in names}, {}
    for _ in range(a.rounds):
        for name in names:
            command = [sys.executable, __file__, "--one", name, "--steps", str(a.steps), "--batch-size",
                       str(a.batch_size), "--device", str(device)] + (["--validation"] if a.validation else [])
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            seconds[name].append(result["seconds"])
            peaks[name] = result["peak_mib"]
    hand = statistics.median(seconds["by hand"])
    gpu = device.type == "cuda"
    print(f"Part 1: {a.steps} steps of batch {a.batch_size}, 784-400-20, {a.rounds} interleaved rounds (a process "
          f"per variant and round), median round, Pyro validation {'on' if a.validation else 'off'}, {device}, "
          f"{torch.get_num_threads()} threads")
    print("| variant | steps/s | images/s | ratio to by hand |" + (" peak GPU MiB |" if gpu else ""))
    print("|---|---:|---:|---:|" + ("---:|" if gpu else ""))
    for name, s in seconds.items():
        median = statistics.median(s)
        print(f"| {name} | {a.steps / median:,.0f} | {a.steps * a.batch_size / median:,.0f} | {hand / median:.2f} |"
              + (f" {peaks[name]:.0f} |" if gpu else ""), flush=True)


def bench_epochs(a: argparse.Namespace, device: torch.device) -> None:
    from torch.utils.data import DataLoader
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import ToTensor

    load_dataset("fashion-mnist", a.data_dir, download=not a.no_download)  # unpacks Debian's files if needed
    loader = DataLoader(FashionMNIST(a.data_dir, train=True, transform=ToTensor()), batch_size=a.batch_size,
                        shuffle=True, num_workers=a.workers)
    images = FashionMNIST(a.data_dir, train=True).data.reshape(-1, 784).float().div(255).to(device)
    data = PreparedData(images, images[:0], images[:0], "dynamic", (28, 28))
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    ours, hand = VAE(784, ModelConfig()).to(device), VAE(784, ModelConfig()).to(device)
    ours_opt, hand_opt = make_optimizer(ours.parameters(), 1e-3), torch.optim.Adam(hand.parameters())
    elbo = make_elbo(a.epoch_elbo, jit=a.epoch_jit)
    hand_step = make_step(hand, hand_opt, lambda x: hand_loss(hand, x, len(images)))

    def ours_epoch() -> None:
        minibatches = SINGLE.minibatches(len(images), a.batch_size, drop_last=a.epoch_jit, device=device)
        train_epoch(MinibatchLoss(ours, elbo), ours_opt, data, minibatches)

    def hand_epoch() -> None:
        for x, _ in loader:
            hand_step(torch.bernoulli(x.view(len(x), -1).to(device)))

    seconds = {"pyro_vae": [], "DataLoader + ToTensor, by hand": []}
    for _ in range(a.epoch_rounds):
        for name, fn in zip(seconds, (ours_epoch, hand_epoch)):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            seconds[name].append(time.perf_counter() - start)
    ours_s, hand_s = (statistics.median(s) for s in seconds.values())
    print(f"\nPart 2: one epoch of Fashion-MNIST (60,000 images), batch {a.batch_size}, pyro_vae with "
          f"--elbo {a.epoch_elbo}{' --jit' if a.epoch_jit else ''}, DataLoader num_workers={a.workers}, "
          f"median of {a.epoch_rounds} interleaved rounds")
    print("| pipeline | seconds/epoch | images/s |")
    print("|---|---:|---:|")
    for name, s in seconds.items():
        print(f"| {name} | {statistics.median(s):.2f} | {60000 / statistics.median(s):,.0f} |")
    print(f"pyro_vae is {hand_s / ours_s:.2f}x faster end to end")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="steps per round and variant (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--validation", action="store_true", help="keep Pyro's argument validation on in part 1")
    p.add_argument("--data-dir", default="data", help="Fashion-MNIST for part 2 (torchvision layout or Debian's)")
    p.add_argument("--no-download", action="store_true")

    p.add_argument("--epoch-elbo", default="trace",
                   help="pyro_vae's ELBO in part 2 (default: %(default)s, as train_svi.py)")
    p.add_argument("--epoch-jit", action="store_true", help="pyro_vae with --jit in part 2")
    p.add_argument("--epoch-rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (pytorch/examples: 1 on CUDA)")
    p.add_argument("--skip-steps", action="store_true", help="part 2 only")
    p.add_argument("--skip-epochs", action="store_true", help="part 1 only")
    p.add_argument("--device", default="auto")
    p.add_argument("--one", choices=[*HAND, *VARIANTS], help=argparse.SUPPRESS)  # internal: one timing
    a = p.parse_args()
    device = resolve_device(a.device)
    pyro.enable_validation(a.validation)
    if a.one:
        warnings.filterwarnings("ignore", category=FutureWarning)
        print(json.dumps(one_variant(a.one, a, device)))
        return
    if not a.skip_steps:
        bench_steps(a, device)
    if not a.skip_epochs:
        bench_epochs(a, device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
