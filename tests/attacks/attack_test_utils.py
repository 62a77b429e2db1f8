"""Tiny models and batches for the attack tests."""

import keras
import numpy as np
import tensorflow as tf

NUM_CLASSES = 10


def make_conv_model(seed=0, input_shape=(8, 8, 1)):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ]
    )


def make_dense_model(seed=0, input_shape=(8, 8, 1)):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(NUM_CLASSES),
        ]
    )


def make_batch(batch=16, shape=(8, 8, 1), seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch,) + shape).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, batch).astype(np.int64)
    return tf.constant(x), tf.constant(y)


def make_linear_model(seed=0, input_shape=(8, 8, 1), stddev=0.5):
    """Logits linear in the pixels, with weights large enough for small eps to matter."""
    keras.utils.set_random_seed(seed)
    initializer = keras.initializers.RandomNormal(stddev=stddev, seed=seed)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(NUM_CLASSES, kernel_initializer=initializer, bias_initializer=initializer),
        ]
    )
