"""pyro-vae-bdmc: bidirectional Monte Carlo, log p(x) sandwiched between forward and reverse AIS on images simulated
from a model (its flags: flags/bdmc.py)."""

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

from pyro_vae.commands.cli import startup_done
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
from pyro_vae.evaluation.memory import estimator_bytes, require_memory
from pyro_vae.files import atomic_write_text, save_figure
from pyro_vae.inference.ais import ais, reverse_ais
from pyro_vae.inference.sites import sample_sites
from pyro_vae.inference.streams import FORWARD_AIS, IMPORTANCE_SAMPLING, REVERSE_AIS, DatapointStreams
from pyro_vae.models.model import OBSERVED
from pyro_vae.runs.experiment import load_run
from pyro_vae.runs.parts import Scored, file_hash, plan_parts, score_in_parts, tensor_hash
from pyro_vae.runs.per_image import figure_stamp, write_csv
from pyro_vae.runs.run_folder import check_results, held_folder, require_own_folder, writable_dir
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


def run(a: argparse.Namespace) -> None:
    # under torchrun: in the process group, one device per local rank
    distributed.in_process_group(lambda context, device: bdmc(a, context, device), a.device)


def inverted_sandwiches(rows: list[dict], chains: int) -> list[str]:
    """A line for each row whose reverse bound sits below its forward bound by more than two standard errors:
    each is a stochastic bound, so a few chains can cross by chance, but an inverted sandwich beyond its noise
    says that neither bound holds yet at that many steps and chains."""
    lines = []
    for r in rows:
        gap, se = r["gap"]["mean"], r["gap"]["se"]
        if se is not None and gap + 2 * se < 0:
            lines.append(f"at {r['num_steps']} steps the sandwich is inverted: reverse AIS sits {-gap:.2f} ± {se:.2f} "
                         f"nats below forward AIS, beyond its noise; with {chains} chains and this few steps neither "
                         "bound holds yet: raise --ais-steps (and --ais-chains)")
    return lines


