"""Whole-image autoencoders from the seed documents, and the default scorer's convolutional autoencoder.

Each preset maps an input tensor (size x size x channels, values in [0, 1]) to `(code, reconstruction)`.
The scorer's model adds two fixed views of the input beside them: the image shrunk to about 9 x 9 and
histograms of oriented gradients (a fixed Sobel front end), compared with normal images by nearest
neighbours just like the codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np
from keras import layers

from denoiser.layers import TiedDense


class Preset(NamedTuple):
    """A whole-image autoencoder: its graph, its code size, the seed's loss and what it reproduces."""

    build: Callable
    code: int
    loss: str
    source: str


def flat(image, units: int, activation: str):
    """The decoder's last dense layer, reshaped back to the image's shape."""
    size, _, channels = image.shape[1:]
    pixels = layers.Dense(size * size * channels, activation=activation, name="dec_pixels")(units)
    return layers.Reshape((size, size, channels), name="reconstruction")(pixels)


def selu(image, code: int, dropout: float = 0.0):
    """Seed 001's stacked autoencoder: 784 -> 100 -> code (selu) -> 100 -> 784 (sigmoid)."""
    x = layers.Flatten()(image)
    if dropout:
        x = layers.Dropout(dropout, name="input_dropout")(x)
    x = layers.Dense(100, activation="selu", name="enc_100")(x)
    z = layers.Dense(code, activation="selu", name="code")(x)
    y = layers.Dense(100, activation="selu", name="dec_100")(z)
    return z, flat(image, y, "sigmoid")


def selu_dropout(image, code: int):
    """Seed 001's dropout denoising autoencoder: the stacked one with 50% input dropout while training."""
    return selu(image, code, dropout=0.5)


def selu_tied(image, code: int):
    """Seed 001's stacked autoencoder with tied weights: each decoder layer is an encoder layer transposed."""
    size, _, channels = image.shape[1:]
    outer = TiedDense(100, activation="selu", decoder_activation="sigmoid", name="tied_100")
    inner = TiedDense(code, activation="selu", decoder_activation="selu", name="tied_code")
    z = inner(outer(layers.Flatten()(image)))
    y = outer(inner(z, transpose=True), transpose=True)
    return z, layers.Reshape((size, size, channels), name="reconstruction")(y)


def linear(image, code: int):
    """Seed 001's linear autoencoder (no activations, MSE): it spans the same subspace as PCA."""
    z = layers.Dense(code, name="code")(layers.Flatten()(image))
    return z, flat(image, z, None)


def dense(image, code: int):
    """Seed 003's dense autoencoder: 784 -> code (relu) -> 784 (sigmoid)."""
    z = layers.Dense(code, activation="relu", name="code")(layers.Flatten()(image))
    return z, flat(image, z, "sigmoid")


def dense_2d(image, code: int):
    """Seed 004's autoencoder: 784 -> 300 -> 2, LeakyReLU throughout, for a plottable latent."""
    x = layers.LeakyReLU(name="enc_act")(layers.Dense(300, name="enc_300")(layers.Flatten()(image)))
    z = layers.LeakyReLU(name="code")(layers.Dense(code, name="enc_code")(x))
    y = layers.LeakyReLU(name="dec_act")(layers.Dense(300, name="dec_300")(z))
    size, _, channels = image.shape[1:]
    pixels = layers.LeakyReLU(name="out_act")(layers.Dense(size * size * channels, name="dec_pixels")(y))
    return z, layers.Reshape((size, size, channels), name="reconstruction")(pixels)


def conv_30_15(image, code: int):
    """Seed 003's deep conv autoencoder: conv 30 -> pool -> conv 15 -> pool -> conv 15 | up -> 30 -> up -> out."""
    channels = image.shape[-1]
    x = layers.Conv2D(30, 3, activation="relu", padding="same", name="enc_30")(image)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(15, 3, activation="relu", padding="same", name="enc_15")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    z = layers.Conv2D(15, 3, activation="relu", padding="same", name="code_map")(x)
    y = layers.UpSampling2D(2)(z)
    y = layers.Conv2D(30, 3, activation="relu", padding="same", name="dec_30")(y)
    y = layers.UpSampling2D(2)(y)
    y = layers.Conv2D(channels, 3, activation="sigmoid", padding="same", name="reconstruction")(y)
    return layers.Flatten(name="code")(z), y


