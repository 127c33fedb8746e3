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
