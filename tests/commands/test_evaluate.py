"""evaluate.py (and bdmc.py) across processes and interruptions: an image's numbers are its own.

Every run here uses one torch thread per process (OMP_NUM_THREADS=1): a matrix product split over another
number of threads may round differently, and the claims are exact (byte-equal per-image files).
"""

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import write_tiny_mnist
from programs import ROOT, TINY, run_in_process

AIS = ["--ais-steps", "3", "--ais-chains", "2", "--ais-leapfrog", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    data = write_tiny_mnist(folder / "data")
    assert run_in_process("train_svi", ["--data-dir", data, "--out", folder / "run", *TINY]) == 0
    return folder / "run" / "checkpoint.pt", data


def launch(command, *argv, processes=1, cwd):
    """A command in fresh processes: alone, or under torchrun with ``processes`` ranks."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                        f"--nproc_per_node={processes}"]
    return subprocess.Popen([*launcher, str(ROOT / "scripts" / f"{command}.py"), *map(str, argv)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process):
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def without_timings(path):
    result = json.loads(path.read_text())
    result.pop("processes")
    result.pop("seconds", None)
    for row in result.get("ais", []) + result.get("rows", []):
        for timing in ("seconds", "processes", "process_seconds"):
            row.pop(timing, None)
    return result


def test_two_processes_give_every_image_the_numbers_of_one(trained, tmp_path):
    checkpoint, data = trained
    flags = ["--checkpoint", checkpoint, "--data-dir", data, "--device", "cpu", "--no-progress"]
    evaluate = [*flags, "--images", "20", "--seed", "3", "--images-per-pass", "4", "--eval-samples", "30",
                "--ks", "1,5,30", *AIS]
    bdmc = [*flags, "--images", "10", "--ais-steps", "2,4", "--ais-chains", "2", "--ais-leapfrog", "2",
            "--eval-samples", "10", "--images-per-pass", "3"]
    runs = {n: (launch("evaluate", *evaluate, "--out", tmp_path / f"e{n}", processes=n, cwd=tmp_path),
                launch("bdmc", *bdmc, "--out", tmp_path / f"b{n}", processes=n, cwd=tmp_path)) for n in (1, 2)}
    printed = {n: [finished(process) for process in launched] for n, launched in runs.items()}
    timing = r", \d+ s( on each of 2 processes)?\)"
    for one, two in zip(printed[1], printed[2]):  # the printed tables, but for AIS's seconds
        assert re.sub(timing, ")", one) == re.sub(timing, ")", two)
    assert re.search(r"AIS T=3 .*, \d+ s on each of 2 processes\)", printed[2][0]), printed[2][0]
    per_image = (tmp_path / "e1" / "per_image.csv").read_text()
    assert per_image == (tmp_path / "e2" / "per_image.csv").read_text()
    assert per_image.splitlines()[0] == "index,elbo,iwae_5,iwae_30,khat,ais_3,ais_3_acceptance"
    assert len(per_image.splitlines()) == 21
    assert without_timings(tmp_path / "e1" / "evaluation.json") == without_timings(tmp_path / "e2" / "evaluation.json")
    result = json.loads((tmp_path / "e2" / "evaluation.json").read_text())
    assert result["processes"] == 2 and result["checkpoint_epoch"] == 2  # which checkpoint the numbers are of
    # an AIS row's time is each process's share, within the wall time (was: the processes' sum, beyond it)
    (row,) = result["ais"]
    assert row["processes"] == 2 and 0 < row["seconds"] <= result["seconds"]
    for bdmc_row in json.loads((tmp_path / "b2" / "bdmc.json").read_text())["rows"]:
        assert bdmc_row["process_seconds"] == pytest.approx(2 * bdmc_row["seconds"])
    assert result["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for figure in (tmp_path / "e2" / "bounds.png", tmp_path / "b2" / "bdmc.png"):  # the figures say it too
        with Image.open(figure) as image:
            assert image.text == {"checkpoint_sha256": result["checkpoint_sha256"], "checkpoint_epoch": "2"}
    bdmc_csv = (tmp_path / "b1" / "bdmc_per_image.csv").read_text()
    assert bdmc_csv == (tmp_path / "b2" / "bdmc_per_image.csv").read_text() and len(bdmc_csv.splitlines()) == 11
    assert without_timings(tmp_path / "b1" / "bdmc.json") == without_timings(tmp_path / "b2" / "bdmc.json")
    for folder in ("e1", "e2", "b1", "b2"):  # the parts go once the results are written
        assert not any(p.name.endswith(".parts") for p in (tmp_path / folder).iterdir())


def test_batch_and_chunk_sizes_do_not_change_an_image_numbers(trained, tmp_path):
    """Another --images-per-pass and --chunk-size: the same random numbers for each image, so the same bounds up to
    float32 rounding of sums over other groupings (measured up to 4e-5 nats at ~100: 5 ulps; 1e-4 allowed)."""
    checkpoint, data = trained
    flags = ["--checkpoint", checkpoint, "--data-dir", data, "--images", "12", "--eval-samples", "40", *AIS,
             "--no-progress"]
    for out, batch, chunk in (("a", 12, 40), ("b", 5, 7)):
        assert run_in_process("evaluate", [*flags, "--images-per-pass", batch, "--chunk-size", chunk, "--out",
                                           tmp_path / out]) == 0
    a, b = (read_csv(tmp_path / f / "per_image.csv") for f in ("a", "b"))
    assert a.keys() == b.keys() and a["index"] == b["index"]
    for name in a:
        assert max(abs(u - v) for u, v in zip(a[name], b[name])) < 1e-4, name


def read_csv(path):
    lines = path.read_text().splitlines()
    names = lines[0].split(",")
    columns = list(zip(*(map(float, line.split(",")) for line in lines[1:])))
    return dict(zip(names, columns))


def test_an_evaluation_killed_and_resumed_gives_the_uninterrupted_numbers(trained, tmp_path):
    checkpoint, data = trained
    flags = ["--checkpoint", checkpoint, "--data-dir", data, "--limit", "32", "--images-per-pass", "4",
             "--eval-samples", "20", "--ais-steps", "40", "--ais-chains", "2", "--ais-leapfrog", "3", "--no-progress"]
    finished(launch("evaluate", *flags, "--out", tmp_path / "whole", cwd=tmp_path))

    parts = tmp_path / "killed" / "evaluation.parts"
    process = launch("evaluate", *flags, "--out", tmp_path / "killed", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (parts / "part-000001.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL  # killed mid-way, not finished
    saved = sorted(p.name for p in parts.glob("part-*.pt"))
    assert 2 <= len(saved) < 8, saved

    # another setting refuses the resume, in one line, and leaves the parts
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), *map(str, flags), "--out",
                           tmp_path / "killed", "--resume", "--ais-steps", "41"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("error: cannot resume the evaluation in ") and \
        "ais_steps was [40], now [41]" in last, done.stderr
    assert sorted(p.name for p in parts.glob("part-*.pt")) == saved

    finished(launch("evaluate", *flags, "--out", tmp_path / "killed", "--resume", cwd=tmp_path))
    assert (tmp_path / "killed" / "per_image.csv").read_text() == (tmp_path / "whole" / "per_image.csv").read_text()
    assert without_timings(tmp_path / "killed" / "evaluation.json") == without_timings(
        tmp_path / "whole" / "evaluation.json")
    assert not parts.exists()


def test_random_images_are_chosen_by_the_seed_and_recorded(trained, tmp_path):
    checkpoint, data = trained
    flags = ["--checkpoint", checkpoint, "--data-dir", data, "--eval-samples", "5", "--no-khat", "--no-progress"]

    def chosen(*argv):
        assert run_in_process("evaluate", [*flags, *argv, "--out", tmp_path, "--overwrite"]) == 0
        images = json.loads((tmp_path / "evaluation.json").read_text())["images"]
        rows = [int(line.split(",")[0]) for line in (tmp_path / "per_image.csv").read_text().splitlines()[1:]]
        assert rows == images.get("index", rows)
        return images

    first = chosen("--images", "6", "--seed", "3")
    assert first["selection"] == "random" and first["seed"] == 3 and len(set(first["index"])) == 6
    (tmp_path / "per_image.csv").rename(tmp_path / "earlier.csv")
    assert chosen("--images", "6", "--seed", "3", "--compare", tmp_path / "earlier.csv") == first
    result = json.loads((tmp_path / "evaluation.json").read_text())  # the same images and numbers: no difference
    elbo = result["paired_differences"]["elbo"]
    assert result["shared_images"] == 6 and elbo["mean"] == elbo["se"] == 0 and elbo["unpaired_se"] > 0
    assert chosen("--images", "6", "--seed", "4")["index"] != first["index"]
    assert chosen("--limit", "6") == {"selection": "first", "count": 6}
    # the same settings again replace their own results; other ones are refused without --overwrite, up front
    assert run_in_process("evaluate", [*flags, "--limit", "6", "--out", tmp_path]) == 0
    assert run_in_process("evaluate", [*flags, "--limit", "5", "--out", tmp_path]) == 2
    assert json.loads((tmp_path / "evaluation.json").read_text())["images"]["count"] == 6
    assert run_in_process("evaluate", [*flags, "--images", "33"]) == 2  # the test set holds 32
    assert run_in_process("evaluate", [*flags, "--images", "3", "--limit", "3"]) == 2
    # --compare with a file that is not a per-image table, or with no images in common: refused before the work
    (tmp_path / "bad.csv").write_text("no,table\n")
    assert run_in_process("evaluate", [*flags, "--compare", tmp_path / "bad.csv", "--out", tmp_path / "c"]) == 2
    assert run_in_process("evaluate", [*flags, "--limit", "1", "--compare", tmp_path / "earlier.csv", "--out",
                                       tmp_path / "c"]) == 2
    assert not (tmp_path / "c" / "evaluation.json").exists()


def test_sigterm_keeps_the_saved_parts_and_exits_143(trained, tmp_path):
    checkpoint, data = trained
    process = launch("evaluate", "--checkpoint", checkpoint, "--data-dir", data, "--limit", "32",
                     "--images-per-pass", "4", "--eval-samples", "20", "--ais-steps", "40", "--ais-chains", "2",
                     "--ais-leapfrog", "3", "--no-progress", "--out", tmp_path, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (tmp_path / "evaluation.parts" / "part-000000.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    saved = len(list((tmp_path / "evaluation.parts").glob("part-*.pt")))
    assert last.startswith(f"terminated (SIGTERM), {saved} of this process's 8 parts of 4 images are saved in ") and \
        last.endswith("add --resume to the same command to go on"), stderr
    assert "Traceback" not in stderr and not (tmp_path / "evaluation.json").exists()


@pytest.mark.parametrize("command", ["evaluate", "bdmc", "gaps", "plot"])
def test_an_empty_out_is_refused_by_every_command(trained, tmp_path, capsys, command):
    """`--out ''` is refused as train refuses it, not taken for "beside the checkpoint" (plot wrote there)."""
    checkpoint, data = trained
    before = sorted(p.name for p in checkpoint.parent.iterdir())
    assert run_in_process(command, ["--checkpoint", checkpoint, "--data-dir", data, "--out", ""]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: --out is empty"), lines
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == before


def test_a_resumed_run_removes_the_evaluation_of_its_old_checkpoint_once_allowed(trained, tmp_path):
    """An epoch-2 evaluation beside an epoch-3 checkpoint has nothing to show it is stale: the resume removes it,
    but only once the resume is allowed (a refused one changes nothing)."""
    checkpoint, data = trained
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent, run)
    assert run_in_process("evaluate", ["--checkpoint", run / "checkpoint.pt", "--data-dir", data, "--eval-samples", "5",
                                       "--no-progress"]) == 0
    train = ["--data-dir", data, "--out", run, *TINY, "--resume"]
    assert run_in_process("train_svi", [*train, "--z-dim", "3"]) == 2  # another model: refused
    assert (run / "evaluation.json").exists() and (run / "per_image.csv").exists()
    assert run_in_process("train_svi", [*train, "--epochs", "3"]) == 0
    assert not (run / "evaluation.json").exists() and not (run / "per_image.csv").exists()


@pytest.mark.parametrize("command, flags", [
    ("plot", []), ("sample", ["--num", "4"]), ("evaluate", ["--eval-samples", "5", "--ks", "1,5", "--limit", "4"]),
])
def test_another_runs_folder_is_refused_as_out_unless_overwrite(trained, tmp_path, capsys, command, flags):
    # plot and sample replaced another run's figures, evaluate wrote checkpoint A's results beside run B
    checkpoint, data = trained
    other = tmp_path / "other_run"
    other.mkdir()
    shutil.copy(checkpoint, other / "checkpoint.pt")  # another run's checkpoint (a copy is another file)
    (other / "samples.png").write_bytes(b"run B's figure")
    argv = ["--checkpoint", checkpoint, "--data-dir", data, "--out", other, *flags]
    assert run_in_process(command, argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: --out {other} holds another run (its checkpoint.pt is not " \
        f"{checkpoint}): what this command writes would replace that run's files or pass for them; choose another " \
        "--out, or add --overwrite", err
    assert (other / "samples.png").read_bytes() == b"run B's figure"
    assert run_in_process(command, [*argv, "--overwrite"]) == 0


def test_gaps_says_up_front_how_long_a_huge_local_optimization_takes(trained, tmp_path, monkeypatch, caplog):
    # `--local-steps 1e9` fitted in memory and ran without a word; now the projection comes before any work
    from pyro_vae.commands import gaps

    checkpoint, data = trained

    def stop(*args, **kwargs):
        raise KeyboardInterrupt("stopped before the work")

    monkeypatch.setattr(gaps, "score_in_parts", stop)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        assert run_in_process("gaps", ["--checkpoint", checkpoint, "--data-dir", data, "--images", "2",
                                       "--local-steps", "1000000000", "--out", tmp_path]) == 130
    assert re.search(r"this evaluation will take about \d+ h \d+ min", caplog.text), caplog.text
