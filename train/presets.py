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


def conv(width: int, name: str | None = None) -> layers.Layer:
    """3x3 same-padded convolution followed by ReLU."""
    return layers.Conv2D(width, 3, padding="same", activation="relu", name=name)


def res_block(x, width: int, name: str):
    """x + conv(conv(x)): two 3x3 convolutions with a skip around them."""
    y = conv(width, f"{name}_a")(x)
    y = layers.Conv2D(width, 3, padding="same", name=f"{name}_b")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def unet(channels: int, width: int = 32, levels: int = 4) -> keras.Model:
    """Residual U-Net: cheap full-resolution layers, widths doubling at each of `levels` scales.

    noisy -> head -> [res block -> stride-2 conv] x (levels-1) -> res blocks at 1/2^(levels-1)
          -> [transposed conv + skip -> res block] x (levels-1) -> noise;  clean = noisy - noise
    """
    widths = [width * 2**level for level in range(levels)]
    noisy = keras.Input((None, None, channels), name="noisy")
    x = layers.Conv2D(widths[0], 3, padding="same", name="head")(noisy)
    skips = []
    for level, w in enumerate(widths[:-1]):
        x = res_block(x, w, f"enc{level}")
        skips.append(x)
        x = layers.Conv2D(widths[level + 1], 2, strides=2, name=f"down{level}")(x)
    x = res_block(x, widths[-1], "bottom_a")
    x = res_block(x, widths[-1], "bottom_b")
    for level in reversed(range(levels - 1)):
        x = layers.Conv2DTranspose(widths[level], 2, strides=2, name=f"up{level}")(x)
        x = layers.Add(name=f"skip{level}")([x, skips[level]])
        x = res_block(x, widths[level], f"dec{level}")
    noise = layers.Conv2D(channels, 3, padding="same", name="noise")(x)
    clean = layers.Subtract(name="clean")([noisy, noise])
    return keras.Model(noisy, clean, name="unet")


PRESETS = {"seed": seed, "residual": residual, "unet": unet}

def size_multiple(preset: str, levels: int = 4) -> int:
    """Tile origins must be multiples of this for the net to act the same on a tile as on the whole image."""
    return {"seed": 4, "residual": 1, "unet": 2 ** (levels - 1)}[preset]
