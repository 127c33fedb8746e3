"""pyro-vae-gaps: each test image's inference gap split into approximation and amortization gaps (Cremer et al.
2018) (its flags: flags/gaps.py)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pyro
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from pyro_vae.commands.cli import startup_done
from pyro_vae.errors import UsageError
from pyro_vae.evaluation.bounds import ais_work, samples_per_second
from pyro_vae.evaluation.memory import require_ais_memory, require_bounds_memory
from pyro_vae.files import atomic_write_text, save_figure
from pyro_vae.inference.gaps import InferenceGaps, inference_gaps
from pyro_vae.inference.local import CONVERGED_NATS, LocalFit
from pyro_vae.inference.streams import LOCAL_FIT, stream_seed
from pyro_vae.runs.experiment import load_run
from pyro_vae.runs.parts import Scored, file_hash, projected_time, score_in_parts, tensor_hash
from pyro_vae.runs.per_image import choose_images, figure_stamp
from pyro_vae.runs.run_folder import check_results, held_folder, require_own_folder, writable_dir
from pyro_vae.training import distributed

log = logging.getLogger("pyro_vae")
ROWS = (("log_px", "log p^(x), AIS"), ("local_elbo", "L[q*], best Gaussian per image"), ("elbo", "L[q], amortized"),
        ("approximation_gap", "approximation gap"), ("amortization_gap", "amortization gap"),
        ("inference_gap", "inference gap"))


def plot_gaps(gaps: InferenceGaps, path: Path, metadata: dict[str, str | None] | None = None) -> None:
    """Left: each image's inference gap as approximation (below) plus amortization (above), images sorted
    by their inference gap. Right: amortization against approximation gap, one point per image, marked where
    q* came from another start than the guide's."""
    approximation, amortization = gaps.approximation_gap.cpu().numpy(), gaps.amortization_gap.cpu().numpy()
    order = np.argsort(approximation + amortization)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    rank = np.arange(len(order))
    left.bar(rank, approximation[order], width=1.0, color="C0", label="approximation gap: log p(x) − L[q*]")
    left.bar(rank, amortization[order], width=1.0, bottom=approximation[order], color="C1",
             label="amortization gap: L[q*] − L[q]")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("test image, sorted by its inference gap")
    left.set_ylabel("nats")
    left.set_title(f"inference gap log p(x) − L[q] of {len(order)} images, split in two", fontsize=9)
    left.legend(fontsize=8)
    better = (gaps.local.start_gain > CONVERGED_NATS).cpu().numpy()
    right.scatter(approximation[~better], amortization[~better], s=10, alpha=0.7, label="q* from the guide's start")
    if better.any():
        right.scatter(approximation[better], amortization[better], s=18, marker="^", color="C3",
                      label="q* from another start: a better mode")
    top = max(float(approximation.max()), float(amortization.max()), 0.0)
    right.plot([0, top], [0, top], color="0.5", linewidth=0.8, label="equal")
    right.set_xlabel("approximation gap (nats)")
    right.set_ylabel("amortization gap (nats)")
    right.set_title("which part dominates, image by image", fontsize=9)
    right.legend(fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    save_figure(fig, path, metadata)


AIS_MISSED_NATS = 0.5  # an ELBO above AIS's log p^(x) by more than this is beyond both estimates' noise here


def local_columns(local: LocalFit) -> dict[str, Tensor]:
    """q*'s per-image numbers as the columns a part saves and gaps.json lists."""
    return {"local_elbo": local.elbo, "converged": local.converged.double(), "local_rise": local.rise,
            "start_gain": local.start_gain, "best_start": local.best_start.double()}


def local_fit(columns: dict[str, Tensor]) -> LocalFit:
    return LocalFit(columns["local_elbo"], columns["converged"].bool(), columns["local_rise"], columns["start_gain"],
                    columns["best_start"].long())


def local_report(gaps: InferenceGaps) -> list[str]:
    """Lines on q*: whether it converged, where another start than the guide's found a better mode, and where
    it found mass that AIS missed (an ELBO cannot exceed log p(x))."""
    n, local = len(gaps.log_px), gaps.local
    short = int((~local.converged).sum())
    lines = [f"q* converged on {n - short} of {n} images: a further optimization raised "
             + (f"none by more than {CONVERGED_NATS} nats" if not short else
                f"{short} by more than {CONVERGED_NATS} nats (up to {local.rise.max().item():.2f}): raise "
                "--local-steps")]
    better = local.start_gain > CONVERGED_NATS
    lines.append(f"another start beat the guide's on {int(better.sum())} of {n} images"
                 + (f" (by {local.start_gain[better].mean().item():.2f} nats on average, up to "
                    f"{local.start_gain.max().item():.2f}): their posteriors have a better mode than the one the "
                    "guide sits in" if better.any() else ""))
    missed = gaps.approximation_gap < -AIS_MISSED_NATS
    if missed.any():
        lines.append(f"on {int(missed.sum())} of {n} images L[q*] is above AIS's log p^(x) by more than "
                     f"{AIS_MISSED_NATS} nats (up to {-gaps.approximation_gap.min().item():.2f}): AIS, whose chains "
                     "start at the guide, missed posterior mass there; raise --ais-steps and --ais-chains")
    return lines


def run(a: argparse.Namespace) -> None:
    # under torchrun: in the process group, one device per local rank
    distributed.in_process_group(lambda context, device: gaps_of(a, context, device), a.device)


def gaps_of(a: argparse.Namespace, context: distributed.Context, device: str) -> None:
    vae, data, state = load_run(a.checkpoint, device, a.data_dir)
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    pyro.enable_validation(False)
    out = writable_dir(Path(a.checkpoint).parent if a.out is None else a.out)
    require_own_folder(out, a.checkpoint, a.overwrite)
    index, _ = choose_images(len(data.test), images=a.images, seed=a.seed)
    x = data.test[index.to(data.test.device)]
    # what cannot fit is refused now, naming its flag: AIS's chains and schedule; the ELBOs' draws, all at once
    require_ais_memory(vae, x.shape[-1], len(x), a.ais_steps, a.ais_chains, a.images_per_pass, x.device, "ais_steps",
                       "images_per_pass")
    require_bounds_memory(vae, x.shape[-1], len(x), a.elbo_samples, a.images_per_pass, a.elbo_samples, x.device,
                          "elbo_samples", sizes_settable=False)
    log.info("%s: %d random test images of %s; q* by %d local steps from %d starts, AIS with %d steps x %d chains",
             a.checkpoint, len(x), state["data_config"]["dataset"], a.local_steps, a.local_starts, a.ais_steps,
             a.ais_chains)
    if context.is_main:  # `local_steps=1e9` fits in memory and runs for years: say so before it starts
        # each local step: 16 particles of every start, forward and backward; the ELBOs: num_samples draws of
        # L[q], and of L[q*] per start; AIS
        work = (3 * 16 * a.local_starts * a.local_steps + a.elbo_samples * (a.local_starts + 2)
                + ais_work(a.ais_steps, a.ais_chains, a.ais_leapfrog))
        projected_time(len(x) * work, samples_per_second(vae, x), context.world_size)
    part_size = a.images_per_pass

    def score(rows: Tensor) -> Scored:  # the images at dataset indices ``rows``
        # one seed per part (the local optimizations draw from the global generator): the numbers do not depend
        # on the number of processes or an interruption, but do on --batch-size, which makes the parts
        pyro.set_rng_seed(stream_seed(a.seed, int(rows[0]), LOCAL_FIT) % 2**32)
        gaps = inference_gaps(vae.model, vae.guide, data.test[rows.to(data.test.device)], local_steps=a.local_steps,
                              local_starts=a.local_starts, num_samples=a.elbo_samples, ais_steps=a.ais_steps,
                              ais_chains=a.ais_chains, ais_leapfrog=a.ais_leapfrog, ais_model=vae.annealing_model,
                              ais_guide=vae.annealing_guide, max_plate_nesting=1)
        return Scored({"log_px": gaps.log_px, "elbo": gaps.elbo, **local_columns(gaps.local)})

    settings = {"checkpoint_sha256": file_hash(a.checkpoint), "images_sha256": tensor_hash(x), "seed": a.seed,
                "num_images": a.images, "batch_size": part_size, "local_steps": a.local_steps,
                "local_starts": a.local_starts,
                "num_samples": a.elbo_samples, "ais_steps": a.ais_steps, "ais_chains": a.ais_chains,
                "ais_leapfrog": a.ais_leapfrog}
    # no training run or other command writes here meanwhile; results of other settings are refused before the work
    with held_folder(out, context, lambda: check_results(out / "gaps.json", settings, a.overwrite)):
        scored = score_in_parts(score, index, part_size, out / "gaps.parts", settings, resume=a.resume, context=context,
                                progress=not a.no_progress)
        if not context.is_main:
            return
        v = scored.values
        gaps = InferenceGaps(v["log_px"], v["elbo"], local_fit(v), a.local_steps, a.local_starts)
        summary = gaps.summary()
        if not all(math.isfinite(summary[name][0]) for name in ("log_px", "local_elbo", "elbo")):
            raise UsageError(f"{a.checkpoint}: the model's bounds are not finite on these images (ELBO "
                             f"{summary['elbo'][0]}): its weights are damaged or diverged; use another checkpoint")
        for name, label in ROWS:
            mean, se = summary[name]
            print(f"{label:>32}  {mean:10.2f}" + ("" if se is None else f" ± {se:.2f}"))
        for line in local_report(gaps):
            print(line)
        per_image = {name: getattr(gaps, name).tolist() for name, _ in ROWS}  # .tolist() reads CUDA tensors too
        per_image.update({name: value.tolist() for name, value in local_columns(gaps.local).items()
                          if name != "local_elbo"})
        result = {"checkpoint": str(a.checkpoint), "checkpoint_sha256": settings["checkpoint_sha256"],
                  "checkpoint_epoch": state.get("epoch"), "settings": settings,
                  "dataset": state["data_config"]["dataset"], "seed": a.seed, "processes": context.world_size,
                  "batch_size": part_size, "local_steps": a.local_steps, "local_starts": a.local_starts,
                  "num_samples": a.elbo_samples,
                  "ais_steps": a.ais_steps, "ais_chains": a.ais_chains, "ais_leapfrog": a.ais_leapfrog,
                  "summary": {name: {"mean": m, "se": se} for name, (m, se) in summary.items()},
                  "images": {"index": index.tolist(), **per_image}}
        atomic_write_text(out / "gaps.json", json.dumps(result, indent=2) + "\n")
        plot_gaps(gaps, out / "gaps.png", figure_stamp(settings["checkpoint_sha256"], state.get("epoch")))
        shutil.rmtree(out / "gaps.parts", ignore_errors=True)
        log.info("wrote %s and %s", out / "gaps.json", out / "gaps.png")
