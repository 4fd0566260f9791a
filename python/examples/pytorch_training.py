"""A PyTorch training loop logged with Tora, with DataLoader worker processes.

Tora is safe under fork: a DataLoader worker gets its own empty queue and sender, never a copy
of the parent's, so the training loop logs from the main process as usual.

    pip install torch
    TORA_API_KEY=tora_sk_... python pytorch_training.py
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tora


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(4096, 20)
    y = (x[:, :5].sum(dim=1) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True, num_workers=2)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    tora.setup("torch-mlp", hyperparams={"lr": 1e-3, "batch_size": 128, "hidden": 64}, tags=["example", "torch"])
    step = 0
    for epoch in range(5):
        correct = 0
        for inputs, targets in loader:
            optimizer.zero_grad()
            logits = model(inputs)
            loss = loss_fn(logits, targets)
            loss.backward()
            optimizer.step()
            tora.tmetric("train/loss", loss.detach(), step)  # a 0-d tensor is accepted as is
            correct += int((logits.argmax(dim=1) == targets).sum())
            step += 1
        tora.tmetric("train/acc", correct / len(x), epoch)
    tora.tresult("final_acc", correct / len(x))
    tora.shutdown()


if __name__ == "__main__":
    main()
