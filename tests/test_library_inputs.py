"""The library's entry points refuse bad arguments with one clear error naming the argument: never a KeyError,
a ZeroDivisionError, a shape error from deep inside, or a silent wrong answer (each case below did one of
those before)."""

import re

import pyro
import pytest
import torch

from pyro_vae.config import ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.pixels import PreparedData
from pyro_vae.errors import UsageError
from pyro_vae.evaluation.bounds import datapoint_ais, datapoint_bounds
from pyro_vae.inference.ais import ais, reverse_ais
from pyro_vae.inference.estimators import iwae_bound, log_marginal_likelihood
from pyro_vae.inference.local import local_elbo
from pyro_vae.inference.objectives import make_elbo
from pyro_vae.models.model import DATA_PLATE, LATENT
from pyro_vae.models.vae import VAE
from pyro_vae.training.loop import fit, held_out_bound


@pytest.fixture(scope="module")
def vae():
    pyro.set_rng_seed(0)
    return VAE(12, ModelConfig(z_dim=2, hidden=(8,)))


X = torch.rand(4, 12).round()
AIS = dict(num_steps=2, num_chains=2, plate=DATA_PLATE, max_plate_nesting=1)

CASES = [
    ("TrainConfig(epochs=1.5)", lambda vae: TrainConfig(epochs=1.5), UsageError,
     "`epochs` must be an integer, got 1.5"),
    ("TrainConfig(batch_size=2.5)", lambda vae: TrainConfig(batch_size=2.5), UsageError,
     "`batch_size` must be an integer"),
    ("TrainConfig(batch_size=0)", lambda vae: TrainConfig(batch_size=0), UsageError, "`batch_size` must be positive"),
    ("TrainConfig(lr='1e-3')", lambda vae: TrainConfig(lr="1e-3"), UsageError, "`lr` must be a number"),
    ("RunConfig(eval_samples=1.0)", lambda vae: RunConfig(eval_samples=1.0), UsageError,
     "`eval_samples` must be an int"),
    ("ModelConfig(z_dim=2.0)", lambda vae: ModelConfig(z_dim=2.0), UsageError, "`z_dim` must be an integer"),
    ("ModelConfig(z_dim='20')", lambda vae: ModelConfig(z_dim="20"), UsageError, "`z_dim` must be an integer"),
    ("ModelConfig(hidden='400')", lambda vae: ModelConfig(hidden="400"), UsageError, "`hidden` must be a tuple of"),
    ("ModelConfig(hidden=(400.0,))", lambda vae: ModelConfig(hidden=(400.0,)), UsageError, "`hidden` must be a tuple"),
    ("unknown activation", lambda vae: VAE(12, ModelConfig(activation="gelu")), UsageError,
     "unknown activation 'gelu': choose one of relu"),
    ("VAE(0, ...)", lambda vae: VAE(0, ModelConfig()), UsageError, r"`x_dim` \(pixels per image\) must be a positive"),
    ('make_elbo("trace", 0)', lambda vae: make_elbo("trace", 0), UsageError, "`num_particles` must be a positive int"),
    ("one image of shape (D,)", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X[0], num_samples=5),
     ValueError, r"x must be a batch of flattened images, \(B, D\); got shape \(12,\): one image is x\[None\]"),
    ("no images", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X[:0], num_samples=5), ValueError,
     "the data holds no datapoints"),
    ("max_plate_nesting=0", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X, num_samples=5,
                                                                 max_plate_nesting=0), ValueError,
     "max_plate_nesting must be >= 1"),
    ("datapoint_bounds batch_size=0", lambda vae: datapoint_bounds(vae, X, ks=(1, 5), batch_size=0), ValueError,
     "`batch_size` must be a positive integer, got 0"),
    ("datapoint_bounds on no images", lambda vae: datapoint_bounds(vae, X[:0], ks=(1, 5)), ValueError,
     r"x must hold images as \(N, D\) with N >= 1"),
    ("datapoint_ais batch_size=0", lambda vae: datapoint_ais(vae, X, 2, 2, 2, batch_size=0), ValueError,
     "`batch_size` must be a positive integer"),
    ("AIS num_leapfrog=0", lambda vae: ais(vae.model, vae.guide, X, num_leapfrog=0, **AIS), ValueError,
     "num_leapfrog must be >= 1"),
    ("AIS on no images", lambda vae: ais(vae.model, vae.guide, X[:0], **AIS), ValueError, "holds no datapoints"),
    ("fit on no images", lambda vae: fit(vae, torch.optim.Adam(vae.parameters()),
                                         PreparedData(X[:0], X, X, "none", (3, 4)), TrainConfig(epochs=1),
                                         progress=False),
     UsageError, "nothing to train on: 0 training and 4 validation images"),
    # each of these was a TypeError, AttributeError, ZeroDivisionError or a shape error from inside torch
    ("x of another width", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X[:, :11], num_samples=5),
     ValueError, r"x has 11 values per image, and this VAE's images have `x_dim=12`"),
    ("x in float64", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X.double(), num_samples=5),
     ValueError, r"x holds torch.float64 values and the VAE's weights are torch.float32: pass x.to\(torch.float32\)"),
    ("x of 8-bit pixels", lambda vae: datapoint_bounds(vae, (X * 255).to(torch.uint8), ks=(1, 5)),
     ValueError, r"x holds torch.uint8 values .*: pass x.float\(\) / 255 for 8-bit pixels"),
    ("x on another device", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X.to("meta"), num_samples=5),
     ValueError, r"x is on meta and the VAE on cpu: pass x.to\('cpu'\)"),
    ("x a list", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X.tolist(), num_samples=5),
     ValueError, r"`x` must be a torch.Tensor, got a list: pass torch.as_tensor\(x, dtype=torch.float32\)"),
    ("x a NumPy array", lambda vae: datapoint_bounds(vae, X.numpy(), ks=(1, 5)),
     ValueError, r"`x` must be a torch.Tensor, got a numpy.ndarray"),
    ("num_samples=5.0", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X, num_samples=5.0),
     ValueError, "`num_samples` must be a positive integer, got 5.0"),
    ("chunk_size=2.0", lambda vae: log_marginal_likelihood(vae.model, vae.guide, X, num_samples=5, chunk_size=2.0),
     ValueError, "`chunk_size` must be a positive integer, got 2.0"),
    ("iwae_bound k=2.0", lambda vae: iwae_bound(torch.zeros(4, 3), 2.0), ValueError,
     "`k` must be a positive integer, got 2.0"),
    ("datapoint_bounds ks=(1, 5.0)", lambda vae: datapoint_bounds(vae, X, ks=(1, 5.0)), ValueError,
     "`ks` must be a positive integer, got 5.0"),
    ("local_particles=0", lambda vae: local_elbo(vae.model, vae.guide, X, local_steps=2, local_particles=0),
     ValueError, "`local_particles` must be a positive integer, got 0"),
    ("held_out_bound on no images", lambda vae: held_out_bound(vae, X[:0], TrainConfig()), ValueError,
     "x holds no images"),
    ("model(None, size=0)", lambda vae: vae.model(None, size=0), ValueError,
     "`size` must be a positive integer, got 0"),
    ("subsample beyond the plate", lambda vae: vae.model(X, size=4, subsample=torch.tensor([0, 1, 2, 7])), ValueError,
     r"`subsample` holds indices 0..7, outside the dataset of `size=4` images \(0..3\)"),
    ("subsample of another length", lambda vae: vae.model(X, subsample=torch.tensor([0, 1])), ValueError,
     r"`subsample` must hold one dataset index per image of x, \(4,\); got shape \(2,\)"),
    ("reverse AIS without latents", lambda vae: reverse_ais(vae.model, vae.guide, X, latents={}, **AIS), ValueError,
     r"the start \(latents\) names sites \[\], and the guide's latent sites are \['z'\]"),
    ("reverse AIS, a misnamed latent", lambda vae: reverse_ais(vae.model, vae.guide, X,
                                                               latents={"u": torch.zeros(4, 2)}, **AIS),
     ValueError, r"names sites \['u'\]"),
    ("reverse AIS, a mis-shaped latent", lambda vae: reverse_ais(vae.model, vae.guide, X,
                                                                 latents={LATENT: torch.zeros(4, 3)}, **AIS),
     ValueError, r"the start of site 'z' has shape \(4, 3\)"),
    ("reverse AIS, a NaN latent", lambda vae: reverse_ais(vae.model, vae.guide, X,
                                                          latents={LATENT: torch.full((4, 2), float("nan"))}, **AIS),
     ValueError, "the start of site 'z' holds NaN"),
]


@pytest.mark.parametrize("call, error, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_argument_is_one_clear_error(vae, call, error, message):
    with pytest.raises(error) as raised:
        call(vae)
    # the first line says it (Pyro appends its trace's shapes below an error raised inside a model or guide)
    assert re.search(message, str(raised.value).splitlines()[0]), raised.value
