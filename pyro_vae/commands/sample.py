"""pyro-vae-sample: prior samples, reconstructions and latent interpolations of a trained VAE, as PNG grids and a .pt
of the tensors (its flags: flags/sample.py)."""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import pyro
import torch

from pyro_vae.commands.cli import startup_done
from pyro_vae.errors import UsageError
from pyro_vae.evaluation.memory import estimator_bytes, require_memory
from pyro_vae.files import atomic_write
from pyro_vae.models.vae import VAE
from pyro_vae.runs.experiment import load_run
from pyro_vae.runs.parts import file_hash
from pyro_vae.runs.per_image import figure_stamp
from pyro_vae.runs.plots import image_grid, plot_reconstructions, plot_samples, save_grid
from pyro_vae.runs.run_folder import held_folder, require_own_folder, writable_dir
from pyro_vae.training.distributed import SINGLE

log = logging.getLogger("pyro_vae")


@torch.no_grad()
def prior_samples(vae: VAE, num: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """z from the prior at temperature T (N(0, T^2 I); with two layers every draw's noise scaled by T), and the
    mean of p(x|z) of each.   -> (num, Z), (num, D)"""
    z = vae.prior_z(num, temperature=temperature)  # (num, Z)
    try:
        images = vae.decode_mean(z)
    except ValueError:  # the likelihood's argument check: a NaN output of the decoder
        images = torch.full((), float("nan"))
    if not torch.isfinite(images).all():
        raise UsageError(f"at `temperature={temperature:g}` the decoder's images are not finite (z of size up to "
                         f"{z.abs().max().item():.3g}, far outside the N(0, I) it was trained on): lower `temperature` "
                         "(1 is the prior)")
    return z, images


@torch.no_grad()
def interpolation(vae: VAE, first: torch.Tensor, second: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The straight line from the latent mean of image ``first`` to that of ``second`` (D,) in ``steps`` points,
    ends included, and the mean of p(x|z) at each.   -> (steps, Z), (steps, D)"""
    ends = vae.guide_center(torch.stack([first, second]))  # (2, Z)
    t = torch.linspace(0, 1, steps, device=ends.device)[:, None]  # (steps, 1)
    z = (1 - t) * ends[0] + t * ends[1]
    return z, vae.decode_mean(z)


def run(a: argparse.Namespace) -> None:
    pyro.set_rng_seed(a.seed)
    vae, data, state = load_run(a.checkpoint, a.device, a.data_dir)
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    if a.interpolate is not None:
        if max(a.interpolate) >= len(data.test):
            raise UsageError(f"--interpolate {a.interpolate[0]},{a.interpolate[1]}: the test set has "
                             f"{len(data.test)} images, numbered 0 to {len(data.test) - 1}")
        if a.interpolate_images < 2:
            raise UsageError(f"--interpolate-images {a.interpolate_images}: an interpolation needs at least its two "
                             "ends, --interpolate-images 2")
    # refused now, naming the flag, rather than failing late: the images, their grid and its PNG (about 3 copies)
    device = next(vae.parameters()).device
    require_memory(3 * estimator_bytes(vae, vae.x_dim, 2 * a.num, 1), device, f"--num {a.num} samples and "
                   "reconstructions, with their figures", "lower --num")
    if a.interpolate is not None:
        require_memory(3 * estimator_bytes(vae, vae.x_dim, a.interpolate_images, 1), device,
                       f"an interpolation of {a.interpolate_images} images, with its figure",
                       "lower --interpolate-images")
    out = writable_dir(Path(a.checkpoint).parent / "samples" if a.out is None else a.out)
    require_own_folder(out, a.checkpoint, a.overwrite)
    stamp = figure_stamp(file_hash(a.checkpoint), state.get("epoch"))
    vae.eval()
    with held_folder(out, SINGLE):  # no training run or other command writes here meanwhile
        z, samples = prior_samples(vae, a.num, a.temperature)
        x = data.test[: a.num]
        with torch.no_grad():
            reconstructions = vae.reconstruct(x)
        tensors = {"z": z.cpu(), "samples": samples.cpu(), "temperature": a.temperature,
                   "test_images": x.cpu(), "reconstructions": reconstructions.cpu(),
                   "image_shape": data.image_shape, "checkpoint_sha256": stamp["checkpoint_sha256"]}
        plot_samples(samples, data.image_shape, out / "samples.png", metadata=stamp,
                     title=f"mean of p(x|z), z ~ p(z) at temperature {a.temperature:g}")
        plot_reconstructions(x, reconstructions, data.image_shape, out / "reconstructions.png", metadata=stamp)
        written = ["samples.png", "reconstructions.png"]
        if a.interpolate is not None:
            first, second = a.interpolate
            line_z, line = interpolation(vae, data.test[first], data.test[second], a.interpolate_images)
            tensors.update(interpolation_z=line_z.cpu(), interpolation=line.cpu(), interpolated=a.interpolate)
            ends = torch.stack([data.test[first], data.test[second]])
            grid = image_grid(torch.cat([ends[:1], line, ends[1:]]), data.image_shape, a.interpolate_images + 2)
            save_grid(grid, f"test image {first}, the decoded line between their latent means, test image {second}",
                      out / "interpolation.png", metadata=stamp)
            written.append("interpolation.png")
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        atomic_write(out / "samples.pt", buffer.getvalue())
        written.append("samples.pt")
    log.info("wrote %s: %s", out, " ".join(written))
