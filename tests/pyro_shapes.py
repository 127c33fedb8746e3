"""Small models shaped like Pyro's own examples, with an exact log p(x) by float64 quadrature: what AIS,
reverse AIS, importance sampling and the gaps are tested against on models this project did not write.

Semi-supervised (examples/vae/ss_vae_M2.py): a class y beside a style z, both summed / integrated out,

    y ~ OneHotCategorical(1/10),   z ~ N(0, I_2),   x | y, z ~ N(W_y (z + tanh(A z)) + b_y, S^2 I_D),

guide q(y|x) = OneHotCategorical(softmax(V x)), q(z|x, y) = N(M [x, y], diag s^2), as the example's
classifier and encoder take x and (x, y). log p(x) = logsumexp_y [log p(y) + log integral p(z) p(x|y, z) dz],
each integral a trapezoid rule on a 401 x 401 grid over [-6, 6]^2 (spacing 0.03 against posteriors at least
0.1 wide; the prior's mass outside is below 1e-8); a grid of 1201 x 1201 changes it by < 1e-12.

Deep Markov model (examples/dmm.py): one latent per time step, sequences of lengths 1 to 3 masked past their end,

    z_t ~ N(tanh(a z_{t-1}) + c z_{t-1}, SZ^2)  (z_0 = 0),   x_t | z_t ~ N(sin(z_t) + z_t, SX^2)  for t <= length,

guide q(z_t | z_{t-1}, x) = N(g z_{t-1} + h x_t, r^2) (the example's combiner of the previous latent and the
sequence). A masked step's z_t is still a latent (its observation does not count), as in the example.
log p(x) by the forward recursion on a grid of 801 points over [-8, 8] per step: alpha_t(z_t) = p(x_t|z_t)
sum_{z'} alpha_{t-1}(z') p(z_t|z') dz' (trapezoid weights); a grid of 1601 changes it by < 1e-7.
"""

import math

import pyro
import torch
from pyro import distributions as dist

# --- semi-supervised ---------------------------------------------------------------------------------------
CLASSES, D, S = 10, 4, 0.5
_g = torch.Generator().manual_seed(1)
W = torch.randn(CLASSES, D, 2, generator=_g, dtype=torch.float64) * 1.5  # (Y, D, 2)
A = torch.randn(2, 2, generator=_g, dtype=torch.float64)
B_Y = torch.randn(CLASSES, D, generator=_g, dtype=torch.float64)  # (Y, D)
V = torch.randn(CLASSES, D, generator=_g, dtype=torch.float64) * 0.5  # the classifier's weights
M = torch.randn(2, D + CLASSES, generator=_g, dtype=torch.float64) * 0.3  # the encoder's weights


def decode(z, y):
    """The mean of x: W_y (z + tanh(A z)) + b_y for one-hot y (..., Y), z (..., 2) -> (..., D)."""
    h = z + torch.tanh(z @ A.T)  # (..., 2)
    return torch.einsum("...y,ydk,...k->...d", y, W, h) + y @ B_Y


def ss_model(x):
    with pyro.plate("data", x.shape[0]):
        y = pyro.sample("y", dist.OneHotCategorical(logits=x.new_zeros(x.shape[0], CLASSES)))
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(decode(z, y), S).to_event(1), obs=x)


def ss_guide(x, scale=1.5):
    with pyro.plate("data", x.shape[0]):
        y = pyro.sample("y", dist.OneHotCategorical(logits=x @ V.T))  # (..., N, Y)
        xy = torch.cat([x.expand(y.shape[:-1] + x.shape[-1:]), y], -1)
        pyro.sample("z", dist.Normal(xy @ M.T, scale).to_event(1))


def ss_fitted_guide(x, widen=1.3, temper=0.5):
    """A guide as training would leave it for the datapoints x (and only them): q(y|x) the exact p(y|x)
    tempered (logits times ``temper``: too unsure of the class), q(z|x, y) a Gaussian at the exact mean of p(z|x, y)
    with ``widen`` times its standard deviations. A table per datapoint, made once by the grid."""
    joint, z = ss_joint_on_grid(x)  # (N, Y, G), (G, 2)
    class_logits = joint.logsumexp(-1)  # log p(x, y), (N, Y)
    post = (joint - joint.logsumexp(-1, keepdim=True)).exp()  # p(z|x, y) on the grid
    mean = post @ z  # (N, Y, 2)
    sd = (post @ z.square() - mean.square()).clamp_min(1e-6).sqrt()
    logits, scale = temper * class_logits, widen * sd

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.OneHotCategorical(logits=logits))  # (..., N, Y)
            loc = torch.einsum("...ny,nyk->...nk", y, mean)
            pyro.sample("z", dist.Normal(loc, torch.einsum("...ny,nyk->...nk", y, scale)).to_event(1))

    return guide


