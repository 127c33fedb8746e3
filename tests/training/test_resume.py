"""Checkpoints, --resume, Ctrl-C, the NaN guard and determinism, through train_svi.py."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import pyro_vae.training.loop as train_module
from pyro_vae.data.pixels import PreparedData
from pyro_vae.training import checkpoint

from programs import ROOT, TINY, run_in_process


def trained(out):
    """Everything a run leaves that must match between two runs: weights, Adam state, metrics."""
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return state, metrics["final"], (out / "history.csv").read_text().splitlines()


def assert_same_run(a, b):
    (state_a, final_a, history_a), (state_b, final_b, history_b) = a, b
    parts = [part for part in ("encoder", "decoder", "flow", "top_encoder", "top_decoder") if part in state_a]
    assert parts == [part for part in ("encoder", "decoder", "flow", "top_encoder", "top_decoder") if part in state_b]
    for part in parts:
        for name, tensor in state_a[part].items():
            assert torch.equal(tensor, state_b[part][name]), (part, name)  # bit for bit
    for group_a, group_b in zip(state_a["optimizer"]["state"].values(), state_b["optimizer"]["state"].values()):
        assert all(torch.equal(group_a[k], group_b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert final_a == final_b  # test ELBO and log p^(x): same floats
    # per-epoch numbers equal; the last column is wall time
    assert [row.rsplit(",", 1)[0] for row in history_a] == [row.rsplit(",", 1)[0] for row in history_b]


def interrupt_in_epoch(monkeypatch, epoch):
    """Ctrl-C (a KeyboardInterrupt, as SIGINT raises) in the middle of ``epoch``."""
    real = train_module.train_epoch

    def train_epoch(*args, **kwargs):
        if kwargs.get("epoch", args[4] if len(args) > 4 else None) == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_epoch", train_epoch)


def test_same_seed_same_numbers(tiny_mnist, tmp_path):
    # dynamic binarization, the default here, draws from the same RNG as z: both are covered
    for name in ("a", "b"):
        assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / name, *TINY]) == 0
    assert_same_run(trained(tmp_path / "a"), trained(tmp_path / "b"))
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / "c", *TINY, "--seed", "1"]) == 0
    assert trained(tmp_path / "c")[1] != trained(tmp_path / "a")[1]


@pytest.mark.parametrize("guide", [[], ["--guide", "iaf"], ["--latents", "4,2"]], ids=["gaussian", "iaf", "two-layers"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tiny_mnist, tmp_path, monkeypatch, capsys, guide):
    at = TINY.index("--z-dim")
    tiny = TINY if "--latents" not in guide else TINY[:at] + TINY[at + 2:]  # --z-dim or --latents, not both
    argv = ["--data-dir", tiny_mnist, *tiny, "--epochs", "4", *guide]
    assert run_in_process("train_svi", [*argv, "--out", tmp_path / "whole"]) == 0

    interrupt_in_epoch(monkeypatch, 3)
    assert run_in_process("train_svi", [*argv, "--out", tmp_path / "parts"]) == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "epoch 2 is saved in" in message and "--resume" in message, message
    assert torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)["train_state"]["epoch"] == 2
    monkeypatch.undo()

    assert run_in_process("train_svi", [*argv, "--out", tmp_path / "parts", "--resume"]) == 0
    assert_same_run(trained(tmp_path / "whole"), trained(tmp_path / "parts"))


def test_resume_with_more_epochs_and_sparse_checkpoints(tiny_mnist, tmp_path, monkeypatch):
    argv = ["--data-dir", tiny_mnist, *TINY, "--checkpoint-every", "3"]
    interrupt_in_epoch(monkeypatch, 2)  # epoch 1 is done but not yet saved: Ctrl-C saves it
    assert run_in_process("train_svi", [*argv, "--epochs", "5", "--out", tmp_path]) == 130
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["train_state"]["epoch"] == 1
    monkeypatch.undo()
    assert run_in_process("train_svi", [*argv, "--epochs", "5", "--out", tmp_path, "--resume"]) == 0
    resumed = [*argv, "--epochs", "7", "--out", tmp_path, "--resume", tmp_path / "checkpoint.pt"]
    assert run_in_process("train_svi", resumed) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["train_state"]
    assert [r["epoch"] for r in state["history"]] == list(range(1, 8))


def signalled(command, cwd, at, signum):
    """Run ``command``, send it ``signum`` once its stderr shows a line starting with ``at``: (exit status, the
    stderr after that line). SIG_DFL for SIGINT in the child: a shell that starts jobs in the background (as CI
    may) leaves SIGINT ignored, and Python then never turns it into KeyboardInterrupt."""
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:
        if line.startswith(at):
            process.send_signal(signum)
            break
    rest = process.stderr.read()
    return process.wait(timeout=120), rest


def test_sigint_saves_and_says_how_to_resume(tiny_mnist, tmp_path):
    """A real SIGINT to a real process, then --resume: the same run as one never interrupted."""
    argv = ["--data-dir", str(tiny_mnist), *TINY, "--epochs", "40"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / "train_svi.py"), *argv]
    status, rest = signalled([*command, "--out", str(tmp_path / "parts")], tmp_path, "epoch 2/40", signal.SIGINT)
    assert status == 130, rest
    saved = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)["train_state"]["epoch"]
    # epoch 2 may or may not have reached the checkpoint when the signal came; the message says which
    assert 1 <= saved < 40 and f"epoch {saved} is saved in" in rest and "--resume" in rest, rest
    assert "Traceback" not in rest, rest
    subprocess.run([*command, "--out", str(tmp_path / "parts"), "--resume"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run([*command, "--out", str(tmp_path / "whole")], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=300)
    assert_same_run(trained(tmp_path / "whole"), trained(tmp_path / "parts"))


def test_sigterm_saves_the_last_completed_epoch_and_exits_143(tiny_mnist, tmp_path):
    """SIGTERM (what SLURM, Kubernetes and `timeout` send) is the first Ctrl-C: the last completed epoch is
    saved even between --checkpoint-every saves (before, the process died with -15 and no checkpoint at
    all), one line says so, and the exit status is 143."""
    command = [sys.executable, str(ROOT / "scripts" / "train_svi.py"), "--data-dir", str(tiny_mnist), *TINY,
               "--epochs", "40", "--checkpoint-every", "30", "--out", str(tmp_path / "run")]
    status, rest = signalled(command, tmp_path, "epoch 3/40", signal.SIGTERM)
    assert status == 143, rest
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["train_state"]["epoch"]
    lines = rest.strip().splitlines()
    # epoch 3 may or may not have reached the snapshot when the signal came; the message says which
    assert 2 <= saved < 30 and lines[-1].startswith("terminated (SIGTERM), ") and f"epoch {saved} is saved in" in \
        lines[-1] and "--resume" in lines[-1], rest
    assert "Traceback" not in rest, rest


def test_nan_stops_naming_epoch_step_and_the_good_checkpoint(tiny_mnist, tmp_path, monkeypatch, capsys):
    """The run trains with Pyro's validation off (run_training): the loss goes NaN and the
    device-side check (every few steps) names the first bad step (with validation on, see test_train)."""
    calls = {"n": 0}
    real = PreparedData.minibatch

    def minibatch(self, index):  # 54 training images in batches of 16: 4 steps an epoch
        calls["n"] += 1
        x = real(self, index)
        return torch.full_like(x, float("nan")) if calls["n"] == 6 else x  # epoch 2, step 2

    monkeypatch.setattr(PreparedData, "minibatch", minibatch)
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--epochs", "3"]) == 3
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: training diverged: non-finite") and "at epoch 2, step 2 of 4" in line, line
    assert "last good checkpoint" in line and "holds epoch 1" in line and "--lr" in line and "--resume" in line
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["train_state"]["epoch"] == 1  # epoch 1's checkpoint, not overwritten
    assert all(torch.isfinite(t).all() for t in state["decoder"].values())
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--z-dim", "3"], "was trained with z_dim=2 but this model has z_dim=3"),
        (["--likelihood", "gaussian", "--dequantize"], "likelihood='bernoulli'"),
        (["--hidden", "16,16"], "hidden=(16,)"),
        (["--binarize", "threshold"], "binarize='dynamic' but this run asks for binarize='threshold'"),
    ],
)
def test_resume_with_another_model_or_data_is_one_line(tiny_mnist, tmp_path, capsys, flags, message):
    argv = ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY]
    assert run_in_process("train_svi", argv) == 0
    capsys.readouterr()
    assert run_in_process("train_svi", [*argv, *flags, "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume") and message in lines[0], lines


def test_checkpoint_restore_into_another_architecture_is_a_clear_error(tiny_mnist, tmp_path):
    from pyro_vae.config import ModelConfig
    from pyro_vae.errors import UsageError
    from pyro_vae.models.vae import VAE

    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY]) == 0
    state = checkpoint.read(tmp_path / "checkpoint.pt")
    with pytest.raises(UsageError, match=r"z_dim=2.*z_dim=20"):
        checkpoint.restore(VAE(784, ModelConfig()), state)
    with pytest.raises(UsageError, match="x_dim=784.*x_dim=100"):
        checkpoint.restore(VAE(100, ModelConfig(z_dim=2, hidden=(16,))), state)


def test_resume_without_a_checkpoint_is_one_line(tmp_path, capsys):
    assert run_in_process("train_svi", ["--out", tmp_path, "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0]


def interrupt_inside_torch_save(monkeypatch, on_save, at_writes):
    """Ctrl-C (a real SIGINT to this process) inside torch's zip writer, at the given write calls of
    the ``on_save``-th checkpoint: where a KeyboardInterrupt becomes torch's RuntimeError."""
    real = torch.save
    saves = {"n": 0}

    class Interrupting:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, data):
            self.writes += 1
            if self.writes in at_writes:
                os.kill(os.getpid(), signal.SIGINT)
            return self.f.write(data)

        def flush(self):
            return self.f.flush()

    def save(obj, f, *args, **kwargs):
        saves["n"] += 1
        return real(obj, Interrupting(f) if saves["n"] == on_save else f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)


