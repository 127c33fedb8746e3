"""The per-image results of an evaluation: which images (choose_images), their table (per_image.csv), two
evaluations compared image by image (paired_differences), and the stamp a results figure carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pyro_vae.errors import UsageError
from pyro_vae.files import atomic_write_text, require_regular


def choose_images(total: int, *, images: int | None = None, limit: int | None = None, seed: int = 0,
                  of: str = "test images") -> tuple[Tensor, dict[str, Any]]:
    """Which of ``total`` images to score, as sorted indices (N,), and how they were chosen, for the results:
    ``images`` drawn at random with ``seed`` (the same ones every time), the first ``limit``, or all."""
    if images is not None and limit is not None:
        raise UsageError("`images` draws images at random and `limit` takes the first ones: pass one of them")
    wanted = images if images is not None else limit
    if wanted is not None and wanted > total:
        raise UsageError(f"`{'images' if images is not None else 'limit'}={wanted}` is more than the {total} {of}; "
                         f"pass at most {total}")
    if images is not None:
        index = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:images].sort().values
        return index, {"selection": "random", "seed": seed, "count": images, "index": index.tolist()}
    if limit is not None:
        return torch.arange(limit), {"selection": "first", "count": limit}
    return torch.arange(total), {"selection": "all", "count": total}


def write_csv(path: Path, index: Tensor, values: dict[str, Tensor]) -> None:
    """One row per image: its index, then each value (as Python writes a float: the shortest text that reads back
    to the same float64)."""
    names = list(values)
    lines = [",".join(["index", *names])]
    columns = [values[name].double().tolist() for name in names]
    for row, i in enumerate(index.tolist()):
        lines.append(",".join([str(i), *(repr(column[row]) for column in columns)]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_csv(path: str | Path) -> tuple[Tensor, dict[str, Tensor]]:
    """What write_csv wrote: the indices (N,) and each column (N,) float64; a UsageError for another file."""
    require_regular(path, "the per-image results file")
    try:
        lines = Path(path).read_text().splitlines()
        names = lines[0].split(",")
        rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
        if names[0] != "index" or any(len(row) != len(names) for row in rows):
            raise ValueError("not a table of images")
    except (OSError, ValueError, IndexError) as error:
        raise UsageError(f"{path} is not a per-image results file of evaluate.py ({error})") from None
    table = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(names))
    index = table[:, 0]
    fault = ("its index column holds a value that is no image number (negative, fractional or not finite)"
             if not (index.isfinite().all() and (index == index.round()).all() and (index >= 0).all()) else
             "its index column names an image twice" if len(set(index.tolist())) < len(index) else None)
    for i, name in enumerate(names[1:], 1):  # k^ is inf where too few samples fit a tail; every other value is a number
        if fault is None and name != "khat" and not table[:, i].isfinite().all():
            fault = f"its column {name} holds NaN or infinite values"
    if fault:
        raise UsageError(f"{path} is not a per-image results file of evaluate.py as written: {fault}; pass the "
                         "per_image.csv an evaluation wrote, unedited")
    return index.long(), {name: table[:, i] for i, name in enumerate(names) if i}


def shared_images(index: Tensor, other_index: Tensor) -> list[int]:
    """The images two evaluations both scored, by index; a UsageError for fewer than two."""
    shared = sorted(set(index.tolist()) & set(other_index.tolist()))
    if len(shared) < 2:
        raise UsageError(f"the two evaluations share {len(shared)} images: a paired difference needs at least 2 "
                         "(use the same `images` and `seed`, or `limit`)")
    return shared


def paired_differences(index: Tensor, values: dict[str, Tensor], other_index: Tensor,
                       other: dict[str, Tensor]) -> tuple[int, dict[str, dict[str, float]]]:
    """This evaluation minus another, image by image, on the images both scored, for each column both have:
    the mean difference, its paired SE (the SD of the differences / sqrt n) and, for contrast, the SE of the
    difference of the two means as if the images were independent samples. Returns (images shared, column ->
    those three)."""
    shared = shared_images(index, other_index)
    where = {i: n for n, i in enumerate(index.tolist())}
    other_where = {i: n for n, i in enumerate(other_index.tolist())}
    mine, theirs = torch.tensor([where[i] for i in shared]), torch.tensor([other_where[i] for i in shared])
    out: dict[str, dict[str, float]] = {}
    for name in values:
        if name not in other or name == "khat" or name.endswith("acceptance"):
            continue
        a, b = values[name].double()[mine], other[name].double()[theirs]
        n = len(shared)
        out[name] = {"mean": (a - b).mean().item(), "se": ((a - b).std() / n**0.5).item(),
                     "unpaired_se": ((a.var() + b.var()) / n).sqrt().item()}
    if not out:
        raise UsageError(f"the two evaluations share no column to compare (this one has {', '.join(values)}; the "
                         f"other {', '.join(other)}): compare evaluations of the same K or AIS steps")
    return len(shared), out


def figure_stamp(checkpoint_sha256: str, checkpoint_epoch: int | None) -> dict[str, str | None]:
    """The text a results figure carries (PNG text chunks, which image viewers show as its properties): which
    checkpoint, and which epoch of it, its numbers are of, as the JSON beside it records them."""
    return {"checkpoint_sha256": checkpoint_sha256, "checkpoint_epoch": str(checkpoint_epoch), "Software": None}