def bdmc(a: argparse.Namespace, context: distributed.Context, device: str) -> None:
    pyro.set_rng_seed(a.seed)  # the same simulated images in every process
    vae, _, state = load_run(a.checkpoint, device, a.data_dir)
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    pyro.enable_validation(False)
    out = writable_dir(Path(a.checkpoint).parent if a.out is None else a.out)
    require_own_folder(out, a.checkpoint, a.overwrite)
    require_memory(estimator_bytes(vae, vae.x_dim, a.images, 1), next(vae.parameters()).device,
                   f"simulating {a.images} images at once", "lower `images`")
    with torch.no_grad():
        trace = poutine.trace(vae.model).get_trace(None, size=a.images)  # z ~ p(z), x ~ p(x|z)
    sites = sample_sites(trace)
    x = sites[OBSERVED]["value"]  # (N, D)
    z = {name: site["value"] for name, site in sites.items() if name != OBSERVED}  # z (N, Z), and z2 with two layers
    log.info("%s: %d images simulated from the model; AIS with %d chains, %d leapfrog steps per transition",
             a.checkpoint, a.images, a.ais_chains, a.ais_leapfrog)
    ks = sorted({k for k in (1, 10, 100, 1000) if k <= a.eval_samples} | {a.eval_samples})
    steps_rows = sorted(set(a.ais_steps))
    # what cannot fit is refused now, naming its flag, not after the simulation and the other rows
    require_bounds_memory(vae, x.shape[-1], a.images, a.eval_samples, a.images_per_pass, CHUNK_SIZE, x.device,
                          "eval_samples", batch_setting="images_per_pass")
    require_ais_memory(vae, x.shape[-1], a.images, steps_rows[-1], a.ais_chains, a.images_per_pass, x.device,
                       "ais_steps", "images_per_pass")
    work = a.eval_samples + sum(2 * ais_work(steps, a.ais_chains, a.ais_leapfrog) for steps in steps_rows)  # both ways
    part_size = plan_parts(a.images, work, a.images_per_pass, lambda: samples_per_second(vae, x), context)
    options = dict(num_chains=a.ais_chains, num_leapfrog=a.ais_leapfrog, chunk_size=a.images_per_pass,
                   max_plate_nesting=1)

    def score(rows: Tensor) -> Scored:  # the simulated images numbered ``rows``
        images, latents = x[rows.to(x.device)], {name: value[rows.to(x.device)] for name, value in z.items()}
        bounds = datapoint_bounds(vae, images, ks=ks, batch_size=a.images_per_pass, diagnose=False,
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
                "num_images": a.images, "ks": ks, "batch_size": a.images_per_pass, "steps": steps_rows,
                "chains": a.ais_chains, "leapfrog": a.ais_leapfrog}
    # no training run or other command writes here meanwhile; results of other settings are refused before the work
    with held_folder(out, context, lambda: check_results(out / "bdmc.json", settings, a.overwrite)):
        index = torch.arange(a.images)
        scored = score_in_parts(score, index, part_size, out / "bdmc.parts", settings, resume=a.resume,
                                context=context, progress=not a.no_progress)
        if not context.is_main:
            return
        values = scored.values
        rows = []
        for steps in steps_rows:
            lower, upper = values[f"forward_{steps}"], values[f"reverse_{steps}"]  # (N,) each
            rows.append({"num_steps": steps, "num_images": a.images, "lower": Estimate.of(lower).__dict__,
                         "upper": Estimate.of(upper).__dict__, "gap": Estimate.of(upper - lower).__dict__,
                         "acceptance": values[f"acceptance_{steps}"].mean().item(),
                         # the processes shared the work: the time of each, and of all of them summed
                         "seconds": scored.seconds[str(steps)] / context.world_size,
                         "process_seconds": scored.seconds[str(steps)]})
        report = DatapointBounds.from_columns(values, ks).report()
        bounds = {"ELBO": report.elbo.mean, f"IWAE K={a.eval_samples}": report.log_likelihood.mean}

        def pm(estimate: dict) -> str:  # mean ± SE; one image has no SE (said once, below the table)
            return f"{estimate['mean']:.2f}" + ("" if estimate["se"] is None else f" ± {estimate['se']:.2f}")

        print(f"{'steps':>7}  {'forward AIS (lower)':>20}  {'reverse AIS (upper)':>20}  {'gap':>13}  acceptance")
        for r in rows:
            print(f"{r['num_steps']:>7}  {pm(r['lower']):>20}  {pm(r['upper']):>20}  {pm(r['gap']):>13}  "
                  f"{r['acceptance']:.2f}")
        if a.images == 1:
            print("(one image: no standard errors)")
        for line in inverted_sandwiches(rows, a.ais_chains):
            print(line)
        tightest = rows[-1]
        for name, value in bounds.items():
            print(f"{name:>20}  {value:10.2f}   {tightest['lower']['mean'] - value:.2f} nats below forward AIS and "
                  f"{tightest['upper']['mean'] - value:.2f} below reverse AIS at {tightest['num_steps']} steps")
        result = {"checkpoint": str(a.checkpoint), "checkpoint_sha256": settings["checkpoint_sha256"],
                  "checkpoint_epoch": state.get("epoch"), "settings": settings,
                  "dataset": state["data_config"]["dataset"], "seed": a.seed, "processes": context.world_size,
                  "chains": a.ais_chains, "leapfrog": a.ais_leapfrog, "rows": rows,
                  "importance_sampling": report.to_dict()}
        atomic_write_text(out / "bdmc.json", json.dumps(result, indent=2) + "\n")
        write_csv(out / "bdmc_per_image.csv", index, values)
        plot_bdmc(rows, bounds, out / "bdmc.png", figure_stamp(settings["checkpoint_sha256"], state.get("epoch")))
        shutil.rmtree(out / "bdmc.parts", ignore_errors=True)
        log.info("wrote %s, %s and %s", out / "bdmc.json", out / "bdmc_per_image.csv", out / "bdmc.png")
