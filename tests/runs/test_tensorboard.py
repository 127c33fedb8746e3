"""--tensorboard: event files that TensorBoard's own reader loads, continued across --resume."""

import csv
import json
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from programs import TINY, run_in_process


def events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.parametrize("guide", [[], ["--guide", "iaf"]], ids=["gaussian", "iaf"])
def test_a_run_writes_scalars_images_and_its_config(tiny_mnist, tmp_path, guide):
    out = tmp_path / "run"
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", out, *TINY, "--tensorboard",
                                        "--eval-samples", "25", *guide]) == 0  # k^ needs K >= 21
    board = events(out / "tensorboard")
    scalars = set(board.Tags()["scalars"])
    assert {"ELBO/train", "ELBO/valid", "ELBO/test", "lr", "seconds_per_epoch", "test/log_likelihood",
            "test/khat_above_0.7"} <= scalars
    assert set(board.Tags()["images"]) == {"reconstructions", "samples"}
    assert "config/text_summary" in board.Tags()["tensors"]
    history = list(csv.DictReader(open(out / "history.csv")))
    valid = board.Scalars("ELBO/valid")
    assert [e.step for e in valid] == [1, 2]
    assert [e.value for e in valid] == pytest.approx([float(r["valid_bound"]) for r in history])
    final = json.loads((out / "metrics.json").read_text())["final"]
    test = board.Scalars("ELBO/test")  # the test set is scored once, at the end
    assert [e.step for e in test] == [2] and test[0].value == pytest.approx(final["test_bound"])


@pytest.mark.parametrize("eval_samples", ["1", "20"])
def test_a_test_estimate_too_small_for_khat_logs_the_rest(tiny_mnist, tmp_path, eval_samples):
    out = tmp_path / "run"
    argv = ["--data-dir", tiny_mnist, "--out", out, *TINY, "--tensorboard", "--eval-samples", eval_samples]
    assert run_in_process("train_svi", argv) == 0
    scalars = set(events(out / "tensorboard").Tags()["scalars"])
    assert "test/log_likelihood" in scalars and "test/khat_above_0.7" not in scalars
    assert json.loads((out / "metrics.json").read_text())["final"]["khat_above_0.7"] is None


def test_logging_does_not_change_the_run(tiny_mnist, tmp_path):
    # the logged prior samples come from a generator of their own, not from training's random numbers
    for name, flags in (("plain", []), ("logged", ["--tensorboard", tmp_path / "tb"])):
        assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / name, *TINY, *flags]) == 0
    rows = [[row[:-1] for row in csv.reader(open(tmp_path / name / "history.csv"))] for name in ("plain", "logged")]
    assert rows[0] == rows[1]  # every column but the wall time


def test_a_resumed_run_continues_the_curves_without_duplicate_steps(tiny_mnist, tmp_path):
    out, board_dir = tmp_path / "run", tmp_path / "run" / "tensorboard"
    argv = ["--data-dir", tiny_mnist, "--out", out, *TINY, "--tensorboard"]
    assert run_in_process("train_svi", argv) == 0
    # a run killed after logging epoch 3 but before its checkpoint: its step-3 events must go
    with SummaryWriter(str(board_dir)) as killed:
        killed.add_scalar("ELBO/valid", 12345.0, 3)
    assert run_in_process("train_svi", [*argv, "--epochs", "3", "--resume"]) == 0
    steps = [(e.step, e.value) for e in events(board_dir).Scalars("ELBO/valid")]
    assert [step for step, _ in steps] == [1, 2, 3] and 12345.0 not in [value for _, value in steps]


def test_without_the_package_it_is_one_line(tiny_mnist, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--tensorboard"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: --tensorboard needs the tensorboard package: pip install"), lines


def test_a_tensorboard_folder_of_another_run_or_unusable_is_one_line_before_training(tiny_mnist, tmp_path, capsys):
    """Two runs with different --out and one --tensorboard DIR mixed their curves; a file or an unwritable path
    as DIR was a traceback after start-up."""
    board = tmp_path / "board"
    first = ["--data-dir", tiny_mnist, "--out", tmp_path / "a", *TINY, "--tensorboard", board]
    assert run_in_process("train_svi", first) == 0
    capsys.readouterr()
    (tmp_path / "file").write_text("")
    for tensorboard, message in ((board, f"--tensorboard {board} holds the TensorBoard events of the run in "
                                         f"{(tmp_path / 'a').resolve()}: two runs in one folder mix their curves"),
                                 (tmp_path / "file", "is not a writable directory"),
                                 # it named --out, which was fine
                                 ("/proc/board", "--tensorboard /proc/board is not a writable directory (No such "
                                                 "file or directory): choose another --tensorboard")):
        argv = ["--data-dir", tiny_mnist, "--out", tmp_path / "b", *TINY, "--tensorboard", tensorboard]
        assert run_in_process("train_svi", argv) == 2
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1] and "epoch 1/" not in err, err
    # the run that owns the folder goes on there; the same out started afresh (--overwrite) is refused
    assert run_in_process("train_svi", [*first, "--epochs", "3", "--resume"]) == 0
    assert run_in_process("train_svi", [*first, "--overwrite"]) == 2
    assert "holds TensorBoard events of an earlier run in" in capsys.readouterr().err


def test_the_last_epoch_has_its_images_and_the_closing_line_names_the_folder(tiny_mnist, tmp_path, capsys):
    """A 3-epoch run logged images at epochs 1 and 5, 10, ...: none of its last epoch."""
    argv = ["--data-dir", tiny_mnist, "--out", tmp_path, *TINY, "--epochs", "3", "--tensorboard"]
    assert run_in_process("train_svi", argv) == 0
    board = events(tmp_path / "tensorboard")
    assert [e.step for e in board.Images("samples")] == [1, 3]
    assert [e.step for e in board.Images("reconstructions")] == [1, 3]
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"wrote {tmp_path}:") and last.endswith(" tensorboard/"), last
