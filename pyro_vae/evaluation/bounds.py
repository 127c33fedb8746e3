"""The ELBO next to the importance-weighted bounds for growing K, on a whole dataset.

The gap log p^_K(x) - ELBO estimates E_x KL(q(z|x) || p(z|x)) from below: the price of the
approximate posterior (Burda et al. 2016; Cremer et al. 2018). Every function here is a plain,
no-grad function of (vae, x): a data-parallel caller scores its part of x and gathers the
per-datapoint results (DatapointBounds.map) or sums (objective_sum) itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from pyro.infer import ELBO
from torch import Tensor
from tqdm.auto import tqdm

from pyro_vae.arguments import require_count, require_counts, require_tensor
from pyro_vae.evaluation.memory import FLOAT, require_ais_memory, require_bounds_memory  # noqa: F401 (FLOAT: moved names)
from pyro_vae.inference.ais import PILOT_STEPS, PILOT_TRANSITIONS, AISResult, ais
from pyro_vae.inference.estimators import KHAT_MIN_SAMPLES, importance_log_weights, iwae_bound, pareto_khat
from pyro_vae.inference.streams import GLOBAL, Noise
from pyro_vae.models.model import DATA_PLATE
from pyro_vae.models.vae import VAE

KHAT_THRESHOLD = 0.7  # PSIS: above it the importance-sampling estimate is unreliable (Vehtari et al.)
# Samples of z per vectorized no-grad pass below which Pyro's per-call cost dominates (passes of 128 samples
# were a third slower than passes of 1,000 on a CPU; docs/benchmarks.md keeps the timings)
PASS_SAMPLES = 1000
CHUNK_SIZE = 250  # samples of z per image in one pass of datapoint_bounds, by default, at most
# On a CPU a pass's (samples, images, pixels) tensors are kept below this many floats (8 MB): glibc hands larger
# blocks back to the system when they are freed, so every elementwise op of a larger pass touched fresh pages,
# and their faults cost more than the op (784-pixel passes of 250 x 100 ran at half the speed of 25 x 100;
# docs/benchmarks.md). The bounds do not depend on the chunks (streams.py).
CPU_PASS_FLOATS = 2**21


def pass_chunk(chunk_size: int, images: int, pixels: int, device: torch.device) -> int:
    """Samples of z per image in one pass of ``images`` images of ``pixels``: ``chunk_size``, and on a CPU few
    enough for CPU_PASS_FLOATS."""
    if device.type != "cpu":
        return chunk_size
    return max(1, min(chunk_size, CPU_PASS_FLOATS // (images * pixels)))


def images_per_pass(samples_per_image: int, at_least: int) -> int:
    """How many images a no-grad pass should score at once, drawing ``samples_per_image`` each:
    at least ``at_least``, and enough for PASS_SAMPLES samples."""
    return max(at_least, PASS_SAMPLES // samples_per_image)


@dataclass(frozen=True)
class Estimate:
    mean: float  # mean over datapoints, nats per image
    se: float | None  # standard error of that mean over datapoints; None (JSON null) for one datapoint

    @classmethod
    def of(cls, per_datapoint: Tensor) -> Estimate:
        n = per_datapoint.numel()
        se = per_datapoint.std().item() / math.sqrt(n) if n > 1 else None
        return cls(per_datapoint.mean().item(), se)

    def __str__(self) -> str:
        if self.se is None:
            return f"{self.mean:10.2f} (one datapoint: no SE)"
        return f"{self.mean:10.2f} ± {self.se:.2f}"


@dataclass(frozen=True)
class AISEstimate:
    """One AIS row: log p^(x) by annealed importance sampling, averaged over datapoints."""

    num_steps: int
    num_chains: int
    log_likelihood: Estimate  # mean over datapoints of the per-datapoint AIS lower bound, and its SE
    acceptance: float  # mean HMC acceptance probability over datapoints, chains and transitions
    seconds: float  # its wall time: shared by ``processes`` processes, each spent about this long on it
    processes: int = 1

    def timing(self) -> str:
        return f"{self.seconds:.0f} s" + (f" on each of {self.processes} processes" if self.processes > 1 else "")


@dataclass(frozen=True)
class BoundsReport:
    num_datapoints: int
    num_samples: int  # K of the largest bound; every bound is estimated from these samples
    elbo: Estimate  # L_1, each datapoint's ELBO averaged over its K samples
    iwae: dict[int, Estimate]  # k -> L_k, the importance-weighted bound, in increasing k
    gap: Estimate  # L_K - L_1 per datapoint: estimates E KL(q(z|x) || p(z|x)) from below
    khat_above: float | None  # share of datapoints with PSIS k^ > KHAT_THRESHOLD (None: not computed; K too small)
    khat_median: float | None
    ais: tuple[AISEstimate, ...] = ()  # AIS rows, by evaluate_ais, in increasing steps

    @property
    def log_likelihood(self) -> Estimate:
        """The tightest bound: the importance-sampled log p^(x) with all K samples."""
        return self.iwae[self.num_samples]

    def to_dict(self) -> dict:
        """As valid JSON holds it: null where a value is undefined (the SE of one datapoint; k^, which
        ArviZ gives as inf when there are too few samples to fit a tail)."""
        out = asdict(self)
        out["iwae"] = {str(k): asdict(v) for k, v in self.iwae.items()}
        out["ais"] = [asdict(row) for row in self.ais]
        if out["khat_median"] is not None and not math.isfinite(out["khat_median"]):
            out["khat_median"] = None
        out["khat_threshold"] = KHAT_THRESHOLD
        return out

    def lines(self) -> list[str]:
        """The report as text, one bound a line (L_1 appears once, as the ELBO)."""
        lines = [f"{'ELBO':>14}  {self.elbo}"]
        lines += [f"{f'IWAE K={k}':>14}  {e}" for k, e in self.iwae.items() if k > 1]
        lines.append(f"{'gap':>14}  {self.gap}   (log p^(x) - ELBO)")
        for row in self.ais:
            lines.append(f"{f'AIS T={row.num_steps}':>14}  {row.log_likelihood}   ({row.num_chains} chains, "
                         f"acceptance {row.acceptance:.2f}, {row.timing()})")
        if self.khat_above is not None:
            lines.append(
                f"{'PSIS k^':>14}  median {self.khat_median:.2f}; {100 * self.khat_above:.1f}% of datapoints "
                f"above {KHAT_THRESHOLD} (unreliable there)"
            )
        elif self.num_samples < KHAT_MIN_SAMPLES:
            lines.append(f"{'PSIS k^':>14}  not computed: K = {self.num_samples} leaves no tail of weights to fit "
                         f"(K >= {KHAT_MIN_SAMPLES})")
        return lines


@dataclass(frozen=True)
class DatapointBounds:
    """Each datapoint's bounds, from which a BoundsReport averages: tensors of shape (N,)."""

    elbo: Tensor  # L_1, the ELBO averaged over the datapoint's K samples
    iwae: dict[int, Tensor]  # k -> L_k, in increasing k; the last k is K, all the samples
    khat: Tensor | None  # PSIS k^ of the datapoint's K weights (None: not computed)

    def map(self, fn: Callable[[Tensor], Tensor]) -> DatapointBounds:
        """``fn`` applied to every tensor, e.g. Context.cat to gather a data-parallel run's parts."""
        return DatapointBounds(fn(self.elbo), {k: fn(v) for k, v in self.iwae.items()},
                               None if self.khat is None else fn(self.khat))

    def columns(self) -> dict[str, Tensor]:
        """As the columns of a per-image table: elbo, iwae_k for each k > 1, and khat when computed."""
        return {"elbo": self.elbo, **{f"iwae_{k}": v for k, v in self.iwae.items() if k > 1},
                **({} if self.khat is None else {"khat": self.khat})}

    @classmethod
    def from_columns(cls, columns: dict[str, Tensor], ks: Sequence[int]) -> DatapointBounds:
        """What columns() gave, for the bounds ``ks`` (L_1 is the elbo column)."""
        return cls(columns["elbo"], {k: columns["elbo"] if k == 1 else columns[f"iwae_{k}"] for k in ks},
                   columns.get("khat"))

    def report(self) -> BoundsReport:
        num_samples = max(self.iwae)
        return BoundsReport(
            num_datapoints=len(self.elbo),
            num_samples=num_samples,
            elbo=Estimate.of(self.elbo),
            iwae={k: Estimate.of(v) for k, v in self.iwae.items()},
            gap=Estimate.of(self.iwae[num_samples] - self.elbo),
            khat_above=None if self.khat is None else (self.khat > KHAT_THRESHOLD).double().mean().item(),
            khat_median=None if self.khat is None else self.khat.median().item(),
        )


