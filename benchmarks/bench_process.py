"""Whole-process wall time against pytorch/examples' VAE: what a user times, start-up included.

    git clone https://github.com/pytorch/examples ../examples
    python benchmarks/bench_process.py --examples ../examples/vae/main.py --data-dir ../shared/data

Both train the 784-400-20 ReLU VAE for 3 epochs at batch 128 on the 50,000 training images of static
binarized MNIST, on the CPU: pytorch/examples' ``vae/main.py`` on those images written as MNIST IDX files
(its test pass on the 10,000 test images and its PNGs every epoch), and

    python scripts/train_svi.py --dataset binarized-mnist --hidden 400 --activation relu --z-dim 20 \
        --epochs 3 --eval-samples 1

(which scores the 10,000 validation images every epoch and the 10,000 test images once at the end, with
their ELBO and a K = 1 estimate of log p(x), and writes its checkpoint every epoch and four figures).
The rounds alternate the two programs, so that a slower or busier stretch of the machine hits both.
Prints each round's seconds, the medians, the ratio, and train_svi.py's own start-up time (its log).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyro_vae.data.readers import read_amat  # noqa: E402


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes, as torchvision's MNIST reads."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def idx_copy(data_dir: Path, root: Path) -> None:
    """Binarized MNIST's training and test images as root/data/MNIST/raw/*-ubyte (pixels 0 or 255, label 0)."""
    raw = root / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    folder = next(f for f in (data_dir, data_dir / "binarized_mnist") if (f / "binarized_mnist_train.amat").exists())
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_amat(folder / f"binarized_mnist_{split}.amat").numpy().reshape(-1, 28, 28) * 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.zeros(len(images)))


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command[:3])} ... failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds, done.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=Path, required=True, help="pytorch/examples' vae/main.py")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding binarized_mnist_*.amat")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of both programs (default: 2)")
    a = p.parse_args()
    if not a.examples.is_file():
        sys.exit(f"error: {a.examples} is not a file: pass pytorch/examples' vae/main.py "
                 "(git clone https://github.com/pytorch/examples)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        idx_copy(a.data_dir, root)
        work = root / "examples"  # main.py reads ../data and writes results/
        (work / "results").mkdir(parents=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "PYTHONPATH": str(ROOT)}
        theirs_cmd = [sys.executable, str(a.examples.resolve()), "--epochs", str(a.epochs), "--no-accel"]
        ours_cmd = [sys.executable, str(ROOT / "scripts" / "train_svi.py"), "--dataset", "binarized-mnist",
                    "--data-dir", str(a.data_dir.resolve()), "--hidden", "400", "--activation", "relu", "--z-dim",
                    "20", "--epochs", str(a.epochs), "--eval-samples", "1", "--device", "cpu", "--no-progress",
                    "--overwrite"]
        theirs, ours, startup = [], [], []
        for r in range(a.rounds):
            order = [("theirs", theirs_cmd), ("ours", ours_cmd)]
            for name, command in order if r % 2 == 0 else order[::-1]:
                if name == "ours":
                    command = [*command, "--out", str(root / "ours")]
                seconds, log = timed(command, work, env)
                (theirs if name == "theirs" else ours).append(seconds)
                if name == "ours":
                    startup.append(float(re.search(r"start-up ([\d.]+) s", log).group(1)))
                print(f"round {r + 1} {name:>6}: {seconds:6.1f} s", flush=True)
    t, o = statistics.median(theirs), statistics.median(ours)
    print(f"\npytorch/examples vae/main.py: median {t:.1f} s ({', '.join(f'{s:.1f}' for s in theirs)})")
    print(f"pyro_vae train_svi.py:        median {o:.1f} s ({', '.join(f'{s:.1f}' for s in ours)}); "
          f"start-up to the first step {statistics.median(startup):.1f} s")
    print(f"whole-process speed ratio (pytorch/examples / pyro_vae): {t / o:.2f}x")


if __name__ == "__main__":
    main()
