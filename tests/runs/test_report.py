"""The end of a run: the line that says a model learned nothing."""

import logging

import torch

from pyro_vae.config import ModelConfig
from pyro_vae.data.pixels import PreparedData
from pyro_vae.models.vae import VAE
from pyro_vae.runs.report import reconstruction_error


def test_reconstructions_no_better_than_the_mean_image_are_said(caplog):
    """Two kinds of 4x4 images, half bright on the left and half on the right. A VAE whose decoder ignores z
    (weights 0, output bias the mean image's logits: what 90 steps of training left, issue 37) reconstructs
    the mean image and is said to have learned little; one that reconstructs each kind is not."""
    torch.manual_seed(0)
    left = torch.zeros(4, 4)
    left[:, :2] = 1
    x = torch.stack([left.flatten(), left.flip(1).flatten()]).repeat(8, 1)  # (16, 16)
    data = PreparedData(train=x, valid=x, test=x, binarize="none", image_shape=(1, 4, 4))
    vae = VAE(16, ModelConfig(z_dim=2, hidden=(8,)))
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.zero_()
    vae.init_output_bias(x)
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        blob = reconstruction_error(vae, data)
    assert abs(blob["reconstruction_mse"] - blob["mean_image_mse"]) < 1e-4  # the mean image, up to the clamp of logits
    assert "the reconstructions are no better than the training images' mean image" in caplog.text
    caplog.clear()
    vae.reconstruct = lambda images: images * 0.9 + 0.05  # each image nearly itself
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        learned = reconstruction_error(vae, data)
    assert learned["reconstruction_mse"] < 0.1 * learned["mean_image_mse"] and not caplog.text
