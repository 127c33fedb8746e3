"""Frozen configuration dataclasses: every default of the package lives here.

Config flows one way: argparse (scripts only) -> these dataclasses -> library functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyro_vae.errors import UsageError


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"`{name}` must be a number, got {value!r}")
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"`{name}` must be positive and finite, got {value}")


def _require_int(**values: object) -> None:
    """A UsageError for a count given as anything but an integer (1.5 epochs trained 2; '20' failed later)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"`{name}` must be an integer, got {value!r}")


# The names of each choice, here so that the command line can offer them without importing torch (its
# parsers answer --help before the library loads); tests/test_config.py checks them against the registries
# that implement them (data.DATASETS, models.LIKELIHOODS, ...).
DATASET_NAMES = ("mnist", "fashion-mnist", "binarized-mnist", "mnist5k", "cifar10", "folder", "array")
LIKELIHOOD_NAMES = ("bernoulli", "continuous-bernoulli", "gaussian", "correlated-gaussian")
ACTIVATION_NAMES = ("relu", "tanh", "softplus", "elu", "leaky-relu")
ELBO_NAMES = ("trace", "meanfield", "iwae")
GUIDES = ("gaussian", "iaf")
ARCHS = ("mlp", "conv")
BINARIZE = ("auto", "dynamic", "threshold", "none")
LR_SCHEDULES = ("constant", "burda")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelConfig:
    z_dim: int = 20  # latent dimension; 20 as in pytorch/examples' 784-400-20 VAE
    hidden: tuple[int, ...] = (400,)  # encoder widths, input side first; the decoder mirrors them
    activation: str = "relu"  # hidden-layer nonlinearity, a key of networks.ACTIVATIONS
    likelihood: str = "bernoulli"  # p(x|z) family, a key of likelihoods.LIKELIHOODS
    # Gaussian likelihood only: lower bound on each pixel's scale. It caps the per-pixel density
    # at 1/(0.01*sqrt(2*pi)), i.e. 3.69 nats, so the constant border pixels of MNIST cannot
    # drive log p(x|z) to +inf; 0.01 is about 2.5 grey levels of 8-bit data.
    scale_floor: float = 0.01
    # q(z|x): gaussian, N(loc(x), diag scale(x)^2); or iaf, that Gaussian through flow_layers inverse
    # autoregressive transforms conditioned on the encoder's last hidden layer (Kingma et al. 2016)
    guide: str = "gaussian"
    flow_layers: int = 2  # iaf only
    # the networks: mlp, on the flattened pixels; or conv, strided convolutions down and transposed ones up, sized
    # from the image shape, with one dense layer of hidden[-1] units (models/conv.py)
    arch: str = "mlp"
    # a second stochastic layer z2 of this size above z (Burda et al. 2016's two-layer VAE, models/hierarchical.py;
    # the command line's --latents 100,50 is z_dim=100, z2_dim=50); 0: one layer
    z2_dim: int = 0

    def __post_init__(self) -> None:
        _require_int(z_dim=self.z_dim, flow_layers=self.flow_layers, z2_dim=self.z2_dim)
        if self.z2_dim < 0:
            raise UsageError(f"`z2_dim` must be 0 (one stochastic layer) or positive, got {self.z2_dim}")
        if self.z2_dim and self.guide != "gaussian":
            raise UsageError(f"a second stochastic layer (`z2_dim={self.z2_dim}`) has a Gaussian guide per layer; "
                             f"`guide={self.guide}` is for one layer: drop it")
        if self.z2_dim and self.arch != "mlp":
            raise UsageError(f"a second stochastic layer (`z2_dim={self.z2_dim}`) is built of dense layers (Burda et "
                             f"al.'s); `arch={self.arch}` is for one layer: drop it")
        _require_positive(z_dim=self.z_dim, scale_floor=self.scale_floor, flow_layers=self.flow_layers)
        if self.guide not in GUIDES:
            raise UsageError(f"unknown guide {self.guide!r}: choose one of {', '.join(GUIDES)}")
        if self.arch not in ARCHS:
            raise UsageError(f"unknown architecture {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if isinstance(self.hidden, (str, bytes)) or not all(
                isinstance(w, int) and not isinstance(w, bool) for w in self.hidden):
            raise UsageError(f"`hidden` must be a tuple of integer widths, e.g. (400,), got {self.hidden!r}")
        if any(width <= 0 for width in self.hidden):
            raise UsageError(f"hidden widths must be positive, got {','.join(map(str, self.hidden))}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"  # a key of data.DATASETS
    # mnist only: when MNIST is neither on disk nor downloadable, use mnist5k (with one logged
    # line) instead of stopping with an error. The default run does; naming dataset mnist does not.
    fallback: bool = True
    data_dir: str = "data"  # where datasets are read from (and downloaded to, when online)
    # dynamic: resample every pixel as Bernoulli(intensity) for each minibatch (Bernoulli default
    # on grey data); threshold: 1 where the pixel is above 0.5 (not the literature's "static
    # binarization", a fixed random draw: that is dataset binarized-mnist); none: keep grey values;
    # auto: dynamic for the
    # Bernoulli likelihood on grey data, none otherwise.
    binarize: str = "auto"
    # add U(0, 1) noise to 8-bit pixels, (k + u)/256, so that a continuous likelihood's log p(x)
    # bounds the probability of the 8-bit image (see pyro_vae.data.pixels.dequantize)
    dequantize: bool = False
    download: bool = True  # try torchvision's download when the files are not on disk
    # folder only: convert the images to 1 (grey) or 3 (RGB) channels; None: what the files are
    channels: int | None = None
    # folder only: resize and centre-crop every image to (height, width); None: the files' own size
    image_size: tuple[int, int] | None = None
    # the SHA-256 of the pixels a folder or an array file gave (set by experiment.build on the data it used):
    # a resume or an evaluation of those files is refused when they changed
    sha256: str | None = None
    seed: int = 0  # shuffles and splits the mnist5k subset; draws the fixed binarized test set

    def __post_init__(self) -> None:
        if self.channels is not None and self.channels not in (1, 3):
            raise UsageError(f"`channels={self.channels}`: choose 1 (grey) or 3 (RGB)")
        if self.image_size is not None:  # a JSON list from a checkpoint, or (height, width)
            size = tuple(self.image_size)
            if len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size):
                raise UsageError(f"`image_size` must be a height and a width in pixels, got {self.image_size!r}")
            object.__setattr__(self, "image_size", size)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30  # passes over the training set
    batch_size: int = 128  # minibatch size, as in pytorch/examples
    lr: float = 1e-3  # Adam learning rate
    # a key of inference.objectives.ELBOS: trace (sampled KL), meanfield (analytic KL) or iwae (the K-sample
    # importance-weighted bound of Burda et al. 2016, K = num_particles)
    elbo: str = "trace"
    num_particles: int = 1  # L samples of z per datapoint (K for iwae), vectorized
    # constant, or burda: lr * 10^(-i/7) in stage i = 0..7 of 3^i epochs each (3,280 epochs in
    # all, Burda et al. 2016, sec. 5); a shorter run keeps the 8 stages with lengths growing as b^i,
    # b <= 3 chosen so that they fill ``epochs`` (see training.schedule.burda_stage_ends)
    lr_schedule: str = "constant"
    patience: int = 0  # stop after this many epochs without a better validation bound; 0: never
    jit: bool = False  # use Pyro's JIT-compiled ELBO (drops the partial last batch, see training.loop.fit)
    # > 0: train this many optimizer steps, rounded up to whole epochs (epochs follows from the training images and
    # batch_size: Run.create sets it); for small folders of images, where an epoch is a few steps; 0: ``epochs``
    steps: int = 0

    def __post_init__(self) -> None:
        _require_int(epochs=self.epochs, batch_size=self.batch_size, num_particles=self.num_particles,
                     patience=self.patience, steps=self.steps)
        if self.steps < 0:
            raise UsageError(f"`steps` must be >= 0 (0 trains `epochs` epochs), got {self.steps}")
        _require_positive(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, num_particles=self.num_particles
        )
        if self.patience < 0:
            raise UsageError(f"`patience` must be >= 0 (0 never stops early), got {self.patience}")


@dataclass(frozen=True)
class RunConfig:
    """What a whole run (experiment.run_training) does around training: where it runs, how the
    VAE starts, what it reports."""

    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    init_output_bias: bool = False  # start the decoder at the mean training image (Burda et al.)
    eval_samples: int = 1000  # K importance samples for the final test log p(x); 0 skips it

    def __post_init__(self) -> None:
        _require_int(eval_samples=self.eval_samples)
        if self.eval_samples < 0:
            raise UsageError(f"`eval_samples` must be >= 0 (0 skips the estimate), got {self.eval_samples}")
