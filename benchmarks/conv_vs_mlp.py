"""The convolutional VAE against the MLP at equal epochs, on static binarized MNIST.

    python benchmarks/conv_vs_mlp.py --data-dir ../shared/data --epochs 10 --seeds 0,1,2 --out runs/conv_vs_mlp

Trains, for each seed, the default 784-400-20 ReLU MLP VAE and ``--arch conv`` (4x4 stride-2 convolutions of 32
and 64 channels, 28 -> 14 -> 7, a dense layer of 400, z = 20; the decoder mirrors it), both with Trace_ELBO,
Adam 1e-3, batch 128, on one torch thread. Then scores each model on the test set: its ELBO (one sample per
image, all 10,000 images) and log p^(x) by importance sampling with K = --eval-samples on --images test images
drawn at random with --seed-images (the same images for every model; each image's samples from its own streams).
Prints a markdown table per seed and the mean over seeds with the SE over seeds, and the seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pyro
import torch

from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.evaluation.bounds import datapoint_bounds
from pyro_vae.inference.streams import IMPORTANCE_SAMPLING, DatapointStreams
from pyro_vae.runs.experiment import load_run, run_training
from pyro_vae.runs.per_image import choose_images

ARCHS = ("mlp", "conv")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--seed-images", type=int, default=0)
    p.add_argument("--out", default="runs/conv_vs_mlp")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    results: dict[str, list[dict]] = {arch: [] for arch in ARCHS}
    for seed in (int(s) for s in a.seeds.split(",")):
        for arch in ARCHS:
            folder = out / f"{arch}-seed{seed}"
            if not (folder / "metrics.json").exists():
                pyro.set_rng_seed(seed)
                run_training(ModelConfig(arch=arch), DataConfig(dataset="binarized-mnist", data_dir=a.data_dir,
                                                                seed=seed, download=False),
                             TrainConfig(epochs=a.epochs), folder, RunConfig(eval_samples=0, device="cpu"),
                             progress=False)
            metrics = json.loads((folder / "metrics.json").read_text())
            vae, data, _ = load_run(folder / "checkpoint.pt", "cpu", a.data_dir)
            pyro.enable_validation(False)
            elbo = datapoint_bounds(vae, data.test, ks=(1,), diagnose=False,
                                    noise=DatapointStreams(seed, torch.arange(len(data.test)), IMPORTANCE_SAMPLING))
            index, _ = choose_images(len(data.test), images=a.images, seed=a.seed_images)
            bounds = datapoint_bounds(vae, data.test[index], ks=(a.eval_samples,), diagnose=False,
                                      noise=DatapointStreams(a.seed_images, index, IMPORTANCE_SAMPLING)).report()
            row = {"seed": seed, "arch": arch, "params": sum(p.numel() for p in vae.parameters()),
                   "seconds_per_epoch": statistics.mean(r["seconds"] for r in metrics["history"]),
                   "test_elbo": elbo.elbo.mean().item(), "log_px": bounds.log_likelihood.mean,
                   "log_px_se": bounds.log_likelihood.se, "elbo_on_images": bounds.elbo.mean}
            results[arch].append(row)
            print(json.dumps(row), flush=True)
    (out / "conv_vs_mlp.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n| arch | parameters | s/epoch | test ELBO (10,000 images) | log p^(x), K={a.eval_samples} "
          f"({a.images} images) |")
    print("|---|---:|---:|---:|---:|")
    for arch, rows in results.items():
        for r in rows:
            print(f"| {arch}, seed {r['seed']} | {r['params']:,} | {r['seconds_per_epoch']:.1f} | {r['test_elbo']:.2f} "
                  f"| {r['log_px']:.2f} ± {r['log_px_se']:.2f} |")

    def mean_se(rows: list[dict], key: str) -> str:
        values = [r[key] for r in rows]
        se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
        return f"{statistics.mean(values):.2f} ± {se:.2f}"

    for arch, rows in results.items():
        seconds = statistics.mean(r["seconds_per_epoch"] for r in rows)
        print(f"| {arch}, mean ± SE over {len(rows)} seeds | | {seconds:.1f} | {mean_se(rows, 'test_elbo')} "
              f"| {mean_se(rows, 'log_px')} |")


if __name__ == "__main__":
    main()
