"""TensorBoard logging of a training run: scalars per epoch, images every few epochs, the final test
bound and log p^(x), and the run's config. Optional: ``pip install -e ".[tensorboard]"``.

    pyro-vae-train --tensorboard            # writes <out>/tensorboard; then: tensorboard --logdir runs
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pyro_vae.data.pixels import PreparedData
from pyro_vae.errors import UsageError
from pyro_vae.models.vae import VAE
from pyro_vae.runs.plots import image_grid, reconstruction_grid
from pyro_vae.training.state import EpochRecord

IMAGES_EVERY = 5  # epochs between image summaries (and the first and the last epoch)
SAMPLE_SEED = 0  # the prior draws shown are the same every epoch, and take nothing from training's RNG


class TensorBoardWriter:
    """One run's event files in ``log_dir``. ``resumed_epoch`` (a resumed run) purges any events a killed
    run wrote after that epoch, so the curves continue without duplicate steps. Step = epoch."""

    def __init__(self, log_dir: str | Path, resumed_epoch: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError('`tensorboard` needs the tensorboard package: pip install -e ".[tensorboard]" '
                             "(or pip install tensorboard)") from None
        self.writer = SummaryWriter(str(log_dir), purge_step=resumed_epoch + 1 if resumed_epoch else None)
        self.log_dir = Path(log_dir)
        self.imaged: set[int] = set()  # the steps whose images are logged

    def config(self, config: dict[str, Any]) -> None:
        """The run's configuration, as a JSON block in TensorBoard's text tab."""
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", global_step=0)

    @torch.no_grad()
    def epoch(self, record: EpochRecord, objective: str, vae: VAE, data: PreparedData) -> None:
        """The epoch's train and validation bounds, learning rate and wall time; reconstructions and
        prior samples every IMAGES_EVERY epochs."""
        step = record.epoch
        for split in ("train", "valid"):
            self.writer.add_scalar(f"{objective}/{split}", getattr(record, f"{split}_bound"), step)
        self.writer.add_scalar("lr", record.lr, step)
        self.writer.add_scalar("seconds_per_epoch", record.seconds, step)
        if step == 1 or step % IMAGES_EVERY == 0:
            self.images(vae, data, step)
        self.writer.flush()

    @torch.no_grad()
    def images(self, vae: VAE, data: PreparedData, step: int) -> None:
        """Reconstructions of the first 32 test images and 64 prior samples (the same z every time), once a step."""
        if step in self.imaged:
            return
        self.imaged.add(step)
        x = data.test[:32]  # (32, D)
        self.writer.add_image("reconstructions", reconstruction_grid(x, vae.reconstruct(x), data.image_shape), step,
                              dataformats="CHW")
        z = vae.prior_z(64, generator=torch.Generator().manual_seed(SAMPLE_SEED))
        self.writer.add_image("samples", image_grid(vae.decode_mean(z), data.image_shape, 8), step, dataformats="CHW")

    def final(self, final: dict[str, Any], step: int, vae: VAE, data: PreparedData) -> None:
        """The test bound, and the test log p^(x), its SE and the share of images with PSIS k^ > 0.7,
        at the last epoch; and that epoch's images, when it was not one of every IMAGES_EVERY (a 3-epoch run
        had none of its last epoch)."""
        self.images(vae, data, step)
        self.writer.add_scalar(f"{final['objective']}/test", final["test_bound"], step)
        log_likelihood = final.get("test_log_likelihood")
        if log_likelihood is not None:
            self.writer.add_scalar("test/log_likelihood", log_likelihood["mean"], step)
            if log_likelihood["se"] is not None:
                self.writer.add_scalar("test/log_likelihood_se", log_likelihood["se"], step)
            if final["khat_above_0.7"] is not None:  # None: K too small to fit k^ (estimators.KHAT_MIN_SAMPLES)
                self.writer.add_scalar("test/khat_above_0.7", final["khat_above_0.7"], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
