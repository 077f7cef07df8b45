"""Custom Keras layers that exported models may use; importing this module registers them for loading."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="denoise")
class TiedDense(keras.layers.Layer):
    """A dense layer whose transpose is its own decoder (tied weights, as in seed 001).

    Called as usual it encodes, `x @ W + b`; called with `transpose=True` it decodes with the same
    kernel, `y @ W.T + b'`, so encoder and decoder share one weight matrix.
    """

    def __init__(self, units: int, activation=None, decoder_activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.decoder_activation = keras.activations.get(decoder_activation)

    def build(self, input_shape):
        features = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(features, self.units), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.decoder_bias = self.add_weight(shape=(features,), initializer="zeros", name="decoder_bias")

    def call(self, inputs, transpose: bool = False):
        if transpose:
            return self.decoder_activation(ops.matmul(inputs, ops.transpose(self.kernel)) + self.decoder_bias)
        return self.activation(ops.matmul(inputs, self.kernel) + self.bias)

    def get_config(self):
        return super().get_config() | {
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "decoder_activation": keras.activations.serialize(self.decoder_activation),
        }
