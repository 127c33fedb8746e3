"""pyro-vae-sample: prior samples (at a temperature), reconstructions and an interpolation, as grids and tensors."""

import torch
from PIL import Image

from pyro_vae.runs.experiment import load_run

from programs import TINY, run_in_process, run_subprocess


def test_sample_writes_its_grids_and_tensors(tiny_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", run, *TINY]) == 0
    flags = ["--checkpoint", run / "checkpoint.pt", "--data-dir", tiny_mnist, "--num", "12", "--seed", "7"]
    assert run_in_process("sample", [*flags, "--interpolate", "3,5", "--interpolate-images", "6"]) == 0
    out = run / "samples"  # beside the checkpoint, not over training's own samples.png
    assert "wrote" in capsys.readouterr().err
    for name, width in (("samples.png", 8), ("reconstructions.png", 8), ("interpolation.png", 8)):
        assert Image.open(out / name).size[0] > width * 28, name
    saved = torch.load(out / "samples.pt")
    assert saved["samples"].shape == (12, 784) and saved["z"].shape == (12, 2)
    assert saved["reconstructions"].shape == saved["test_images"].shape == (12, 784)
    assert ((saved["samples"] >= 0) & (saved["samples"] <= 1)).all()  # Bernoulli means
    # the interpolation runs from the latent mean of test image 3 to that of image 5, decoded
    vae, data, _ = load_run(run / "checkpoint.pt", data_dir=str(tiny_mnist))
    with torch.no_grad():
        ends = vae.guide_center(data.test[[3, 5]])
        assert torch.allclose(saved["interpolation_z"][[0, -1]], ends, atol=1e-6)
        assert torch.allclose(saved["interpolation"], vae.decode_mean(saved["interpolation_z"]), atol=1e-6)
        assert torch.allclose(saved["reconstructions"], vae.reconstruct(data.test[:12]), atol=1e-6)
    assert saved["interpolation_z"].shape == (6, 2)
    # a temperature scales the same prior draw (same seed): z ~ N(0, T^2 I)
    assert run_in_process("sample", [*flags, "--temperature", "0.5", "--out", tmp_path / "cold"]) == 0
    cold = torch.load(tmp_path / "cold" / "samples.pt")
    assert torch.allclose(cold["z"], 0.5 * saved["z"], atol=1e-6)


def test_sample_refuses_an_image_the_test_set_has_not(tiny_mnist, tmp_path):
    run = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", run, *TINY]) == 0
    done = run_subprocess("sample", ["--checkpoint", run / "checkpoint.pt", "--data-dir", tiny_mnist,
                                     "--interpolate", "3,32"], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "the test set has 32 images, numbered 0 to 31" in done.stderr
    done = run_subprocess("sample", ["--checkpoint", run / "checkpoint.pt", "--interpolate", "3"], cwd=tmp_path)
    assert done.returncode == 2 and "expected two test-image indices like 3,7" in done.stderr
    assert not (run / "samples").exists()


def test_a_temperature_beyond_the_decoder_is_one_line(tiny_mnist, tmp_path, capsys):
    # --temperature 1e300 was a traceback from the likelihood's argument check (NaN logits)
    run = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", run, *TINY]) == 0
    assert run_in_process("sample", ["--checkpoint", run / "checkpoint.pt", "--data-dir", tiny_mnist,
                                     "--temperature", "1e300", "--num", "4"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: at --temperature 1e+300 the decoder's images are not finite") and \
        line.endswith("lower --temperature (1 is the prior)"), line
