"""The standard VAE benchmark: test log-likelihood on statically binarized MNIST, VAE vs IWAE.

Burda et al. (2016)'s one-stochastic-layer setup: encoder and decoder with two hidden layers of 200
tanh units, z = 50, decoder bias at the logit of the mean training pixel, Adam with lr 1e-3 decaying
to 1e-4 over stages of 3^i epochs, batch size 20; test NLL from K = 5000 importance samples per image.
Each model trains for its own number of epochs (the paper: 3,280) with the schedule shrunk to fit;
a curve of the test NLL (K = --curve-samples, first --curve-images test images) is taken at epochs
1, 2, 4, 8, ... and at the end, and the final NLL uses all 10,000 test images.

    python benchmarks/mnist_nll.py --data-dir ../shared/data --epochs 100,30,3      # budgeted, CPU
    python benchmarks/mnist_nll.py --data-dir data --epochs 3280,3280,3280 --device cuda   # the paper's schedule

Each model is a library run (experiment.run_training) in <out>/<model>: checkpoint.pt, metrics.json and its
figures; then <out>/results.json and <out>/nll_curve.png, and prints a
markdown table next to the published numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import pyro
import torch
from matplotlib.figure import Figure

from pyro_vae.commands.cli import int_list
from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.pixels import PreparedData
from pyro_vae.evaluation.bounds import evaluate_bounds
from pyro_vae.models.vae import VAE
from pyro_vae.runs.experiment import load_run, resolve_device, run_training
from pyro_vae.runs.run_folder import writable_dir
from pyro_vae.training import checkpoint
from pyro_vae.training.state import EpochRecord

# name -> (objective, K); Burda et al. 2016, Table 1 analogue for static binarization, in nats
MODELS = {"vae": ("trace", 1), "iwae5": ("iwae", 5), "iwae50": ("iwae", 50)}
PUBLISHED = {"vae": 88.71, "iwae5": 87.63, "iwae50": 87.10}
LABELS = {"vae": "VAE (k=1)", "iwae5": "IWAE k=5", "iwae50": "IWAE k=50"}


def curve_epochs(epochs: int) -> set[int]:
    """1, 2, 4, 8, ... up to ``epochs``, and ``epochs`` itself."""
    return {2**i for i in range(epochs.bit_length()) if 2**i <= epochs} | {epochs}


def run_model(name: str, epochs: int, a: argparse.Namespace, out: Path) -> dict:
    elbo, k = MODELS[name]
    pyro.set_rng_seed(a.seed)
    model_config = ModelConfig(z_dim=50, hidden=(200, 200), activation="tanh", likelihood="bernoulli")
    data_config = DataConfig(dataset="binarized-mnist", data_dir=a.data_dir, download=not a.no_download, seed=a.seed)
    train_config = TrainConfig(epochs=epochs, batch_size=a.batch_size, lr=1e-3, elbo=elbo, num_particles=k,
                               lr_schedule="burda")
    run_config = RunConfig(device=a.device, init_output_bias=True, eval_samples=0)  # the final NLL is taken below
    curve, at = [], curve_epochs(epochs)
    train_seconds = 0.0

    def on_epoch(record: EpochRecord, vae: VAE, data: PreparedData) -> None:
        nonlocal train_seconds
        train_seconds += record.seconds
        if record.epoch in at:
            report = evaluate_bounds(vae, data.test[: a.curve_images], ks=(a.curve_samples,), diagnose=False)
            curve.append({"epoch": record.epoch, "train_seconds": train_seconds, "valid_bound": record.valid_bound,
                          "test_nll": -report.log_likelihood.mean, "test_nll_se": report.log_likelihood.se})
            print(f"  {name} epoch {record.epoch}: test NLL {-report.log_likelihood.mean:.2f} "
                  f"(K={a.curve_samples}, {a.curve_images} images), {train_seconds / 60:.1f} min training",
                  flush=True)

    run_training(model_config, data_config, train_config, out / name, run_config, progress=False, overwrite=True,
                 callback=on_epoch)
    vae, data, _ = load_run(out / name / "checkpoint.pt", a.device, a.data_dir)
    threads = torch.get_num_threads()
    if a.eval_threads:
        torch.set_num_threads(a.eval_threads)
    start = time.perf_counter()
    report = evaluate_bounds(vae, data.test, ks=(1, k, a.num_samples) if k > 1 else (1, a.num_samples))
    eval_seconds = time.perf_counter() - start
    torch.set_num_threads(threads)
    print("\n".join(f"  {line}" for line in report.lines()), flush=True)
    return {
        "model": name, "objective": elbo, "k": k, "epochs": epochs, "train_seconds": train_seconds,
        "eval_seconds": eval_seconds, "test_nll": -report.log_likelihood.mean, "test_nll_se": report.log_likelihood.se,
        "test_elbo": report.elbo.mean, "report": report.to_dict(), "curve": curve,
        "published_nll": PUBLISHED[name],
    }


def plot_curves(results: list[dict], path: Path) -> None:
    fig = Figure(figsize=(11, 4))
    by_epoch, by_time = fig.subplots(1, 2, sharey=True)
    for i, r in enumerate(results):
        color = f"C{i}"
        epochs = [c["epoch"] for c in r["curve"]]
        minutes = [c["train_seconds"] / 60 for c in r["curve"]]
        nll = [c["test_nll"] for c in r["curve"]]
        by_epoch.plot(epochs, nll, marker="o", color=color, label=LABELS[r["model"]])
        by_time.plot(minutes, nll, marker="o", color=color, label=LABELS[r["model"]])
        for ax in (by_epoch, by_time):
            ax.axhline(r["published_nll"], color=color, linestyle=":", linewidth=1)
    by_epoch.set_xscale("log", base=2)
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training wall time (minutes)")
    by_epoch.set_ylabel("test NLL (nats, lower is better)")
    by_epoch.set_title("dotted: Burda et al. 2016 after 3,280 epochs", fontsize=9)
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data", help="folder holding binarized_mnist_*.amat (or its binarized_mnist/)")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS),
                   help="comma-separated: vae,iwae5,iwae50")
    p.add_argument("--epochs", type=int_list, required=True,
                   help="epochs per model, comma-separated, in --models order")
    p.add_argument("--batch-size", type=int, default=20, help="Burda et al. use 20 (default: %(default)s)")
    p.add_argument("--num-samples", type=int, default=5000, help="K for the final test NLL (default: %(default)s)")
    p.add_argument("--curve-samples", type=int, default=1000)
    p.add_argument("--curve-images", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--eval-threads", type=int, default=None, help="torch threads for the final K=5000 evaluation")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/mnist_nll")
    a = p.parse_args(argv)
    if unknown := [m for m in a.models if m not in MODELS]:
        p.error(f"unknown model {unknown[0]!r}: choose from {', '.join(MODELS)}")
    if len(a.epochs) != len(a.models):
        p.error(f"--epochs gives {len(a.epochs)} numbers for {len(a.models)} models")
    if a.threads:
        torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING)
    pyro.enable_validation(False)  # the data's support is checked once by build()
    out = writable_dir(a.out)
    results = []
    for name, epochs in zip(a.models, a.epochs):
        print(f"{name}: {epochs} epochs", flush=True)
        results.append(run_model(name, epochs, a, out))
        (out / "results.json").write_text(json.dumps({
            "command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads for training, {a.eval_threads or torch.get_num_threads()} "
            f"for the final evaluation, {resolve_device(a.device)}",
            "versions": checkpoint.versions(), "results": results}, indent=2) + "\n")
        plot_curves(results, out / "nll_curve.png")
    print("\n| model | epochs | training time | test NLL, K=5000 (ours) | published (3,280 epochs) | gap |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {LABELS[r['model']]} | {r['epochs']} | {r['train_seconds'] / 60:.0f} min | {r['test_nll']:.2f} ± "
              f"{r['test_nll_se']:.2f} | {r['published_nll']:.2f} | {r['test_nll'] - r['published_nll']:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
