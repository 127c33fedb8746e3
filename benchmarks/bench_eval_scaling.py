"""Evaluation across processes: images per second of evaluate.py in 1 and 2 processes (one torch thread each).

    python benchmarks/bench_eval_scaling.py --checkpoint runs/bm_vae/checkpoint.pt --data-dir ../shared/data

Runs scripts/evaluate.py alone and under torchrun with --nproc_per_node=2 (OMP_NUM_THREADS=1), in alternating
rounds, on the same random test images: once for importance sampling with K = 5000 and once for AIS. The rate is
the images over the scoring's wall time (evaluation.json's "seconds": from the first part to the gathered
results, start-up excluded); the whole command's wall time is printed too. Checks that every run wrote the same
per-image numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(flags: list[str], processes: int, out: Path) -> tuple[float, float, str]:
    """(scoring seconds, command seconds, per_image.csv) of one evaluation."""
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                        f"--nproc_per_node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([*launcher, str(ROOT / "scripts" / "evaluate.py"), *flags, "--out", str(out), "--no-progress",
                    "--overwrite"],
                   env=env, check=True, capture_output=True)
    total = time.perf_counter() - start
    return json.loads((out / "evaluation.json").read_text())["seconds"], total, (out / "per_image.csv").read_text()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--images", type=int, default=200, help="random test images per run (default: %(default)s)")
    p.add_argument("--ais-steps", default="100", help="AIS transitions (default: %(default)s)")
    p.add_argument("--ais-chains", default="4")
    p.add_argument("--ais-leapfrog", default="5")
    p.add_argument("--batch-size", default="25", help="images per part: each process needs several (default: 25)")
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    common = ["--checkpoint", a.checkpoint, "--images", str(a.images), "--images-per-pass", a.batch_size,
              "--device", "cpu", *(["--data-dir", a.data_dir] if a.data_dir else [])]
    modes = {"IS, K = 5000": [*common, "--eval-samples", "5000"],
             f"AIS, {a.ais_steps} steps x {a.ais_chains} chains x {a.ais_leapfrog} leapfrog":
                 [*common, "--eval-samples", "1", "--ks", "1", "--ais-steps", a.ais_steps, "--ais-chains", a.ais_chains,
                  "--ais-leapfrog", a.ais_leapfrog]}
    print(f"{a.images} random test images of {a.checkpoint}; {os.cpu_count()} CPUs; one torch thread per process")
    print("| work | processes | images/s (scoring) | scoring s | command s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in modes.items():
            times: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
            outputs = set()
            for _ in range(a.rounds):
                for processes in (1, 2):
                    scoring, total, per_image = run(flags, processes, Path(tmp) / f"p{processes}")
                    times[processes].append((scoring, total))
                    outputs.add(per_image)
            best = {n: min(t) for n, t in times.items()}  # the least disturbed round
            for n in (1, 2):
                print(f"| {name} | {n} | {a.images / best[n][0]:.2f} | {best[n][0]:.1f} | {best[n][1]:.1f} | "
                      f"{best[1][0] / best[n][0]:.2f}× |")
            print(f"<!-- per-image numbers identical in all {2 * a.rounds} runs: {len(outputs) == 1} -->")


if __name__ == "__main__":
    main()
