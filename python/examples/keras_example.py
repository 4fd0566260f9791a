"""Keras 3 (JAX backend here; any backend works): a small classifier fit with ToraCallback.

Random data, a few epochs on the CPU. Each epoch's logs become ``epoch/<name>`` metrics, and
with ``log_every_n_batches`` the batch logs ``batch/<name>``.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

from tora.integrations.keras import ToraCallback


def main() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callback = ToraCallback(project="tora-examples", name="keras-classifier", log_every_n_batches=2, tags=["keras"])
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, callbacks=[callback], verbose=0)
    print("final:", {k: round(v[-1], 4) for k, v in history.history.items()})


if __name__ == "__main__":
    main()
