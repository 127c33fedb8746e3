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


def test_the_final_estimate_moves_its_bar_and_says_when_it_will_be_long(monkeypatch, caplog):
    """66 test images at K = 1,000 were one pass of 11.5 minutes without a word (issue 37): now at least
    PROGRESS_STEPS passes, and after the first, one line when the whole will take longer than parts.LONG."""
    from pyro_vae.config import TrainConfig
    from pyro_vae.runs import report
    from pyro_vae.training.state import EpochRecord, TrainState

    x = torch.bernoulli(torch.full((66, 16), 0.3))
    data = PreparedData(train=x, valid=x, test=x, binarize="none", image_shape=(1, 4, 4))
    vae = VAE(16, ModelConfig(z_dim=2, hidden=(8,)))
    state = TrainState(epoch=1, history=[EpochRecord(1, 1e-3, -10.0, -10.0, 0.1)])
    passes = []
    real = report.datapoint_bounds

    def counted(vae, x, **options):
        passes.append(options["batch_size"])
        first = options.pop("first_batch")
        return real(vae, x, first_batch=lambda seconds, batches: first(700.0 / batches, batches), **options)

    monkeypatch.setattr(report, "datapoint_bounds", counted)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        report.final_numbers(vae, data, state, TrainConfig(), eval_samples=50)
    assert passes == [4]  # 66 images in 17 passes of 4 (was one pass of 100)
    assert "the final estimate (K = 50 on 66 test images) will take about 12 min: `eval_samples=0` skips it" in \
        caplog.text
