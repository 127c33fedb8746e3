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
from pyro_vae.files import atomic_write, atomic_write_text, special_file
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
    with other settings is refused; without ``resume``, so is a folder that holds parts (UsageError). A resume
    cuts the images into the parts of the run it resumes (``part_size`` may have been set by time, timed_part_size).
    """
    fingerprint = json.loads(json.dumps({**settings, "part_size": part_size}))  # as it reads back from the file
    if resume:
        fingerprint["part_size"] = part_size = check_resumable(folder, fingerprint)
    else:
        fresh_folder(folder, fingerprint, context)
    parts = index.split(part_size)
    done, loaded = score_mine(score, parts, folder, fingerprint, resume, context, progress)
    if resume:
        log.info("resumed: %d of %d parts were saved by the earlier run", sum(context.gather(loaded)), len(parts))
    return gathered(context.gather(done), len(parts))


def fresh_folder(folder: Path, fingerprint: dict[str, Any], context: Context) -> None:
    """``folder`` made empty but for the settings file, on the main process, while every process waits; a
    UsageError when it holds saved parts (hours of work, perhaps: never removed unasked)."""
    if earlier := len(list(folder.glob("part-*.pt"))):
        raise UsageError(f"{folder} holds {earlier} saved parts of an interrupted evaluation: add `resume` to go "
                         f"on with them (with the same settings), or delete {folder} to start over")
    if context.is_main:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        atomic_write_text(folder / SETTINGS, json.dumps(fingerprint, indent=2) + "\n")
    context.gather(None)  # every process waits for the fresh folder


def score_mine(score: Callable[[Tensor], Scored], parts: tuple[Tensor, ...], folder: Path,
               fingerprint: dict[str, Any], resume: bool, context: Context, progress: bool,
               ) -> tuple[dict[int, Scored], int]:
    """This process's parts (j = rank, rank + R, ...): each loaded when a resume finds it saved and intact, else
    scored and saved; with a progress bar on the main process's terminal. Returns them by number, and how many
    were loaded. Ctrl-C says how many are saved and how to go on."""
    mine = range(context.rank, len(parts), context.world_size)
    done: dict[int, Scored] = {}
    loaded = 0
    bar = tqdm(total=len(parts), desc=f"parts of {len(parts[0]) if parts else 0} images", unit="part",
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
        raise KeyboardInterrupt(f"interrupted: {len(done)} of this process's {len(mine)} parts of "
                                f"{len(parts[0])} images are saved in {folder}; add `resume` to the same command to "
                                "go on") from None
    finally:
        bar.close()
    return done, loaded


def gathered(by_process: list[dict[int, Scored]], count: int) -> Scored:
    """Every process's parts, 0 .. count - 1, joined in order: each value concatenated, the seconds summed."""
    parts: dict[int, Scored] = {}
    for own in by_process:
        parts.update(own)
    ordered = [parts[j] for j in range(count)]
    names = ordered[0].values if ordered else {}
    values = {name: torch.cat([part.values[name] for part in ordered]) for name in names}
    seconds: dict[str, float] = {}
    for part in ordered:
        for name, s in part.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + s
    return Scored(values, seconds)


LONG = 600.0  # seconds: an evaluation projected to take longer says so, before it starts and after its first part
PART_SECONDS = 60.0  # a saved part holds about this much work at most: an interruption loses no more than that


def timed_part_size(limit: int, seconds_per_image: float | None, context: Context = SINGLE) -> int:
    """Images per saved part: at most ``limit`` (``images_per_pass``), and few enough that a part takes about
    PART_SECONDS at ``seconds_per_image`` (measured on the main process; None elsewhere), so that stopping a slow
    evaluation after a minute or two keeps work (66 images of a conv VAE were one part of 11 minutes). The main
    process's choice, on every process."""
    size = limit if not seconds_per_image else max(1, min(limit, int(PART_SECONDS / seconds_per_image)))
    return int(context.gather(size)[0])


