"""The two custom Keras layers of the papers' models, registered with Keras for `.keras` files.

This module imports only Keras (TensorFlow inside the calls), so `import lrm_tf` can register
the layers the moment Keras is imported, even while TensorFlow itself is importing Keras.
"""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="lrm_tf")
class PerImageStandardization(layers.Layer):
    """tf.image.per_image_standardization, the input normalisation of Madry's CIFAR model."""

    def call(self, x):
        import tensorflow as tf  # at call time: this module must import with Keras alone

        return tf.image.per_image_standardization(x)


@keras.saving.register_keras_serializable(package="lrm_tf")
class ZeroPadChannels(layers.Layer):
    """Pads channels with zeros on both sides: the parameter-free shortcut of Madry's ResNet."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        import tensorflow as tf

        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [self.pad, self.pad]])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}
