"""A long evaluation of many images, in parts: shared across processes, saved as it goes, resumable.

The images are cut, in the order given, into parts of ``part_size``; part j is scored by process j mod R
(R processes under torchrun, 1 otherwise). Each finished part is saved atomically into a folder beside the
results, with a fingerprint of the settings; a resumed evaluation loads the parts that are there and scores
the rest. Every image's random numbers come from its own streams (inference/streams.py), so neither the
number of processes nor an interruption changes an image's numbers. The parts are gathered, in order, on
every process; the caller's main process writes the results, and then the folder of parts goes.

Resuming needs the folder of parts to be where every process of the new run can read it (one machine, or a
file system the machines share, as for the checkpoint itself).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pyro_vae.errors import UsageError
from pyro_vae.files import atomic_write, atomic_write_text
from pyro_vae.training.distributed import SINGLE, Context

log = logging.getLogger("pyro_vae")
SETTINGS = "settings.json"


@dataclass
class Scored:
    """What scoring some images gives: per-image values (name -> (n,) tensor) and seconds spent (name -> s)."""

    values: dict[str, Tensor]
    seconds: dict[str, float] = field(default_factory=dict)


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_hash(x: Tensor) -> str:
    """SHA-256 of a tensor's values (on the CPU, contiguous), e.g. of the images scored."""
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def score_in_parts(
    score: Callable[[Tensor], Scored], index: Tensor, part_size: int, folder: Path, settings: dict[str, Any], *,
    resume: bool = False, context: Context = SINGLE, progress: bool = True,
) -> Scored:
    """``score`` applied to the images at ``index`` (N,), ``part_size`` at a time, shared across the processes of
    ``context``, each part saved into ``folder``; returns the values of all N images in order (and the seconds,
    summed over parts) on every process. ``settings`` (JSON) fingerprints what the numbers depend on: a resume
    with other settings is refused; without ``resume``, so is a folder that holds parts (UsageError)."""
    fingerprint = json.loads(json.dumps(settings))  # as it reads back from the file
    parts = index.split(part_size)
    if resume:
        check_resumable(folder, fingerprint)
    else:
        if earlier := len(list(folder.glob("part-*.pt"))):  # hours of work, perhaps: never removed unasked
            raise UsageError(f"{folder} holds {earlier} saved parts of an interrupted evaluation: add `resume` to go "
                             f"on with them (with the same settings), or delete {folder} to start over")
        if context.is_main:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            atomic_write_text(folder / SETTINGS, json.dumps(fingerprint, indent=2) + "\n")
        context.gather(None)  # every process waits for the fresh folder
    mine = range(context.rank, len(parts), context.world_size)
    done: dict[int, Scored] = {}
    loaded = 0
    bar = tqdm(total=len(parts), desc=f"parts of {part_size} images", unit="part",
               disable=None if progress and context.is_main else True)  # None: off when not a terminal
    try:
        for j in mine:
            path = folder / f"part-{j:06d}.pt"
            saved = read_part(path, fingerprint, parts[j]) if resume else None
            if saved is None:
                start = time.perf_counter()
                scored = score(parts[j])
                saved = Scored({k: v.detach().cpu() for k, v in scored.values.items()},
                               {**scored.seconds, "total": time.perf_counter() - start})
                write_part(path, fingerprint, parts[j], saved)
                if not done and context.is_main:
                    say_how_long(saved.seconds["total"], len(mine), len(parts))
            else:
                loaded += 1
            done[j] = saved
            bar.update(min(context.world_size, len(parts) - bar.n))  # every process's part, as rank 0 sees it
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted: {len(done)} of this process's {len(mine)} parts of {part_size} images "
                                f"are saved in {folder}; add `resume` to the same command to go on") from None
    finally:
        bar.close()
    if resume:
        log.info("resumed: %d of %d parts were saved by the earlier run", sum(context.gather(loaded)), len(parts))
    gathered: dict[int, Scored] = {}
    for own in context.gather(done):
        gathered.update(own)
    ordered = [gathered[j] for j in range(len(parts))]
    names = ordered[0].values if ordered else {}
    values = {name: torch.cat([part.values[name] for part in ordered]) for name in names}
    seconds: dict[str, float] = {}
    for part in ordered:
        for name, s in part.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + s
    return Scored(values, seconds)


