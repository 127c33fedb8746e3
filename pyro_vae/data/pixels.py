"""Pixels as a likelihood scores them: binarized, dequantized or grey, on the device.

Datasets (data.py) hold grey pixels in [0, 1]; this module decides, in one place, which likelihood
scores which pixels (likelihood_for), and prepares the tensors training and evaluation read
(prepare_data). Training images are binarized or dequantized afresh for every minibatch; the
validation and test images once, with a fixed seed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pyro_vae.config import BINARIZE, ModelConfig
from pyro_vae.data.datasets import Dataset
from pyro_vae.errors import UsageError
from pyro_vae.models.likelihoods import Likelihood, in_unit_interval, make_likelihood

log = logging.getLogger("pyro_vae")


def likelihood_for(config: ModelConfig, binarize: str, data_is_binary: bool,
                   image_shape: tuple[int, int, int] | None = None) -> tuple[Likelihood, str]:
    """Which likelihood on which pixels, decided here and nowhere else: the likelihood that
    ``config`` names and the binarization ``binarize`` resolves to (see resolve_binarize).

    Grey pixels kept grey (binarize 'none') under the Bernoulli likelihood are scored as binary
    cross-entropy targets, as pytorch/examples does, with a logged warning: that is not a
    normalized density on [0, 1], so its ELBO and log p(x) are not comparable with others'.
    """
    likelihood = make_likelihood(config, image_shape=image_shape)
    binarize = resolve_binarize(binarize, likelihood, data_is_binary)
    grey_targets = binarize == "none" and not data_is_binary
    if grey_targets and likelihood.wants_binary_data:
        log.warning("warning: `binarize=none` scores grey pixels as Bernoulli targets (as pytorch/examples does); "
                    "that is not a normalized likelihood on [0, 1], so this ELBO and log p(x) are not comparable "
                    "with others'")
        likelihood = make_likelihood(config, grey_targets=True)
    return likelihood, binarize


def resolve_binarize(binarize: str, likelihood: Likelihood, data_is_binary: bool) -> str:
    """'auto' -> 'dynamic' for a likelihood of binary pixels (Bernoulli) on grey data, else 'none'."""
    if binarize == "static":
        raise UsageError("binarization 'static' is now called 'threshold' (it sets pixels above 0.5 to 1); the "
                         "literature's static binarization is a fixed random draw: that is `dataset=binarized-mnist`")
    if binarize not in BINARIZE:
        raise UsageError(f"unknown binarization {binarize!r}: choose one of {', '.join(BINARIZE)}")
    if binarize != "auto":
        return binarize
    return "dynamic" if likelihood.wants_binary_data and not data_is_binary else "none"


@dataclass(frozen=True)
class PreparedData:
    train: Tensor  # (N, D) on the device; grey when binarize == 'dynamic' (sampled per minibatch)
    valid: Tensor  # (V, D) on the device, fixed: binarized once when binarize is dynamic or threshold
    test: Tensor  # (M, D) on the device, fixed likewise
    binarize: str  # the resolved mode: dynamic, threshold or none
    image_shape: tuple[int, int, int]  # (C, H, W) with C * H * W = D, for figures and convolutional networks
    test_labels: Tensor | None = None  # (M,) class labels of the test set, for figures, when known
    dequantize: bool = False  # training pixels get fresh uniform noise every minibatch (see dequantize)
    classes: tuple[str, ...] = ()  # the name of each label, when the data names them (a folder's subfolders)

    def minibatch(self, index: Tensor) -> Tensor:
        """Training images at ``index``, freshly binarized or dequantized as configured.   (B,) -> (B, D)"""
        x = self.train[index]
        if self.dequantize:
            return dequantize(x)
        # dynamic binarization (Salakhutdinov & Murray 2008): a new binary image every pass
        return torch.bernoulli(x) if self.binarize == "dynamic" else x


LEVELS = 256  # 8-bit pixels


def eight_bit(x: Tensor) -> bool:
    """Whether every pixel of ``x`` is k/255 for an integer k (8-bit pixels scaled to [0, 1])."""
    return torch.allclose(x * (LEVELS - 1), torch.round(x * (LEVELS - 1)), atol=1e-4)


def continuous_pixels(likelihood: Likelihood, binarize: str, dataset: Dataset, dequantize_pixels: bool) -> bool:
    """Whether a run dequantizes its pixels, for a density on [0, 1] (continuous Bernoulli, Gaussian) to be a
    likelihood of its data: on by itself, with one logged line, for 8-bit pixels, whose undequantized density
    has no bound on the probability of the images (a Gaussian reported log p^ = +424.6 nats on MNIST). A
    UsageError for binary pixels (binarized data, or ``binarize`` dynamic or threshold), where such a density
    is no probability at all (a continuous Bernoulli reported an ELBO of +1282.6). The Bernoulli likelihood
    keeps ``dequantize_pixels`` as given (prepare_data refuses it there)."""
    if likelihood.wants_binary_data:
        return dequantize_pixels
    if dataset.is_binary or binarize in ("dynamic", "threshold"):
        why = "these pixels are binary" if dataset.is_binary else f"`binarize={binarize}` makes the pixels binary"
        keep = "" if dataset.is_binary else ", or keep the grey pixels with `binarize=none`"
        raise UsageError(f"{dataset.name}: the {likelihood.name} likelihood is a density on [0, 1] and {why}: its "
                         f"log p(x) is no probability of binary images; use `likelihood=bernoulli`{keep}")
    if not dequantize_pixels and all(eight_bit(x) for x in (dataset.train, dataset.valid, dataset.test)):
        log.info("dequantizing the 8-bit pixels, (k + u)/256 (`dequantize`): a %s density of undequantized 8-bit "
                 "pixels is no likelihood of the images, and its log p(x) no bound on their probability",
                 likelihood.name)
        return True
    return dequantize_pixels


def dequantize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """8-bit pixels stored as k/255 -> (k + u) / 256 with u ~ U(0, 1) (Theis et al. 2016; Uria et
    al. 2013). A density p on [0, 1]^D then bounds the probability of the 8-bit image k:
    log P(k) >= E_u log p((k + u)/256) - D log 256."""
    k = torch.round(x * (LEVELS - 1))
    u = torch.rand(x.shape, generator=generator, device=x.device) if generator is None else \
        torch.rand(x.shape, generator=generator).to(x.device)
    return (k + u) / LEVELS


def dequantized_bound(log_px: float, dims: int) -> tuple[float, float]:
    """From a density's log p^ of dequantized images (nats per image of ``dims`` pixels), the bound
    on the 8-bit images' log P(k) >= log p - D log 256 in nats, and as bits per dimension,
    -log2 P / D (see dequantize). A uniform density on [0, 1]^D gives exactly 8 bits/dim."""
    nats = log_px - dims * math.log(LEVELS)
    return nats, -nats / (dims * math.log(2))


def prepare_data(
    dataset: Dataset, likelihood: Likelihood, binarize: str, seed: int, device: torch.device | str = "cpu",
    dequantize_pixels: bool = False,
) -> PreparedData:
    """Binarize or dequantize as asked, check the likelihood's support, and move the tensors to ``device``.

    ``binarize`` must be resolved already (see resolve_binarize). The validation and test sets of
    a dynamic or dequantized run are drawn once with ``seed``, so every evaluation scores the same images.
    """
    splits = {"training": dataset.train, "validation": dataset.valid, "test": dataset.test}
    if dequantize_pixels:
        if binarize != "none" or likelihood.wants_binary_data:
            raise UsageError("`dequantize` adds uniform noise to 8-bit pixels for a continuous likelihood: use "
                             "`likelihood=continuous-bernoulli` or `likelihood=gaussian`, with `binarize=none` "
                             "(or auto)")
        if not all(eight_bit(x) for x in splits.values()):
            raise UsageError(f"{dataset.name}: `dequantize` needs 8-bit pixels stored as k/255, and these are not")
    if binarize == "dynamic" and not all(in_unit_interval(x) for x in splits.values()):
        raise UsageError(
            f"{dataset.name}: dynamic binarization draws Bernoulli(intensity) pixels, so intensities "
            "must lie in [0, 1]: rescale the data or pass `binarize=threshold`"
        )
    if binarize == "threshold":
        splits = {split: (x > 0.5).float() for split, x in splits.items()}
    elif binarize == "dynamic" or dequantize_pixels:
        generator = torch.Generator().manual_seed(seed)

        def draw(x: Tensor) -> Tensor:
            return dequantize(x, generator) if dequantize_pixels else torch.bernoulli(x, generator=generator)

        splits = {split: x if split == "training" else draw(x) for split, x in splits.items()}
    for split, x in splits.items():
        # training batches drawn per minibatch are in the support by construction; fixed splits are checked
        if (binarize == "dynamic" or dequantize_pixels) and split == "training":
            continue
        try:
            likelihood.check_support(x)
        except UsageError as error:
            raise UsageError(f"{dataset.name} {split} set: {error}") from None
    train, valid, test = (x.to(device) for x in splits.values())
    labels = None if dataset.labels is None else dataset.labels["test"]
    return PreparedData(train, valid, test, binarize, dataset.image_shape, labels, dequantize_pixels, dataset.classes)
