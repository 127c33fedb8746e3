"""Latent-dimension sweep: the same VAE trained with z in {2, 5, 10, 20, 50}; test ELBO per epoch in
one panel per z, and the final test ELBO and log p^(x) against z.

    python experiments/z_sweep.py                                   # offline default data, ~3 min on 2 CPU cores
    python experiments/z_sweep.py --dataset mnist --epochs 30 --z-dims 2,5,10,20,50

Writes <out>/z<N>/ (a full train_svi run each), <out>/z_sweep.png, <out>/z_sweep.json and prints a
markdown table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pyro
from matplotlib.figure import Figure

from pyro_vae.commands.cli import ArgumentParser, add_experiment_arguments, int_list, main, summary
from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.datasets import DATASETS
from pyro_vae.runs.experiment import run_training
from pyro_vae.runs.run_folder import writable_dir


def plot_sweep(results: dict[int, dict], path: Path) -> None:
    zs = sorted(results)
    fig = Figure(figsize=(3 * len(zs) + 3.5, 3.4), layout="constrained")
    axes = fig.subplots(1, len(zs) + 1)
    for ax in axes[1:-1]:
        ax.sharey(axes[0])
        ax.tick_params(labelleft=False)
    low = min(r["valid_bound"] for m in results.values() for r in m["history"][1:])
    high = max(r["train_bound"] for m in results.values() for r in m["history"])
    for ax, z in zip(axes, zs):
        history = results[z]["history"]
        epochs = [r["epoch"] for r in history]
        ax.plot(epochs, [r["train_bound"] for r in history], label="train")
        ax.plot(epochs, [r["valid_bound"] for r in history], label="validation")
        ax.set_ylim(low - 5, high + 5)
        ax.set_title(f"z = {z}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ELBO (nats per image)")
    axes[0].legend()
    summary = axes[-1]
    positions = range(len(zs))  # evenly spaced, labelled with z
    summary.plot(positions, [results[z]["final"]["test_bound"] for z in zs], marker="o", label="test ELBO")
    if all("test_log_likelihood" in results[z]["final"] for z in zs):
        summary.plot(positions, [results[z]["final"]["test_log_likelihood"]["mean"] for z in zs], marker="s",
                     label="test log p̂(x)")
    summary.set_xticks(positions, [str(z) for z in zs])
    summary.set_xlabel("latent dimension z")
    summary.set_title("after the last epoch", fontsize=10)
    summary.grid(alpha=0.3)
    summary.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def run(argv: list[str] | None) -> None:
    p = ArgumentParser(description=summary(__doc__))
    p.add_argument("--z-dims", type=int_list, default=(2, 5, 10, 20, 50), help="(default: 2,5,10,20,50)")
    add_experiment_arguments(p, "runs/z_sweep", list(DATASETS))
    a = p.parse_args(argv)
    out = writable_dir(a.out)
    data = DataConfig(dataset=a.dataset or "mnist", data_dir=a.data_dir, seed=a.seed, fallback=a.dataset is None)
    train = TrainConfig(epochs=a.epochs)
    run = RunConfig(device=a.device, eval_samples=a.eval_samples)
    results = {}
    for z in a.z_dims:
        pyro.set_rng_seed(a.seed)
        results[z] = run_training(replace(ModelConfig(), z_dim=z), data, train, out / f"z{z}", run, progress=False,
                                  overwrite=True)  # the sweep owns its runs: a rerun replaces them
    (out / "z_sweep.json").write_text(json.dumps({str(z): m for z, m in results.items()}, indent=2) + "\n")
    plot_sweep(results, out / "z_sweep.png")
    print(f"\n{results[a.z_dims[0]]['dataset']}, {a.epochs} epochs, 784-400-z, Bernoulli, K = {a.eval_samples}\n")
    print("| z | train ELBO | test ELBO | test log p̂(x) | gap |")
    print("|---:|---:|---:|---:|---:|")
    for z in a.z_dims:
        final = results[z]["final"]
        ll = final.get("test_log_likelihood")
        print(f"| {z} | {final['train_bound']:.2f} | {final['test_bound']:.2f} | "
              + (f"{ll['mean']:.2f} ± {ll['se']:.2f} | {ll['mean'] - final['test_bound']:.2f} |" if ll else "– | – |"))
    print(f"\nwrote {out / 'z_sweep.png'} and {out / 'z_sweep.json'}")


if __name__ == "__main__":
    sys.exit(main(run))
