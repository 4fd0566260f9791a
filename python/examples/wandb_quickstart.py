"""W&B's quickstart, unchanged but for its first line: ``import tora as wandb``.

Run it against a server, or offline::

    TORA_BASE_URL=http://127.0.0.1:8080/api TORA_API_KEY=tora_sk_... python wandb_quickstart.py
    TORA_MODE=offline python wandb_quickstart.py      # no server; later: python -m tora sync

The project becomes a workspace of that name (made if you have none), the config the run's
hyperparameters, and each ``log`` a step of ``acc`` and ``loss``.
"""

import random

import tora as wandb

# Start a new run to track this script.
run = wandb.init(
    # The project (a Tora workspace) where this run is logged.
    project="my-awesome-project",
    # Track hyperparameters and run metadata.
    config={
        "learning_rate": 0.02,
        "architecture": "CNN",
        "dataset": "CIFAR-100",
        "epochs": 10,
    },
)

# Simulate training.
epochs = 10
offset = random.random() / 5
for epoch in range(2, epochs):
    acc = 1 - 2**-epoch - random.random() / epoch - offset
    loss = 2**-epoch + random.random() / epoch + offset

    # Log metrics.
    run.log({"acc": acc, "loss": loss})

run.summary["final_acc"] = acc
print(f"run {run.name}: {run.url}")

# Finish the run and upload any remaining data.
run.finish()
