"""Compare the ELBO with importance-weighted bounds log p^_K(x) for growing K on the test set.

    pyro-vae-evaluate --checkpoint runs/train_svi/checkpoint.pt
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import pyro

from pyro_vae.commands.cli import ArgumentParser, add_checkpoint_arguments, int_list, positive_int, startup_done
from pyro_vae.errors import UsageError
from pyro_vae.evaluation.bounds import evaluate_ais, evaluate_bounds
from pyro_vae.files import atomic_write_text
from pyro_vae.runs.experiment import load_run
from pyro_vae.runs.plots import plot_bounds
from pyro_vae.runs.run_folder import writable_dir

log = logging.getLogger("pyro_vae")


def run(argv: list[str] | None) -> None:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-samples", type=positive_int, default=5000,
                   help="K for log p^(x), the largest bound; every bound uses these samples (default: %(default)s)")
    p.add_argument("--ks", type=int_list, default=(1, 10, 100, 1000, 5000),
                   help="the K of each bound to report, comma-separated; those above --num-samples are dropped "
                        "(default: 1,10,100,1000,5000)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="test images per pass (default: %(default)s)")
    p.add_argument("--chunk-size", type=positive_int, default=250,
                   help="importance samples per pass; memory grows with batch-size x chunk-size (default: %(default)s)")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first LIMIT test images")
    p.add_argument("--no-khat", action="store_true", help="skip the PSIS k^ diagnostic")
    p.add_argument("--ais-steps", type=int_list, default=(),
                   help="add a row of annealed importance sampling (AIS) with this many HMC transitions; "
                        "comma-separated for several rows, e.g. 100,1000 (default: none)")
    p.add_argument("--ais-chains", type=positive_int, default=16, help="AIS chains per image (default: %(default)s)")
    p.add_argument("--ais-leapfrog", type=positive_int, default=10,
                   help="leapfrog steps per HMC transition (default: %(default)s)")
    add_checkpoint_arguments(p, seeds="the importance samples", out="evaluation.json and bounds.png")
    a = p.parse_args(argv)

    pyro.set_rng_seed(a.seed)
    vae, data, state = load_run(a.checkpoint, a.device, a.data_dir)  # checks the data's support once
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    # so Pyro's per-call argument checks, a pass over every (samples x images x pixels) tensor, can go
    pyro.enable_validation(False)
    out = writable_dir(a.out or Path(a.checkpoint).parent)  # before the long evaluation, not after it
    x = data.test[: a.limit]
    ks = sorted({k for k in a.ks if k <= a.num_samples} | {a.num_samples})
    log.info("%s: %d test images of %s, K = %s", a.checkpoint, len(x), state["data_config"]["dataset"],
             ",".join(map(str, ks)))
    report = evaluate_bounds(vae, x, ks=ks, batch_size=a.batch_size, chunk_size=a.chunk_size, diagnose=not a.no_khat)
    rows = []
    for steps in sorted(set(a.ais_steps)):
        log.info("AIS with %d steps x %d chains (%d leapfrog steps each) on %d images", steps, a.ais_chains,
                 a.ais_leapfrog, len(x))
        rows.append(evaluate_ais(vae, x, steps, a.ais_chains, a.ais_leapfrog, a.batch_size))
    report = replace(report, ais=tuple(rows))
    if not all(math.isfinite(value) for value in (report.elbo.mean, report.log_likelihood.mean)):
        raise UsageError(f"{a.checkpoint}: the model's bounds are not finite on these images (ELBO "
                         f"{report.elbo.mean}): its weights are damaged or diverged; use another checkpoint")
    print("\n".join(report.lines()))

    result = {"checkpoint": str(a.checkpoint), "dataset": state["data_config"]["dataset"], **report.to_dict()}
    atomic_write_text(out / "evaluation.json", json.dumps(result, indent=2) + "\n")
    plot_bounds(report, out / "bounds.png")
    log.info("wrote %s and %s", out / "evaluation.json", out / "bounds.png")
