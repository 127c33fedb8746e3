"""The convolutional encoder and decoder: sizes from the image shape, the likelihoods' output layout, the VAE."""

import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError
from pyro_vae.evaluation.memory import parameter_count
from pyro_vae.inference.estimators import log_marginal_likelihood
from pyro_vae.models.conv import ConvDecoder, ConvEncoder, halvings
from pyro_vae.models.likelihoods import make_likelihood
from pyro_vae.models.model import LATENT, OBSERVED
from pyro_vae.models.vae import VAE


@pytest.mark.parametrize("shape, expected", [((1, 28, 28), 2), ((3, 32, 32), 3), ((3, 40, 40), 3), ((1, 20, 12), 2),
                                             ((3, 64, 64), 3)])
def test_the_image_is_halved_as_often_as_2_divides_it(shape, expected):
    assert halvings(shape) == expected


@pytest.mark.parametrize("shape, nearest", [((1, 30, 28), "28 or 32 by 28"), ((3, 27, 27), "24 or 28 by 24 or 28"),
                                            ((1, 2, 8), "4 by 8")])
def test_a_size_the_strides_do_not_divide_is_refused_with_the_nearest_that_work(shape, nearest):
    with pytest.raises(UsageError, match=f"multiples of 4, and these images are {shape[1]}x{shape[2]}: resize them "
                                         rf"\(`image_size`\) to {nearest}, or use `arch=mlp`"):
        ConvEncoder(shape, 16, 2)


def test_encoder_and_decoder_shapes_with_leading_dimensions():
    shape = (3, 16, 8)
    encoder, decoder = ConvEncoder(shape, 24, 5), ConvDecoder(5, 24, shape, 2)
    x = torch.rand(4, 3 * 16 * 8)
    loc, scale, h = encoder.with_features(x)
    assert loc.shape == scale.shape == (4, 5) and h.shape == (4, 24) and (scale > 0).all()
    assert decoder(torch.randn(7, 4, 5)).shape == (7, 4, 2 * 3 * 16 * 8)  # particles x images


def test_the_decoder_writes_parameter_p_of_channel_c_where_the_likelihoods_read_it():
    """Output channel p*C + c of the last layer is parameter p of colour channel c: at p*D + c*H*W + h*W + w of the
    flat output, the order in which the Gaussian's chunk(2) and the images' (C, H, W) flattening read it."""
    shape = (3, 8, 4)
    decoder = ConvDecoder(2, 8, shape, 2)
    with torch.no_grad():
        last = decoder.deconv[-1]
        last.weight.zero_()
        last.bias.copy_(torch.arange(6.0))  # channel k -> the value k
    out = decoder(torch.randn(1, 2))[0]
    d = 3 * 8 * 4
    for p in range(2):
        for c in range(3):
            assert torch.all(out[p * d + c * 32: p * d + (c + 1) * 32] == p * 3 + c)
    loc, log_var = out.chunk(2)  # what the Gaussian reads
    assert torch.equal(loc.reshape(shape)[1], torch.full((8, 4), 1.0)) and log_var.reshape(shape)[2].eq(5).all()


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian"])
@pytest.mark.parametrize("guide", ["gaussian", "iaf"])
def test_a_conv_vae_scores_and_draws_images(likelihood, guide):
    config = ModelConfig(z_dim=3, hidden=(16,), likelihood=likelihood, guide=guide, arch="conv")
    shape = (3, 8, 12)
    vae = VAE(288, config, image_shape=shape)
    x = torch.bernoulli(torch.full((5, 288), 0.3)) if likelihood == "bernoulli" else torch.rand(5, 288) * 0.9 + 0.05
    trace = poutine.trace(poutine.replay(vae.model, trace=poutine.trace(vae.guide).get_trace(x))).get_trace(x)
    assert trace.nodes[OBSERVED]["fn"].batch_shape == (5,) and trace.nodes[LATENT]["value"].shape == (5, 3)
    log_px = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=20)
    assert log_px.shape == (5,) and torch.isfinite(log_px).all()
    drawn = Predictive(vae.model, num_samples=2)(None, size=4)[OBSERVED]
    assert drawn.shape == (2, 4, 288)
    assert sum(p.numel() for p in vae.parameters()) - (0 if vae.flow is None else sum(
        p.numel() for p in vae.flow.parameters())) == parameter_count(config, 288, vae.likelihood.params_per_pixel,
                                                                      shape)


def test_output_bias_starts_each_channel_at_its_mean():
    config = ModelConfig(z_dim=2, hidden=(8,), arch="conv", likelihood="gaussian")
    vae = VAE(3 * 8 * 8, config, image_shape=(3, 8, 8))
    x = torch.rand(50, 3, 8, 8) * torch.tensor([0.2, 0.5, 0.8])[:, None, None]
    vae.init_output_bias(x.reshape(50, -1))
    wanted = make_likelihood(config).output_bias(x.reshape(50, -1)).reshape(6, -1).mean(1)
    assert torch.allclose(vae.decoder.deconv[-1].bias, wanted)


def test_conv_needs_the_image_shape_and_it_must_match():
    with pytest.raises(UsageError, match="`arch=conv` needs the images' shape"):
        VAE(784, ModelConfig(arch="conv"))
    with pytest.raises(UsageError, match=r"`image_shape=\(1, 28, 27\)` holds 756 pixels, not `x_dim=784`"):
        VAE(784, ModelConfig(arch="conv"), image_shape=(1, 28, 27))
