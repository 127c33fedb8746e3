"""Which likelihood for grey-scale pixels? Bernoulli on dynamically binarized images against the
continuous Bernoulli and the Gaussian on dequantized 8-bit images, each scored by its test log p^(x).

The two continuous likelihoods are densities on [0, 1]^D. Trained and scored on dequantized pixels
(k + u)/256, u ~ U(0, 1), their log p^(x) minus D log 256 is a lower bound on the log-probability of the
8-bit test image (Theis et al. 2016): those two numbers, in nats and in bits/dim, answer the same
question and can be compared. The Bernoulli number is the log-probability of a *binary* image drawn
from the grey one (1 bit per pixel at most): a different random variable, a different question.

    python experiments/likelihoods.py                       # offline default data, ~2 min on 2 CPU cores
    python experiments/likelihoods.py --dataset fashion-mnist --epochs 30

Writes <out>/<likelihood>/ (a full train_svi run each), <out>/likelihoods.png, <out>/likelihoods.json
and prints a markdown table.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pyro
import torch
from matplotlib.figure import Figure

from pyro_vae.commands.cli import ArgumentParser, add_experiment_arguments, main, summary
from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.datasets import DATASETS
from pyro_vae.runs.experiment import load_run, run_training
from pyro_vae.runs.plots import grid_pixels, image_grid
from pyro_vae.runs.run_folder import writable_dir

# name -> (likelihood, dequantize the 8-bit pixels)
SETUPS = {
    "bernoulli": ("bernoulli", False),  # dynamic binarization (--binarize auto)
    "continuous-bernoulli": ("continuous-bernoulli", True),
    "gaussian": ("gaussian", True),
}


def bits_per_dim(final: dict) -> float:
    """Of the 8-bit image for the dequantized likelihoods, of the binary image for Bernoulli."""
    return final["bits_per_dim"] if "bits_per_dim" in final else final["bits_per_dim_binary"]


def plot_comparison(results: dict[str, dict], samples: dict[str, torch.Tensor], image_shape: tuple[int, int, int],
                    path: Path) -> None:
    fig = Figure(figsize=(4 * len(results) + 4, 4.4), layout="constrained")
    axes = fig.subplots(1, len(results) + 1)
    for ax, (name, images) in zip(axes, samples.items()):
        ax.imshow(grid_pixels(image_grid(images, image_shape, 6)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        final = results[name]["final"]
        what = (f"{final['bits_per_dim']:.3f} bits/dim (8-bit images)" if "bits_per_dim" in final
                else f"{final['bits_per_dim_binary']:.3f} bits/dim (binary images)")
        ax.set_title(f"{name}: mean of p(x|z), z ~ N(0, I)\n{what}", fontsize=9)
        ax.axis("off")
    bars = axes[-1]
    names = list(results)
    values = [bits_per_dim(results[n]["final"]) for n in names]
    colors = ["0.6" if "bits_per_dim" not in results[n]["final"] else "C0" for n in names]
    bars.bar(range(len(names)), values, color=colors)
    bars.set_xticks(range(len(names)), [n.replace("-", "-\n") for n in names], fontsize=8)
    bars.set_ylabel("test bits/dim (lower is better)")
    bars.set_title("blue: 8-bit images, comparable\ngrey: binarized images, another question", fontsize=9)
    bars.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def run(argv: list[str] | None) -> None:
    p = ArgumentParser(description=summary(__doc__))
    add_experiment_arguments(p, "runs/likelihoods", [d for d in DATASETS if d != "binarized-mnist"])  # grey data
    a = p.parse_args(argv)
    out = writable_dir(a.out)
    train = TrainConfig(epochs=a.epochs)
    run = RunConfig(device=a.device, eval_samples=a.eval_samples)
    results, samples = {}, {}
    for name, (likelihood, dequantize) in SETUPS.items():
        pyro.set_rng_seed(a.seed)
        data = DataConfig(dataset=a.dataset or "mnist", data_dir=a.data_dir, seed=a.seed, dequantize=dequantize,
                          fallback=a.dataset is None)
        metrics = run_training(ModelConfig(likelihood=likelihood), data, train, out / name, run, progress=False,
                               overwrite=True)  # the experiment owns its runs: a rerun replaces them
        final = metrics["final"]
        d = metrics["x_dim"]
        if not dequantize:  # log P(binary image): at most 1 bit per pixel
            final["bits_per_dim_binary"] = -final["test_log_likelihood"]["mean"] / (d * math.log(2))
        results[name] = metrics
        vae, prepared, _ = load_run(out / name / "checkpoint.pt", a.device, a.data_dir)
        with torch.no_grad():
            samples[name] = vae.decode_mean(torch.randn(36, vae.config.z_dim, device=prepared.test.device))
    (out / "likelihoods.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_comparison(results, samples, prepared.image_shape, out / "likelihoods.png")
    dataset = next(iter(results.values()))["dataset"]
    print(f"\n{dataset}, {a.epochs} epochs, 784-400-20, K = {a.eval_samples}\n")
    print("| likelihood | data scored | test log p̂(x), nats | log P(8-bit image) ≥, nats | bits/dim |")
    print("|---|---|---:|---:|---:|")
    for name, metrics in results.items():
        final, ll = metrics["final"], metrics["final"]["test_log_likelihood"]
        if "bits_per_dim" in final:
            print(f"| {name} | dequantized 8-bit, density on [0, 1]^784 | {ll['mean']:.1f} ± {ll['se']:.1f} | "
                  f"{final['test_log_likelihood_8bit']:.1f} | {final['bits_per_dim']:.3f} |")
        else:
            print(f"| {name} | binarized (dynamic), probability of a binary image | {ll['mean']:.1f} ± {ll['se']:.1f} "
                  f"| – | {final['bits_per_dim_binary']:.3f} (of a binary image) |")
    print(f"\nwrote {out / 'likelihoods.png'} and {out / 'likelihoods.json'}")


if __name__ == "__main__":
    sys.exit(main(run))
