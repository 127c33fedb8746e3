"""pyro-vae-evaluate: the ELBO beside importance-weighted bounds for growing K, and AIS, on the test set, image by
image (its flags: flags/evaluate.py)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pyro
from torch import Tensor

from pyro_vae.commands.cli import startup_done
from pyro_vae.data.pixels import dequantized_bound
from pyro_vae.errors import UsageError
from pyro_vae.evaluation.bounds import (
    AISEstimate,
    DatapointBounds,
    Estimate,
    ais_work,
    datapoint_ais,
    datapoint_bounds,
    require_ais_memory,
    require_bounds_memory,
    samples_per_second,
)
from pyro_vae.files import atomic_write_text
from pyro_vae.inference.estimators import KHAT_MIN_SAMPLES
from pyro_vae.inference.streams import FORWARD_AIS, IMPORTANCE_SAMPLING, DatapointStreams
from pyro_vae.runs.experiment import load_run
from pyro_vae.runs.parts import Scored, file_hash, plan_parts, score_in_parts, tensor_hash
from pyro_vae.runs.per_image import choose_images, figure_stamp, paired_differences, read_csv, shared_images, write_csv
from pyro_vae.runs.plots import plot_bounds
from pyro_vae.runs.run_folder import check_results, held_folder, require_own_folder, writable_dir
from pyro_vae.training import distributed

log = logging.getLogger("pyro_vae")


def run(a: argparse.Namespace) -> None:
    # under torchrun: in the process group, one device per local rank
    distributed.in_process_group(lambda context, device: evaluate(a, context, device), a.device)


def evaluate(a: argparse.Namespace, context: distributed.Context, device: str) -> None:
    pyro.set_rng_seed(a.seed)
    vae, data, state = load_run(a.checkpoint, device, a.data_dir)  # checks the data's support once
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    # so Pyro's per-call argument checks, a pass over every (samples x images x pixels) tensor, can go
    pyro.enable_validation(False)
    out = writable_dir(Path(a.checkpoint).parent if a.out is None else a.out)  # before the long evaluation
    require_own_folder(out, a.checkpoint, a.overwrite)
    index, chosen = choose_images(len(data.test), images=a.images, limit=a.limit, seed=a.seed)
    other = None if a.compare is None else read_csv(a.compare)  # a bad file refused before the long work
    if other is not None:
        shared_images(index, other[0])
    x = data.test[index.to(data.test.device)]
    ks = sorted({k for k in a.ks if k <= a.eval_samples} | {a.eval_samples})
    ais_steps = sorted(set(a.ais_steps))
    diagnose = not a.no_khat and a.eval_samples >= KHAT_MIN_SAMPLES
    # what cannot fit is refused now, not after hours of the other rows (each part checks again)
    require_bounds_memory(vae, x.shape[-1], len(x), a.eval_samples, a.images_per_pass, a.chunk_size, x.device,
                          "eval_samples", batch_setting="images_per_pass")
    if ais_steps:
        require_ais_memory(vae, x.shape[-1], len(x), ais_steps[-1], a.ais_chains, a.images_per_pass, x.device,
                           "ais_steps", "images_per_pass")
    work = a.eval_samples + sum(ais_work(steps, a.ais_chains, a.ais_leapfrog) for steps in ais_steps)
    part_size = plan_parts(len(x), work, a.images_per_pass, lambda: samples_per_second(vae, x), context)
    log.info("%s: %d test images of %s (%s), K = %s%s", a.checkpoint, len(x), state["data_config"]["dataset"],
             chosen["selection"], ",".join(map(str, ks)), f"; AIS with {','.join(map(str, ais_steps))} steps x "
             f"{a.ais_chains} chains ({a.ais_leapfrog} leapfrog steps)" if ais_steps else "")

    def score(rows: Tensor) -> Scored:  # the images at dataset indices ``rows``
        images = data.test[rows.to(data.test.device)]
        bounds = datapoint_bounds(vae, images, ks=ks, batch_size=a.images_per_pass, chunk_size=a.chunk_size,
                                  diagnose=diagnose, noise=DatapointStreams(a.seed, rows, IMPORTANCE_SAMPLING))
        scored = Scored(bounds.columns())
        for steps in ais_steps:
            start = time.perf_counter()
            result = datapoint_ais(vae, images, steps, a.ais_chains, a.ais_leapfrog, a.images_per_pass,
                                   noise=DatapointStreams(a.seed, rows, FORWARD_AIS, steps))
            scored.values[f"ais_{steps}"] = result.bound()
            scored.values[f"ais_{steps}_acceptance"] = result.acceptance
            scored.seconds[f"ais_{steps}"] = time.perf_counter() - start
        return scored

    settings = {"checkpoint_sha256": file_hash(a.checkpoint), "images_sha256": tensor_hash(x), "index": chosen,
                "seed": a.seed, "ks": ks, "khat": diagnose, "batch_size": a.images_per_pass, "chunk_size": a.chunk_size,
                "ais_steps": ais_steps, "ais_chains": a.ais_chains, "ais_leapfrog": a.ais_leapfrog}
    # no training run or other command writes here meanwhile; results of other settings are refused before the work
    with held_folder(out, context, lambda: check_results(out / "evaluation.json", settings, a.overwrite)):
        start = time.perf_counter()
        scored = score_in_parts(score, index, part_size, out / "evaluation.parts", settings, resume=a.resume,
                                context=context, progress=not a.no_progress)
        wall = time.perf_counter() - start  # the scoring's wall time, every process's part gathered
        if not context.is_main:
            return
        values = scored.values
        shared, compared = (0, None) if other is None else paired_differences(index, values, *other)
        report = DatapointBounds.from_columns(values, ks).report()
        report = replace(report, ais=tuple(
            AISEstimate(steps, a.ais_chains, Estimate.of(values[f"ais_{steps}"]),
                        values[f"ais_{steps}_acceptance"].mean().item(),
                        scored.seconds[f"ais_{steps}"] / context.world_size, context.world_size)
            for steps in ais_steps))
        if not all(math.isfinite(value) for value in (report.elbo.mean, report.log_likelihood.mean)):
            raise UsageError(f"{a.checkpoint}: the model's bounds are not finite on these images (ELBO "
                             f"{report.elbo.mean}): its weights are damaged or diverged; use another checkpoint")
        print("\n".join(report.lines()))
        bits = {}
        if data.dequantize:  # a density of dequantized 8-bit pixels: the bound on the 8-bit images, in bits/dim
            bits = {f"IWAE K={report.num_samples}": dequantized_bound(report.log_likelihood.mean, x.shape[-1])[1],
                    **{f"AIS T={row.num_steps}": dequantized_bound(row.log_likelihood.mean, x.shape[-1])[1]
                       for row in report.ais}}
            print("8-bit images, bits/dim (lower is better): " + ", ".join(f"{k} {v:.3f}" for k, v in bits.items()))
        if compared is not None:
            print(f"this evaluation minus {a.compare}, paired on {shared} shared images:")
            for name, d in compared.items():
                print(f"{name:>14}  {d['mean']:+10.2f} ± {d['se']:.2f}   (unpaired SE {d['unpaired_se']:.2f})")

        result = {"checkpoint": str(a.checkpoint), "checkpoint_sha256": settings["checkpoint_sha256"],
                  "checkpoint_epoch": state.get("epoch"), "settings": settings,
                  "dataset": state["data_config"]["dataset"], "images": chosen, "seed": a.seed,
                  "processes": context.world_size, "seconds": wall, **report.to_dict(),
                  **({"bits_per_dim": bits} if bits else {}),
                  **({} if compared is None else {"compared_with": str(a.compare), "shared_images": shared,
                                                  "paired_differences": compared})}
        atomic_write_text(out / "evaluation.json", json.dumps(result, indent=2) + "\n")
        write_csv(out / "per_image.csv", index, values)
        stamp = figure_stamp(settings["checkpoint_sha256"], state.get("epoch"))
        plot_bounds(report, out / "bounds.png", metadata=stamp)
        shutil.rmtree(out / "evaluation.parts", ignore_errors=True)
        log.info("wrote %s, %s and %s", out / "evaluation.json", out / "per_image.csv", out / "bounds.png")
