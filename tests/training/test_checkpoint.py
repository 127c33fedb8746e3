import pytest
import torch

from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.errors import UsageError
from pyro_vae.models.vae import VAE
from pyro_vae.training import checkpoint


def test_round_trip_restores_weights_and_configs(tmp_path):
    config = ModelConfig(z_dim=3, hidden=(8, 6), likelihood="gaussian", scale_floor=0.05)
    vae = VAE(x_dim=12, config=config)
    optimizer = torch.optim.Adam(vae.parameters())
    data = DataConfig(dataset="mnist5k", binarize="none", seed=3)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, vae, optimizer, data, TrainConfig(), epoch=4)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # the temporary file was renamed
    state = checkpoint.read(path)
    model_config, data_config = checkpoint.configs(state)
    assert model_config == config and data_config == data and state["epoch"] == 4
    assert set(state["versions"]) == {"pyro_vae", "torch", "torchvision", "pyro"}
    restored = VAE(x_dim=12, config=model_config)
    checkpoint.restore(restored, state)
    for (name, a), (_, b) in zip(vae.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("guide", ["gaussian", "iaf"])
def test_a_flow_guide_round_trips_and_a_checkpoint_from_before_flows_still_loads(tmp_path, guide):
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(8,), guide=guide))
    path = tmp_path / "checkpoint.pt"
    optimizer = torch.optim.Adam(vae.parameters())
    checkpoint.save(path, vae, optimizer, DataConfig(dataset="mnist5k"), TrainConfig(), epoch=1)
    state = checkpoint.read(path)
    assert ("flow" in state) == (guide == "iaf")
    if guide == "gaussian":  # 0.1.0's checkpoints have no guide settings: they were Gaussian, and load as such
        for key in ("guide", "flow_layers"):
            del state["model_config"][key]
    restored = VAE(x_dim=12, config=checkpoint.configs(state)[0])
    checkpoint.restore(restored, state)
    for (name, a), (_, b) in zip(vae.state_dict().items(), restored.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_missing_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        checkpoint.read(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(UsageError, match="is not a pyro_vae checkpoint"):
        checkpoint.read(tmp_path / "notes.txt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="is not a pyro_vae checkpoint"):
        checkpoint.read(tmp_path / "other.pt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UsageError, match="is a folder: pass the checkpoint.pt inside it"):
        checkpoint.read(tmp_path / "folder")


def saved_checkpoint(path):
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(8,)))
    checkpoint.save(path, vae, torch.optim.Adam(vae.parameters()), DataConfig(dataset="mnist5k"),
                    TrainConfig(epochs=2, lr_schedule="constant"), epoch=2)
    return path


@pytest.mark.parametrize("edit", [
    lambda state: state["train_config"].update(epochs=10),
    lambda state: state["train_config"].update(lr_schedule="constanT"),
    lambda state: state["train_config"].update(lr=1.0000001e-3),
    lambda state: state.update(epoch="2"),
    lambda state: state["versions"].update(torch="2.14.2"),
], ids=["an int", "a string", "a float", "a type", "a version"])
def test_the_checksum_covers_every_setting_not_only_the_tensors(tmp_path, edit):
    """Changes that the tensor-only checksum of 0.1.0-0.2.0 let through (an adversarial pass found 131 of 300
    single-bit flips loading with changed contents): edited without a new checksum, each is corrupt."""
    path = saved_checkpoint(tmp_path / "checkpoint.pt")
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    with pytest.raises(UsageError, match="^corrupt checkpoint: the content of .* does not match the checksum"):
        checkpoint.read(path)


def as_written_before_the_whole_checksum(state, version="0.2.0"):
    """``state`` as pyro_vae 0.1.0-0.2.0 wrote it before the whole-content checksum: without the settings that
    came later."""
    for part, names in checkpoint.SINCE_WHOLE.items():
        for name in names:
            (state if part == "" else state[part]).pop(name)
    state["versions"]["pyro_vae"] = version
    return state


def test_a_checkpoint_with_the_tensor_only_checksum_of_earlier_versions_still_loads(tmp_path):
    path = saved_checkpoint(tmp_path / "checkpoint.pt")
    state = as_written_before_the_whole_checksum(torch.load(path, weights_only=True))
    state["checksum"] = checkpoint.checksum(state, whole=False)  # as 0.2.0 wrote it
    torch.save(state, path)
    assert checkpoint.read(path)["epoch"] == 2
    state["decoder"]["net.0.bias"][0] += 1  # and a flipped weight there is still caught
    torch.save(state, path)
    with pytest.raises(UsageError, match="^corrupt checkpoint"):
        checkpoint.read(path)


@pytest.mark.parametrize("older, version, message", [
    (False, "0.2.0", "has no checksum, as the checkpoints of pyro_vae 0.1.0 had, but holds image_shape"),
    (True, "0.2.0", "has no checksum, which pyro_vae 0.2.0 never wrote"),
    (False, None, "has a checksum of its tensors alone, .* but holds image_shape"),
    (True, "0.3.0", "has a checksum of its tensors alone, which pyro_vae 0.3.0 never wrote"),
])
def test_a_checkpoint_whose_checksum_was_removed_or_replaced_by_an_older_kind_is_refused(tmp_path, older, version,
                                                                                            message):
    """Deleting the checksum, or writing the old tensor-only one, let edited settings load. A checkpoint without
    the whole-content checksum loads only as one the versions that wrote it could have written."""
    path = saved_checkpoint(tmp_path / "checkpoint.pt")
    state = torch.load(path, weights_only=True)
    state["train_config"]["epochs"] = 10  # the edit
    if older:
        state = as_written_before_the_whole_checksum(state, version)
    if "no checksum" in message:
        del state["checksum"]
    else:
        state["checksum"] = checkpoint.checksum(state, whole=False)
    torch.save(state, path)
    with pytest.raises(UsageError, match="^corrupt checkpoint: .*" + message + ".*removed or replaced"):
        checkpoint.read(path)


def test_a_checkpoint_of_0_1_0_without_a_checksum_loads_and_its_content_is_still_checked(tmp_path):
    path = saved_checkpoint(tmp_path / "checkpoint.pt")
    state = as_written_before_the_whole_checksum(torch.load(path, weights_only=True), "0.1.0")
    del state["checksum"]
    torch.save(state, path)
    assert checkpoint.read(path)["epoch"] == 2
    state["model_config"]["z_dim"] = 4  # weights of z_dim 3
    torch.save(state, path)
    with pytest.raises(UsageError, match="is not a valid pyro_vae checkpoint: the encoder: .* needs"):
        checkpoint.read(path)


@pytest.mark.parametrize("shape", [[1, 1, 3, 4], [3, 4], 12, [1, 3, 4.0], [True, 3, 4], "134"])
def test_an_image_shape_that_is_not_three_positive_integers_is_refused(tmp_path, shape):
    path = saved_checkpoint(tmp_path / "checkpoint.pt")
    state = torch.load(path, weights_only=True)
    state["image_shape"] = shape  # a 4-D shape loaded; [3, 4] and 12 were tracebacks
    state["checksum"] = checkpoint.checksum(state)
    torch.save(state, path)
    with pytest.raises(UsageError, match=r"not a valid pyro_vae checkpoint: `image_shape` must be \(channels, "
                                         r"height, width\), three positive integers"):
        checkpoint.read(path)


class Payload:
    """What a hostile checkpoint carries: unpickling it would run code (here: make a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_holds_code_is_refused_as_such_and_the_code_never_runs(tmp_path):
    """It was called "damaged on disk or in transfer"; it is not a checkpoint at all, and says so."""
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "ran"
    state = torch.load(saved_checkpoint(path), weights_only=True)
    state["versions"] = Payload(marker)
    torch.save(state, path)
    with pytest.raises(UsageError, match=r"is not a pyro_vae checkpoint, refused: it holds code or objects "
                                         r"\(.*open\)"):
        checkpoint.read(path)
    assert not marker.exists()


def test_no_bit_flip_or_truncation_loads_changed_content_or_passes_for_a_foreign_file(tmp_path):
    """300 random single-bit flips anywhere in a checkpoint, and truncations: each loads the very content it
    was saved with (a flip in zip metadata torch does not check, e.g. a timestamp) or is `corrupt checkpoint`:
    never a changed checkpoint, never "not a pyro_vae checkpoint" for a file that starts like one."""
    path = saved_checkpoint(tmp_path / "checkpoint.pt")
    original = path.read_bytes()
    content = checkpoint.checksum(torch.load(path, weights_only=True))
    rng = torch.Generator().manual_seed(0)
    damaged = [bytearray(original) for _ in range(300)]
    for data in damaged:
        bit = int(torch.randint(8 * len(original), (1,), generator=rng))
        data[bit // 8] ^= 1 << (bit % 8)
    damaged += [bytearray(original[:n]) for n in (len(original) // 2, len(original) - 10, 100)]
    outcomes = {"same": 0, "corrupt": 0}
    for data in damaged:
        path.write_bytes(bytes(data))
        try:
            state = checkpoint.read(path)
        except UsageError as error:
            assert str(error).startswith("corrupt checkpoint"), (error, data[:4])
            outcomes["corrupt"] += 1
        else:
            assert checkpoint.checksum(state) == content
            outcomes["same"] += 1
    assert outcomes["corrupt"] > 150, outcomes  # most flips land in the content


def edited(path, edit):
    """The checkpoint at ``path`` with a training state (as training writes it), edited, its checksum made anew:
    what a hand edit that knew the checksum would leave, or a bug in other code that writes checkpoints."""
    from dataclasses import asdict

    from pyro_vae.training.state import EpochRecord, TrainState, rng_state

    state = torch.load(path, weights_only=True)
    history = [EpochRecord(epoch=e, lr=1e-3, train_bound=-100.0 + e, valid_bound=-101.0 + e, seconds=0.1)
               for e in (1, 2)]
    state["train_state"] = asdict(TrainState(epoch=2, history=history, rng=rng_state()))
    edit(state)
    state["checksum"] = checkpoint.checksum(state)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda s: None, None),
    (lambda s: s["decoder"].pop("net.0.weight"), "the decoder: net.0.weight missing"),
    (lambda s: s["decoder"].update({"net.0.weight": torch.zeros(3, 3)}),
     r"the decoder: net.0.weight is \(3, 3\), and the model its settings describe .* needs \(8, 3\)"),
    (lambda s: s["model_config"].update(z_dim=4), r"the encoder: net.2.weight is \(6, 8\), .* needs \(8, 8\)"),
    (lambda s: s["train_state"].update(best_params={"x": torch.zeros(1)}), "the best epoch's parameters: .* missing"),
    (lambda s: s["train_state"].update(rng={"torch": torch.zeros(3, dtype=torch.uint8)}), "its random states are not"),
    (lambda s: s.update(epoch="2"), "its epoch is '2', not a count of epochs"),
    (lambda s: s["train_state"].update(epoch=-1), "its train_state has no valid epoch"),
    (lambda s: s["train_state"]["history"][0].pop("valid_bound"), "a record of its history lacks a field"),
    (lambda s: s["train_state"]["history"][1].update(valid_bound="x"), "a record of its history holds a value that"),
    (lambda s: s.update(x_dim=0), "x_dim is 0, not a positive integer"),
    # each of these ran out of memory building the model they describe
    (lambda s: s["model_config"].update(hidden=[10**9]),  # 35 H + 18 parameters
     r"its settings \(x_dim=12, z_dim=3, hidden=1000000000\) describe a VAE of 35,000,000,018 parameters, and it "
     r"holds 298"),
    (lambda s: s["model_config"].update(z_dim=10**9), "its settings .*z_dim=1000000000.* describe a VAE of"),
    (lambda s: s.update(x_dim=10**9, image_shape=None), "its settings .*x_dim=1000000000.* describe a VAE of"),
], ids=["as saved", "missing weight", "mis-shaped weight", "edited z_dim", "bad best_params", "bad rng", "epoch str",
        "negative epoch", "history field", "history value", "x_dim", "hidden 1e9", "z_dim 1e9", "x_dim 1e9"])
def test_a_checkpoint_edited_with_a_valid_checksum_is_one_line_on_load(tmp_path, edit, message):
    """Each of these gave a traceback in --resume, evaluate or plot (torch's load_state_dict, set_rng_state,
    EpochRecord): the schema is checked once, on load."""
    path = edited(saved_checkpoint(tmp_path / "checkpoint.pt"), edit)
    if message is None:
        assert checkpoint.read(path)["train_state"]["epoch"] == 2
        return
    with pytest.raises(UsageError, match=f"is not a valid pyro_vae checkpoint: {message}") as error:
        checkpoint.read(path)
    assert "\n" not in str(error.value)


def test_an_unreadable_checkpoint_says_so(tmp_path, monkeypatch):
    """It said "not a pyro_vae checkpoint (PermissionError)". (Root reads any file: open stands in.)"""
    path = saved_checkpoint(tmp_path / "checkpoint.pt")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint, "open", refused, raising=False)
    with pytest.raises(UsageError, match=r"cannot read checkpoint .*checkpoint.pt \(Permission denied\)"):
        checkpoint.read(path)
