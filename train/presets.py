"""Model presets: fully convolutional denoisers built from stock Keras layers only."""

from __future__ import annotations

import keras
from keras import layers


def seed(channels: int) -> keras.Model:
    """The seed document's convolutional denoising autoencoder, made fully convolutional."""
    return keras.Sequential([
        keras.Input((None, None, channels)),
        # encoder
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2, padding="same"),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2, padding="same"),
        # representation
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        # decoder
        layers.UpSampling2D(2),
        layers.Conv2DTranspose(8, 3, padding="same", activation="relu"),
        layers.UpSampling2D(2),
        layers.Conv2DTranspose(channels, 3, padding="same", activation="sigmoid"),
    ], name="seed")


def residual(channels: int, depth: int = 10, width: int = 48) -> keras.Model:
    """DnCNN-style residual net: conv-relu stack predicts the noise, which is subtracted from the input."""
    noisy = keras.Input((None, None, channels), name="noisy")
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(noisy)
    for _ in range(depth - 2):
        x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    noise = layers.Conv2D(channels, 3, padding="same", name="noise")(x)
    clean = layers.Subtract(name="clean")([noisy, noise])
    return keras.Model(noisy, clean, name="residual")


PRESETS = {"seed": seed, "residual": residual}

# Tile origins must be multiples of this for the net to act the same on a tile as on the whole image.
SIZE_MULTIPLE = {"seed": 4, "residual": 1}
