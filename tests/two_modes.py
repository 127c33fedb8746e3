"""A model whose posterior has two modes, with an exact log p(x) and an exact best diagonal Gaussian, the closed
forms q* and the gaps are tested against where a local optimization can stop in the wrong mode:

    z ~ N(0, I_2),   x_1 | z ~ N(z_1^2, S1^2),   x_2 | z ~ N(z_2 + C z_1, S2^2).

x_1 says z_1 is near +sqrt(x_1) or -sqrt(x_1); x_2 = z_2 + C z_1 + noise, with z_2 ~ N(0, 1), says which sign
(p(x_2 | z_1) = N(C z_1, 1 + S2^2)) and correlates z_1 with z_2 inside each mode, so that no diagonal Gaussian
is exact there either.

- log p(x): a trapezoid rule on a 1201 x 1201 grid over [-6, 6]^2 in float64 (spacing 0.01, against modes
  about 0.15 wide; the mass outside the square is below 1e-8). A grid twice as fine changes it by < 1e-9.
- The ELBO of N(m, diag s^2): log p(x, z) is a polynomial of degree 4 in z, so its expectation is exact under
  Gauss-Hermite quadrature with 5 points per dimension (exact to degree 9); the entropy is closed form. The best
  diagonal Gaussian: BFGS in float64 from a grid of 50 starts over both modes and between them, the best kept.
"""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import distributions as dist
from scipy import optimize

S1, S2, C = 0.4, 0.5, 1.0


def two_mode_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
        loc = torch.stack([z[..., 0].square(), z[..., 1] + C * z[..., 0]], dim=-1)
        pyro.sample("x", dist.Normal(loc, x.new_tensor([S1, S2])).to_event(1), obs=x)


def diagonal_guide(loc, scale):
    """q(z|x_n) = N(loc_n, diag scale_n^2), loc and scale (N, 2) fixed."""

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return guide


def log_joint(x, z1, z2):
    """log p(x, z) for one datapoint x (2,) at arrays z1, z2 (any shape), float64 numpy."""
    def log_normal(v, mean, sd):
        return -0.5 * ((v - mean) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)

    return (log_normal(z1, 0, 1) + log_normal(z2, 0, 1) + log_normal(x[0], z1**2, S1)
            + log_normal(x[1], z2 + C * z1, S2))


def exact_log_px(x, points=1201, width=6.0):
    """log p(x_n) (N,) by the trapezoid rule on a grid over [-width, width]^2."""
    grid = np.linspace(-width, width, points)
    z1, z2 = np.meshgrid(grid, grid, indexing="ij")
    weights = np.full(points, grid[1] - grid[0])
    weights[[0, -1]] /= 2
    out = []
    for xn in np.asarray(x, dtype=np.float64):
        lj = log_joint(xn, z1, z2)
        top = lj.max()
        out.append(top + math.log(np.einsum("i,ij,j->", weights, np.exp(lj - top), weights)))
    return torch.tensor(out, dtype=torch.float64)


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(5)  # for the standard normal density, unnormalized
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def gaussian_elbo(x, params):
    """The ELBO of N(m, diag exp(2 log_s)) for one datapoint x (2,), params = (m1, m2, log_s1, log_s2): exact."""
    m1, m2, ls1, ls2 = params
    z1 = m1 + math.exp(ls1) * _NODES[:, None]
    z2 = m2 + math.exp(ls2) * _NODES[None, :]
    expected = np.einsum("i,ij,j->", _WEIGHTS, log_joint(x, z1, z2), _WEIGHTS)
    return expected + ls1 + ls2 + 1 + math.log(2 * math.pi)  # + the entropy of a 2-D diagonal Gaussian


def best_gaussian(x):
    """The best diagonal Gaussian's ELBO for each datapoint (N,), and its parameters (N, 4): (m1, m2, log s1,
    log s2). Each ELBO is the best of 50 BFGS runs from starts spread over both modes."""
    elbos, params = [], []
    for xn in np.asarray(x, dtype=np.float64):
        best = None
        for m1 in np.linspace(-2.5, 2.5, 10):
            for m2 in np.linspace(-2, 2, 5):
                fit = optimize.minimize(lambda p, xn=xn: -gaussian_elbo(xn, p), [m1, m2, -1.0, -1.0], method="BFGS",
                                        options={"gtol": 1e-9})
                if best is None or fit.fun < best.fun:
                    best = fit
        elbos.append(-best.fun)
        params.append(best.x)
    return torch.tensor(elbos, dtype=torch.float64), torch.tensor(np.array(params), dtype=torch.float64)


def modes(x):
    """Each datapoint's local optima of the diagonal-Gaussian ELBO near z_1 = +sqrt(x_1) and -sqrt(x_1):
    ELBOs (N, 2) and parameters (N, 2, 4), from BFGS started at each."""
    elbos, params = [], []
    for xn in np.asarray(x, dtype=np.float64):
        row, prow = [], []
        for sign in (1.0, -1.0):
            m1 = sign * math.sqrt(max(xn[0], 0.0))
            fit = optimize.minimize(lambda p, xn=xn: -gaussian_elbo(xn, p), [m1, (xn[1] - C * m1) / 2, -1.5, -1.0],
                                    method="BFGS", options={"gtol": 1e-9})
            row.append(-fit.fun)
            prow.append(fit.x)
        elbos.append(row)
        params.append(prow)
    return torch.tensor(elbos, dtype=torch.float64), torch.tensor(np.array(params), dtype=torch.float64)


@pytest.fixture(scope="module")
def lesser_mode_problem():
    """Six datapoints of two_modes.py, the guide of each at its lesser mode (the worse of the two local optima of
    the diagonal-Gaussian ELBO; datapoint 4 is symmetric, its modes equal), too narrow to reach the other:
    the best Gaussians are 0.64 to 3.0 nats above the lesser modes (datapoint 4: 0)."""
    x = torch.tensor([[1.0, 0.8], [1.5, -0.6], [2.0, 0.3], [2.5, -1.2], [1.2, 0.0], [1.8, 1.5]], dtype=torch.float64)
    elbos, params = modes(x)  # (N, 2), (N, 2, 4)
    lesser = elbos.argmin(1)
    loc = params[torch.arange(len(x)), lesser, :2]
    best, _ = best_gaussian(x)
    return dict(x=x, best=best, lesser=elbos.min(1).values, exact=exact_log_px(x), loc=loc,
                guide=diagonal_guide(loc, torch.tensor([0.3, 0.5], dtype=torch.float64).expand(len(x), 2)))
