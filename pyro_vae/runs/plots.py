"""Figures from tensors, written as PNG. Uses matplotlib's Figure directly (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import torch
from matplotlib.figure import Figure
from torch import Tensor

from pyro_vae.evaluation.bounds import BoundsReport
from pyro_vae.files import save_figure
from pyro_vae.training.state import EpochRecord


def image_grid(images: Tensor, image_shape: tuple[int, int, int], nrow: int, padding: int = 2) -> Tensor:
    """(N, D) in [0, 1], images of ``image_shape`` (C, H, W) -> one (C, H', W') image of the N images in rows of
    ``nrow``, ``padding`` white pixels around each: the layout of torchvision's make_grid (tested equal), without
    the second or so that importing torchvision adds to every run."""
    tiles = images.detach().float().cpu().clamp(0, 1).reshape(-1, *image_shape)  # (N, C, H, W)
    if len(tiles) == 1:
        return tiles[0]  # as make_grid: one image, unpadded
    (channels, height, width), cols = image_shape, min(nrow, len(tiles))
    rows = -(-len(tiles) // cols)
    grid = torch.ones(channels, rows * (height + padding) + padding, cols * (width + padding) + padding)
    for i, tile in enumerate(tiles):
        top, left = (padding + k * (size + padding) for k, size in zip(divmod(i, cols), (height, width)))
        grid[:, top : top + height, left : left + width] = tile
    return grid


def grid_pixels(grid: Tensor) -> Any:
    """An image grid (C, H', W') as imshow takes it: (H', W') for grey, (H', W', 3) for colour (numpy)."""
    return grid[0].numpy() if len(grid) == 1 else grid.permute(1, 2, 0).numpy()


def save_grid(grid: Tensor, title: str, path: str | Path, metadata: dict[str, str | None] | None = None) -> None:
    """An image grid (C, H', W') in [0, 1] as a PNG, grey for C = 1 and in colour for C = 3, at one screen pixel per
    image pixel and a half."""
    fig = Figure(figsize=(grid.shape[2] / 40, grid.shape[1] / 40 + 0.5))
    ax = fig.add_subplot()
    ax.imshow(grid_pixels(grid), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    save_figure(fig, path, metadata)


def reconstruction_grid(x: Tensor, reconstruction: Tensor, image_shape: tuple[int, int, int]) -> Tensor:
    """Data in the odd rows of 8, the mean of p(x|z = E_q z) below each in the even rows.
    (N, D), (N, D) -> (C, H', W')"""
    nrow = min(len(x), 8)
    rows = [t for i in range(0, len(x), nrow) for t in (x[i : i + nrow], reconstruction[i : i + nrow])]
    return image_grid(torch.cat(rows), image_shape, nrow)


def plot_reconstructions(x: Tensor, reconstruction: Tensor, image_shape: tuple[int, int, int], path: str | Path,
                         metadata: dict[str, str | None] | None = None) -> None:
    """reconstruction_grid as a PNG.   (N, D), (N, D)"""
    grid = reconstruction_grid(x, reconstruction, image_shape)
    save_grid(grid, "data (odd rows) and reconstructions (even rows)", path, metadata)


def plot_samples(images: Tensor, image_shape: tuple[int, int, int], path: str | Path,
                 metadata: dict[str, str | None] | None = None, title: str = "mean of p(x|z), z ~ p(z)") -> None:
    """Means of p(x|z) for z drawn from the prior.   (N, D)"""
    save_grid(image_grid(images, image_shape, 8), title, path, metadata)


def project_2d(z: Tensor) -> tuple[Tensor, tuple[str, str]]:
    """(N, Z) -> (N, 2): z itself when Z = 2, else its first two principal components (PCA by SVD),
    with the two axis labels."""
    if z.shape[1] == 2:
        return z, ("$z_1$", "$z_2$")
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    explained = 100 * s**2 / (s**2).sum()
    first, second = (f"principal component {i + 1} ({explained[i]:.0f}% of the variance)" for i in (0, 1))
    return centred @ v[:2].T, (first, second)


def plot_latent(loc: Tensor, labels: Tensor | None, path: str | Path, title: str = "",
                classes: Sequence[str] = ()) -> None:
    """The test set's posterior means E_q[z|x] (N, Z): a scatter for Z = 2, else their 2-D PCA
    projection, coloured by class label when there are labels; for Z = 1, their histogram (stacked by class).
    ``classes`` names label i (a folder's class subfolders); without it the labels are shown as numbers."""

    def name(label: int) -> str:
        return classes[label] if label < len(classes) else str(label)

    fig = Figure(figsize=(6, 5.2))
    ax = fig.add_subplot()
    if loc.shape[1] == 1:
        z = loc.detach().float().cpu().numpy()[:, 0]
        if labels is None:
            ax.hist(z, bins=60, color="C0")
        else:
            label_of = labels.cpu().numpy()
            present = sorted(set(label_of.tolist()))
            ax.hist([z[label_of == c] for c in present], bins=60, stacked=True, label=[name(c) for c in present],
                    color=[class_colour(c) for c in present])
            ax.legend(title="class", fontsize=7, ncols=2)
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("test images")
        ax.set_title(title or f"posterior means E[z|x] of {len(z)} test images (1-D latent)", fontsize=9)
        ax.grid(alpha=0.3)
        save_figure(fig, path)
        return
    projected_points, (xlabel, ylabel) = project_2d(loc.detach().float().cpu())
    xy = projected_points.numpy()  # numpy, not torch: matplotlib walks a tensor element by element
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.5)
    else:
        count = int(labels.max()) + 1  # the classes 0 .. count - 1, in tab10's colours (repeating past 10)
        colours = matplotlib.colors.ListedColormap([class_colour(c) for c in range(count)])
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels.cpu().numpy(), cmap=colours, vmin=-0.5, vmax=count - 0.5,
                            s=3, alpha=0.7)
        bar = fig.colorbar(points, ax=ax, ticks=range(count) if count <= 20 else None, label="class")
        if classes and count <= 20:
            bar.ax.set_yticklabels([name(c) for c in range(count)], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    projected = "" if loc.shape[1] == 2 else f", {loc.shape[1]}-D projected by PCA"
    ax.set_title(title or f"posterior means E[z|x] of {len(xy)} test images{projected}", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def class_colour(label: int) -> str:
    """Class ``label``'s colour in the tab10 map, as the scatter of plot_latent colours it."""
    return matplotlib.colors.to_hex(matplotlib.colormaps["tab10"](label % 10))


def manifold_grid(n: int = 20, low: float = 0.05, high: float = 0.95) -> Tensor:
    """n x n points z in R^2 through the inverse Gaussian CDF of an even grid on [low, high]^2, so
    that each covers equal prior mass (Kingma & Welling 2014, Fig. 4). (n*n, 2), rows top to bottom."""
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(low, high, n))
    z2, z1 = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")  # z2 grows upwards
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=-1)