def ais_work(num_steps: int, num_chains: int, num_leapfrog: int) -> int:
    """An AIS run of one image in samples_per_second's unit: every chain's leapfrog steps, over the run's
    transitions and the pilot's, each a forward and a backward pass (about three samples' worth)."""
    transitions = num_steps + PILOT_TRANSITIONS * min(num_steps, PILOT_STEPS)
    return 3 * num_chains * num_leapfrog * transitions


PROBE_IMAGES, PROBE_SAMPLES = 25, 100  # the timing probe: 2,500 samples of z, vectorized as a real pass is


def samples_per_second(vae: VAE, x: Tensor) -> float:
    """How many (image, sample of z) pairs the importance-sampling estimator scores per second here, from a
    short probe on ``x``'s first images (after a warm-up pass): the unit a long evaluation's time is counted in
    (an AIS leapfrog step costs about three: a forward and a backward pass)."""
    probe = x[:PROBE_IMAGES]
    datapoint_bounds(vae, probe[:1], ks=(PROBE_SAMPLES,), diagnose=False)  # warm-up
    start = time.perf_counter()
    datapoint_bounds(vae, probe, ks=(PROBE_SAMPLES,), chunk_size=PROBE_SAMPLES, diagnose=False)
    return len(probe) * PROBE_SAMPLES / max(time.perf_counter() - start, 1e-6)


