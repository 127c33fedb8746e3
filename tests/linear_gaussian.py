"""The linear-Gaussian model with an exact log p(x) and posterior, the closed form the estimators are tested
against: z ~ N(0, I_Z), x = W z + b + eps, eps ~ N(0, SIGMA^2 I_D), so that
    p(x)     = N(x; b, W W^T + s^2 I)
    p(z | x) = N(Sigma W^T (x - b) / s^2, Sigma),  Sigma = (I + W^T W / s^2)^-1.
"""

import pyro
import pytest
import torch
from pyro import distributions as dist

D, Z, SIGMA = 5, 2, 0.7


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, Z, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    x = (torch.randn(8, Z, generator=g, dtype=torch.float64) @ W.T + b
         + SIGMA * torch.randn(8, D, generator=g, dtype=torch.float64))
    return exact_posterior(W, b, x)


def exact_posterior(W, b, x):
    """log p(x_n) (N,), the posterior's mean (N, Z) and covariance (Z, Z) for W (D, Z), b (D,), x (N, D)."""
    d, z = W.shape
    exact = dist.MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(d, dtype=W.dtype)).log_prob(x)
    post_cov = torch.linalg.inv(torch.eye(z, dtype=W.dtype) + W.T @ W / SIGMA**2)
    post_mean = (x - b) @ W @ post_cov / SIGMA**2  # (N, Z); post_cov is symmetric
    return dict(W=W, b=b, x=x, exact=exact, post_mean=post_mean, post_cov=post_cov)


def lg_model(x, W, b):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], Z), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T + b, SIGMA).to_event(1), obs=x)


def exact_guide(post_mean, post_cov):
    def guide(x, W, b):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(post_mean, post_cov))

    return guide


def wide_guide(post_mean, post_cov, shift=0.0, widen=1.3):
    """Isotropic q at least as wide as the posterior in every direction: weights have finite variance."""
    scale = widen * torch.linalg.eigvalsh(post_cov).max().sqrt()

    def guide(x, W, b):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(post_mean + shift, scale).to_event(1))

    return guide


@pytest.fixture
def correlated_problem():
    """8 datapoints of a 2-D latent seen through 3 pixels, W chosen so that the posterior precision is
    [[10, 8.5], [8.5, 10]] (correlation 0.85): the best diagonal Gaussian is 0.64 nats from it."""
    w1 = torch.tensor([2.1, 0.0, 0.0], dtype=torch.float64)
    w2 = torch.tensor([4.165 / 2.1, (4.41 - (4.165 / 2.1) ** 2) ** 0.5, 0.0], dtype=torch.float64)
    W = torch.stack([w1, w2], dim=1)  # (3, 2): |w_i|^2 / s^2 = 9, w_1 . w_2 / s^2 = 8.5
    g = torch.Generator().manual_seed(0)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    z = torch.randn(8, 2, generator=g, dtype=torch.float64)
    x = z @ W.T + b + SIGMA * torch.randn(8, 3, generator=g, dtype=torch.float64)
    return exact_posterior(W, b, x)
