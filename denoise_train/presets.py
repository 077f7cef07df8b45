"""Model presets: fully convolutional denoisers built from stock Keras layers only."""

from __future__ import annotations

import keras
from keras import layers


def seed(channels: int) -> keras.Model:
    """The seed document's convolutional denoising autoencoder, made fully convolutional."""
    return keras.Sequential(
        [
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
        ],
        name="seed",
    )


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


def res_block(x, width: int, name: str, identity: bool = False):
    """x + conv(conv(x)): two 3x3 convolutions with a skip around them; with `identity`, the second conv starts at
    zero, so the block starts as the identity."""
    y = conv(width, f"{name}_a")(x)
    y = layers.Conv2D(
        width, 3, padding="same", kernel_initializer="zeros" if identity else "glorot_uniform", name=f"{name}_b"
    )(y)
    return layers.Add(name=f"{name}_add")([x, y])


def unet_features(noisy, width: int, levels: int, bottom: int = 2, decoder: int = 1):
    """The U-Net body on a 3x3 head: cheap full-resolution layers, widths doubling at each of `levels` scales."""
    return unet_body(layers.Conv2D(width, 3, padding="same", name="head")(noisy), width, levels, bottom, decoder)


def unet_body(x, width: int, levels: int, bottom: int = 2, decoder: int = 1):
    """The U-Net body: widths doubling at each of `levels` scales, features back at x's resolution.

    x -> [res block -> stride-2 conv] x (levels-1) -> `bottom` res blocks at 1/2^(levels-1)
      -> [transposed conv + skip -> `decoder` res blocks] x (levels-1) -> features

    Bottom blocks past the second and decoder blocks past the first start as the identity, so a net grown from a
    trained one (`--init`) starts out computing what its parent did.
    """
    widths = [width * 2**level for level in range(levels)]
    skips = []
    for level, w in enumerate(widths[:-1]):
        x = res_block(x, w, f"enc{level}")
        skips.append(x)
        x = layers.Conv2D(widths[level + 1], 2, strides=2, name=f"down{level}")(x)
    for block in range(bottom):
        x = res_block(x, widths[-1], f"bottom_{chr(ord('a') + block)}", identity=block >= 2)
    for level in reversed(range(levels - 1)):
        x = layers.Conv2DTranspose(widths[level], 2, strides=2, name=f"up{level}")(x)
        x = layers.Add(name=f"skip{level}")([x, skips[level]])
        x = res_block(x, widths[level], f"dec{level}")
        for block in range(2, decoder + 1):
            x = res_block(x, widths[level], f"dec{level}_{block}", identity=True)
    return x


def unet(channels: int, width: int = 32, levels: int = 4, bottom: int = 2, decoder: int = 1) -> keras.Model:
    """Residual U-Net: the U-Net body predicts the noise;  clean = noisy - noise."""
    noisy = keras.Input((None, None, channels), name="noisy")
    features = unet_features(noisy, width, levels, bottom, decoder)
    noise = layers.Conv2D(channels, 3, padding="same", name="noise")(features)
    clean = layers.Subtract(name="clean")([noisy, noise])
    return keras.Model(noisy, clean, name="unet")


def unet_half(channels: int, width: int = 32, levels: int = 4, bottom: int = 2, decoder: int = 1) -> keras.Model:
    """Residual U-Net at half resolution, for speed: a stride-2 conv folds each 2x2 block of pixels into features
    (as FFDNet does), the U-Net body runs there, and a stride-2 transposed conv unfolds the noise."""
    noisy = keras.Input((None, None, channels), name="noisy")
    folded = layers.Conv2D(width, 2, strides=2, name="fold")(noisy)
    features = unet_body(folded, width, levels, bottom, decoder)
    noise = layers.Conv2DTranspose(channels, 2, strides=2, name="noise")(features)
    clean = layers.Subtract(name="clean")([noisy, noise])
    return keras.Model(noisy, clean, name="unet_half")