def _check_sizes(x: Tensor, **sizes: int) -> None:
    require_counts(**sizes)
    if require_tensor("x", x).dim() != 2 or not len(x):
        raise ValueError(f"x must hold images as (N, D) with N >= 1, got shape {tuple(x.shape)}")


@torch.no_grad()
def datapoint_bounds(
    vae: VAE, x: Tensor, ks: Sequence[int] = (1, 10, 100, 1000, 5000), batch_size: int = 100,
    chunk_size: int = CHUNK_SIZE, diagnose: bool = True, noise: Noise = GLOBAL, progress: bool = False,
    first_batch: Callable[[float, int], None] | None = None,
) -> DatapointBounds:
    """ELBO, IWAE bounds for each k in ``ks`` and PSIS k^ of ``vae`` on each image of ``x`` (N, D).

    All bounds come from one set of max(ks) samples per datapoint; k^ needs max(ks) >= KHAT_MIN_SAMPLES
    (``khat`` is None below, as with ``diagnose=False``). Memory: the decoder runs on
    chunk_size * batch_size samples at once, and (max(ks), batch_size) log-weights are kept. The samples
    come from ``noise`` (streams.py): with a DatapointStreams of x's images, each image's bounds do not
    depend on ``batch_size`` or ``chunk_size``. ``progress``: a bar over the batches on a terminal.
    ``first_batch(seconds, batches)`` is called once the first of the batches is scored (to say how long the rest
    will take).
    """
    ks = sorted({require_count("ks", k) for k in ks})
    if not ks:
        raise ValueError("`ks` must hold at least one K, got none")
    _check_sizes(x, batch_size=batch_size, chunk_size=chunk_size)
    num_samples = ks[-1]
    require_bounds_memory(vae, x.shape[-1], len(x), num_samples, batch_size, chunk_size, x.device)
    vae.eval()
    fit_khat = diagnose and num_samples >= KHAT_MIN_SAMPLES
    elbo: list[Tensor] = []
    khat: list[Tensor] = []
    bounds: dict[int, list[Tensor]] = {k: [] for k in ks}
    batches = range(0, len(x), batch_size)
    start = time.perf_counter()
    for lo in tqdm(batches, desc=f"log p^(x), K={num_samples}", unit="batch", leave=False,
                   disable=None if progress else True):  # None: off when stderr is not a terminal
        batch = x[lo:lo + batch_size]
        with noise[lo:lo + batch_size].sampling(DATA_PLATE):
            log_w = importance_log_weights(vae.model, vae.guide, batch, num_samples=num_samples, plate=DATA_PLATE,
                                           chunk_size=pass_chunk(chunk_size, len(batch), x.shape[-1], x.device),
                                           max_plate_nesting=1)  # (K, B)
        elbo.append(log_w.mean(dim=0))
        for k in ks:
            bounds[k].append(iwae_bound(log_w, k))
        if fit_khat:
            khat.append(pareto_khat(log_w))
        if first_batch is not None and lo == 0:
            first_batch(time.perf_counter() - start, len(batches))

    def joined(parts: list[Tensor]) -> Tensor:  # (N,); empty for no images (a process's part may be)
        return torch.cat(parts) if parts else x.new_zeros(0)

    return DatapointBounds(joined(elbo), {k: joined(v) for k, v in bounds.items()},
                           joined(khat).cpu() if fit_khat else None)