def ss_data(n=6, seed=0):
    """x from the model itself, with the class and style that made it: (n, D), (n,), (n, 2)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(CLASSES, (n,), generator=g)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x = decode(z, torch.nn.functional.one_hot(y, CLASSES).double()) + S * torch.randn(n, D, generator=g,
                                                                                         dtype=torch.float64)
    return x, y, z


def _grid_2d(points=401, half=6.0):
    u = torch.linspace(-half, half, points, dtype=torch.float64)
    w = torch.full((points,), float(u[1] - u[0]), dtype=torch.float64)
    w[0] = w[-1] = w[0] / 2  # trapezoid
    z = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
    return z, (w[:, None] * w[None, :]).reshape(-1).log()  # (G, 2), (G,)


def ss_joint_on_grid(x, points=401):
    """log p(x_n, y, z) + log trapezoid weight on the grid: (N, Y, G), and the grid (G, 2)."""
    z, log_w = _grid_2d(points)
    eye = torch.eye(CLASSES, dtype=torch.float64)
    means = torch.stack([decode(z, eye[c].expand(len(z), -1)) for c in range(CLASSES)])  # (Y, G, D)
    log_lik = dist.Normal(means, S).log_prob(x[:, None, None, :]).sum(-1)  # (N, Y, G)
    return log_lik + dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - math.log(CLASSES) + log_w, z


def ss_exact(x, points=401):
    """log p(x_n), (N,)."""
    joint, _ = ss_joint_on_grid(x, points)
    return joint.logsumexp(-1).logsumexp(-1)


# --- deep Markov model ---------------------------------------------------------------------------------------
STEPS, SZ, SX = 3, 0.7, 0.4
TRANS_A, TRANS_C = 1.5, 0.5
GUIDE_G, GUIDE_H, GUIDE_R = 0.3, 0.5, 0.8  # r > SZ: the guide has wider tails than every transition


def dmm_model(x, lengths):
    """x (N, STEPS), lengths (N,): x_t counts for t < length."""
    with pyro.plate("data", x.shape[0]):
        z = x.new_zeros(x.shape[0])
        for t in range(STEPS):
            z = pyro.sample(f"z_{t + 1}", dist.Normal(torch.tanh(TRANS_A * z) + TRANS_C * z, SZ))
            pyro.sample(f"x_{t + 1}", dist.Normal(torch.sin(z) + z, SX).mask(t < lengths), obs=x[:, t])


def dmm_guide(x, lengths, r=GUIDE_R):
    with pyro.plate("data", x.shape[0]):
        z = x.new_zeros(x.shape[0])
        for t in range(STEPS):
            z = pyro.sample(f"z_{t + 1}", dist.Normal(GUIDE_G * z + GUIDE_H * x[:, t] * (t < lengths), r))


def dmm_data(seed=0):
    """Six sequences with lengths 1, 2, 3, 3, 2, 3, drawn from the model (x past a sequence's end: 0), with the
    latents that made them: x (6, STEPS), lengths (6,), z (6, STEPS)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 2, 3, 3, 2, 3])
    z = torch.zeros(len(lengths), STEPS, dtype=torch.float64)
    x = torch.zeros_like(z)
    previous = torch.zeros(len(lengths), dtype=torch.float64)
    for t in range(STEPS):
        z[:, t] = torch.tanh(TRANS_A * previous) + TRANS_C * previous + SZ * torch.randn(len(lengths), generator=g,
                                                                                         dtype=torch.float64)
        x[:, t] = (torch.sin(z[:, t]) + z[:, t] + SX * torch.randn(len(lengths), generator=g, dtype=torch.float64)
                   ) * (t < lengths)
        previous = z[:, t]
    return x, lengths, z


def dmm_exact(x, lengths, points=801, half=8.0):
    """log p(x_n), (N,), by the forward recursion on a grid."""
    u = torch.linspace(-half, half, points, dtype=torch.float64)
    log_w = torch.full((points,), float(u[1] - u[0]), dtype=torch.float64)
    log_w[0] = log_w[-1] = log_w[0] / 2
    log_w = log_w.log()
    transition = dist.Normal(torch.tanh(TRANS_A * u) + TRANS_C * u, SZ).log_prob(u[:, None]).T  # (from, to)
    log_alpha = dist.Normal(0.0, SZ).log_prob(u).expand(len(x), -1)  # z_1's prior density (N, G)
    for t in range(STEPS):
        if t:
            log_alpha = (log_alpha[:, :, None] + log_w[None, :, None] + transition[None]).logsumexp(1)
        observed = dist.Normal(torch.sin(u) + u, SX).log_prob(x[:, t:t + 1])  # (N, G)
        log_alpha = log_alpha + observed * (t < lengths)[:, None]
    return (log_alpha + log_w).logsumexp(-1)
