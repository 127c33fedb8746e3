"""Your own images, measured: real photographs cut into 32x32 colour crops, trained with the documented command,
scored in bits/dim beside the lossless PNG files of the same crops.

    pip install scikit-image          # its wheel carries the photographs (skimage/data/); nothing is downloaded
    python benchmarks/own_photos.py --out runs/own_photos [--train-flags "..."] [--ais-images 100]

1. Writes <out>/crops/{train,test}/<photo>/NNN.png: the colour photographs of scikit-image cut into non-overlapping
   32x32 crops, split by photo (TEST_PHOTOS never trained on), so the test crops are of scenes the model never saw.
   The project commits none of these files.
2. The PNG floor: each test crop saved losslessly by Pillow (optimize=True), its file's bits per dimension
   (8 x bytes / (3 x 32 x 32)); a model must beat it to be worth its bits.
3. Trains the documented own-data command (DOCUMENTED, plus --train-flags) on <out>/crops, which keeps the split.
4. Evaluates the test crops: IS with K = 1000 on all, AIS on --ais-images of them, in bits/dim (dequantized 8-bit
   pixels: log P(k) >= log p((k + u) / 256) - D log 256).
5. Colour: the mean absolute error of the reconstructions per channel, and the spread of the pixels across the
   three channels in the data and in the reconstructions (a model that loses colour has the second near 0).
6. Prints a markdown table per test photo and writes <out>/results.json; the run's reconstructions.png and
   samples.png are the figures to look at.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_PHOTOS = ("astronaut.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "motorcycle_right.png",
                "retina.jpg")
GREY_PHOTOS = ("brick.png", "camera.png", "cell.png", "clock_motion.png", "coins.png", "grass.png", "gravel.png",
               "moon.png")  # photographs in grey, trained on as RGB: textures the few colour photographs lack
TEST_PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg")  # chosen before any model was trained
SIDE = 32
# docs/howto.md's own-data command, but for its --likelihood (the comparison below) and its --data-dir
DOCUMENTED = ["--dataset", "folder", "--arch", "conv", "--z-dim", "128", "--init-output-bias", "--scale-floor", "0.001",
              "--batch-size", "32", "--steps", "5000"]


def photo(name: str) -> np.ndarray:
    """A scikit-image photograph as (H, W, 3) uint8."""
    import skimage
    from PIL import Image

    with Image.open(Path(skimage.__file__).parent / "data" / name) as image:
        return np.asarray(image.convert("RGB"))


def crops(image: np.ndarray) -> list[np.ndarray]:
    rows, columns = image.shape[0] // SIDE, image.shape[1] // SIDE
    return [image[SIDE * i:SIDE * (i + 1), SIDE * j:SIDE * (j + 1)] for i in range(rows) for j in range(columns)]


def png_bits_per_dim(crop: np.ndarray) -> float:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "PNG", optimize=True)
    return 8 * len(buffer.getvalue()) / crop.size


PERMUTATIONS = tuple(itertools.permutations(range(3)))  # the colour training crops in all 6 orders of R, G, B


def write_crops(folder: Path) -> dict[str, list[float]]:
    """The crops as PNG files in folder/{train,test}/<photo>/; returns each test photo's crops' PNG bits/dim. The
    training crops of the colour photographs are written in the 6 orders of their channels (a blue sky is then
    seen in training though none of the training photographs has one: without it the test bits/dim were 1.0
    higher at 5,000 steps); the grey photographs once, as RGB."""
    from PIL import Image

    floor: dict[str, list[float]] = {}
    written = (folder / "test").exists()  # a second run reads the same files (a run may be reading them now)
    for split, names in (("train", TRAIN_PHOTOS + GREY_PHOTOS), ("test", TEST_PHOTOS)):
        for name in names:
            stem = Path(name).stem
            (folder / split / stem).mkdir(parents=True, exist_ok=True)
            pieces = crops(photo(name))
            orders = PERMUTATIONS if split == "train" and name in TRAIN_PHOTOS else PERMUTATIONS[:1]
            for i, crop in enumerate(pieces if not written else []):
                for k, order in enumerate(orders):
                    Image.fromarray(np.ascontiguousarray(crop[..., list(order)])).save(
                        folder / split / stem / f"{i:04d}-{k}.png")
            if split == "test":
                floor[stem] = [png_bits_per_dim(c) for c in pieces]
    return floor


def write_shapes(root: Path, n: int = 200, size: int = 48, seed: int = 0) -> None:
    """The coloured-shapes folder of the issue: ``n`` images per class (circles, squares) of ``size`` x ``size``,
    each a shape of a random colour (channels 40-255) and size at a random place on dark grey (as the test of
    tests/commands/test_own_images.py draws them, smaller)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for label, shape in enumerate(("circles", "squares")):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = Image.new("RGB", (size, size), (16, 16, 16))
            side = int(rng.integers(size // 3, size // 2))
            left, top = (int(v) for v in rng.integers(0, size - side, 2))
            colour = tuple(int(v) for v in rng.integers(40, 256, 3))
            draw = ImageDraw.Draw(image)
            (draw.ellipse if label == 0 else draw.rectangle)((left, top, left + side - 1, top + side - 1), fill=colour)
            image.save(root / shape / f"{i:03d}.png")


def command(name: str, flags: list[str]) -> None:
    from pyro_vae.commands import runner
    from pyro_vae.commands.cli import main

    print("$ pyro-vae-" + name + " " + shlex.join(flags), flush=True)
    if main(runner(name), flags) != 0:
        raise SystemExit(f"pyro-vae-{name} failed")


def colour(run: Path) -> dict[str, Any]:
    """Per-channel mean absolute error of the test reconstructions (decoder mean at the encoder mean), and the mean
    spread (SD) of each pixel across its three channels in the data and in the reconstructions."""
    import torch

    from pyro_vae.runs.experiment import load_run

    vae, data, _ = load_run(run / "checkpoint.pt", "cpu")
    with torch.no_grad():
        x = data.test
        reconstruction = torch.cat([vae.reconstruct(batch) for batch in x.split(200)])
    shape = (len(x), 3, -1)
    error = (reconstruction - x).abs().reshape(shape).mean(dim=(0, 2))
    mean_image = (data.train.mean(0) - x).abs().reshape(shape).mean(dim=(0, 2))
    return {"mae_per_channel": error.tolist(), "mean_image_mae_per_channel": mean_image.tolist(),
            "channel_spread_data": x.reshape(shape).std(dim=1).mean().item(),
            "channel_spread_reconstructions": reconstruction.reshape(shape).std(dim=1).mean().item()}


def score(out: Path, eval_samples: int, floor: dict[str, list[float]]) -> dict[str, Any]:
    """The IS evaluation in ``out``/is per test photo, in bits/dim, beside the PNG floor."""
    from pyro_vae.data.pixels import dequantized_bound
    from pyro_vae.runs.per_image import read_csv

    index, values = read_csv(out / "is" / "per_image.csv")
    dims = 3 * SIDE * SIDE
    bits = np.array([dequantized_bound(v, dims)[1] for v in values[f"iwae_{eval_samples}"].tolist()])
    elbo = np.array([dequantized_bound(v, dims)[1] for v in values["elbo"].tolist()])
    rows, start = [], 0
    for stem in (Path(n).stem for n in TEST_PHOTOS):  # the test images in the order read: photo by photo
        part = slice(start, start + len(floor[stem]))
        start += len(floor[stem])
        rows.append({"photo": stem, "crops": len(floor[stem]), "png": float(np.mean(floor[stem])),
                     "is": float(bits[part].mean()), "elbo": float(elbo[part].mean())})
    return {"per_photo": rows, "is_bits_per_dim": float(bits.mean()), "elbo_bits_per_dim": float(elbo.mean()),
            "index": index.tolist(), "bits": bits.tolist()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/own_photos")
    p.add_argument("--likelihoods", default="correlated-gaussian",
                   help="comma-separated: each trained with the documented command and that likelihood")
    p.add_argument("--train-flags", default="", help="more flags for pyro-vae-train, e.g. \"--steps 2000\"")
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--ais-images", type=int, default=100, help="AIS on this many test crops, first likelihood only")
    p.add_argument("--ais-steps", type=int, default=500)
    p.add_argument("--shapes", action="store_true", help="also the coloured-shapes folder, first likelihood only")
    p.add_argument("--shapes-only", action="store_true", help="the coloured-shapes folder alone")
    a = p.parse_args()
    out = Path(a.out)
    if a.shapes or a.shapes_only:  # 400 images of 48x48 in two classes, trained with the documented command
        write_shapes(out / "shapes")
        likelihood = a.likelihoods.split(",")[0]
        run = out / "shapes_run"
        if not (run / "metrics.json").exists():
            command("train", [*DOCUMENTED, "--likelihood", likelihood, "--data-dir", str(out / "shapes"),
                              *shlex.split(a.train_flags), "--eval-samples", "0", "--out", str(run), "--no-progress"])
        shapes = colour(run)
        print(f"coloured shapes, {likelihood}: mean absolute error per channel " + ", ".join(
            f"{v:.4f}" for v in shapes["mae_per_channel"]) + " (the mean image's " + ", ".join(
            f"{v:.4f}" for v in shapes["mean_image_mae_per_channel"]) + f"); spread across channels: data "
            f"{shapes['channel_spread_data']:.4f}, reconstructions {shapes['channel_spread_reconstructions']:.4f}")
        (out / "shapes.json").write_text(json.dumps(shapes, indent=2) + "\n")
        if a.shapes_only:
            return
    floor = write_crops(out / "crops")
    everything = np.concatenate([floor[Path(n).stem] for n in TEST_PHOTOS])
    results: dict[str, Any] = {"png": float(everything.mean()),
                               "png_per_photo": {k: float(np.mean(v)) for k, v in floor.items()}}
    for n, likelihood in enumerate(a.likelihoods.split(",")):
        folder = out / likelihood
        run = folder / "run"
        flags = [*DOCUMENTED, "--likelihood", likelihood, "--data-dir", str(out / "crops"),
                 *shlex.split(a.train_flags), "--eval-samples", "0", "--out", str(run), "--no-progress"]
        started = time.perf_counter()
        if not (run / "metrics.json").exists():
            command("train", flags)
        checkpoint = str(run / "checkpoint.pt")
        if not (folder / "is" / "evaluation.json").exists():
            command("evaluate", ["--checkpoint", checkpoint, "--eval-samples", str(a.eval_samples), "--ks",
                                 f"1,{a.eval_samples}", "--out", str(folder / "is"), "--no-progress"])
        result = {"train_flags": flags, "seconds": time.perf_counter() - started,
                  **score(folder, a.eval_samples, floor), **colour(run)}
        if a.ais_images and n == 0:
            if not (folder / "ais" / "evaluation.json").exists():
                command("evaluate", ["--checkpoint", checkpoint, "--eval-samples", "1", "--ks", "1", "--images",
                                     str(a.ais_images), "--ais-steps", str(a.ais_steps), "--out",
                                     str(folder / "ais"), "--no-progress"])
            ais = json.loads((folder / "ais" / "evaluation.json").read_text())
            chosen = set(ais["images"]["index"])
            same = [i for i, k in enumerate(result["index"]) if k in chosen]
            result["ais"] = {"bits_per_dim": ais["bits_per_dim"], "images": len(same),
                             "is_on_them": float(np.mean([result["bits"][i] for i in same])),
                             "png_on_them": float(everything[same].mean())}
        results[likelihood] = result
    names = a.likelihoods.split(",")
    print("\n| test photo | crops | PNG | " + " | ".join(f"{k} IS K={a.eval_samples} (ELBO)" for k in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for i, stem in enumerate(Path(n).stem for n in TEST_PHOTOS):
        cells = [f"{results[k]['per_photo'][i]['is']:.3f} ({results[k]['per_photo'][i]['elbo']:.3f})" for k in names]
        print(f"| {stem} | {len(floor[stem])} | {np.mean(floor[stem]):.3f} | " + " | ".join(cells) + " |")
    cells = [f"**{results[k]['is_bits_per_dim']:.3f}** ({results[k]['elbo_bits_per_dim']:.3f})" for k in names]
    print(f"| all | {len(everything)} | **{everything.mean():.3f}** | " + " | ".join(cells) + " |")
    for k in names:
        r = results[k]
        print(f"{k}: mean absolute error per channel (R, G, B) " + ", ".join(f"{v:.4f}" for v in r["mae_per_channel"])
              + f"; spread across channels: data {r['channel_spread_data']:.4f}, reconstructions "
              f"{r['channel_spread_reconstructions']:.4f}; train + IS {r['seconds'] / 60:.1f} min")
        if "ais" in r:
            print(f"{k}: AIS on {r['ais']['images']} test crops {r['ais']['bits_per_dim']}; IS on the same "
                  f"{r['ais']['is_on_them']:.3f}; PNG on the same {r['ais']['png_on_them']:.3f}")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
