"""The two-stochastic-layer VAE from the commands (--latents Z1,Z2): trained, then evaluated by importance
sampling and AIS, bidirectional Monte Carlo and the gap decomposition; the pairings it refuses, one line each.
(Resumption: training/test_resume.py; torchrun: training/test_distributed.py.)"""

import json
import math

import pytest

from programs import TINY, run_in_process

AIS = ["--ais-steps", "3", "--ais-chains", "2", "--ais-leapfrog", "2"]
ONE_LAYER_SIZE = TINY.index("--z-dim")
FLAGS = TINY[:ONE_LAYER_SIZE] + TINY[ONE_LAYER_SIZE + 2:] + ["--latents", "4,2"]


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory):
    from conftest import write_tiny_mnist

    folder = tmp_path_factory.mktemp("two_layers")
    data = write_tiny_mnist(folder / "data")
    assert run_in_process("train_svi", ["--data-dir", data, "--out", folder / "run", *FLAGS]) == 0
    return folder / "run", data


def test_trained_checkpoint_holds_both_layers(two_layers):
    run, _ = two_layers
    metrics = json.loads((run / "metrics.json").read_text())
    model = metrics["config"]["model"]
    assert model["z_dim"] == 4 and model["z2_dim"] == 2
    assert math.isfinite(metrics["final"]["test_log_likelihood"]["mean"])


def test_a_two_layer_runs_metrics_json_repeats_it(two_layers, tmp_path):
    """--config <run>/metrics.json: the model block's z_dim and z2_dim become --latents 4,2."""
    run, data = two_layers
    assert run_in_process("train_svi", ["--config", run / "metrics.json", "--data-dir", data, "--out",
                                        tmp_path / "again", "--no-progress"]) == 0
    first, again = (json.loads((folder / "metrics.json").read_text()) for folder in (run, tmp_path / "again"))
    assert again["config"]["model"] == first["config"]["model"]
    assert again["final"]["test_bound"] == first["final"]["test_bound"]  # the same run, to the last digit


def test_evaluate_bdmc_and_gaps_run_on_two_layers(two_layers, tmp_path, capsys):
    run, data = two_layers
    common = ["--checkpoint", run / "checkpoint.pt", "--data-dir", data, "--no-progress"]
    assert run_in_process("evaluate", [*common, "--ks", "1,10", *AIS, "--out", tmp_path / "e"]) == 0
    evaluation = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert all(math.isfinite(row["log_likelihood"]["mean"]) for row in evaluation["ais"])
    assert run_in_process("bdmc", [*common, "--images", "3", *AIS, "--eval-samples", "5", "--out", tmp_path / "b"]) == 0
    bdmc = json.loads((tmp_path / "b" / "bdmc.json").read_text())
    row = bdmc["rows"][0]
    assert math.isfinite(row["lower"]["mean"]) and math.isfinite(row["upper"]["mean"])
    assert run_in_process("gaps", [*common, "--images", "3", *AIS, "--local-steps", "5", "--local-starts", "2",
                                   "--elbo-samples", "10", "--out", tmp_path / "g"]) == 0
    assert "approximation gap" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--elbo", "meanfield"], "--elbo meanfield takes each layer's KL"),  # flags named as typed (cli.py)
    (["--guide", "iaf"], "--guide iaf is for one layer"),
    (["--z-dim", "3"], "argument --z-dim: not allowed with argument --latents"),
    (["--latents", "4,2,1"], "one or two stochastic layers are built"),
])
def test_pairings_that_make_no_sense_are_one_line(tmp_path, capsys, extra, message):
    flags = FLAGS[:-2] + extra if extra[0] == "--latents" else FLAGS + extra
    assert run_in_process("train_svi", ["--data-dir", tmp_path, "--out", tmp_path / "run", *flags]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
