"""PyTorch Lightning: a small regression model trained by ``Trainer`` with ToraLogger.

Random data, a few epochs on the CPU. ``save_hyperparameters()`` becomes the run's config,
``self.log(...)`` its metrics at the trainer's step; ``trainer.validate()`` after ``fit()``
adds to the same run.
"""

import torch
from lightning import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tora.integrations.lightning import ToraLogger


class Regressor(LightningModule):
    def __init__(self, hidden: int = 16, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def loader(n: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def main() -> None:
    torch.manual_seed(0)
    logger = ToraLogger(project="tora-examples", name="lightning-regressor", tags=["lightning", "example"])
    trainer = Trainer(
        max_epochs=3,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Regressor()
    trainer.fit(model, loader(64, 0), loader(32, 1))
    print("validate:", trainer.validate(model, loader(32, 2), verbose=False))
    print("run:", logger.version)


if __name__ == "__main__":
    main()
