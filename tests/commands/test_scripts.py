"""The two scripts, end to end, on tiny MNIST files in torchvision's format."""

import csv
import gc
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from pyro_vae.runs.experiment import load_run

from conftest import write_tiny_amat, write_tiny_mnist
from programs import OUTPUTS, TINY, run_in_process, run_subprocess


@torch.no_grad()
def plain_torch_bound(vae, x, k, samples=4000):
    """L_k of each image from ``samples`` // k groups of k draws from q(z|x), by torch alone: the mean
    over images and the variance of one group's estimate (averaged over images)."""
    torch.manual_seed(99)
    loc, log_var = vae.encoder.net(x).chunk(2, dim=-1)  # (N, Z)
    std = (0.5 * log_var).exp()
    z = loc + std * torch.randn(samples, *loc.shape)  # (S, N, Z)
    log_w = (-torch.nn.functional.binary_cross_entropy_with_logits(
        vae.decoder.net(z), x.expand(samples, -1, -1), reduction="none").sum(-1)
        + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        - torch.distributions.Normal(loc, std).log_prob(z).sum(-1))  # (S, N)
    groups = torch.logsumexp(log_w.reshape(samples // k, k, -1), dim=1) - math.log(k)  # (G, N)
    return groups.mean().item(), groups.var(0).mean().item()


def test_train_then_evaluate_end_to_end(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    done = run_subprocess("train_svi", ["--data-dir", tiny_mnist, "--out", out, *TINY], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stderr and "test log p^(x)" in done.stderr
    assert "Warning" not in done.stderr and "warn" not in done.stderr.lower(), done.stderr  # clean output
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    for png in ("reconstructions.png", "samples.png", "learning_curve.png"):
        assert Image.open(out / png).size[0] > 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist" and metrics["binarize"] == "dynamic" and metrics["device"] == "cpu"
    assert metrics["num_train"] == 54 and metrics["num_valid"] == 10 and metrics["num_test"] == 32
    final = metrics["final"]
    assert final["test_bound"] < 0 and final["test_log_likelihood"]["num_samples"] == 20
    assert {"torch", "pyro", "pyro_vae"} <= set(metrics["versions"]) and metrics["wall_seconds"] > 0
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "test_bound" not in rows[0]  # the test set: scored once

    done = run_subprocess("evaluate", ["--checkpoint", out / "checkpoint.pt", "--eval-samples", "50", "--ks", "1,5,50",
                                       "--data-dir", tiny_mnist, "--ais-steps", "20,3", "--ais-chains", "4",
                                       "--ais-leapfrog", "3"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for label in ("ELBO", "IWAE K=5", "IWAE K=50", "gap", "PSIS k^", "AIS T=3", "AIS T=20"):
        assert label in done.stdout, done.stdout
    report = json.loads((out / "evaluation.json").read_text())
    assert report["num_datapoints"] == 32 and list(report["iwae"]) == ["1", "5", "50"]
    assert [row["num_steps"] for row in report["ais"]] == [3, 20] and report["ais"][0]["num_chains"] == 4
    assert all(0 < row["acceptance"] <= 1 and row["log_likelihood"]["se"] > 0 for row in report["ais"])
    # each row against the same bound computed by plain torch from the checkpoint's networks
    vae, data, _ = load_run(out / "checkpoint.pt", "cpu", str(tiny_mnist))
    for k, row in (("1", report["elbo"]), ("5", report["iwae"]["5"]), ("50", report["iwae"]["50"])):
        reference, group_var = plain_torch_bound(vae, data.test, int(k))
        # evaluate.py averaged 50/k groups per image over 32 images; the reference 4000/k: 4 SE of both
        tolerance = 4 * math.sqrt(group_var / 32 * (int(k) / 50 + int(k) / 4000))
        assert row["mean"] == pytest.approx(reference, abs=tolerance), (k, row["mean"], reference, tolerance)
        if k == "1":  # train_svi.py's test bound: the mean log-weight of its 20 draws per image, 4 SE
            tolerance = 4 * math.sqrt(group_var / 32 * (1 / 20 + 1 / 4000))
            assert final["test_bound"] == pytest.approx(reference, abs=tolerance), (final["test_bound"], reference)
    assert Image.open(out / "bounds.png").size[0] > 100

    done = run_subprocess("bdmc", ["--checkpoint", out / "checkpoint.pt", "--images", "12", "--ais-steps", "2,10",
                                   "--ais-chains", "3", "--ais-leapfrog", "2", "--eval-samples", "20", "--data-dir",
                                   tiny_mnist, "--out", tmp_path / "bdmc"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "reverse AIS (upper)" in done.stdout and "IWAE K=20" in done.stdout, done.stdout
    bdmc = json.loads((tmp_path / "bdmc" / "bdmc.json").read_text())
    assert [row["num_steps"] for row in bdmc["rows"]] == [2, 10] and bdmc["importance_sampling"]["num_datapoints"] == 12
    for row in bdmc["rows"]:  # reverse AIS above forward AIS, within 3 SE of their paired difference
        assert row["gap"]["mean"] > -3 * row["gap"]["se"], row
    tightest, iwae = bdmc["rows"][-1], bdmc["importance_sampling"]
    for bound in (iwae["elbo"], iwae["iwae"]["20"]):  # lower bounds of log p(x), so below reverse AIS
        assert bound["mean"] < tightest["upper"]["mean"] + 3 * tightest["upper"]["se"], (bound, tightest)
    assert Image.open(tmp_path / "bdmc" / "bdmc.png").size[0] > 100
    # one image: no standard errors, said so, and bdmc.json still written (it crashed on a None SE)
    assert run_in_process("bdmc", ["--checkpoint", out / "checkpoint.pt", "--images", "1", "--ais-steps", "2",
                                   "--ais-chains", "2", "--ais-leapfrog", "2", "--eval-samples", "5", "--data-dir",
                                   tiny_mnist, "--out", tmp_path / "bdmc1"]) == 0
    one = json.loads((tmp_path / "bdmc1" / "bdmc.json").read_text())
    assert one["rows"][0]["lower"]["se"] is None and math.isfinite(one["rows"][0]["lower"]["mean"])

    # the inference-gap split on 8 random test images (the same 8 for the same seed, recorded by index)
    gaps_flags = ["--checkpoint", out / "checkpoint.pt", "--images", "8", "--local-steps", "60", "--elbo-samples",
                  "200", "--ais-steps", "20", "--ais-chains", "4", "--ais-leapfrog", "3", "--images-per-pass", "5",
                  "--data-dir", tiny_mnist, "--no-progress"]
    assert run_in_process("gaps", [*gaps_flags, "--out", tmp_path / "gaps"]) == 0
    gaps = json.loads((tmp_path / "gaps" / "gaps.json").read_text())
    images = gaps["images"]
    assert len(set(images["index"])) == 8 and all(0 <= i < 32 for i in images["index"])
    assert Image.open(tmp_path / "gaps" / "gaps.png").size[0] > 100
    # q* starts at q and climbs its ELBO: never below L[q] by more than the two estimates' noise (200 draws
    # each; per-image log-weight sd ~1 nat on this model: 0.3 allowed); AIS sits above the amortized ELBO
    for local, amortized, log_px in zip(images["local_elbo"], images["elbo"], images["log_px"]):
        assert local > amortized - 0.3 and log_px > amortized - 0.3, (local, amortized, log_px)
    # q*'s bookkeeping per image: whether it converged, by how much the probe raised it, which start won and by
    # how much (never less than the guide's own start: the gain is measured on draws shared by all starts)
    assert gaps["settings"]["local_starts"] == gaps["local_starts"] == 8
    assert all(g >= 0 for g in images["start_gain"]) and all(0 <= s < 8 for s in images["best_start"])
    assert images["converged"] == [r <= 0.05 for r in images["local_rise"]]
    assert run_in_process("gaps", [*gaps_flags, "--out", tmp_path / "gaps2", "--local-steps", "20",
                                   "--local-starts", "2"]) == 0
    short = json.loads((tmp_path / "gaps2" / "gaps.json").read_text())
    assert short["images"]["index"] == images["index"] and short["local_starts"] == 2
    assert run_in_process("gaps", [*gaps_flags, "--images", "33"]) == 2  # the test set holds 32

    (tmp_path / "file").write_text("")
    done = run_subprocess("evaluate", ["--checkpoint", out / "checkpoint.pt", "--eval-samples", "5", "--data-dir",
                                       tiny_mnist, "--out", tmp_path / "file" / "sub"], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: --out"), done.stderr


def test_every_command_collects_garbage_again_before_its_long_work(tiny_mnist, tmp_path, monkeypatch, collector):
    """A script's process pauses the garbage collector through start-up (cli.pause_collection); each
    command ends the pause once its model and data are built, before the work that takes long."""
    import pyro_vae.training.loop
    from pyro_vae.commands import bdmc, evaluate, plot, runner
    from pyro_vae.commands.cli import pause_collection

    seen = []

    def recorded(module, name):
        work = getattr(module, name)

        def call(*args, **kwargs):
            seen.append((name, gc.isenabled()))
            return work(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    for module, name in ((pyro_vae.training.loop, "train_epoch"), (evaluate, "datapoint_bounds"),
                         (plot, "write_figures"), (bdmc, "ais")):
        recorded(module, name)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    common = ["--checkpoint", checkpoint, "--data-dir", tiny_mnist, "--out", tmp_path / "out"]
    for name, argv in (("train", ["--data-dir", tiny_mnist, "--out", tmp_path / "run", *TINY, "--epochs", "1"]),
                       ("evaluate", [*common, "--eval-samples", "5"]),
                       ("plot", common),
                       ("bdmc", [*common, "--images", "4", "--ais-steps", "2", "--ais-chains", "2",
                                 "--ais-leapfrog", "2", "--eval-samples", "5"])):
        pause_collection()
        runner(name)([str(a) for a in argv])
        assert gc.isenabled(), name
    assert {name for name, _ in seen} == {"train_epoch", "datapoint_bounds", "write_figures", "ais"}
    assert all(enabled for _, enabled in seen), seen


def test_a_jit_run_prints_no_warnings(tiny_mnist, tmp_path):
    # torch deprecates the torch.jit.trace that Pyro's JIT ELBOs use; the package silences that one warning
    done = run_subprocess("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / "run", *TINY, "--jit",
                                        "--eval-samples", "0"], cwd=tmp_path)
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "command, script", [("pyro-vae-train", "train_svi"), ("pyro-vae-evaluate", "evaluate"), ("pyro-vae-plot", "plot"),
                        ("pyro-vae-bdmc", "bdmc"), ("pyro-vae-gaps", "gaps")])
def test_console_commands_are_the_scripts(command, script, tmp_path):
    # installed by pip install -e . ([project.scripts]); the same parser as scripts/<script>.py
    path = Path(sys.executable).parent / command
    assert path.exists(), f"{command} is not installed beside {sys.executable}"
    done = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(f"usage: {command}"), done.stderr
    first_flag = run_subprocess(script, ["--help"], cwd=tmp_path).stdout.split("options:")[1]
    assert done.stdout.split("options:")[1] == first_flag


@pytest.mark.parametrize(
    "flags",
    [
        ["--likelihood", "bernoulli", "--elbo", "meanfield"],
        ["--likelihood", "continuous-bernoulli"],
        ["--likelihood", "continuous-bernoulli", "--elbo", "meanfield"],
        ["--likelihood", "gaussian"],
        ["--likelihood", "gaussian", "--elbo", "meanfield", "--scale-floor", "0.05"],
        ["--num-particles", "3"],
        ["--jit"],
        ["--jit", "--elbo", "meanfield", "--num-particles", "2"],
        ["--binarize", "threshold", "--hidden", "16,8", "--activation", "tanh"],
        ["--eval-samples", "0"],
        ["--elbo", "iwae", "--num-particles", "4", "--init-output-bias", "--lr-schedule", "burda", "--patience", "1"],
        ["--guide", "iaf"],
        ["--guide", "iaf", "--flow-layers", "1", "--elbo", "iwae", "--num-particles", "3"],
        ["--guide", "iaf", "--num-particles", "2", "--likelihood", "gaussian"],
        ["--guide", "iaf", "--jit"],
        # the convolutional networks (28 = 4 x 7: two stride-2 layers) with every objective and likelihood
        ["--arch", "conv"],
        ["--arch", "conv", "--elbo", "meanfield", "--likelihood", "continuous-bernoulli", "--init-output-bias"],
        ["--arch", "conv", "--elbo", "iwae", "--num-particles", "3", "--likelihood", "gaussian"],
        ["--arch", "conv", "--jit"],
        ["--arch", "conv", "--guide", "iaf", "--elbo", "iwae", "--num-particles", "2"],
    ],
    ids=lambda flags: " ".join(flags),
)
def test_every_likelihood_and_elbo_flag_runs(tiny_mnist, tmp_path, flags):
    out = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", out, *TINY, *flags]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert torch.isfinite(torch.tensor(metrics["final"]["test_bound"]))
    assert ("test_log_likelihood" in metrics["final"]) == ("0" not in flags)
    for name in OUTPUTS:
        assert (out / name).exists(), name


def test_grey_bernoulli_warns_that_it_is_not_a_likelihood(tiny_mnist, tmp_path, capsys):
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--binarize", "none"]) == 0
    assert "not a normalized likelihood" in capsys.readouterr().err


def test_offline_fallback_to_mnist5k(tmp_path):
    out = tmp_path / "run"
    argv = ["--data-dir", tmp_path / "empty", "--out", out, *TINY, "--epochs", "1"]
    done = run_subprocess("train_svi", argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "falling back" in done.stderr and "mnist5k" in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist5k" and metrics["config"]["data"]["dataset"] == "mnist"
    assert metrics["num_train"] + metrics["num_valid"] == 4000 and metrics["num_test"] == 1000


def test_a_fallen_back_run_resumed_once_mnist_is_there_says_the_data_changed(tmp_path, capsys):
    """It said "pass the settings of the original run", and the user had: the same flags now mean MNIST."""
    out = tmp_path / "run"
    argv = ["--data-dir", tmp_path / "data", "--out", out, *TINY, "--epochs", "1"]
    assert run_in_process("train_svi", argv) == 0  # no MNIST under data/: mnist5k
    write_tiny_mnist(tmp_path / "data")
    capsys.readouterr()
    assert run_in_process("train_svi", [*argv, "--epochs", "2", "--resume"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "trained on mnist5k, the offline subset it fell back to" in line and "--dataset mnist5k" in line, line
    assert run_in_process("train_svi", [*argv, "--epochs", "2", "--resume", "--dataset", "mnist5k"]) == 0


def test_a_named_dataset_never_falls_back(tmp_path, capsys):
    assert run_in_process("train_svi", ["--dataset", "mnist", "--data-dir", tmp_path / "empty", "--out", tmp_path,
                                        *TINY]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "mnist: files not found" in lines[0] and "falling back" not in lines[0]


def test_binarized_mnist_with_iwae_end_to_end(tmp_path, tiny_amat_sizes):
    out = tmp_path / "run"
    write_tiny_amat(tmp_path / "data" / "binarized_mnist")
    argv = ["--dataset", "binarized-mnist", "--data-dir", tmp_path / "data", "--out", out, *TINY,
            "--elbo", "iwae", "--num-particles", "5", "--hidden", "16,16", "--activation", "tanh", "--init-output-bias"]
    assert run_in_process("train_svi", argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "binarized-mnist" and metrics["binarize"] == "none"
    assert (metrics["num_train"], metrics["num_valid"], metrics["num_test"]) == (60, 20, 20)
    assert metrics["final"]["objective"] == "L_5"
    # the test bound is L_5, scored by its own pass (one group of 5 draws per image), not the samples' ELBO
    vae, data, _ = load_run(out / "checkpoint.pt", "cpu", str(tmp_path / "data"))
    reference, group_var = plain_torch_bound(vae, data.test, 5)
    tolerance = 4 * math.sqrt(group_var / 20 * (1 + 5 / 4000))  # 4 SE: 20 images, 1 group each against 800
    assert metrics["final"]["test_bound"] == pytest.approx(reference, abs=tolerance), (metrics["final"], reference)


@pytest.mark.parametrize(
    "name, argv, message",
    [
        ("train_svi", ["--likelihood", "poisson"], "invalid choice: 'poisson'"),
        ("train_svi", ["--epochs", "0"], "must be a positive integer"),
        ("train_svi", ["--batch-size", "-5"], "must be a positive integer"),
        ("train_svi", ["--lr", "0"], "must be a positive finite number"),
        ("train_svi", ["--lr", "inf"], "must be a positive finite number, got inf"),
        ("train_svi", ["--scale-floor", "inf"], "must be a positive finite number, got inf"),
        ("train_svi", ["--seed", "-1"], "must be an integer from 0 to 4294967295, got -1"),
        ("train_svi", ["--seed", str(10**23)], "must be an integer from 0 to 4294967295"),
        ("train_svi", ["--out", ""], "--out is empty"),  # not the current folder
        ("train_svi", ["--data-dir", "{file}", "--dataset", "mnist"], "is a file, not a folder"),
        ("evaluate", ["--checkpoint", "x.pt", "--seed", "-1"], "must be an integer from 0 to 4294967295"),
        ("bdmc", ["--checkpoint", "x.pt", "--seed", str(10**23)], "must be an integer from 0 to 4294967295"),
        ("plot", ["--checkpoint", "x.pt", "--seed", "-1"], "must be an integer from 0 to 4294967295"),
        ("train_svi", ["--hidden", "400,x"], "comma-separated positive integers"),
        ("train_svi", ["--eval-samples", "-1"], "non-negative"),
        ("train_svi", ["--dataset", "cifar"], "invalid choice: 'cifar'"),
        ("train_svi", ["--elbo", "iwae", "--jit"], "--jit is not available with --elbo iwae"),
        ("train_svi", ["--guide", "iaf", "--elbo", "meanfield"], "--elbo meanfield needs the analytic KL"),
        ("train_svi", ["--guide", "flow"], "invalid choice: 'flow'"),
        ("train_svi", ["--flow-layers", "0"], "must be a positive integer"),
        ("train_svi", ["--patience", "-1"], "non-negative"),
        ("train_svi", ["--lr-schedule", "cosine"], "invalid choice: 'cosine'"),
        ("train_svi", ["--dataset", "binarized-mnist", "--data-dir", "{tmp}", "--no-download"],
         "binarized_mnist_train.amat"),
        ("train_svi", ["--out", "{file}/sub"], "is not a writable directory"),
        ("evaluate", [], "--checkpoint"),
        ("evaluate", ["--checkpoint", "x.pt", "--eval-samples", "0"], "must be a positive integer"),
        ("evaluate", ["--checkpoint", "{tmp}/missing.pt"], "does not exist"),
        ("evaluate", ["--checkpoint", "{file}"], "is not a pyro_vae checkpoint"),
        ("evaluate", ["--checkpoint", "x.pt", "--ais-steps", "100,-5"], "every value must be a positive integer"),
        ("evaluate", ["--checkpoint", "x.pt", "--ais-chains", "0"], "must be a positive integer"),
        ("bdmc", [], "--checkpoint"),
        ("bdmc", ["--checkpoint", "{tmp}/missing.pt"], "does not exist"),
        ("bdmc", ["--checkpoint", "x.pt", "--ais-steps", "0"], "every value must be a positive integer"),
        ("gaps", ["--checkpoint", "x.pt", "--local-starts", "0"], "--local-starts: must be a positive integer"),
        ("gaps", ["--checkpoint", "{tmp}/missing.pt"], "does not exist"),
        ("bdmc", ["--checkpoint", "x.pt", "--images", "0"], "must be a positive integer"),
        # a density on [0, 1] on binary pixels reported a test ELBO of +1282.6 (pixels.continuous_pixels)
        ("train_svi", ["--dataset", "mnist5k", "--likelihood", "continuous-bernoulli", "--binarize", "dynamic"],
         "the continuous-bernoulli likelihood is a density on [0, 1] and --binarize dynamic makes the pixels binary"),
        ("train_svi", ["--dataset", "mnist5k", "--likelihood", "gaussian", "--binarize", "threshold"],
         "use --likelihood bernoulli, or keep the grey pixels with --binarize none"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, name, argv, message):
    monkeypatch.chdir(tmp_path)  # the default --out, runs/train_svi, is relative
    (tmp_path / "file").write_text("not a directory, not a checkpoint")
    argv = [a.format(tmp=tmp_path, file=tmp_path / "file") for a in argv]
    assert run_in_process(name, argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_a_density_on_8_bit_pixels_is_trained_and_scored_on_dequantized_pixels(tiny_mnist, tmp_path, capsys):
    """--likelihood gaussian on 8-bit pixels without --dequantize reported log p^ = +424.6 nats, no bound on the
    images' probability: dequantization comes on by itself, in one line, and the run reports bits/dim."""
    out = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", out, *TINY, "--likelihood", "gaussian"]) == 0
    assert "dequantizing the 8-bit pixels" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["bits_per_dim"] > 0 and metrics["final"]["test_log_likelihood_8bit"] < 0
    assert run_in_process("evaluate", ["--checkpoint", out / "checkpoint.pt", "--data-dir", tiny_mnist,
                                       "--eval-samples", "5", "--ks", "1,5"]) == 0  # its test set as trained


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is absent")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    assert run_in_process("train_svi", ["--device", "cuda", "--out", tmp_path / "new"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--device cpu" in lines[0]
    assert not (tmp_path / "new").exists()  # a failed start leaves nothing behind (it left the folder and its .lock)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    assert run_in_process("train_svi", ["--device", "cuda", "--out", tmp_path / "mine"]) == 2
    assert (tmp_path / "mine" / "notes.txt").exists()  # a folder the run did not make is left as it was


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_end_to_end(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", out, *TINY, "--device", "cuda"]) == 0
    assert json.loads((out / "metrics.json").read_text())["device"] != "cpu"


def test_a_fresh_run_never_replaces_an_earlier_one_unless_told(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", out, *TINY]) == 0  # z = 2: a manifold
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    again = ["--data-dir", tiny_mnist, "--out", out, *TINY, "--z-dim", "3"]
    assert run_in_process("train_svi", again) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{out} holds an earlier run (checkpoint.pt, metrics.json" in lines[0], lines
    assert "--resume" in lines[0] and "--overwrite" in lines[0] and (out / "checkpoint.pt").read_bytes() == before
    assert run_in_process("train_svi", [*again, "--overwrite"]) == 0
    assert checkpoint_config(out)["z_dim"] == 3
    assert not (out / "manifold.png").exists()  # the earlier run's figure is gone, not mixed in


def checkpoint_config(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)["model_config"]


def test_the_default_out_folder_gets_a_new_number_for_each_run(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        assert run_in_process("train_svi", ["--data-dir", tiny_mnist, *TINY]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["train_svi", "train_svi-2", "train_svi-3"]
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, *TINY, "--epochs", "3", "--resume"]) == 0
    assert torch.load(tmp_path / "runs" / "train_svi" / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_a_second_process_on_the_same_out_is_refused(tiny_mnist, tmp_path, capsys):
    from pyro_vae.runs.run_folder import RunFolder

    with RunFolder(tmp_path):  # as a run in another process holds it
        assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path} is in use by another run (pid " in lines[0], lines
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("name", ["metrics.json", "checkpoint.pt"])
def test_a_folder_where_a_result_goes_is_refused_before_training(tiny_mnist, tmp_path, capsys, name):
    (tmp_path / name).mkdir()
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--overwrite"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / name} is a folder, not a file" in lines[0], lines
    assert "epoch" not in capsys.readouterr().err and not (tmp_path / "history.csv").exists()


@pytest.mark.parametrize(
    "name, argv, message",
    [
        ("train_svi", ["--z-dim", "1000000000"],
         r"a VAE with z_dim=1000000000 and hidden=16 \([\d,]+ parameters\) needs at least [\d.]+ GB"),
        ("train_svi", ["--hidden", "100000000"], r"hidden=100000000 \([\d,]+ parameters\) needs at least .*--hidden"),
        ("train_svi", ["--num-particles", "100000000"], "a training step with --batch-size 16 and --num-particles "
                                                         "100000000 needs at least"),
        ("evaluate", ["--eval-samples", "100000000", "--images-per-pass", "100000", "--chunk-size", "100000000"],
         "importance sampling .* needs at least .*: lower --chunk-size or --images-per-pass"),
        # the K of the estimate is named when its log-weights are what does not fit (it blamed the chunk size)
        ("evaluate", ["--eval-samples", "1000000000"],
         "needs at least .*: lower --eval-samples \\(K\\) or --images-per-pass"),
        ("evaluate", ["--ais-steps", "1000000000000"], "AIS with 1000000000000 steps .*: lower --ais-steps$"),
        ("bdmc", ["--eval-samples", "1000000000"], "lower --eval-samples \\(K\\) or --images-per-pass"),
        ("bdmc", ["--ais-steps", "1000000000000"], "AIS with 1000000000000 steps .*: lower --ais-steps$"),
        # before training, not after it, and naming train's own flag
        ("train_svi", ["--eval-samples", "1000000000"], "K = 1000000000 .* needs at least .*: lower --eval-samples"),
        # each of these failed late, as an "out of memory" naming no flag (or after 41 s, building the layers)
        ("train_svi", ["--guide", "iaf", "--flow-layers", "100000000"], "100000000 IAF layers .* fewer --flow-layers$"),
        ("sample", ["--num", "100000000"], "--num 100000000 samples .* needs at least .*: lower --num$"),
        ("sample", ["--interpolate", "0,1", "--interpolate-images", "1000000000"], "lower --interpolate-images$"),
        ("bdmc", ["--images", "1000000000"], "simulating 1000000000 images at once needs .*: lower --images$"),
        ("gaps", ["--images", "4", "--elbo-samples", "1000000000"], "K = 1000000000 .*: lower --elbo-samples \\(K\\)$"),
        ("gaps", ["--images", "4", "--ais-chains", "1000000000"],
         "1000000000 chains .*: lower --ais-chains or --images-per-pass$"),
    ],
)
def test_work_that_cannot_fit_in_memory_is_refused_up_front(tiny_mnist, tmp_path, capsys, name, argv, message):
    if name in ("evaluate", "bdmc", "sample", "gaps"):
        assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY]) == 0
        argv = ["--checkpoint", tmp_path / "checkpoint.pt", "--out", tmp_path / "eval", *argv]
    else:
        argv = ["--data-dir", tiny_mnist, "--out", tmp_path / "new", *TINY, *argv]
    capsys.readouterr()
    assert run_in_process(name, argv) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]  # after evaluate.py's log line naming the checkpoint
    assert line.startswith("error:") and re.search(message, line) and "GB free" in line and "Traceback" not in err, err
    assert "epoch 1/" not in err


def test_a_batch_larger_than_the_training_set_is_the_training_set(tiny_mnist, tmp_path):
    """--batch-size 1e9 was refused as needing 15 TB, where a minibatch holds at most the training set."""
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY,
                                        "--batch-size", "1000000000"]) == 0


def test_a_one_dimensional_latent_trains_evaluates_and_plots(tiny_mnist, tmp_path):
    """--z-dim 1 trained and then crashed in the latent figure (PCA to 2-D) before metrics.json was written;
    its latent figure is a histogram of the posterior means, stacked by class."""
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--z-dim", "1"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["model"]["z_dim"] == 1
    assert Image.open(tmp_path / "latent.png").size[0] > 100
    (tmp_path / "latent.png").unlink()
    assert run_in_process("plot", ["--checkpoint", tmp_path / "checkpoint.pt", "--data-dir", tiny_mnist]) == 0
    assert (tmp_path / "latent.png").exists()
    assert run_in_process("evaluate", ["--checkpoint", tmp_path / "checkpoint.pt", "--data-dir", tiny_mnist,
                                       "--eval-samples", "10", "--ais-steps", "2", "--ais-chains", "2",
                                       "--ais-leapfrog", "2", "--no-progress"]) == 0
