"""Figures from tensors, written as PNG. Uses matplotlib's Figure directly (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.utils import make_grid

from pyro_vae.evaluation import BoundsReport
from pyro_vae.train import EpochRecord


def _grid(images: Tensor, image_shape: tuple[int, int], nrow: int) -> Tensor:
    """(N, D) in [0, 1] -> one (H', W') image of the N images in rows of ``nrow``."""
    tiles = images.detach().float().cpu().clamp(0, 1).reshape(-1, 1, *image_shape)
    return make_grid(tiles, nrow=nrow, padding=2, pad_value=1.0)[0]


def _save_grid(grid: Tensor, title: str, path: str | Path) -> None:
    fig = Figure(figsize=(grid.shape[1] / 40, grid.shape[0] / 40 + 0.5))
    ax = fig.add_subplot()
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def plot_reconstructions(x: Tensor, reconstruction: Tensor, image_shape: tuple[int, int], path: str | Path) -> None:
    """Data in the odd rows, the mean of p(x|z = E_q z) below each in the even rows.   (N, D), (N, D)"""
    nrow = min(len(x), 8)
    rows = [t for i in range(0, len(x), nrow) for t in (x[i : i + nrow], reconstruction[i : i + nrow])]
    _save_grid(_grid(torch.cat(rows), image_shape, nrow), "data (odd rows) and reconstructions (even rows)", path)


def plot_samples(images: Tensor, image_shape: tuple[int, int], path: str | Path) -> None:
    """Means of p(x|z) for z drawn from the prior.   (N, D)"""
    _save_grid(_grid(images, image_shape, 8), "mean of p(x|z), z ~ N(0, I)", path)


def plot_history(
    history: Sequence[EpochRecord], path: str | Path, test_log_likelihood: float | None = None,
    objective: str = "ELBO", kept_epoch: int | None = None,
) -> None:
    """Train, validation and test ``objective`` per epoch, with the final test log p^(x) when
    given, drawn at ``kept_epoch`` (the epoch whose parameters were kept; default the last)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    epochs = [r.epoch for r in history]
    marker = "o" if len(history) <= 50 else None
    ax.plot(epochs, [r.train_elbo for r in history], marker=marker, label=f"train {objective} (running, during epoch)")
    ax.plot(epochs, [r.valid_elbo for r in history], marker=marker, label=f"validation {objective}")
    ax.plot(epochs, [r.test_elbo for r in history], marker=marker, label=f"test {objective}")
    if test_log_likelihood is not None:
        ax.plot([kept_epoch or epochs[-1]], [test_log_likelihood], marker="*", markersize=12, linestyle="none",
                label=f"test log p̂(x) = {test_log_likelihood:.2f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def plot_bounds(report: BoundsReport, path: str | Path, title: str = "") -> None:
    """IWAE bound L_K against K (log axis) with ± 2 SE bars, the ELBO as a horizontal line."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ks = list(report.iwae)
    ax.errorbar(ks, [report.iwae[k].mean for k in ks], yerr=[2 * report.iwae[k].se for k in ks],
                marker="o", capsize=3, label="IWAE bound $\\mathcal{L}_K$ (± 2 SE over images)")
    ax.axhline(report.elbo.mean, color="C3", linestyle="--", label=f"ELBO = {report.elbo.mean:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("K (importance samples)")
    ax.set_ylabel("nats per image")
    ax.set_title(title or f"gap log p̂(x) − ELBO = {report.gap.mean:.2f} ± {report.gap.se:.2f} nats "
                 f"({report.num_datapoints} images)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