@pytest.mark.parametrize("at_writes", [{2}, {2, 5}], ids=["once", "twice"])
def test_ctrl_c_while_a_checkpoint_is_written_keeps_that_epoch(tiny_mnist, tmp_path, monkeypatch, capsys, at_writes):
    """Once, or a second time during the same write: exit 130, one line, the epoch being written is kept."""
    interrupt_inside_torch_save(monkeypatch, on_save=2, at_writes=at_writes)  # epoch 2's checkpoint
    argv = ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--epochs", "4"]
    assert run_in_process("train_svi", argv) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("interrupted: epoch 2 is saved in") and "Traceback" not in err, err
    assert checkpoint.read(tmp_path / "checkpoint.pt")["train_state"]["epoch"] == 2  # whole, checksum and all
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    assert run_in_process("train_svi", [*argv, "--resume"]) == 0


def test_a_full_disk_while_saving_keeps_the_last_checkpoint_and_says_so(tiny_mnist, tmp_path, monkeypatch, capsys):
    import errno

    from pyro_vae import files

    real, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2's checkpoint
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--epochs", "3"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("error: cannot write") and "No space left on device" in line, line
    assert f"{tmp_path / 'checkpoint.pt'} still holds epoch 1" in line and "--resume" in line, line
    assert checkpoint.read(tmp_path / "checkpoint.pt")["train_state"]["epoch"] == 1


