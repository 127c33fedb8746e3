"""Random numbers that belong to a datapoint: one stream per datapoint, keyed by (seed, its index, a purpose).

An estimator that draws from torch's global generator gives a datapoint numbers that depend on everything
drawn before it: which images share its batch, how the K samples are cut into chunks, which process scored
the images before it. With DatapointStreams each datapoint draws from a generator of its own, seeded from
(seed, the datapoint's index in its dataset, the purpose: importance sampling, or AIS with T steps), through
NumPy's SeedSequence, which makes independent streams from such keys. So a datapoint's estimate is the
same whether it is scored alone or among others, in one process or across several, in one run or in a
resumed one (evaluate.py), up to the float rounding of the batched arithmetic.

Normal draws are made by the inverse CDF of uniform float64 draws: torch's uniform draws from one generator
concatenate (two draws of 250 are one draw of 500), its normal draws do not (they are made in blocks), and
the K samples of importance sampling must not depend on the chunks they are drawn in. Draws are made on
the CPU, so a GPU run draws the same numbers.

``GLOBAL`` is the same interface on torch's global generator: the default everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
import torch
from pyro import distributions as dist
from pyro.poutine.messenger import Messenger
from torch import Tensor

from pyro_vae.inference.sites import data_dim

# the purposes a datapoint draws for, the third part of its key; the fourth is the AIS step count
IMPORTANCE_SAMPLING, FORWARD_AIS, REVERSE_AIS, LOCAL_FIT = 0, 1, 2, 3
TINY = 2.0**-60  # stands in for a uniform draw of exactly 0 (probability 2**-53), whose inverse CDF is -inf: -8.8


class Noise(Protocol):
    """Where an estimator's random numbers come from: uniform and normal draws shaped like a tensor whose
    dimension ``dim`` runs over datapoints, a context in which Pyro's latent sample sites draw from the same
    place, and the noise of some datapoints (``noise[rows]``)."""

    def uniform(self, like: Tensor, dim: int) -> Tensor: ...

    def normal(self, like: Tensor, dim: int) -> Tensor: ...

    def sampling(self, plate: str) -> AbstractContextManager: ...

    def __getitem__(self, rows: slice) -> Noise: ...


class GlobalNoise:
    """torch's global generator (seeded by pyro.set_rng_seed): draws depend on what came before."""

    def uniform(self, like: Tensor, dim: int) -> Tensor:
        return torch.rand_like(like)

    def normal(self, like: Tensor, dim: int) -> Tensor:
        return torch.randn_like(like)

    def sampling(self, plate: str) -> AbstractContextManager:
        return nullcontext()

    def __getitem__(self, rows: slice) -> GlobalNoise:
        return self


GLOBAL = GlobalNoise()


def stream_seed(seed: int, index: int, purpose: int, steps: int = 0) -> int:
    """A 64-bit seed for the stream of datapoint ``index`` (fixed-length keys: SeedSequence pads with zeros)."""
    if min(seed, index, purpose, steps) < 0:
        raise ValueError(f"a stream's key must be non-negative integers, got seed={seed}, index={index}")
    return int(np.random.SeedSequence([seed, index, purpose, steps]).generate_state(1, np.uint64)[0] >> 1)


