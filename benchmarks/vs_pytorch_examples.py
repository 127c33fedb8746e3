"""The default run against pytorch/examples' VAE trained on the same images, scored by one evaluator.

    python benchmarks/vs_pytorch_examples.py                      # mnist5k, 30 epochs, seeds 0,1,2
    python benchmarks/vs_pytorch_examples.py --dataset binarized-mnist --data-dir ../shared/data --epochs 10

For each seed: ``run_training`` with the defaults (784-400-20 ReLU, Trace_ELBO, Adam 1e-3, batch 128,
dynamic binarization), and pytorch/examples' loop (vae/main.py: fc1/fc21/fc22/fc3/fc4, summed binary
cross-entropy + analytic KL per minibatch) written out here, on the same training images, the same
per-minibatch dynamic binarization and the same seed-fixed binary test set. Both trained models are
then scored by the plain-torch evaluator below, which shares no code with pyro_vae: the test ELBO
(mean log-weight) and L_K (log-mean-exp) from K samples of each model's q(z|x).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyro_vae import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.models.vae import VAE
from pyro_vae.runs.experiment import load_run, run_training


class ExamplesVAE(nn.Module):
    """pytorch/examples' VAE (vae/main.py), with logits out instead of sigmoid (same function)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)  # mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.fc4(F.relu(self.fc3(z)))  # logits


def train_examples(train: Tensor, epochs: int, seed: int) -> ExamplesVAE:
    """pytorch/examples' loop: shuffled minibatches of 128 (the last one smaller), a fresh binary
    image per minibatch, loss = BCE(sum) + KL(sum), Adam 1e-3."""
    torch.manual_seed(seed)
    vae = ExamplesVAE()
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    for _ in range(epochs):
        for index in torch.randperm(len(train)).split(128):
            x = torch.bernoulli(train[index])
            mu, logvar = vae.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            bce = F.binary_cross_entropy_with_logits(vae.decode(z), x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            optimizer.zero_grad()
            (bce + kld).backward()
            optimizer.step()
    return vae


@torch.no_grad()
def score(encode, decode, x: Tensor, k: int) -> tuple[float, float]:
    """Test ELBO and L_k in nats/image, from k samples of q(z|x) per image: plain torch."""
    elbo, bound = [], []
    for batch in x.split(100):
        mu, logvar = encode(batch)  # (B, Z)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn(k, *mu.shape)  # (k, B, Z)
        log_px_z = -F.binary_cross_entropy_with_logits(decode(z), batch.expand(k, -1, -1), reduction="none").sum(-1)
        log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_qz = (-0.5 * ((z - mu) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_w = log_px_z + log_pz - log_qz  # (k, B)
        elbo.append(log_w.mean(0))
        bound.append(torch.logsumexp(log_w, 0) - math.log(k))
    return torch.cat(elbo).mean().item(), torch.cat(bound).mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--samples", type=int, default=1000, help="K of the evaluator (default: %(default)s)")
    p.add_argument("--elbo", default="trace", help="pyro_vae's --elbo (default: %(default)s, the default run's)")
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in map(int, a.seeds.split(",")):
        data_config = DataConfig(dataset=a.dataset, data_dir=a.data_dir, download=False, seed=seed, fallback=False)
        pyro.set_rng_seed(seed)
        with tempfile.TemporaryDirectory() as out:
            run_training(ModelConfig(), data_config, TrainConfig(epochs=a.epochs, elbo=a.elbo), out,
                         RunConfig(eval_samples=0), progress=False)
            ours, data, _ = load_run(Path(out) / "checkpoint.pt", "cpu")
        examples = train_examples(data.train, a.epochs, seed)

        def split(x: Tensor, ours: VAE = ours) -> tuple[Tensor, Tensor]:
            return ours.encoder.net(x).chunk(2, -1)  # loc, log sigma^2

        torch.manual_seed(10_000 + seed)
        row = (seed, *score(split, ours.decoder, data.test, a.samples),
               *score(examples.encode, examples.decode, data.test, a.samples))
        rows.append(row)
        print(f"seed {row[0]}  pyro_vae: ELBO {row[1]:.2f}  L_{a.samples} {row[2]:.2f}   pytorch/examples: "
              f"ELBO {row[3]:.2f}  L_{a.samples} {row[4]:.2f}", flush=True)
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(1, 5)]
    print(f"mean of {len(rows)} seeds, {a.dataset}, {a.epochs} epochs, --elbo {a.elbo}: "
          f"pyro_vae ELBO {mean[0]:.2f}, L_{a.samples} "
          f"{mean[1]:.2f}; pytorch/examples ELBO {mean[2]:.2f}, L_{a.samples} {mean[3]:.2f}; difference "
          f"{mean[0] - mean[2]:+.2f} and {mean[1] - mean[3]:+.2f} nats")


if __name__ == "__main__":
    main()