LONG = 600.0  # seconds: an evaluation projected to take longer says so, before it starts and after its first part


def duration(seconds: float) -> str:
    """``seconds`` as a log line says a long time: "2 h 5 min", or "35 min"."""
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def projected_time(samples: float, per_second: float, processes: int) -> None:
    """Before a long evaluation: log how long ``samples`` (image, sample) pairs take at ``per_second`` in each of
    ``processes``, when that is long (a K or a step count that fits in memory may still take days)."""
    total = samples / per_second / processes
    if total > LONG:
        log.info("this evaluation will take about %s (%.2g samples of z at %.0f/s per process, measured now); it is "
                 "saved part by part: stop it at any time and go on with `resume`", duration(total), samples,
                 per_second)


def say_how_long(first: float, mine: int, parts: int) -> None:
    """After the first part (``first`` seconds), the projected wall time of this process's ``mine`` parts of
    ``parts``, logged when it is long: a K or a step count that fits in memory may still take hours."""
    total = first * mine
    if total > LONG:
        log.info("the first of %d parts took %.0f s: the whole evaluation will take about %s (saved part by part: "
                 "stop it at any time and go on with `resume`)", parts, first, duration(total))


def check_resumable(folder: Path, fingerprint: dict[str, Any]) -> None:
    """A UsageError unless ``folder`` holds parts of an evaluation with these settings."""
    try:
        earlier = json.loads((folder / SETTINGS).read_text())
    except FileNotFoundError:
        raise UsageError(f"nothing to resume: {folder} holds no parts of an earlier evaluation; drop `resume` to "
                         "start one") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot resume from {folder}: its {SETTINGS} is unreadable ({error}); drop `resume` to "
                         "start over") from None
    changed = [k for k in sorted(set(earlier) | set(fingerprint)) if earlier.get(k) != fingerprint.get(k)]
    if changed:
        what = ", ".join(f"{k} was {short(earlier.get(k))}, now {short(fingerprint.get(k))}" for k in changed)
        raise UsageError(f"cannot resume the evaluation in {folder}: {what}; pass the earlier settings, or drop "
                         "`resume` to start over")


def short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:12] + "…"


def write_part(path: Path, fingerprint: dict[str, Any], index: Tensor, scored: Scored) -> None:
    buffer = io.BytesIO()
    torch.save({"settings": json.dumps(fingerprint, sort_keys=True), "index": index.cpu(),
                "values": {k: v.detach().cpu() for k, v in scored.values.items()}, "seconds": scored.seconds}, buffer)
    atomic_write(path, buffer.getvalue())


def read_part(path: Path, fingerprint: dict[str, Any], index: Tensor) -> Scored | None:
    """The part saved at ``path``, or None when there is none, or it is of other settings or images (a part
    written atomically is whole or absent; one that cannot be read is scored again)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - damaged: score it again, and say so
        log.warning("%s is unreadable (%s): scoring its images again", path, type(error).__name__)
        return None
    if saved.get("settings") != json.dumps(fingerprint, sort_keys=True) or not torch.equal(saved.get("index"),
                                                                                          index.cpu()):
        log.warning("%s holds other images or settings: scoring its images again", path)
        return None
    return Scored(saved["values"], saved["seconds"])


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
    try:
        lines = Path(path).read_text().splitlines()
        names = lines[0].split(",")
        rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
        if names[0] != "index" or any(len(row) != len(names) for row in rows):
            raise ValueError("not a table of images")
    except (OSError, ValueError, IndexError) as error:
        raise UsageError(f"{path} is not a per-image results file of evaluate.py ({error})") from None
    table = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(names))
    return table[:, 0].long(), {name: table[:, i] for i, name in enumerate(names) if i}


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
    return len(shared), out


def figure_stamp(checkpoint_sha256: str, checkpoint_epoch: int | None) -> dict[str, str | None]:
    """The text a results figure carries (PNG text chunks, which image viewers show as its properties): which
    checkpoint, and which epoch of it, its numbers are of, as the JSON beside it records them."""
    return {"checkpoint_sha256": checkpoint_sha256, "checkpoint_epoch": str(checkpoint_epoch), "Software": None}
