"""Bidirectional Monte Carlo: sandwich log p(x) between forward and reverse AIS on images simulated from a model.

    pyro-vae-bdmc --checkpoint runs/train_svi/checkpoint.pt --num-images 100 --steps 100,1000 --chains 16

Draws N images x ~ p(x) from the trained model, keeping the z that generated each: an exact posterior
sample (Grosse et al. 2015). For each step count, forward AIS from the guide gives a stochastic lower bound
on log p(x) and reverse AIS from that z a stochastic upper bound; their gap says how far either can be from
log p(x), and so how many steps are enough. The ELBO and IWAE-K of the same images show where importance
sampling sits inside the sandwich. Prints a table, writes bdmc.json, bdmc_per_image.csv and bdmc.png. Runs
under torchrun and resumes (--resume) as evaluate.py does; the simulated images depend on --seed and
--num-images, each image's samplers on --seed and its number.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import pyro
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from pyro import poutine
from torch import Tensor

from pyro_vae.commands.cli import (
    ArgumentParser,
    add_checkpoint_arguments,
    add_parts_arguments,
    int_list,
    positive_int,
    startup_done,
    summary,
)
from pyro_vae.evaluation.bounds import (
    CHUNK_SIZE,
    DatapointBounds,
    Estimate,
    ais_work,
    datapoint_bounds,
    require_ais_memory,
    require_bounds_memory,
    samples_per_second,
)
from pyro_vae.files import atomic_write_text, save_figure
from pyro_vae.inference.ais import ais, reverse_ais
from pyro_vae.inference.estimators import sample_sites
from pyro_vae.inference.streams import FORWARD_AIS, IMPORTANCE_SAMPLING, REVERSE_AIS, DatapointStreams
from pyro_vae.models.model import LATENT, OBSERVED
from pyro_vae.runs.experiment import load_run
from pyro_vae.runs.parts import Scored, figure_stamp, file_hash, projected_time, score_in_parts, tensor_hash, write_csv
from pyro_vae.runs.run_folder import check_results, held_folder, writable_dir
from pyro_vae.training import distributed

log = logging.getLogger("pyro_vae")


def plot_bdmc(rows: list[dict], bounds: dict[str, float], path: Path,
              metadata: dict[str, str | None] | None = None) -> None:
    """Left: forward and reverse AIS against the step count, with the IS bounds as lines (means over images;
    their SE over images, mostly the images' own spread, is common to every row and left out). Right: the
    sandwich's width, reverse - forward per image, with ± 2 SE (paired, so the images' spread cancels)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    steps = [r["num_steps"] for r in rows]
    left.plot(steps, [r["upper"]["mean"] for r in rows], "o-", color="C3", label="reverse AIS (upper bound)")
    left.plot(steps, [r["lower"]["mean"] for r in rows], "o-", color="C0", label="forward AIS (lower bound)")
    for i, (name, value) in enumerate(bounds.items()):
        left.axhline(value, color=f"C{4 + i}", linestyle="--", linewidth=1, label=f"{name} = {value:.2f}")
    left.set_ylabel("nats per image (mean over simulated images)")
    left.set_title(f"BDMC sandwich on {rows[0]['num_images']} images simulated from the model", fontsize=9)
    right.errorbar(steps, [r["gap"]["mean"] for r in rows], yerr=[2 * (r["gap"]["se"] or 0) for r in rows],
                   marker="o", capsize=3, color="C2")
    right.axhline(0, color="0.5", linewidth=0.8)
    right.set_ylabel("reverse − forward AIS, nats per image (± 2 SE)")
    right.set_title("the sandwich's width: how far either bound can be from log p(x)", fontsize=9)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(steps, labels=[str(s) for s in steps])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("AIS steps (HMC transitions)")
        ax.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    save_figure(fig, path, metadata)


def run(argv: list[str] | None) -> None:
    p = ArgumentParser(description=summary(__doc__))
    p.add_argument("--num-images", type=positive_int, default=100, help="images to simulate (default: %(default)s)")
    p.add_argument("--steps", type=int_list, default=(100, 1000), help="AIS step counts (default: 100,1000)")
    p.add_argument("--chains", type=positive_int, default=16, help="chains per image (default: %(default)s)")
    p.add_argument("--leapfrog", type=positive_int, default=10,
                   help="leapfrog steps per transition (default: %(default)s)")
    p.add_argument("--iwae-samples", type=positive_int, default=5000,
                   help="K of the largest IWAE bound on the same images (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=100,
                   help="images per pass, and per saved part (default: %(default)s)")
    add_parts_arguments(p, "BDMC run")
    add_checkpoint_arguments(p, seeds="the simulated images and every sampler",
                             out="bdmc.json, bdmc_per_image.csv and bdmc.png")
    a = p.parse_args(argv)

    # under torchrun: in the process group, one device per local rank
    distributed.in_process_group(lambda context, device: bdmc(a, context, device), a.device)


