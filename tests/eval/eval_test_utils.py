"""A small conv net trained on the digits data set, and the test images of the eval tests."""

import os

import keras
import numpy as np

from lrm_tf import data

EXAMPLES = 37  # the 37 digits test images


def digits_test_images(n: int = EXAMPLES):
    """The first n digits test images, float32 [n, 8, 8, 1] in [0, 1], and labels int64 [n]."""
    arrays = data.load_arrays("digits")
    return data.to_float(arrays.x_test[:n]).numpy(), arrays.y_test[:n].astype(np.int64)


def train_digits_model(path: str | None = None, seed: int = 0, epochs: int = 4) -> keras.Model:
    """A conv net (oneDNN convolutions, as in the papers' CNNs) trained for a few epochs on
    digits, a couple of seconds on one core; saved as a .keras file at `path` if given."""
    keras.utils.set_random_seed(seed)
    arrays = data.load_arrays("digits")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = data.to_float(arrays.x_train).numpy()
    model.fit(x, arrays.y_train, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
    if path:
        model.save(path)
    return model


def load_model(path: str) -> keras.Model:
    return keras.saving.load_model(os.fspath(path), compile=False)
