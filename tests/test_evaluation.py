import json

import pytest
import torch

from pyro_vae.config import ModelConfig
from pyro_vae.evaluation import evaluate_bounds
from pyro_vae.vae import VAE

from conftest import binary_data


def test_report_orders_the_bounds_and_batches_do_not_matter():
    vae = VAE(x_dim=20, config=ModelConfig(z_dim=2, hidden=(16,)))
    x = binary_data(30)
    report = evaluate_bounds(vae, x, ks=(100, 1, 10), batch_size=7, chunk_size=40)
    assert report.num_datapoints == 30 and report.num_samples == 100
    assert list(report.iwae) == [1, 10, 100]
    assert report.iwae[1].mean == pytest.approx(report.elbo.mean)  # L_1 is the ELBO
    # an untrained VAE has a large gap; the bounds grow with K by far more than their noise
    assert report.elbo.mean < report.iwae[10].mean < report.iwae[100].mean
    assert report.gap.mean == pytest.approx(report.iwae[100].mean - report.elbo.mean, abs=1e-4)
    assert report.gap.se > 0 and 0 <= report.khat_above <= 1
    json.dumps(report.to_dict())  # serializable as written by evaluate.py
    assert any("gap" in line for line in report.lines())
    # one batch or many: same datapoints, same samples per datapoint; estimates agree within noise
    whole = evaluate_bounds(vae, x, ks=(1, 10, 100), batch_size=30, chunk_size=100)
    assert abs(whole.iwae[100].mean - report.iwae[100].mean) < 4 * report.gap.se + 0.2


def test_bad_ks_are_refused():
    vae = VAE(x_dim=20, config=ModelConfig(z_dim=2, hidden=(16,)))
    with pytest.raises(ValueError, match="K must be >= 1"):
        evaluate_bounds(vae, binary_data(4), ks=(0, 10))
