"""--config FILE: flags from TOML or from a run's metrics.json; the command line wins; a run's saved config repeats
it to the last digit."""

import json
import logging

import pytest

from pyro_vae.commands.config_file import flags_from
from pyro_vae.commands.parsers import parse, train_parser
from pyro_vae.errors import UsageError

from programs import TINY, run_in_process


def toml(config):
    """A metrics.json config block as TOML, as a user saves it (tables of scalars and lists of integers)."""
    def value(v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ", ".join(map(str, v)) + "]"
        return json.dumps(v)  # strings quoted; numbers as JSON writes them, which TOML reads the same

    return "".join(f"[{table}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in fields.items() if v is not None) + "\n"
                   for table, fields in config.items())  # TOML has no null: a setting left at its default


def test_flags_come_from_the_file_and_the_command_line_wins(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('dataset = "mnist5k"\nepochs = 7\nhidden = [200, 200]\njit = true\neval_samples = 50\n'
                    'z-dim = 5\ntensorboard = ""\n')
    given = parse("train", ["--config", str(path), "--epochs", "3"])
    assert (given.dataset, given.epochs, given.hidden, given.jit, given.eval_samples, given.z_dim) == \
           ("mnist5k", 3, (200, 200), True, 50, 5)
    assert given.tensorboard == ""  # the flag alone: TensorBoard in <out>/tensorboard


def test_the_config_block_of_metrics_json_maps_to_flags(tmp_path):
    config = {"model": {"z_dim": 4, "hidden": [32], "likelihood": "bernoulli"},
              "data": {"dataset": "mnist", "fallback": True, "download": False, "data_dir": "d", "seed": 3},
              "train": {"epochs": 2, "lr": 0.002, "jit": False}, "run": {"eval_samples": 0}}
    path = tmp_path / "c.toml"
    path.write_text(toml(config))
    given = parse("train", ["--config", str(path)])
    # fallback: the default run names no dataset; download false is --no-download
    assert given.dataset is None and given.no_download and given.data_dir == "d" and given.seed == 3
    assert (given.z_dim, given.hidden, given.epochs, given.lr, given.jit, given.eval_samples) == (4, (32,), 2, 0.002,
                                                                                                 False, 0)
    config["data"]["fallback"] = False
    path.write_text(toml(config))
    assert parse("train", ["--config", str(path)]).dataset == "mnist"
    # a run of --steps records the epochs they came to beside them: the file gives --steps, not both (refused)
    config["train"]["steps"] = 500
    path.write_text(toml(config))
    given = parse("train", ["--config", str(path)])
    assert (given.steps, given.epochs) == (500, 30)  # epochs at its default, set again from the steps
    config["train"]["steps"] = 0  # an --epochs run's
    path.write_text(toml(config))
    assert (parse("train", ["--config", str(path)]).steps, parse("train", ["--config", str(path)]).epochs) == (None, 2)


def test_steps_and_epochs_are_one_or_the_other(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse("train", ["--epochs", "3", "--steps", "500"])
    assert stopped.value.code == 2 and "--steps: not allowed with argument --epochs" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("epocs = 3\n", "'epocs' is not a setting of"),
    ("epochs = 0\n", "'epochs' = 0: must be a positive integer"),
    ('likelihood = "poisson"\n', "choose one of bernoulli, continuous-bernoulli, gaussian"),
    ("jit = 1\n", "'jit' is a switch: write jit = true or false"),
    ("epochs = true\n", "'epochs' takes a value, not true"),
    ("epochs = 3\nepochs = 4\n", "is not TOML"),
    ('config = "other.toml"\n', "'config' is not a setting"),
    ("[model]\nz_dimm = 3\n", "'z_dimm' is not a setting"),
    ('[data]\ndownload = "no"\n', "\\[data\\] download = 'no': write download = true or false"),  # was: downloads on
    ("z_dim = 3\n[model]\nz_dim = 4\n", "'z_dim' is set twice"),  # was: the table's value, silently
    ("seed = 3\n[data]\nseed = 4\n", "'seed' is set twice"),
    ("epochs = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to read"),  # was a RecursionError
])
def test_a_bad_file_is_one_line_naming_it_and_the_setting(tmp_path, text, message, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        flags_from(path, train_parser())
    assert run_in_process("train_svi", ["--config", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err, err


def test_a_byte_order_mark_an_upper_case_suffix_and_a_value_with_a_dash_are_read(tmp_path):
    """Each was refused: a UTF-8 byte-order mark "is not TOML", metrics.JSON was read as TOML, and a value
    starting with "-" was taken for a flag ("--out: expected one argument")."""
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbfepochs = 3\n")
    assert parse("train", ["--config", str(tmp_path / "bom.toml")]).epochs == 3
    (tmp_path / "metrics.JSON").write_text(json.dumps({"config": {"train": {"epochs": 4}}}))
    assert parse("train", ["--config", str(tmp_path / "metrics.JSON")]).epochs == 4
    (tmp_path / "dash.toml").write_text('out = "-runs"\nlr = -1e-3\n')
    with pytest.raises(UsageError, match="'lr' = -0.001: must be a positive"):  # refused for its value, not as a flag
        parse("train", ["--config", str(tmp_path / "dash.toml")])
    (tmp_path / "dash.toml").write_text('out = "-runs"\n')
    assert parse("train", ["--config", str(tmp_path / "dash.toml")]).out == "-runs"


def test_a_missing_or_unreadable_config_is_one_line(tmp_path, capsys):
    assert run_in_process("evaluate", ["--config", tmp_path / "none.toml", "--checkpoint", "c.pt"]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text("{}")
    assert run_in_process("train_svi", ["--config", tmp_path / "metrics.json"]) == 2
    assert "is not a run's metrics.json" in capsys.readouterr().err


def test_every_command_reads_a_config(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('checkpoint = "runs/x/checkpoint.pt"\nseed = 5\nthreads = 2\n')
    for name in ("evaluate", "bdmc", "gaps", "plot", "sample"):
        given = parse(name, ["--config", str(path)])
        assert (given.checkpoint, given.seed, given.threads) == ("runs/x/checkpoint.pt", 5, 2), name


def without_timings(metrics):
    metrics = {k: v for k, v in metrics.items() if k not in ("wall_seconds", "startup_seconds")}
    metrics["history"] = [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["history"]]
    return metrics


def test_a_runs_saved_config_repeats_it_to_the_last_digit(tiny_mnist, tmp_path):
    flags = [*TINY, "--hidden", "12,8", "--elbo", "meanfield", "--num-particles", "2", "--lr", "0.003", "--seed", "4",
             "--no-download", "--data-dir", tiny_mnist]
    assert run_in_process("train_svi", [*flags, "--out", tmp_path / "a"]) == 0
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    # the metrics.json itself, and its config block saved as TOML
    assert run_in_process("train_svi", ["--config", tmp_path / "a" / "metrics.json", "--out", tmp_path / "b",
                                        "--no-progress"]) == 0
    (tmp_path / "a.toml").write_text(toml(first["config"]))
    assert run_in_process("train_svi", ["--config", tmp_path / "a.toml", "--out", tmp_path / "c", "--no-progress"]) == 0
    for again in ("b", "c"):
        repeated = json.loads((tmp_path / again / "metrics.json").read_text())
        assert without_timings(repeated) == without_timings(first), again


def test_a_runs_metrics_json_gives_the_other_commands_its_checkpoint_and_shared_settings(tiny_mnist, tmp_path,
                                                                                       caplog):
    """Every command's --help offers "a run's metrics.json"; evaluate and plot refused it ('z_dim' is not a
    setting of pyro-vae-evaluate). They take what they share with the run and leave training's to the checkpoint."""
    run = tmp_path / "run"
    assert run_in_process("train_svi", [*TINY, "--data-dir", tiny_mnist, "--out", run, "--device", "cpu"]) == 0
    metrics = run / "metrics.json"
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        given = parse("evaluate", ["--config", str(metrics), "--images", "5"])
    assert (given.checkpoint, given.eval_samples, given.device, given.data_dir, given.images) == (
        str(run / "checkpoint.pt"), 20, "cpu", str(tiny_mnist), 5)
    assert given.seed == 0  # the run's seed seeded its training, not this command's samplers
    said = [r.getMessage() for r in caplog.records if "a run's settings" in r.getMessage()]
    assert len(said) == 1 and "z_dim" in said[0] and "eval_samples = 20" in said[0], said
    for name in ("plot", "sample", "bdmc", "gaps"):
        assert parse(name, ["--config", str(metrics)]).checkpoint == str(run / "checkpoint.pt"), name
    assert run_in_process("evaluate", ["--config", metrics, "--images", "4", "--eval-samples", "5",
                                       "--out", tmp_path / "eval"]) == 0
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text())["images"]["count"] == 4
    assert run_in_process("plot", ["--config", metrics, "--out", tmp_path / "plots"]) == 0
    # a run that skipped its final estimate (eval_samples = 0) leaves evaluate its own default K
    (tmp_path / "skipped.toml").write_text('[run]\neval_samples = 0\n[model]\nz_dim = 2\n')
    assert parse("evaluate", ["--config", str(tmp_path / "skipped.toml"), "--checkpoint", "c.pt"]).eval_samples == \
        parse("evaluate", ["--checkpoint", "c.pt"]).eval_samples
    # a table's key that is no setting of any run is still a misspelling, for every command
    (tmp_path / "typo.toml").write_text('checkpoint = "c.pt"\n[model]\nz_dimm = 3\n')
    with pytest.raises(UsageError, match="'z_dimm' is not a setting of a run"):
        parse("evaluate", ["--config", str(tmp_path / "typo.toml")])
