"""Data-parallel training with torch.distributed (gloo, on CPU): two processes equal one.

The comparison needs the two runs to see the same objective. Their data order is the same (rank 0's
permutation, broadcast) but their z noise is not (each rank draws its own), so the encoder's sigma is
pinned at e^-30: z = mu + sigma * eps is then mu to within 1e-13, and the ELBO and its gradient are
deterministic functions of the weights. Plain SGD keeps the update proportional to the gradient, so
float32 summation order (a sum over 32 images in one process, two sums of 16 then an all-reduce in
two) is the only difference left: 1e-6 on weights of size ~0.1 is a hundred times that rounding.
"""

import json
import os
import socket
import subprocess
import sys

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.data.pixels import PreparedData
from pyro_vae.models.vae import VAE
from pyro_vae.training.distributed import SINGLE, Context, finish
from pyro_vae.training.loop import fit

from conftest import binary_data
from programs import ROOT

ATOL = 1e-6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(context: Context, seed: int, n_train: int = 96) -> dict:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    x = binary_data(n_train + 64, d=20)
    data = PreparedData(x[:n_train], x[n_train:n_train + 32], x[n_train + 32:], "none", (4, 5))
    vae = VAE(20, ModelConfig(z_dim=2, hidden=(16,)))
    with torch.no_grad():  # sigma = exp(0.5 * log_var) = e^-30: a deterministic ELBO (see above)
        head = vae.encoder.net[-1]
        head.weight[2:].zero_()
        head.bias[2:].fill_(-60.0)
    initial = {k: v.clone() for k, v in vae.state_dict().items()}
    # meanfield: the analytic KL keeps the noise out of the entropy term, where z - mu would round
    # one epoch, 6 steps: both runs walk the same permutation (rank 0's). Later epochs would not: each
    # rank draws its own z, so the global RNG, which draws the next epoch's order, moves differently.
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-4, elbo="meanfield")  # the loss sums 96 images: gradients ~100
    state = fit(vae, torch.optim.SGD(vae.parameters(), lr=config.lr), data, config, progress=False, context=context)
    return {"initial": initial, "weights": {k: v.clone() for k, v in vae.state_dict().items()},
            "valid": [r.valid_bound for r in state.history], "train": [r.train_bound for r in state.history]}


def worker(rank: int, world_size: int, port: int, out: str, n_train: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = train(Context(rank, world_size), seed=rank, n_train=n_train)  # rank 0 seeded like the single run
        if rank == 0:
            torch.save(result, out)
    finally:
        finish()


@pytest.mark.parametrize("n_train", [96, 99])  # 6 full minibatches of 16; or a last one of 3, sharded 2 + 1
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path, n_train):
    single = train(SINGLE, seed=0, n_train=n_train)
    out = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(2, free_port(), str(out), n_train), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    for name, weight in single["weights"].items():
        assert torch.allclose(ddp["weights"][name], weight, atol=ATOL, rtol=0), name
        # and training moved every tensor by far more than that (measured: 0.006 to 0.036)
        assert (weight - single["initial"][name]).abs().max() > 1000 * ATOL, name
    # validation ELBO, sharded over ranks and summed, equals the single-process one (float32 rounding)
    assert ddp["valid"] == pytest.approx(single["valid"], rel=1e-5)
    assert ddp["train"] == pytest.approx(single["train"], rel=1e-5)


def test_sharding_covers_every_index_once():
    index = torch.arange(10)
    parts = [Context(r, 3).shard(index) for r in range(3)]
    assert torch.equal(torch.cat(parts), index) and [len(p) for p in parts] == [4, 3, 3]
    assert torch.equal(SINGLE.shard(index), index)


@pytest.mark.parametrize("guide", [["--z-dim", "2"], ["--z-dim", "2", "--guide", "iaf"],
                                   ["--z-dim", "2", "--arch", "conv"], ["--latents", "4,2"]],
                         ids=["gaussian", "iaf", "conv", "two-layers"])
def test_torchrun_trains_and_evaluates_end_to_end(tiny_mnist, tmp_path, guide):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "scripts" / "train_svi.py"), "--data-dir", str(tiny_mnist), "--out", str(out),
               "--epochs", "2", "--hidden", "16", "--batch-size", "16", "--eval-samples", "20",
               "--no-download", "--no-progress", "--device", "cpu", *guide]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("epoch 2/2") == 1  # rank 0 alone logs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["final"]["test_log_likelihood"]["num_samples"] == 20
    assert len(metrics["history"]) == 2 and (out / "checkpoint.pt").exists() and (out / "latent.png").exists()