def bdmc(a: argparse.Namespace, context: distributed.Context, device: str) -> None:
    pyro.set_rng_seed(a.seed)  # the same simulated images in every process
    vae, _, state = load_run(a.checkpoint, device, a.data_dir)
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    pyro.enable_validation(False)
    out = writable_dir(Path(a.checkpoint).parent if a.out is None else a.out)
    with torch.no_grad():
        trace = poutine.trace(vae.model).get_trace(None, size=a.num_images)  # z ~ p(z), x ~ p(x|z)
    sites = sample_sites(trace)
    x, z = sites[OBSERVED]["value"], sites[LATENT]["value"]  # (N, D), (N, Z)
    log.info("%s: %d images simulated from the model; AIS with %d chains, %d leapfrog steps per transition",
             a.checkpoint, a.num_images, a.chains, a.leapfrog)
    ks = sorted({k for k in (1, 10, 100, 1000) if k <= a.iwae_samples} | {a.iwae_samples})
    steps_rows = sorted(set(a.steps))
    # what cannot fit is refused now, naming its flag, not after the simulation and the other rows
    require_bounds_memory(vae, x.shape[-1], a.num_images, a.iwae_samples, a.batch_size, CHUNK_SIZE, x.device,
                          "iwae_samples")
    require_ais_memory(vae, x.shape[-1], a.num_images, steps_rows[-1], a.chains, a.batch_size, x.device, "steps")
    if context.is_main:  # a K or a step count that fits may still take days: say so before it starts
        work = a.iwae_samples + sum(2 * ais_work(steps, a.chains, a.leapfrog) for steps in steps_rows)  # both ways
        projected_time(a.num_images * work, samples_per_second(vae, x), context.world_size)
    options = dict(num_chains=a.chains, num_leapfrog=a.leapfrog, chunk_size=a.batch_size, max_plate_nesting=1)

    def score(rows: Tensor) -> Scored:  # the simulated images numbered ``rows``
        images, latents = x[rows.to(x.device)], z[rows.to(z.device)]
        bounds = datapoint_bounds(vae, images, ks=ks, batch_size=a.batch_size, diagnose=False,
                                  noise=DatapointStreams(a.seed, rows, IMPORTANCE_SAMPLING))
        scored = Scored(bounds.columns())
        for steps in steps_rows:
            start = time.perf_counter()
            forward = ais(vae.annealing_model, vae.annealing_guide, images, num_steps=steps,
                          noise=DatapointStreams(a.seed, rows, FORWARD_AIS, steps), **options)
            backward = reverse_ais(vae.annealing_model, vae.annealing_guide, images,
                                   latents=vae.annealing_latents(images, latents), num_steps=steps,
                                   noise=DatapointStreams(a.seed, rows, REVERSE_AIS, steps), **options)
            scored.values[f"forward_{steps}"], scored.values[f"reverse_{steps}"] = forward.bound(), -backward.bound()
            scored.values[f"acceptance_{steps}"] = (forward.acceptance + backward.acceptance) / 2
            scored.seconds[str(steps)] = time.perf_counter() - start
        return scored

    settings = {"checkpoint_sha256": file_hash(a.checkpoint), "images_sha256": tensor_hash(x), "seed": a.seed,
                "num_images": a.num_images, "ks": ks, "batch_size": a.batch_size, "steps": steps_rows,
                "chains": a.chains, "leapfrog": a.leapfrog}
    # no training run or other command writes here meanwhile; results of other settings are refused before the work
    with held_folder(out, context, lambda: check_results(out / "bdmc.json", settings, a.overwrite)):
        index = torch.arange(a.num_images)
        scored = score_in_parts(score, index, a.batch_size, out / "bdmc.parts", settings, resume=a.resume,
                                context=context, progress=not a.no_progress)
        if not context.is_main:
            return
        values = scored.values
        rows = []
        for steps in steps_rows:
            lower, upper = values[f"forward_{steps}"], values[f"reverse_{steps}"]  # (N,) each
            rows.append({"num_steps": steps, "num_images": a.num_images, "lower": Estimate.of(lower).__dict__,
                         "upper": Estimate.of(upper).__dict__, "gap": Estimate.of(upper - lower).__dict__,
                         "acceptance": values[f"acceptance_{steps}"].mean().item(),
                         "seconds": scored.seconds[str(steps)]})
        report = DatapointBounds.from_columns(values, ks).report()
        bounds = {"ELBO": report.elbo.mean, f"IWAE K={a.iwae_samples}": report.log_likelihood.mean}

        def pm(estimate: dict) -> str:  # mean ± SE; one image has no SE (said once, below the table)
            return f"{estimate['mean']:.2f}" + ("" if estimate["se"] is None else f" ± {estimate['se']:.2f}")

        print(f"{'steps':>7}  {'forward AIS (lower)':>20}  {'reverse AIS (upper)':>20}  {'gap':>13}  acceptance")
        for r in rows:
            print(f"{r['num_steps']:>7}  {pm(r['lower']):>20}  {pm(r['upper']):>20}  {pm(r['gap']):>13}  "
                  f"{r['acceptance']:.2f}")
        if a.num_images == 1:
            print("(one image: no standard errors)")
        tightest = rows[-1]
        for name, value in bounds.items():
            print(f"{name:>20}  {value:10.2f}   {tightest['lower']['mean'] - value:.2f} nats below forward AIS and "
                  f"{tightest['upper']['mean'] - value:.2f} below reverse AIS at {tightest['num_steps']} steps")
        result = {"checkpoint": str(a.checkpoint), "checkpoint_sha256": settings["checkpoint_sha256"],
                  "checkpoint_epoch": state.get("epoch"), "settings": settings,
                  "dataset": state["data_config"]["dataset"], "seed": a.seed, "processes": context.world_size,
                  "chains": a.chains, "leapfrog": a.leapfrog, "rows": rows, "importance_sampling": report.to_dict()}
        atomic_write_text(out / "bdmc.json", json.dumps(result, indent=2) + "\n")
        write_csv(out / "bdmc_per_image.csv", index, values)
        plot_bdmc(rows, bounds, out / "bdmc.png", figure_stamp(settings["checkpoint_sha256"], state.get("epoch")))
        shutil.rmtree(out / "bdmc.parts", ignore_errors=True)
        log.info("wrote %s, %s and %s", out / "bdmc.json", out / "bdmc_per_image.csv", out / "bdmc.png")