def conv_ae(image, code: int):
    """The default scorer: strided convs 32-64-128 -> dense code -> transposed convs back to the image."""
    size, _, channels = image.shape[1:]
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="enc_32")(image)
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="enc_64")(x)
    x = layers.Conv2D(128, 3, strides=2, padding="same", activation="relu", name="enc_128")(x)
    z = layers.Dense(code, name="code")(layers.Flatten()(x))
    y = layers.Dense(size // 4 * size // 4 * 64, activation="relu", name="dec_dense")(z)
    y = layers.Reshape((size // 4, size // 4, 64))(y)
    y = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu", name="dec_64")(y)
    y = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu", name="dec_32")(y)
    y = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="reconstruction")(y)
    return z, y


AUTOENCODERS = {
    "conv-ae": Preset(conv_ae, 32, "mse", "the default scorer"),
    "selu": Preset(selu, 30, "binary_crossentropy", "seed 001, stacked selu autoencoder (100-30)"),
    "selu-tied": Preset(selu_tied, 30, "binary_crossentropy", "seed 001, stacked autoencoder with tied weights"),
    "selu-dropout": Preset(selu_dropout, 30, "binary_crossentropy", "seed 001, dropout denoising autoencoder"),
    "linear": Preset(linear, 32, "mse", "seed 001, linear autoencoder (PCA)"),
    "dense": Preset(dense, 15, "binary_crossentropy", "seed 003, dense autoencoder with a 15-d code"),
    "conv-30-15": Preset(conv_30_15, 7 * 7 * 15, "binary_crossentropy", "seed 003, deep conv autoencoder (30-15-15)"),
    "dense-2d": Preset(dense_2d, 2, "mse", "seed 004, dense autoencoder with a 2-d LeakyReLU latent"),
}


def oriented_gradients(image, orientations: int = 8, flat: float = 0.005):
    """Rectified gradients in `orientations` directions, pooled into about 9 x 9 cells, unit-normalised.

    One more channel holds the constant `flat`, so that a cell (or a whole image) without gradients
    is a distinct direction rather than a zero vector.
    """
    size, _, channels = image.shape[1:]
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / (8 * channels)
    angles = np.arange(orientations) * 2 * np.pi / orientations
    kernel = np.stack([np.cos(a) * sobel + np.sin(a) * sobel.T for a in angles] + [0 * sobel], axis=-1)
    gradients = layers.Conv2D(orientations + 1, 3, padding="same", trainable=False, name="gradients")
    x = layers.ReLU(name="rectified")(gradients(image))
    gradients.set_weights(
        [np.repeat(kernel[:, :, None, :], channels, axis=2), np.array([0.0] * orientations + [flat], np.float32)]
    )
    x = layers.AveragePooling2D(cell_size(size), padding="same", name="cells")(x)
    return layers.UnitNormalization(name="edges")(layers.Flatten()(x))


def cell_size(size: int) -> int:
    """Pooling for the fixed views: about 9 x 9 cells whatever the input size (3 px at 28)."""
    return max(2, round(size / 9))


def build_autoencoder(
    preset: str, size: int, channels: int, code: int | None = None, rotation: bool = False
) -> tuple[keras.Model, keras.Model]:
    """The preset for training (image -> reconstruction) and for scoring (image -> a dict of views).

    The scorer's outputs are `reconstruction`, `latent` (the code), `pixels` (the image shrunk to about
    9 x 9) and `edges` (oriented-gradient histograms); both models share their layers. With `rotation`,
    a small head on the code also predicts which of four quarter turns the input was given (a
    self-supervised task trained beside the reconstruction), and both models output its logits.
    """
    spec = AUTOENCODERS[preset]
    image = keras.Input((size, size, channels), name="image")
    z, reconstruction = spec.build(image, code or spec.code)
    views = {
        "reconstruction": reconstruction,
        "latent": z,
        "pixels": layers.Flatten(name="pixels")(layers.AveragePooling2D(cell_size(size), padding="same")(image)),
        "edges": oriented_gradients(image),
    }
    targets = {"reconstruction": reconstruction}
    if rotation:
        hidden = layers.Dense(64, activation="relu", name="rotation_hidden")(z)
        targets["rotation"] = views["rotation"] = layers.Dense(4, name="rotation")(hidden)
    trainer = keras.Model(image, targets if rotation else reconstruction, name=preset)
    return trainer, keras.Model(image, views, name=f"{preset}_scorer")