def evaluate_bounds(
    vae: VAE, x: Tensor, ks: Sequence[int] = (1, 10, 100, 1000, 5000), batch_size: int = 100,
    chunk_size: int = CHUNK_SIZE, diagnose: bool = True, noise: Noise = GLOBAL,
) -> BoundsReport:
    """ELBO, IWAE bounds for each k in ``ks`` and the PSIS k^ summary of ``vae`` on ``x`` (N, D),
    averaged over the images; see datapoint_bounds."""
    return datapoint_bounds(vae, x, ks, batch_size, chunk_size, diagnose, noise).report()


@torch.no_grad()
def objective_sum(vae: VAE, elbo: ELBO, x: Tensor, batch_size: int) -> Tensor:
    """The sum over the images of ``x`` (N, D) of the objective ``elbo`` estimates (the ELBO, or
    L_K for IWAE_ELBO), ``batch_size`` images at a time, as a 0-dim tensor. ``elbo`` should not be
    JIT-compiled: the last batch may be smaller."""
    total = x.new_zeros(())
    for batch in x.split(batch_size):
        total = total + elbo.differentiable_loss(vae.model, vae.guide, batch).detach()  # type: ignore[attr-defined]
    return -total


@torch.no_grad()
def datapoint_ais(
    vae: VAE, x: Tensor, num_steps: int, num_chains: int = 16, num_leapfrog: int = 10, batch_size: int = 100,
    noise: Noise = GLOBAL,
) -> AISResult:
    """Forward AIS (see ais.py) of ``vae`` on each image of ``x`` (N, D), ``batch_size`` images at a time,
    after the up-front memory check; random numbers from ``noise`` (as in datapoint_bounds)."""
    _check_sizes(x, batch_size=batch_size)
    require_ais_memory(vae, x.shape[-1], len(x), num_steps, num_chains, batch_size, x.device)
    vae.eval()
    # a flow guide anneals in its base space, where log q is cheap at every point HMC moves to (flows.py)
    return ais(vae.annealing_model, vae.annealing_guide, x, num_steps=num_steps, num_chains=num_chains,
               plate=DATA_PLATE, num_leapfrog=num_leapfrog, chunk_size=batch_size, max_plate_nesting=1, noise=noise)


def evaluate_ais(
    vae: VAE, x: Tensor, num_steps: int, num_chains: int = 16, num_leapfrog: int = 10, batch_size: int = 100,
    noise: Noise = GLOBAL,
) -> AISEstimate:
    """Forward AIS of ``vae`` on ``x`` (N, D) (see datapoint_ais): the mean over images of each image's AIS
    lower bound on log p(x), with its SE and the mean acceptance rate."""
    start = time.perf_counter()
    result = datapoint_ais(vae, x, num_steps, num_chains, num_leapfrog, batch_size, noise)
    return AISEstimate(num_steps, num_chains, Estimate.of(result.bound()), result.acceptance.mean().item(),
                       time.perf_counter() - start)
