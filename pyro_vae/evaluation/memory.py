"""Refusing, up front, work that cannot fit in memory: one line naming the size, instead of an
allocator's traceback or, with Linux's overcommit, a process the kernel kills minutes later.

The estimates count the tensors a pass must hold at once (float32), so they are lower bounds:
what they refuse cannot run; what they let through may still need somewhat more.
"""

from __future__ import annotations

import torch

from pyro_vae.config import ModelConfig
from pyro_vae.models.flows import iaf_width
from pyro_vae.models.hierarchical import TOP_HIDDEN
from pyro_vae.models.vae import VAE
from pyro_vae.resources import available_bytes, gigabytes, require_memory  # noqa: F401 (this module's API)

FLOAT = 4  # bytes of a float32


def mlp_parameters(widths: list[int]) -> int:
    """Weights and biases of linear layers of these widths (networks.mlp)."""
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:]))


def parameter_count(config: ModelConfig, x_dim: int, params_per_pixel: int = 2,
                    image_shape: tuple[int, int, int] | None = None) -> int:
    """Parameters of the encoder (x -> hidden -> loc and log-variance) and the decoder (z -> the
    hidden widths reversed -> ``params_per_pixel`` outputs per pixel; 2 counts the Gaussian's). The
    convolutional networks (``config.arch`` conv, for images of ``image_shape``) are built on torch's meta
    device, which allocates nothing, and counted."""
    if config.arch == "conv":
        from pyro_vae.models.conv import ConvDecoder, ConvEncoder

        if image_shape is None:
            raise ValueError("`arch=conv` needs the images' shape (C, H, W)")
        with torch.device("meta"):
            networks = (ConvEncoder(image_shape, config.hidden[-1], config.z_dim, config.activation),
                        ConvDecoder(config.z_dim, config.hidden[-1], image_shape, params_per_pixel, config.activation))
        return sum(p.numel() for network in networks for p in network.parameters())
    encoder = mlp_parameters([x_dim, *config.hidden, 2 * config.z_dim])
    decoder = mlp_parameters([config.z_dim, *config.hidden[::-1], params_per_pixel * x_dim])
    top = 0 if not config.z2_dim else (  # q(z2|z) and p(z|z2) of a second stochastic layer
        mlp_parameters([config.z_dim, *TOP_HIDDEN, 2 * config.z2_dim])
        + mlp_parameters([config.z2_dim, *TOP_HIDDEN[::-1], 2 * config.z_dim]))
    return encoder + decoder + top + flow_parameters(config)


def flow_parameters(config: ModelConfig) -> int:
    """The IAF guide's parameters (``config.flow_layers`` transforms, flows.IAF), counted before they are built (a
    million layers took most of a minute to build before their memory ran out). Each layer's autoregressive
    network takes z and the context h (Z + H) to W = iaf_width(Z, H) hidden units, and those to a location and a scale
    per dimension (2 Z); tests/evaluation/test_memory.py checks the count against built ones."""
    if config.guide != "iaf":
        return 0
    z, h = config.z_dim, config.hidden[-1]
    width = iaf_width(z, h)
    return config.flow_layers * ((z + h) * width + width + width * 2 * z + 2 * z)


def sample_floats(vae: VAE, x_dim: int) -> int:
    """Floats one (sample of z, image of ``x_dim`` pixels) pair holds in a vectorized pass: the
    decoder's activations (before and after the nonlinearity), z and its log-densities, and a few
    (D,) tensors for the likelihood's parameters, the data broadcast against them and the
    log-density. Models without a VAE's config count the (D,) tensors alone."""
    config = getattr(vae, "config", None)
    hidden, z_dim = (sum(config.hidden), config.z_dim) if config is not None else (0, 0)
    hidden = getattr(getattr(vae, "decoder", None), "activation_floats", hidden)  # a conv decoder's feature maps
    per_pixel = getattr(getattr(vae, "likelihood", None), "params_per_pixel", 1)
    return 2 * hidden + 8 * z_dim + 4 * x_dim * per_pixel


def training_bytes(vae: VAE, batch_size: int, num_particles: int) -> int:
    """Weights, gradients and Adam's two moments, and one step's activations."""
    weights = sum(p.numel() for p in vae.parameters())
    return FLOAT * (4 * weights + batch_size * num_particles * sample_floats(vae, vae.x_dim))


def estimator_bytes(vae: VAE, x_dim: int, batch_size: int, chunk_size: int) -> int:
    """One pass of the importance-sampling estimator: ``chunk_size`` samples for ``batch_size`` images."""
    return FLOAT * batch_size * chunk_size * sample_floats(vae, x_dim)


def require_bounds_memory(vae: VAE, x_dim: int, num_images: int, num_samples: int, batch_size: int,
                          chunk_size: int, device: torch.device | str, samples_setting: str = "num_samples",
                          sizes_settable: bool = True, batch_setting: str = "batch_size") -> None:
    """A UsageError, up front, when datapoint_bounds cannot fit in free memory: one pass decodes ``chunk_size``
    samples for ``batch_size`` images, and the K = ``num_samples`` log-weights of those images are kept. The
    message names the setting that makes it too large (``samples_setting`` and ``batch_setting``: how the caller
    calls K and batch_size; ``sizes_settable``: whether the caller's user can set batch_size and chunk_size at
    all)."""
    images, chunk = min(batch_size, num_images), min(chunk_size, num_samples)
    decoding, weights = estimator_bytes(vae, x_dim, images, chunk), FLOAT * num_samples * images
    if not sizes_settable:
        remedy = f"lower `{samples_setting}` (K)"
    elif weights > decoding:
        remedy = f"lower `{samples_setting}` (K) or `{batch_setting}`"
    else:
        remedy = f"lower `chunk_size` or `{batch_setting}`"
    require_memory(decoding + weights, device, f"importance sampling with K = {num_samples} ({chunk} samples of z "
                   f"at a time) for {images} images at once", remedy)


def require_ais_memory(vae: VAE, x_dim: int, num_images: int, num_steps: int, num_chains: int, batch_size: int,
                       device: torch.device | str, steps_setting: str = "num_steps",
                       batch_setting: str = "batch_size") -> None:
    """A UsageError, up front, when AIS cannot fit in free memory: a pass holds ``num_chains`` chains for
    ``batch_size`` images with their gradients, and the schedule (T + 2 float64) and the frozen step sizes (T per
    image) are kept for the whole run, which with an absurd T is what does not fit. The message names the setting
    that makes it too large, as the caller calls it (``steps_setting``, ``batch_setting``)."""
    images = min(batch_size, num_images)
    chains = 2 * estimator_bytes(vae, x_dim, images, num_chains)  # the HMC gradients as well
    schedule = 8 * (num_steps + 2) + FLOAT * num_steps * images
    remedy = f"lower `{steps_setting}`" if schedule > chains else f"lower `num_chains` or `{batch_setting}`"
    require_memory(chains + schedule, device, f"AIS with {num_steps} steps and {num_chains} chains for {images} "
                   "images at once", remedy)