class DatapointStreams:
    """One generator per datapoint: ``seed``, the datapoints' ``indices`` in their dataset (N,), and the
    ``purpose`` (and AIS ``steps``) they draw for. ``streams[rows]`` is the streams of some datapoints,
    sharing their generators (each stream goes on where the last draw left it)."""

    def __init__(self, seed: int, indices: Sequence[int] | Tensor, purpose: int = IMPORTANCE_SAMPLING,
                 steps: int = 0) -> None:
        keys = indices.tolist() if isinstance(indices, Tensor) else list(indices)
        self.generators = [torch.Generator().manual_seed(stream_seed(seed, int(i), purpose, steps)) for i in keys]

    @classmethod
    def _of(cls, generators: list[torch.Generator]) -> DatapointStreams:
        streams = cls.__new__(cls)
        streams.generators = generators
        return streams

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, rows: slice) -> DatapointStreams:
        return DatapointStreams._of(self.generators[rows])

    def draw(self, shape: torch.Size, dim: int, normal: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Uniform or (``normal``) standard normal draws of ``shape``, whose dimension ``dim`` runs over the
        datapoints: datapoint n's part is one draw from stream n."""
        dim = dim % len(shape)
        if shape[dim] != len(self):
            raise ValueError(f"{len(self)} random streams for a tensor of {shape[dim]} datapoints "
                             f"(shape {tuple(shape)}, datapoints along dim {dim})")
        one = shape[:dim] + shape[dim + 1:]  # a datapoint's part
        u = torch.stack([torch.rand(one, dtype=torch.float64, generator=g) for g in self.generators], dim)
        u = torch.special.ndtri(u.clamp_min(TINY)) if normal else u
        return u.to(dtype=dtype, device=device)

    def uniform(self, like: Tensor, dim: int) -> Tensor:
        """Uniform on [0, 1), shaped like ``like``, datapoint n's values (along ``dim``) from stream n."""
        return self.draw(like.shape, dim, False, like.dtype, like.device)

    def normal(self, like: Tensor, dim: int) -> Tensor:
        """Standard normal, shaped like ``like``, datapoint n's values (along ``dim``) from stream n."""
        return self.draw(like.shape, dim, True, like.dtype, like.device)

    def sampling(self, plate: str) -> StreamsMessenger:
        """A context in which Pyro draws latent sample sites inside ``plate`` from these streams (see
        StreamsMessenger). It must enclose every plate of the sites, the particle plate of a vectorized
        estimator included: enter it outside the estimator, not inside the guide."""
        return StreamsMessenger(self, plate)


def reparameterized(fn: Any, normal: Callable[[torch.Size, Tensor], Tensor]) -> Tensor:
    """A draw of ``fn`` from ``normal(shape, like)``, standard normal noise of ``shape``: loc + scale * noise for
    a Normal (Independent or expanded), and for a transformed one its base's draw through the transforms in
    order, as rsample does (so that their caches hold the pair and log_prob needs no inverse)."""
    shape = fn.batch_shape + fn.event_shape
    inner = fn
    while isinstance(inner, (torch.distributions.Independent, dist.ExpandedDistribution)):
        inner = inner.base_dist
    if isinstance(inner, torch.distributions.Normal):
        return inner.loc + inner.scale * normal(shape, inner.loc)
    transformed = isinstance(inner, torch.distributions.TransformedDistribution)
    if transformed and inner.batch_shape + inner.event_shape == shape:
        value = reparameterized(inner.base_dist, normal)
        for transform in inner.transforms:
            value = transform(value)
        return value
    raise ValueError(f"per-datapoint random streams draw Normal latents (Independent, expanded or transformed); "
                     f"this one samples from {type(fn).__name__}")


class StreamsMessenger(Messenger):
    """Draws every latent sample site inside ``plate`` from ``streams``, one per datapoint of the plate.
    Sites that have a value (observed, replayed or conditioned) are left alone. Pyro hands a sample site to
    the innermost handler first: this one, entered outermost, sees the site once every plate has broadcast
    its distribution."""

    def __init__(self, streams: DatapointStreams, plate: str) -> None:
        super().__init__()
        self.streams, self.plate = streams, plate

    def _pyro_sample(self, msg: dict) -> None:
        if msg["is_observed"] or msg["value"] is not None or not any(f.name == self.plate
                                                                       for f in msg["cond_indep_stack"]):
            return
        fn = msg["fn"]
        # the data plate's position in a value of the site: counted from the right of its batch shape
        dim = data_dim(msg, self.plate) - len(fn.event_shape)
        try:
            msg["value"] = reparameterized(
                fn, lambda shape, like: self.streams.draw(shape, dim, True, like.dtype, like.device))
        except ValueError as error:
            raise ValueError(f"site {msg['name']!r}: {error}") from None
