"""pyro-vae-gaps' report on q*: what it says about convergence, other modes and what AIS missed."""

import torch

from pyro_vae.commands.gaps import local_columns, local_fit, local_report
from pyro_vae.inference.gaps import InferenceGaps
from pyro_vae.inference.local import LocalFit


def gaps_of(log_px, local_elbo, rise, start_gain):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    local = LocalFit(t(local_elbo), t(rise) <= 0.05, t(rise), t(start_gain), torch.zeros(len(rise), dtype=torch.long))
    return InferenceGaps(t(log_px), t(local_elbo) - 1.0, local, 500, 8)


def test_the_report_says_what_q_star_found():
    gaps = gaps_of(log_px=[-10.0, -20.0, -30.0], local_elbo=[-10.5, -19.2, -31.0], rise=[0.01, 0.3, -0.02],
                   start_gain=[0.0, 6.0, 0.02])
    converged, modes, missed = local_report(gaps)
    assert converged == ("q* converged on 2 of 3 images: a further optimization raised 1 by more than 0.05 nats "
                         "(up to 0.30): raise --local-steps")
    assert modes.startswith("another start beat the guide's on 1 of 3 images (by 6.00 nats on average, up to 6.00)")
    assert missed.startswith("on 1 of 3 images L[q*] is above AIS's log p^(x) by more than 0.5 nats (up to 0.80)")
    quiet = local_report(gaps_of(log_px=[-10.0], local_elbo=[-10.5], rise=[0.0], start_gain=[0.0]))
    assert quiet == ["q* converged on 1 of 1 images: a further optimization raised none by more than 0.05 nats",
                     "another start beat the guide's on 0 of 1 images"]


def test_a_parts_columns_give_back_the_same_fit():
    gaps = gaps_of(log_px=[-10.0, -20.0], local_elbo=[-10.5, -21.0], rise=[0.01, 0.3], start_gain=[0.0, 6.0])
    again = local_fit(local_columns(gaps.local))
    for name in ("elbo", "converged", "rise", "start_gain", "best_start"):
        assert torch.equal(getattr(again, name), getattr(gaps.local, name)), name
