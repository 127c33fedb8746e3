"""Importance sampling with the class summed out against sampled, on the semi-supervised model of
tests/pyro_shapes.py (Pyro's ss_vae_M2 shape: a 10-way class y beside a 2-D z, exact log p(x) by quadrature).

    python benchmarks/bench_enumeration.py --repeats 200

For each of its 6 datapoints and two guides (the fitted one, q(y|x) the exact class posterior tempered; and one
whose classifier is sure of a wrong class), the variance of log p^(x) over --repeats runs: y sampled with K
draws, and y enumerated with K / 10 draws per class (the same 10 K model runs) and with K per class (the same
draws of z per class as sampled draws in all). Prints the variance ratios and the mean error against the exact
value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyro
import torch
from pyro import distributions as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pyro_shapes import CLASSES, ss_data, ss_exact, ss_fitted_guide, ss_model  # noqa: E402

from pyro_vae.inference.estimators import log_marginal_likelihood  # noqa: E402


def wrong_classifier(x):
    with pyro.plate("data", x.shape[0]):
        y = pyro.sample("y", dist.OneHotCategorical(logits=x.new_tensor([20.0] + [0.0] * 9).expand(x.shape[0], 10)))
        pyro.sample("z", dist.Normal(x.new_zeros(y.shape[:-1] + (2,)), 1.0).to_event(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000, help="K, the sampled estimator's draws")
    a = parser.parse_args()
    pyro.set_rng_seed(0)
    x, _, _ = ss_data()
    exact = ss_exact(x)
    for name, guide in (("fitted guide", ss_fitted_guide(x)), ("wrong classifier", wrong_classifier)):
        def runs(k, enumerate, guide=guide):
            return torch.stack([log_marginal_likelihood(ss_model, guide, x, num_samples=k, enumerate=enumerate)
                                for _ in range(a.repeats)])  # (R, N)

        sampled = runs(a.samples, False)
        equal_cost = runs(a.samples // CLASSES, True)
        per_class = runs(a.samples, True)
        print(f"{name}: variance of log p^(x) over {a.repeats} runs, per datapoint")
        print(f"  {'':34s}" + "".join(f"{n:>9d}" for n in range(len(x))))
        for label, runs_ in ((f"sampled y, K={a.samples}", sampled),
                             (f"enumerated, K={a.samples // CLASSES} per class", equal_cost),
                             (f"enumerated, K={a.samples} per class", per_class)):
            print(f"  {label:34s}" + "".join(f"{v:9.2e}" for v in runs_.var(0).tolist())
                  + f"   mean error {(runs_.mean(0) - exact).mean():+.3f}")
        for label, runs_ in (("ratio sampled / enumerated, equal cost", equal_cost),
                             ("ratio sampled / enumerated, equal K", per_class)):
            print(f"  {label:34s}" + "".join(f"{v:9.1f}" for v in (sampled.var(0) / runs_.var(0)).tolist()))


if __name__ == "__main__":
    main()