def flip_a_weight_byte(path):
    """Flip one bit inside the bytes of a decoder weight, where torch.load does not look."""
    weight = torch.load(path, weights_only=True)["decoder"]["net.0.weight"]
    data = bytearray(path.read_bytes())
    at = bytes(data).find(weight.numpy().tobytes()[:64])
    assert at > 0
    data[at + 9] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_corrupt_checkpoint_is_named_as_corrupt(tiny_mnist, tmp_path, capsys):
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY]) == 0
    flip_a_weight_byte(tmp_path / "checkpoint.pt")
    capsys.readouterr()
    for name, argv in (("evaluate", ["--checkpoint", tmp_path / "checkpoint.pt", "--eval-samples", "5"]),
                       ("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--resume"])):
        assert run_in_process(name, argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: corrupt checkpoint:"), lines


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda state: state.pop("model_config"), "lacks model_config"),
        (lambda state: state["model_config"].update(dropout=0.5), r"settings this pyro_vae does not know \(dropout\)"),
        (lambda state: state.pop("optimizer"), "holds no optimizer state"),
        (lambda state: state["train_state"].update(momentum=1), r"train_state holds settings .* \(momentum\)"),
    ],
)
def test_a_hand_edited_checkpoint_is_one_line(tiny_mnist, tmp_path, capsys, edit, message):
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / "run", *TINY]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    edit(state)
    state["checksum"] = checkpoint.checksum(state)  # as a hand edit that knew the checksum, or other code, leaves it
    torch.save(state, tmp_path / "edited.pt")
    capsys.readouterr()
    needs_training = "optimizer" in message or "train_state" in message
    name, argv = (("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / "more", *TINY, "--epochs", "3",
                                 "--resume", tmp_path / "edited.pt"]) if needs_training
                  else ("evaluate", ["--checkpoint", tmp_path / "edited.pt", "--eval-samples", "5"]))
    assert run_in_process(name, argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert re.search(message, lines[0]), lines


def test_resume_with_fewer_epochs_than_the_checkpoint_holds_is_one_line(tiny_mnist, tmp_path, capsys):
    argv = ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY]  # 2 epochs
    assert run_in_process("train_svi", argv) == 0
    capsys.readouterr()
    assert run_in_process("train_svi", [*argv, "--epochs", "1", "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: --resume {tmp_path / 'checkpoint.pt'}: it holds 2 epochs, more than --epochs 1: pass "
                     "--epochs 2 or more"], lines


@pytest.mark.parametrize("command, flags, result", [
    ("evaluate", ["--eval-samples", "5"], "evaluation.json"),
    ("gaps", ["--images", "2", "--ais-steps", "2", "--ais-chains", "2", "--local-steps", "2", "--elbo-samples", "4"],
     "gaps.json"),  # it exited 0 with an all-NaN gaps.json (issue 38)
    ("plot", [], "samples.png"), ("sample", ["--num", "4"], "samples.png"),  # these were tracebacks
    ("bdmc", ["--images", "2", "--ais-steps", "2", "--ais-chains", "2"], "bdmc.json"),
])
def test_evaluating_non_finite_weights_is_one_line_not_nan_results(tiny_mnist, tmp_path, capsys, command, flags,
                                                                    result):
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY]) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["decoder"]["net.0.bias"][0] = float("nan")
    state["checksum"] = checkpoint.checksum(state)  # as a checkpoint written by other code: its checksum holds
    torch.save(state, tmp_path / "nan.pt")
    capsys.readouterr()
    assert run_in_process(command, ["--checkpoint", tmp_path / "nan.pt", *flags, "--out", tmp_path / "eval"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"error: {tmp_path / 'nan.pt'}: its network weights hold NaN or infinite values (a diverged or " \
        "damaged run): use another checkpoint, or train again", line
    assert not (tmp_path / "eval" / result).exists()