def plot_manifold(images: Tensor, image_shape: tuple[int, int, int], path: str | Path) -> None:
    """Decoded means of manifold_grid(n): (n*n, D) images, z_1 left to right, z_2 bottom to top."""
    n = round(len(images) ** 0.5)
    title = "learned 2-D manifold: mean of p(x|z) on a grid of prior quantiles"
    save_grid(image_grid(images, image_shape, n), title, path)


def plot_history(
    history: Sequence[EpochRecord], path: str | Path, test_bound: float | None = None,
    test_log_likelihood: float | None = None, objective: str = "ELBO", kept_epoch: int | None = None,
) -> None:
    """Train and validation ``objective`` per epoch, with the test ``objective`` and the test
    log p^(x) when given, drawn at ``kept_epoch`` (the epoch whose parameters were kept; default the last)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    epochs = [r.epoch for r in history]
    kept = kept_epoch or epochs[-1]
    marker = "o" if len(history) <= 50 else None
    ax.plot(epochs, [r.train_bound for r in history], marker=marker, label=f"train {objective} (running, during epoch)")
    ax.plot(epochs, [r.valid_bound for r in history], marker=marker, label=f"validation {objective}")
    test = [v for v in (test_bound, test_log_likelihood) if v is not None]
    if test_bound is not None:
        ax.plot([kept], [test_bound], marker="s", markersize=8, linestyle="none",
                label=f"test {objective} = {test_bound:.2f}")
    if test_log_likelihood is not None:
        ax.plot([kept], [test_log_likelihood], marker="*", markersize=12, linestyle="none",
                label=f"test log p̂(x) = {test_log_likelihood:.2f}")
    if len(history) > 3:  # the first epoch's running train bound would squash the rest of the curve
        later = [v for r in history[1:] for v in (r.train_bound, r.valid_bound)] + test
        top = max(later)
        ax.set_ylim(min(later) - 0.05 * (top - min(later)), top + 0.1 * (top - min(later)))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def plot_bounds(report: BoundsReport, path: str | Path, title: str = "",
                metadata: dict[str, str | None] | None = None) -> None:
    """IWAE bound L_K against K (log axis) with ± 2 SE bars, the ELBO as a horizontal line."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ks = list(report.iwae)
    ax.errorbar(ks, [report.iwae[k].mean for k in ks], yerr=[2 * (report.iwae[k].se or 0.0) for k in ks],
                marker="o", capsize=3, label="IWAE bound $\\mathcal{L}_K$ (± 2 SE over images)")
    ax.axhline(report.elbo.mean, color="C3", linestyle="--", label=f"ELBO = {report.elbo.mean:.2f}")
    if report.ais:  # the longest AIS run as a line; the shorter ones in its label
        *shorter, last = report.ais
        others = "".join(f"; {row.num_steps}: {row.log_likelihood.mean:.2f}" for row in reversed(shorter))
        ax.axhline(last.log_likelihood.mean, color="C2", linestyle=":",
                   label=f"AIS, {last.num_steps} steps = {last.log_likelihood.mean:.2f}{others}")
    ax.set_xscale("log")
    ax.set_xlabel("K (importance samples)")
    ax.set_ylabel("nats per image")
    ax.set_title(title or f"gap log p̂(x) − ELBO = {str(report.gap).strip()} nats "
                 f"({report.num_datapoints} images)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path, metadata)
