"""Where the ELBO's gap to log p(x) comes from, and whether a flow guide closes it (Cremer, Li & Duvenaud 2018).

Trains a VAE with the Gaussian guide and one with an IAF guide (Kingma et al. 2016): same decoder, data and
epochs, for each seed. On N test images drawn at random it reports, for the first seed's two models,
log p^(x) by AIS, L[q*_FFG] (the best diagonal Gaussian per image), L[q*_flow] (the IAF guide's own family,
every guide parameter optimized per image, on the first --flow-images of them), L[q] (the amortized guide)
and the approximation and amortization gaps, mean ± SE over images; and for every seed the test ELBO and
log p^(x) by importance sampling (K = --eval-samples) on the same images, with the seconds per epoch.

    python experiments/gaps.py --dataset binarized-mnist --data-dir data --epochs 20     # ~15 min, one CPU core

Writes <out>/<guide>-seed<S>/ (a train_svi run each), <out>/gaps.json, <out>/gaps.png and prints two
markdown tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyro
import torch
from matplotlib.figure import Figure

from pyro_vae.commands.cli import ArgumentParser, add_experiment_arguments, main, positive_int, seed, summary
from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.datasets import DATASETS
from pyro_vae.inference.estimators import importance_log_weights, log_mean_exp
from pyro_vae.inference.gaps import InferenceGaps, inference_gaps
from pyro_vae.inference.local import CONVERGED_NATS, local_guide_elbo
from pyro_vae.runs.experiment import load_run, run_training
from pyro_vae.runs.run_folder import writable_dir

GUIDES = ("gaussian", "iaf")


def seed_list(text: str) -> tuple[int, ...]:
    return tuple(seed(s) for s in text.split(","))


def mean_se(values: torch.Tensor) -> dict[str, float]:
    return {"mean": values.mean().item(), "se": (values.std() / values.numel() ** 0.5).item()}


def plot(gaps: dict[str, InferenceGaps], path: Path) -> None:
    """Left: each model's mean approximation and amortization gaps, stacked, ± 2 SE. Right: per image,
    amortization against approximation gap, one colour per model."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, (name, g) in enumerate(gaps.items()):
        approximation, amortization = mean_se(g.approximation_gap), mean_se(g.amortization_gap)
        left.bar(i, approximation["mean"], yerr=2 * approximation["se"], color="C0", capsize=4,
                 label="approximation gap: log p(x) − L[q*_FFG]" if i == 0 else None)
        left.bar(i, amortization["mean"], bottom=approximation["mean"], yerr=2 * amortization["se"], color="C1",
                 capsize=4, label="amortization gap: L[q*_FFG] − L[q]" if i == 0 else None)
        right.scatter(g.approximation_gap.cpu(), g.amortization_gap.cpu(), s=6, alpha=0.5, color=f"C{i + 2}",
                      label=f"{name} guide")
    left.set_xticks(range(len(gaps)), [f"{name} guide" for name in gaps])
    left.set_ylabel("nats per image (mean, ± 2 SE)")
    left.set_title("the inference gap log p(x) − L[q], split in two", fontsize=9)
    left.legend(fontsize=8)
    right.axline((0, 0), slope=1, color="0.5", linewidth=0.8, label="equal")
    right.set_xlabel("approximation gap (nats)")
    right.set_ylabel("amortization gap (nats)")
    right.set_title("image by image", fontsize=9)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def run(argv: list[str] | None) -> None:
    p = ArgumentParser(description=summary(__doc__))
    add_experiment_arguments(p, "runs/gaps", list(DATASETS))
    p.add_argument("--seeds", type=seed_list, default=(0, 1, 2),
                   help="training seeds, comma-separated (default: 0,1,2)")
    p.add_argument("--images", type=positive_int, default=500, help="random test images (default: %(default)s)")
    p.add_argument("--flow-images", type=positive_int, default=100,
                   help="of those, how many get L[q*_flow] (a loop over images) (default: %(default)s)")
    p.add_argument("--local-steps", type=positive_int, default=500, help="steps of each local optimization")
    p.add_argument("--local-starts", type=positive_int, default=8,
                   help="starts of each image's q*_FFG, the best kept (default: %(default)s)")
    p.add_argument("--ais-steps", type=positive_int, default=300, help="(default: %(default)s)")
    p.add_argument("--ais-chains", type=positive_int, default=4, help="(default: %(default)s)")
    p.add_argument("--ais-leapfrog", type=positive_int, default=5, help="(default: %(default)s)")
    a = p.parse_args(argv)
    out = writable_dir(a.out)
    results: dict = {"settings": {k: v for k, v in vars(a).items() if k != "out"}, "models": {}}
    gaps: dict[str, InferenceGaps] = {}
    for training_seed in a.seeds:
        for guide in GUIDES:
            name = f"{guide}-seed{training_seed}"
            pyro.set_rng_seed(training_seed)
            data = DataConfig(dataset=a.dataset or "mnist", data_dir=a.data_dir, seed=training_seed,
                              fallback=a.dataset is None)
            metrics = run_training(ModelConfig(guide=guide), data, TrainConfig(epochs=a.epochs), out / name,
                                   RunConfig(device=a.device, eval_samples=0), progress=False, overwrite=True)
            vae, prepared, _ = load_run(out / name / "checkpoint.pt", a.device, a.data_dir)
            pyro.enable_validation(False)
            index = torch.randperm(len(prepared.test), generator=torch.Generator().manual_seed(a.seed))[: a.images]
            x = prepared.test[index.sort().values.to(prepared.test.device)]
            pyro.set_rng_seed(a.seed)
            log_w = torch.cat([importance_log_weights(vae.model, vae.guide, batch, num_samples=a.eval_samples,
                                                      max_plate_nesting=1) for batch in x.split(100)], dim=1)
            row = {"seconds_per_epoch": sum(r["seconds"] for r in metrics["history"]) / len(metrics["history"]),
                   "test_elbo": mean_se(log_w.mean(0)), "test_log_px_is": mean_se(log_mean_exp(log_w)),
                   "dataset": metrics["dataset"]}
            if training_seed == a.seeds[0]:
                pyro.set_rng_seed(a.seed)
                g = InferenceGaps.concatenate([
                    inference_gaps(vae.model, vae.guide, batch, local_steps=a.local_steps,
                                   local_starts=a.local_starts, num_samples=a.eval_samples,
                                   ais_steps=a.ais_steps, ais_chains=a.ais_chains, ais_leapfrog=a.ais_leapfrog,
                                   ais_model=vae.annealing_model, ais_guide=vae.annealing_guide,
                                   max_plate_nesting=1) for batch in x.split(100)])
                gaps[guide] = g
                row["gaps"] = {k: {"mean": m, "se": s} for k, (m, s) in g.summary().items()}
                row["local_converged"] = g.converged.float().mean().item()
                better = g.local.start_gain > CONVERGED_NATS
                row["another_start_better"] = {"share": better.float().mean().item(),
                                               "mean_gain": g.local.start_gain[better].mean().item() if better.any()
                                               else 0.0, "max_gain": g.local.start_gain.max().item()}
                row["per_image"] = {"start_gain": g.local.start_gain.tolist(), "rise": g.local.rise.tolist(),
                                    "best_start": g.local.best_start.tolist()}
                if vae.flow is not None:
                    few = x[: a.flow_images]
                    fit = local_guide_elbo(vae.model, vae.guide, few, local_steps=a.local_steps,
                                           num_samples=a.eval_samples, max_plate_nesting=1)
                    flow = fit.elbo
                    row["local_flow_elbo"] = mean_se(flow)
                    row["local_flow_converged"] = fit.converged.float().mean().item()
                    # on the same images: the flow family's q* against the Gaussian family's and log p(x)
                    row["flow_images"] = {"log_px": mean_se(g.log_px[: len(few)]),
                                          "local_elbo": mean_se(g.local_elbo[: len(few)]),
                                          "elbo": mean_se(g.elbo[: len(few)]),
                                          "approximation_gap_flow": mean_se(g.log_px[: len(few)] - flow),
                                          "amortization_gap_flow": mean_se(flow - g.elbo[: len(few)])}
            results["models"][name] = row
    (out / "gaps.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(gaps, out / "gaps.png")

    first = a.seeds[0]
    dataset = results["models"][f"gaussian-seed{first}"]["dataset"]
    print(f"\n{dataset}, {a.epochs} epochs, 784-400-20, {a.images} random test images, seed {first}; AIS "
          f"{a.ais_steps} steps x {a.ais_chains} chains x {a.ais_leapfrog} leapfrog; q* by {a.local_steps} steps from "
          f"{a.local_starts} starts\n")
    for guide in GUIDES:
        row = results["models"][f"{guide}-seed{first}"]
        better = row["another_start_better"]
        print(f"{guide} guide: q*_FFG converged on {100 * row['local_converged']:.1f}% of the images; another start "
              f"than the guide's won by more than {CONVERGED_NATS} nats on {100 * better['share']:.1f}% (by "
              f"{better['mean_gain']:.2f} on average there, up to {better['max_gain']:.2f})"
              + (f"; q*_flow converged on {100 * row['local_flow_converged']:.1f}%" if "local_flow_converged" in row
                 else ""))
    print("\n| guide | log p̂(x), AIS | L[q*_FFG] | L[q] | approximation gap | amortization gap | inference gap |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for guide in GUIDES:
        s = results["models"][f"{guide}-seed{first}"]["gaps"]
        cells = [f"{s[k]['mean']:.2f} ± {s[k]['se']:.2f}" for k in ("log_px", "local_elbo", "elbo",
                                                                     "approximation_gap", "amortization_gap",
                                                                     "inference_gap")]
        print(f"| {guide} | " + " | ".join(cells) + " |")
    f = results["models"][f"iaf-seed{first}"]
    if "flow_images" in f:
        fi = f["flow_images"]
        print(f"\niaf guide, first {a.flow_images} of those images: log p̂ {fi['log_px']['mean']:.2f}, "
              f"L[q*_flow] {f['local_flow_elbo']['mean']:.2f} ± {f['local_flow_elbo']['se']:.2f}, "
              f"L[q*_FFG] {fi['local_elbo']['mean']:.2f}, L[q] {fi['elbo']['mean']:.2f}; with the flow family "
              f"approximation gap {fi['approximation_gap_flow']['mean']:.2f} ± {fi['approximation_gap_flow']['se']:.2f}"
              f", amortization gap {fi['amortization_gap_flow']['mean']:.2f} ± "
              f"{fi['amortization_gap_flow']['se']:.2f}")
    print(f"\n| seed | guide | test ELBO | test log p̂(x), IS K={a.eval_samples} | s/epoch |")
    print("|---:|---|---:|---:|---:|")
    for name, row in results["models"].items():
        guide, trained_with = name.split("-seed")
        print(f"| {trained_with} | {guide} | {row['test_elbo']['mean']:.2f} ± {row['test_elbo']['se']:.2f} | "
              f"{row['test_log_px_is']['mean']:.2f} ± {row['test_log_px_is']['se']:.2f} | "
              f"{row['seconds_per_epoch']:.2f} |")
    print(f"\nwrote {out / 'gaps.png'} and {out / 'gaps.json'}")


if __name__ == "__main__":
    sys.exit(main(run))
