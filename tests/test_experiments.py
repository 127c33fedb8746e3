"""The experiment scripts and the plotting command, end to end on tiny MNIST files."""

import json

from PIL import Image

from programs import ROOT, run_in_process


def run_experiment(name, argv):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(module.run, [str(a) for a in argv])


def test_z_sweep_runs_and_draws(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert run_experiment("z_sweep", ["--dataset", "mnist", "--data-dir", tiny_mnist, "--z-dims", "2,3",
                                      "--epochs", "2", "--eval-samples", "10", "--out", out]) == 0
    results = json.loads((out / "z_sweep.json").read_text())
    assert set(results) == {"2", "3"} and len(results["2"]["history"]) == 2
    assert Image.open(out / "z_sweep.png").size[0] > 500
    assert (out / "z2" / "manifold.png").exists() and not (out / "z3" / "manifold.png").exists()
    assert "| 3 |" in capsys.readouterr().out


def test_likelihood_comparison_reports_bits_per_dim(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "lik"
    assert run_experiment("likelihoods", ["--dataset", "mnist", "--data-dir", tiny_mnist, "--epochs", "1",
                                          "--eval-samples", "10", "--out", out]) == 0
    results = json.loads((out / "likelihoods.json").read_text())
    for name in ("continuous-bernoulli", "gaussian"):
        final = results[name]["final"]
        # the 8-bit bound is the density's log p^ minus 784 log 256, and bits/dim its negative over 784 ln 2
        expected = final["test_log_likelihood"]["mean"] - 784 * 5.545177444479562  # 784 log 256
        assert abs(final["test_log_likelihood_8bit"] - expected) < 1e-6
        assert abs(final["bits_per_dim"] + final["test_log_likelihood_8bit"] / (784 * 0.6931471805599453)) < 1e-9
        assert results[name]["config"]["data"]["dequantize"]
    assert results["bernoulli"]["binarize"] == "dynamic" and "bits_per_dim" not in results["bernoulli"]["final"]
    assert Image.open(out / "likelihoods.png").size[0] > 500
    assert "bits/dim" in capsys.readouterr().out


def test_gap_experiment_trains_both_guides_and_splits_their_gaps(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "gaps"
    assert run_experiment("gaps", ["--dataset", "mnist", "--data-dir", tiny_mnist, "--epochs", "1", "--seeds", "0,1",
                                   "--images", "6", "--flow-images", "2", "--local-steps", "20", "--ais-steps", "3",
                                   "--ais-chains", "2", "--ais-leapfrog", "2", "--eval-samples", "20",
                                   "--out", out]) == 0
    results = json.loads((out / "gaps.json").read_text())["models"]
    assert set(results) == {"gaussian-seed0", "iaf-seed0", "gaussian-seed1", "iaf-seed1"}
    assert "gaps" in results["iaf-seed0"] and "gaps" not in results["iaf-seed1"]  # the split: first seed only
    assert "local_flow_elbo" in results["iaf-seed0"] and "local_flow_elbo" not in results["gaussian-seed0"]
    for guide in ("gaussian", "iaf"):  # two estimates of the same L[q] on the same images, other draws
        row = results[f"{guide}-seed0"]
        assert abs(row["gaps"]["elbo"]["mean"] - row["test_elbo"]["mean"]) < 2 * row["test_elbo"]["se"], row
    assert Image.open(out / "gaps.png").size[0] > 500
    assert "| iaf |" in capsys.readouterr().out
    # pyro-vae-gaps on a checkpoint of the IAF guide (AIS in the flow's base space; q*_FFG from its moments)
    assert run_in_process("gaps", ["--checkpoint", out / "iaf-seed0" / "checkpoint.pt", "--images", "4",
                                   "--local-steps", "20", "--elbo-samples", "20", "--ais-steps", "3", "--ais-chains",
                                   "2", "--ais-leapfrog", "2", "--data-dir", tiny_mnist, "--out", tmp_path / "g"]) == 0
    assert "approximation gap" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "g" / "gaps.json").read_text())["images"]["index"]) == 4
    # and BDMC: reverse AIS starts from the simulated z pulled back through the flow
    assert run_in_process("bdmc", ["--checkpoint", out / "iaf-seed0" / "checkpoint.pt", "--images", "4",
                                   "--ais-steps", "2,20", "--ais-chains", "2", "--ais-leapfrog", "2", "--eval-samples",
                                   "20",
                                   "--data-dir", tiny_mnist, "--out", tmp_path / "b"]) == 0
    rows = json.loads((tmp_path / "b" / "bdmc.json").read_text())["rows"]
    assert rows[-1]["gap"]["mean"] > -3 * rows[-1]["gap"]["se"]  # reverse above forward, within MC error
    assert Image.open(tmp_path / "g" / "gaps.png").size[0] > 100


def test_plot_command_redraws_a_run(tiny_mnist, tmp_path, monkeypatch):
    import pyro_vae.commands.plot
    import pyro_vae.runs.plots

    run_dir = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", run_dir, "--epochs", "2", "--z-dim", "2",
                                        "--hidden", "16", "--eval-samples", "10", "--no-progress"]) == 0
    curves = []  # the learning curves drawn: their test ELBO and test log p^

    def plot_history(history, path, test_bound=None, test_log_likelihood=None, objective="ELBO", kept_epoch=None):
        curves.append((test_bound, test_log_likelihood, kept_epoch))
        draw(history, path, test_bound, test_log_likelihood, objective, kept_epoch)

    draw = pyro_vae.runs.plots.plot_history
    monkeypatch.setattr(pyro_vae.runs.plots, "plot_history", plot_history)
    monkeypatch.setattr(pyro_vae.commands.plot, "plot_history", plot_history)
    figures = tmp_path / "figures"
    assert run_in_process("plot", ["--checkpoint", run_dir / "checkpoint.pt", "--out", figures]) == 0
    for name in ("reconstructions.png", "samples.png", "latent.png", "manifold.png", "learning_curve.png"):
        assert Image.open(figures / name).size[0] > 100, name
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    assert curves == [(final["test_bound"], final["test_log_likelihood"]["mean"], 2)]  # as train_svi.py drew it

    # metrics.json of another run beside the checkpoint (e.g. one resumed and stopped before its end): no test numbers
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["history"] = metrics["history"][:1]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert run_in_process("plot", ["--checkpoint", run_dir / "checkpoint.pt", "--out", figures]) == 0
    (run_dir / "metrics.json").unlink()
    assert run_in_process("plot", ["--checkpoint", run_dir / "checkpoint.pt", "--out", figures]) == 0
    assert curves[1:] == [(None, None, 2)] * 2