def plan_parts(images: int, work: float, limit: int, rate: Callable[[], float], context: Context = SINGLE) -> int:
    """Before scoring ``images`` images of ``work`` samples of z each: on the main process, ``rate()`` (samples per
    second, measured now) and the projected time logged when long (projected_time); on every process, the images a
    part holds (timed_part_size, at most ``limit``)."""
    per_second = rate() if context.is_main else None
    if per_second is not None:  # a K or a step count that fits may still take days: say so before it starts
        projected_time(images * work, per_second, context.world_size)
    return timed_part_size(limit, None if per_second is None else work / per_second, context)


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


def check_resumable(folder: Path, fingerprint: dict[str, Any]) -> int:
    """The part size of the evaluation whose parts ``folder`` holds; a UsageError unless its settings are these
    (all but the part size, which the resumed run keeps)."""
    try:
        earlier = json.loads((folder / SETTINGS).read_text())
    except FileNotFoundError:
        raise UsageError(f"nothing to resume: {folder} holds no parts of an earlier evaluation; drop `resume` to "
                         "start one") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot resume from {folder}: its {SETTINGS} is unreadable ({error}); drop `resume` to "
                         "start over") from None
    part_size = earlier.get("part_size") if isinstance(earlier, dict) else None
    if not isinstance(part_size, int) or isinstance(part_size, bool) or part_size < 1:
        raise UsageError(f"cannot resume from {folder}: its {SETTINGS} names no part size (written by an older "
                         "version, or edited); drop `resume` to start over")
    fingerprint = {**fingerprint, "part_size": part_size}
    changed = [k for k in sorted(set(earlier) | set(fingerprint)) if earlier.get(k) != fingerprint.get(k)]
    if changed:
        what = ", ".join(f"{k} was {short(earlier.get(k))}, now {short(fingerprint.get(k))}" for k in changed)
        raise UsageError(f"cannot resume the evaluation in {folder}: {what}; pass the earlier settings, or drop "
                         "`resume` to start over")
    return part_size


def short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:12] + "…"


def part_checksum(settings: str, index: Tensor, values: dict[str, Tensor], seconds: dict[str, float]) -> str:
    """SHA-256 of a saved part's content: an edited value, a NaN written in or a column dropped changes it."""
    digest = hashlib.sha256(settings.encode())
    digest.update(tensor_hash(index).encode())
    for name in sorted(values):
        digest.update(f"{name}:{values[name].dtype}:{tuple(values[name].shape)}:{tensor_hash(values[name])}".encode())
    digest.update(json.dumps(seconds, sort_keys=True).encode())
    return digest.hexdigest()


def write_part(path: Path, fingerprint: dict[str, Any], index: Tensor, scored: Scored) -> None:
    settings, values = json.dumps(fingerprint, sort_keys=True), {k: v.detach().cpu() for k, v in scored.values.items()}
    buffer = io.BytesIO()
    torch.save({"settings": settings, "index": index.cpu(), "values": values, "seconds": scored.seconds,
                "sha256": part_checksum(settings, index.cpu(), values, scored.seconds)}, buffer)
    atomic_write(path, buffer.getvalue())


def read_part(path: Path, fingerprint: dict[str, Any], index: Tensor) -> Scored | None:
    """The part saved at ``path``, or None when there is none, or it is of other settings or images (a part
    written atomically is whole or absent; one that cannot be read is scored again)."""
    if kind := special_file(path):
        log.warning("%s is %s, not a saved part: scoring its images again", path, kind)
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - damaged: score it again, and say so
        log.warning("%s is unreadable (%s): scoring its images again", path, type(error).__name__)
        return None
    try:
        intact = saved["sha256"] == part_checksum(saved["settings"], saved["index"], saved["values"], saved["seconds"])
    except (KeyError, TypeError, AttributeError, RuntimeError):
        intact = False  # not the dict write_part saves
    if not intact:
        log.warning("%s does not match its checksum (edited or damaged): scoring its images again", path)
        return None
    if saved["settings"] != json.dumps(fingerprint, sort_keys=True) or not torch.equal(saved["index"], index.cpu()):
        log.warning("%s holds other images or settings: scoring its images again", path)
        return None
    return Scored(saved["values"], saved["seconds"])
