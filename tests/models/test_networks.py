import pytest
import torch

from pyro_vae.models.networks import ACTIVATIONS, Decoder, Encoder, mlp


@pytest.mark.parametrize("hidden", [(), (7,), (7, 5)])
def test_encoder_shapes_and_positive_scale(hidden):
    encoder = Encoder(x_dim=12, hidden=hidden, z_dim=3)
    loc, scale = encoder(torch.rand(4, 12))
    assert loc.shape == scale.shape == (4, 3)
    assert (scale > 0).all()


def test_decoder_maps_any_leading_shape():
    decoder = Decoder(z_dim=3, hidden=(5,), out_features=24)
    assert decoder(torch.randn(4, 3)).shape == (4, 24)
    assert decoder(torch.randn(6, 4, 3)).shape == (6, 4, 24)  # particles x batch


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_layers(activation):
    net = mlp(10, (8, 6), 4, activation)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 8), (8, 6), (6, 4)]
    assert isinstance(net[1], ACTIVATIONS[activation])
    assert isinstance(net[-1], torch.nn.Linear)  # no activation on the output