def unet_lite(
    channels: int, width: int = 32, levels: int = 4, top: int = 24, bottom: int = 2, decoder: int = 1
) -> keras.Model:
    """Residual U-Net at half resolution under one narrow full-resolution level, for speed: the U-Net body runs
    on 2x2-folded features, and `top` channels at full resolution see each pixel on its own (as impulses need).

    noisy -> head -> res block -> stride-2 fold -> U-Net body -> stride-2 unfold + skip -> res block -> noise
    """
    noisy = keras.Input((None, None, channels), name="noisy")
    x = res_block(layers.Conv2D(top, 3, padding="same", name="head")(noisy), top, "top_enc")
    body = unet_body(layers.Conv2D(width, 2, strides=2, name="fold")(x), width, levels, bottom, decoder)
    x = layers.Add(name="top_skip")([layers.Conv2DTranspose(top, 2, strides=2, name="unfold")(body), x])
    noise = layers.Conv2D(channels, 3, padding="same", name="noise")(res_block(x, top, "top_dec"))
    clean = layers.Subtract(name="clean")([noisy, noise])
    return keras.Model(noisy, clean, name="unet_lite")


def matte(
    channels: int, width: int = 32, levels: int = 4, bottom: int = 2, decoder: int = 1, first: keras.Model | None = None
) -> keras.Model:
    """Watermark remover: the U-Net body estimates the overlay, and the blend is inverted.

    A watermark blends colour c at opacity a:  noisy = (1 - a) clean + a c.  The body predicts the opacity's
    logit and the colour, so  clean = noisy + odds (noisy - c)  with  odds = a / (1 - a) = exp(logit).
    The logit layer `matte_logit` starts near a = 0 (the identity); `matte_output` exposes a for training.

    With `first`, a trained matte model, the net is a second stage: `first` runs frozen, and its opacity, colour
    and result join the input at the head through `hint_head`, which starts at zero, so a second stage grown from
    `first` (`--init`) starts out computing what `first` does.
    """
    noisy = keras.Input((None, None, channels), name="noisy")
    head = layers.Conv2D(width, 3, padding="same", name="head")(noisy)
    if first is not None:
        head = layers.Add(name="hinted_head")([head, first_stage_hints(noisy, first, width)])
    x = unet_body(head, width, levels, bottom, decoder)
    logit = layers.Conv2D(1, 3, padding="same", bias_initializer=keras.initializers.Constant(-4.0), name="matte_logit")(
        x
    )
    colour = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="overlay_colour")(x)
    odds = layers.Activation("exponential", name="odds")(logit)
    lift = layers.Multiply(name="lift")([odds, layers.Subtract(name="off_colour")([noisy, colour])])
    clean = layers.Add(name="clean")([noisy, lift])
    return keras.Model(noisy, clean, name="matte")


def first_stage_hints(noisy, first: keras.Model, width: int):
    """A frozen first stage's opacity, overlay colour and result (clipped to [0, 1]), mapped to `width` features
    by a 3x3 conv that starts at zero."""
    stage = keras.Model(
        first.inputs, [matte_output(first), first.get_layer("overlay_colour").output, first.output], name="first_stage"
    )
    stage.trainable = False
    opacity, colour, clean = stage(noisy)
    hints = layers.Concatenate(name="hints")([opacity, colour, layers.ReLU(max_value=1.0, name="first_clean")(clean)])
    return layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer="zeros", name="hint_head")(hints)


def matte_output(model: keras.Model):
    """The opacity a = sigmoid(logit) of a `matte` model's overlay, as a tensor of its graph."""
    return layers.Activation("sigmoid", name="matte")(model.get_layer("matte_logit").output)


PRESETS = {
    "seed": seed,
    "residual": residual,
    "unet": unet,
    "unet-half": unet_half,
    "unet-lite": unet_lite,
    "matte": matte,
}


def size_multiple(preset: str, levels: int = 4) -> int:
    """Tile origins must be multiples of this for the net to act the same on a tile as on the whole image."""
    return {
        "seed": 4,
        "residual": 1,
        "unet": 2 ** (levels - 1),
        "unet-half": 2**levels,
        "unet-lite": 2**levels,
        "matte": 2 ** (levels - 1),
    }[preset]
