"""Logistic regression trained by plain gradient descent in numpy, logged with Tora.

Run it against a server, or offline::

    TORA_BASE_URL=http://127.0.0.1:8080/api TORA_API_KEY=tora_sk_... python numpy_training.py
    TORA_MODE=offline python numpy_training.py      # no server; later: python -m tora sync
"""

import numpy as np

import tora

LEARNING_RATE = 0.5
EPOCHS = 20
BATCH = 64


def make_data(rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 5))
    true_w = np.array([1.5, -2.0, 0.5, 0.0, 1.0])
    y = (x @ true_w + rng.normal(scale=0.5, size=n) > 0).astype(float)
    return x, y


def main() -> None:
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    x_train, y_train, x_val, y_val = x[:1600], y[:1600], x[1600:], y[1600:]
    w, b = np.zeros(x.shape[1]), 0.0

    tora.setup(
        "numpy-logreg",
        description="logistic regression, plain numpy",
        hyperparams={"lr": LEARNING_RATE, "epochs": EPOCHS, "batch": BATCH},
        tags=["example", "numpy"],
    )
    step = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            p = 1 / (1 + np.exp(-(x_train[idx] @ w + b)))
            loss = -np.mean(y_train[idx] * np.log(p + 1e-12) + (1 - y_train[idx]) * np.log(1 - p + 1e-12))
            w -= LEARNING_RATE * x_train[idx].T @ (p - y_train[idx]) / len(idx)
            b -= LEARNING_RATE * float(np.mean(p - y_train[idx]))
            tora.tmetric("train/loss", loss, step)  # a numpy scalar is fine
            step += 1
        val_acc = np.mean(((x_val @ w + b) > 0) == y_val)
        tora.tmetric("val/acc", val_acc, epoch)
    tora.tresult("val_acc", val_acc)
    tora.tresult("weight_norm", np.linalg.norm(w))
    kept = tora.shutdown()
    print(f"done; {kept} points kept on disk for `python -m tora sync`" if kept else "done; all points delivered")


if __name__ == "__main__":
    main()
