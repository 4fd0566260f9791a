"""One script, run unchanged with this SDK and with the published tora 0.0.12.

Reads TORA_BASE_URL and TORA_API_KEY; prints the ids of the experiments it made, as JSON, last.
"""

import json

import tora
from tora import Tora

ids = {}

ids["global"] = tora.setup("compat-global", description="global style", hyperparams={"lr": 0.01, "opt": "sgd"})
for step in range(30):
    tora.tmetric("train/loss", 1.0 / (step + 1), step)
    tora.tmetric("train/acc", step / 30, step)
tora.tresult("best_acc", 0.97)
tora.tresult("epochs", 30)
tora.flush()
tora.shutdown()

client = Tora.create_experiment(
    "compat-class", description="class style", hyperparams={"layers": 4, "dropout": 0.5}, tags=["compat", "sdk"]
)
for epoch in range(20):
    client.metric("val/loss", 2.0 - epoch * 0.05, epoch)
    client.log_metrics({"lr": 0.1 * 0.9**epoch, "grad_norm": 1.5 + epoch}, step=epoch)
client.metric("flag", True, 99)
client.result("test_acc", 0.91)
client.flush()
client.max_buffer_len = 5
client.shutdown()
ids["class"] = client.experiment_id

with Tora.create_experiment("compat-ctx", max_buffer_len=3) as ctx:
    for step in range(10):
        ctx.metric("x", step * step, step)
ids["ctx"] = ctx.experiment_id

loaded = Tora.load_experiment(ids["class"])
loaded.metric("val/loss", 0.5, 100)
loaded.result("loaded", 1)
loaded.shutdown()

print(json.dumps(ids))
