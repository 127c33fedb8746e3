"""Convolutional encoder and decoder for images of shape (C, H, W), on the same flat (..., C*H*W) pixels as the MLPs.

The encoder halves the image with strided 4x4 convolutions of 32, 64 and 128 channels (as many as 2 divides H
and W, up to three, at least two), then a linear layer of ``hidden`` units, then the head of loc and log-variance;
the decoder mirrors it with transposed convolutions (DCGAN's layout, Radford et al. 2016). The decoder's last
layer has a bias per output channel: ``init_output_bias`` starts it at each channel's mean intensity.
"""

from __future__ import annotations

from torch import Tensor, nn

from pyro_vae.errors import UsageError
from pyro_vae.models.networks import ACTIVATIONS, Decoder, Encoder

CONV_CHANNELS = (32, 64, 128)
MIN_HALVINGS = 2  # a 28x28 MNIST digit halves twice, to 7x7; 32x32 CIFAR three times, to 4x4


def halvings(image_shape: tuple[int, int, int]) -> int:
    """How many stride-2 layers an image of ``image_shape`` (C, H, W) gets; a UsageError naming the nearest sizes
    that work when 2 does not divide H and W at least MIN_HALVINGS times."""
    _, height, width = image_shape
    count = 0
    while count < len(CONV_CHANNELS) and height % 2 ** (count + 1) == 0 and width % 2 ** (count + 1) == 0:
        count += 1
    if count < MIN_HALVINGS:
        step = 2**MIN_HALVINGS

        def near(n: int) -> str:
            below, above = n // step * step, -(-n // step) * step
            return str(above) if below in (0, above) else f"{below} or {above}"

        raise UsageError(f"`arch=conv` halves the image {MIN_HALVINGS} times, so height and width must be multiples "
                         f"of {step}, and these images are {height}x{width}: resize them (`image_size`) to "
                         f"{near(height)} by {near(width)}, or use `arch=mlp`")
    return count


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UsageError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvEncoder(Encoder):
    """Amortized q(z|x) = N(loc(x), diag scale(x)^2) from convolutional features of the image: an Encoder (the
    guide and the flow read it through forward and with_features) with other layers."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: int, z_dim: int, activation: str = "relu") -> None:
        nn.Module.__init__(self)  # not the MLP's layers
        self.image_shape = image_shape
        channels, height, width = image_shape
        k = halvings(image_shape)
        layers: list[nn.Module] = []
        for out in CONV_CHANNELS[:k]:
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), _activation(activation)]
            channels = out
        flat = channels * (height >> k) * (width >> k)
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, hidden), _activation(activation))
        self.head = nn.Linear(hidden, 2 * z_dim)

    def with_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """loc, scale and the features h(x) before the head, the context of a flow guide.
        (..., C*H*W) -> (..., Z), (..., Z), (..., hidden)"""
        lead = x.shape[:-1]
        h = self.features(x.reshape(-1, *self.image_shape)).reshape(*lead, -1)
        loc, log_var = self.head(h).chunk(2, dim=-1)
        return loc, (0.5 * log_var).exp(), h

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc, scale, _ = self.with_features(x)
        return loc, scale


class ConvDecoder(Decoder):
    """z (..., Z) -> decoder output (..., P*C*H*W): P maps of C*H*W outputs, the layout the likelihoods read
    (the Gaussian's loc for every pixel, then its log-variance for every pixel). A Decoder with other layers."""

    def __init__(self, z_dim: int, hidden: int, image_shape: tuple[int, int, int], params_per_pixel: int,
                 activation: str = "relu") -> None:
        nn.Module.__init__(self)  # not the MLP's layers
        self.image_shape, self.params_per_pixel = image_shape, params_per_pixel
        channels, height, width = image_shape
        k = halvings(image_shape)
        widths = CONV_CHANNELS[:k]
        self.start = (widths[-1], height >> k, width >> k)
        self.dense = nn.Sequential(nn.Linear(z_dim, hidden), _activation(activation),
                                   nn.Linear(hidden, widths[-1] * (height >> k) * (width >> k)),
                                   _activation(activation))
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[::-1], widths[::-1][1:]):
            layers += [nn.ConvTranspose2d(fan_in, fan_out, 4, stride=2, padding=1), _activation(activation)]
        layers.append(nn.ConvTranspose2d(widths[0], channels * params_per_pixel, 4, stride=2, padding=1))
        self.deconv = nn.Sequential(*layers)
        # floats of one sample's activations before the output (evaluation/memory.py's estimates)
        self.activation_floats = hidden + widths[-1] * (height >> k) * (width >> k) + sum(
            c * (height >> i) * (width >> i) for i, c in zip(range(k - 1, 0, -1), widths[::-1][1:]))

    def set_output_bias(self, bias: Tensor) -> None:
        """Start the output at ``bias`` (P*C*H*W,), as well as a bias per output channel can: each channel's mean
        of it (the MLP's last layer has a bias per output and takes it whole)."""
        last = self.deconv[-1]
        assert isinstance(last, nn.ConvTranspose2d) and last.bias is not None
        last.bias.copy_(bias.reshape(len(last.bias), -1).mean(dim=1))

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        out = self.deconv(h)  # (n, P*C, H, W), channel p*C + c
        return out.reshape(*lead, -1)  # (..., P*C*H*W): parameter p of pixel (c, h, w) at p*D + c*H*W + h*W + w
