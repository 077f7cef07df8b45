"""Tests for denoiser.imageio: round trips per format and mode, metadata, bad inputs."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pillow_heif
import pytest
import tifffile
from PIL import Image, ImageCms, JpegImagePlugin

from denoiser.imageio import ImageError, ImageMeta, Picture, _samples, probe, read_image, write_image
from tests.helpers import tiff_raw

H, W = 20, 28
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def exif_bytes(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    exif[271] = "TestCam"
    return exif.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def add_png_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """Insert chunks right after IHDR (signature 8 bytes + IHDR 25 bytes)."""
    return png[:33] + b"".join(png_chunk(k, v) for k, v in chunks) + png[33:]


def cv2_png(array: np.ndarray) -> bytes:
    """A 16-bit PNG from an RGB(A) or gray uint16 array, encoded by OpenCV."""
    if array.ndim == 3:
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]
    ok, data = cv2.imencode(".png", np.ascontiguousarray(array))
    assert ok
    return data.tobytes()


def gray_alpha_png16(array: np.ndarray) -> bytes:
    """A 16-bit gray+alpha PNG written by hand (colour type 4)."""
    rows = array.astype(">u2").view(np.uint8).reshape(array.shape[0], -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", array.shape[1], array.shape[0], 16, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- sample images
# Each builder returns (file bytes, expected colour samples H x W x C, expected alpha or None).


def u8(rng, *shape):
    return rng.integers(0, 256, (H, W, *shape), dtype=np.uint8)


def u16(rng, *shape):
    return rng.integers(0, 65536, (H, W, *shape), dtype=np.uint16)


def pillow_bytes(im: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


# what a motion photo appends to its JPEG: an MP4 video (Google and Samsung find it from the end of the file)
VIDEO = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 8


@pytest.mark.parametrize("progressive", [False, True])
def test_a_motion_photos_video_after_the_jpeg_is_carried(tmp_path, rng, progressive):
    data = build_8bit(rng, "RGB", "JPEG", progressive=progressive)[0]
    (tmp_path / "motion.jpg").write_bytes(data + VIDEO)
    picture = read_image(tmp_path / "motion.jpg")
    write_image(tmp_path / "out.jpg", picture.pixels, picture)
    written = (tmp_path / "out.jpg").read_bytes()
    assert picture.meta.frames == 1 and written.endswith(VIDEO) and written.count(b"ftypmp42") == 1
    again = read_image(tmp_path / "out.jpg")
    assert again.pixels.shape == picture.pixels.shape and again.meta.options["trailer"] == VIDEO


def test_a_heic_motion_photos_video_box_is_carried_and_a_sequence_track_counted(tmp_path, rng):
    """Samsung's HEIC motion photos keep their video in an `mpvd` box after the image data; a `moov` box holds an
    image sequence, which libheif does not read."""
    still = build_heif(rng, "RGB")
    video = struct.pack(">I", 8 + len(VIDEO)) + b"mpvd" + VIDEO
    (tmp_path / "motion.heic").write_bytes(still + video)
    picture = read_image(tmp_path / "motion.heic")
    write_image(tmp_path / "out.heic", picture.pixels, picture)
    assert picture.meta.frames == 1 and (tmp_path / "out.heic").read_bytes().endswith(video)
    assert read_image(tmp_path / "out.heic").meta.options["trailer"] == video
    (tmp_path / "sequence.heic").write_bytes(still + struct.pack(">I", 16) + b"moov" + bytes(8))
    assert read_image(tmp_path / "sequence.heic").meta.frames == 2


def test_iptc_and_extended_xmp_are_carried(tmp_path, rng):
    """IPTC captions, keywords and credits (APP13), and the extended part of an XMP packet over 64 KB (APP1)."""
    from PIL import IptcImagePlugin

    data = build_8bit(rng, "RGB", "JPEG", icc_profile=b"icc" * 50, xmp=b"<x:xmpmeta/>")[0]
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0e\x1c\x02\x78\x00\x07caption\x00\x00"
    extended = b"http://ns.adobe.com/xmp/extension/\x00" + b"0" * 32 + struct.pack(">II", 9, 0) + b"<depth/>"
    segments = b"".join(
        code + struct.pack(">H", len(body) + 2) + body for code, body in ((b"\xff\xed", iptc), (b"\xff\xe1", extended))
    )
    (tmp_path / "iptc.jpg").write_bytes(data[:2] + segments + data[2:])
    picture = read_image(tmp_path / "iptc.jpg")
    write_image(tmp_path / "out.jpg", picture.pixels, picture)
    with Image.open(tmp_path / "out.jpg") as written:
        assert [body for marker, body in written.applist if marker == "APP13"] == [iptc]
        assert IptcImagePlugin.getiptcinfo(written) == {(2, 120): b"caption"}
        assert [body for marker, body in written.applist if marker == "APP1" and body.startswith(extended[:35])] == [
            extended
        ]
        assert written.info["icc_profile"] == b"icc" * 50 and written.info["xmp"] == b"<x:xmpmeta/>"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_a_tiffs_iptc_is_carried_even_stored_as_longs(tmp_path, rng, dtype, byteorder):
    """Photoshop stores the IPTC-NAA tag as LONGs, which Pillow cuts to the first one."""
    iptc = b"\x1c\x02\x78\x00\x07caption\x00\x00\x00\x00"
    array = rng.integers(0, np.iinfo(dtype).max + 1, (H, W, 3)).astype(dtype)
    longs = struct.unpack(f"{byteorder}4I", iptc)
    tifffile.imwrite(
        tmp_path / "in.tif", array, photometric="rgb", byteorder=byteorder, extratags=[(33723, "I", 4, longs, True)]
    )
    picture = read_image(tmp_path / "in.tif")
    write_image(tmp_path / "out.tif", picture.pixels, picture)
    with tifffile.TiffFile(tmp_path / "out.tif") as written:
        assert written.pages.first.tags.valueof(33723) == iptc


def test_a_heics_thumbnail_is_written_again(tmp_path, rng):
    """Finder, Quick Look and Photos show a HEIC's thumbnail rather than decode the whole image."""
    (tmp_path / "thumb.heic").write_bytes(build_heif(rng, "RGB", thumbnails=[12]))
    picture = read_image(tmp_path / "thumb.heic")
    write_image(tmp_path / "out.heic", picture.pixels, picture)
    assert pillow_heif.open_heif(tmp_path / "out.heic").info["thumbnails"] == [12]


def test_no_trailer_is_carried_for_padding_or_an_mpos_images(tmp_path, rng):
    padded = build_8bit(rng, "RGB", "JPEG")[0] + bytes(64)
    images = [Image.frombytes("RGB", (W, H), u8(rng, 3).tobytes()) for _ in range(2)]
    mpo = pillow_bytes(images[0], "MPO", save_all=True, append_images=images[1:])
    for name, data in (("padded.jpg", padded), ("mpo.jpg", mpo)):
        (tmp_path / name).write_bytes(data)
        picture = read_image(tmp_path / name)
        write_image(tmp_path / f"out-{name}", picture.pixels, picture)
        written = (tmp_path / f"out-{name}").read_bytes()
        assert "trailer" not in picture.meta.options and written.endswith(b"\xff\xd9"), name


def build_8bit(rng, mode: str, fmt: str, **options):
    if mode == "1":
        bits = rng.integers(0, 2, (H, W)).astype(bool)
        im = Image.frombytes("1", (W, H), np.packbits(bits, axis=1).tobytes())
        return pillow_bytes(im, fmt, **options), bits[..., None].astype(np.uint8), None
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    array = u8(rng, channels)
    im = Image.frombytes(mode, (W, H), array.tobytes())
    colours = channels - 1 if mode in ("LA", "RGBA") else channels
    alpha = array[..., -1] if mode in ("LA", "RGBA") else None
    return pillow_bytes(im, fmt, **options), array[..., :colours], alpha


def build_palette(rng, fmt: str, transparency=None):
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    palette[1] = palette[0]  # same colour, different alpha: quantization must keep the alpha
    index = rng.integers(0, 16, (H, W), dtype=np.uint8)
    im = Image.frombytes("P", (W, H), index.tobytes())
    im.putpalette(palette.tobytes(), "RGB")
    options = {} if transparency is None else {"transparency": transparency}
    alpha = None
    if transparency is not None:
        entry_alpha = np.full(16, 255, np.uint8)
        if isinstance(transparency, int):
            entry_alpha[transparency] = 0
        else:
            entry_alpha[: len(transparency)] = np.frombuffer(transparency, np.uint8)
        alpha = entry_alpha[index]
    return pillow_bytes(im, fmt, **options), palette[index], alpha


def build_16bit(rng, mode: str, fmt: str, **options):
    channels = {"L;16": 1, "LA;16": 2, "RGB;16": 3, "RGBA;16": 4, "CMYK;16": 4}[mode]
    array = u16(rng, channels)
    has_alpha = mode in ("LA;16", "RGBA;16")
    colours = channels - has_alpha
    if fmt == "PNG":
        data = gray_alpha_png16(array) if mode == "LA;16" else cv2_png(array[..., 0] if channels == 1 else array)
    else:
        photometric = {1: "minisblack", 2: "minisblack", 3: "rgb", 4: "rgb"}[channels]
        photometric = "separated" if mode == "CMYK;16" else photometric
        buffer = io.BytesIO()
        if options.get("planarconfig") == "separate":
            array_to_write = np.moveaxis(array, -1, 0)
        else:
            array_to_write = array[..., 0] if channels == 1 else array
        tifffile.imwrite(
            buffer,
            array_to_write,
            photometric=photometric,
            extrasamples=("unassalpha",) if has_alpha else None,
            **options,
        )
        data = buffer.getvalue()
    return data, array[..., :colours], array[..., -1] if has_alpha else None


def build_heif(rng, mode: str, **options):
    """A HEIF (HEVC) file from random samples; 16-bit modes are stored as 10 bits."""
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode.removesuffix(";16")]
    array = (u16 if mode.endswith(";16") else u8)(rng, channels)
    buffer = io.BytesIO()
    pillow_heif.from_bytes(mode=mode, size=(W, H), data=array.tobytes()).save(buffer, quality=90, **options)
    return buffer.getvalue()


LOSSLESS_CASES = [
    *[("PNG", m) for m in ("1", "L", "LA", "RGB", "RGBA")],
    *[("TIFF", m) for m in ("1", "L", "LA", "RGB", "RGBA", "CMYK")],
    *[("BMP", m) for m in ("1", "L", "RGB")],
]


def roundtrip(tmp_path, data: bytes, name: str = "in.img", pixels=None):
    source = tmp_path / name
    source.write_bytes(data)
    first = read_image(source)
    out = tmp_path / f"out-{name}"
    write_image(out, first.pixels if pixels is None else pixels, first)
    return first, read_image(out), out


def assert_samples(picture: Picture, colours: np.ndarray, alpha):
    scale = (1 << picture.meta.bits) - 1
    assert picture.pixels.dtype == np.float32
    assert picture.pixels.shape == (H, W, colours.shape[2])
    np.testing.assert_array_equal(np.rint(picture.pixels * scale).astype(np.int64), colours)
    if alpha is None:
        assert picture.alpha is None
    else:
        assert picture.alpha.dtype == alpha.dtype
        np.testing.assert_array_equal(picture.alpha, alpha)


def assert_same(first: Picture, second: Picture):
    for key in ("format", "mode", "bits", "width", "height"):
        assert getattr(second.meta, key) == getattr(first.meta, key), key
    np.testing.assert_array_equal(second.pixels, first.pixels)
    if first.alpha is None:
        assert second.alpha is None
    else:
        np.testing.assert_array_equal(second.alpha, first.alpha)
        assert second.alpha.dtype == first.alpha.dtype


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(("fmt", "mode"), LOSSLESS_CASES)
def test_lossless_8bit_round_trip(tmp_path, rng, fmt, mode):
    data, colours, alpha = build_8bit(rng, mode, fmt)
    first, second, _ = roundtrip(tmp_path, data)
    assert (first.meta.format, first.meta.mode, first.meta.bits) == (fmt, mode, 1 if mode == "1" else 8)
    assert_samples(first, colours, alpha)
    assert_same(first, second)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_palette_round_trip(tmp_path, rng, fmt):
    data, colours, _ = build_palette(rng, fmt)
    first, second, out = roundtrip(tmp_path, data)
    assert first.meta.mode == "P" and first.alpha is None
    assert_samples(first, colours, None)
    assert_same(first, second)
    assert Image.open(out).mode == "P"


@pytest.mark.parametrize("transparency", [0, bytes([0, 255, 128, 40] + [255] * 4)])
def test_palette_transparency_round_trip(tmp_path, rng, transparency):
    data, colours, alpha = build_palette(rng, "PNG", transparency)
    first, second, out = roundtrip(tmp_path, data)
    assert first.meta.mode == "P"
    assert_samples(first, colours, alpha)
    assert_same(first, second)
    with Image.open(out) as im:
        assert im.mode == "P" and im.info["transparency"] == transparency


def test_palette_quantizes_to_original_palette_keeping_alpha(tmp_path, rng):
    data, _, alpha = build_palette(rng, "PNG", bytes([0, 255, 128]))
    source = tmp_path / "p.png"
    source.write_bytes(data)
    first = read_image(source)
    noisy = first.pixels + rng.normal(0, 0.01, first.pixels.shape).astype(np.float32)
    write_image(tmp_path / "out.png", noisy, first)
    second = read_image(tmp_path / "out.png")
    np.testing.assert_array_equal(second.alpha, alpha)
    palette = np.frombuffer(first.meta.palette, np.uint8).reshape(-1, 3)
    used = {tuple(c) for c in np.rint(second.pixels * 255).astype(np.uint8).reshape(-1, 3)}
    assert used <= {tuple(c) for c in palette}


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", m) for m in ("L;16", "LA;16", "RGB;16", "RGBA;16")]
    + [("TIFF", m) for m in ("L;16", "LA;16", "RGB;16", "RGBA;16", "CMYK;16")],
)
def test_16bit_round_trip_is_exact(tmp_path, rng, fmt, mode):
    data, colours, alpha = build_16bit(rng, mode, fmt)
    first, second, out = roundtrip(tmp_path, data)
    assert (first.meta.format, first.meta.mode, first.meta.bits) == (fmt, mode, 16)
    assert_samples(first, colours, alpha)
    assert_same(first, second)
    assert out.read_bytes()[:4] == data[:4]


def test_16bit_png_written_as_16bit_rgb(tmp_path, rng):
    data, colours, _ = build_16bit(rng, "RGB;16", "PNG")
    _, _, out = roundtrip(tmp_path, data)
    depth, colour_type = out.read_bytes()[24:26]
    assert (depth, colour_type) == (16, 2)
    decoded = cv2.imdecode(np.frombuffer(out.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[..., ::-1], colours)


@pytest.mark.parametrize("options", [{"compression": "zlib", "predictor": True}, {"planarconfig": "separate"}])
def test_16bit_tiff_layouts(tmp_path, rng, options):
    data, colours, _ = build_16bit(rng, "RGB;16", "TIFF", **options)
    first, second, out = roundtrip(tmp_path, data)
    assert_samples(first, colours, None)
    assert_same(first, second)
    np.testing.assert_array_equal(tifffile.imread(out).reshape(-1), tifffile.imread(io.BytesIO(data)).reshape(-1))


@pytest.mark.parametrize(
    ("mode", "compression"), [("RGB", "tiff_lzw"), ("L", "tiff_adobe_deflate"), ("RGB", "packbits"), ("1", "group4")]
)
def test_tiff_compression_kept(tmp_path, rng, mode, compression):
    data, _, _ = build_8bit(rng, mode, "TIFF", compression=compression)
    first, second, out = roundtrip(tmp_path, data)
    assert_same(first, second)
    with Image.open(out) as im:
        assert im.info["compression"] == compression


def test_16bit_lzw_tiff_decoded_with_opencv(tmp_path, rng):
    colours = u16(rng, 3)
    ok, data = cv2.imencode(".tif", np.ascontiguousarray(colours[..., ::-1]))  # OpenCV writes LZW
    first, second, out = roundtrip(tmp_path, data.tobytes())
    assert first.meta.mode == "RGB;16"
    assert_samples(first, colours, None)
    assert_same(first, second)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.ADOBE_DEFLATE  # no LZW encoder in tifffile


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("L", {"quality": 90}),
        ("RGB", {"quality": 90}),
        ("RGB", {"quality": 80, "subsampling": 0}),
        ("CMYK", {"quality": 90}),
    ],
)
def test_jpeg_round_trip(tmp_path, rng, mode, options):
    data, _, _ = build_8bit(rng, mode, "JPEG", **options)
    first, second, out = roundtrip(tmp_path, data)
    assert (second.meta.format, second.meta.mode, second.meta.bits) == ("JPEG", mode, 8)
    assert np.abs(second.pixels - first.pixels).mean() < 0.03
    with Image.open(io.BytesIO(data)) as source, Image.open(out) as result:
        assert result.quantization == source.quantization
        assert JpegImagePlugin.get_sampling(result) == JpegImagePlugin.get_sampling(source)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("lossless", [True, False])
def test_webp_round_trip(tmp_path, rng, mode, lossless):
    data, colours, alpha = build_8bit(rng, mode, "WEBP", lossless=lossless, quality=90, exact=True)
    first, second, out = roundtrip(tmp_path, data)
    assert (second.meta.format, second.meta.mode) == ("WEBP", mode)
    assert (b"VP8L" in out.read_bytes()[12:40]) == lossless
    if lossless:
        assert_samples(first, colours, alpha)
        assert_same(first, second)
    else:
        assert np.abs(second.pixels - first.pixels).mean() < 0.05
        if alpha is not None:
            np.testing.assert_array_equal(second.alpha, first.alpha)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "L;16", "RGB;16", "RGBA;16"])
def test_heif_round_trip(tmp_path, rng, mode):
    data = build_heif(rng, mode, chroma=444)
    first, second, out = roundtrip(tmp_path, data)
    source = np.asarray(pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False))
    source = source.reshape(H, W, -1)[..., : first.meta.channels] / (65535 if mode.endswith(";16") else 255)
    np.testing.assert_allclose(first.pixels, source, atol=1e-6)
    assert (first.meta.format, first.meta.mode, first.meta.bits) == ("HEIF", mode, 16 if mode.endswith(";16") else 8)
    assert (second.meta.format, second.meta.mode, second.meta.bits) == ("HEIF", mode, first.meta.bits)
    assert np.abs(second.pixels - first.pixels).mean() < 0.03
    assert (first.alpha is None) == (second.alpha is None) == (mode[3:4] != "A")
    written = pillow_heif.open_heif(out, convert_hdr_to_8bit=False).info
    assert written["bit_depth"] == (10 if mode.endswith(";16") else 8)
    assert written.get("chroma") == (None if mode.startswith("L") else 444)


def test_heif_metadata_carried_and_rotation_applied(tmp_path, rng):
    nclx = {"color_primaries": 9, "transfer_characteristics": 16, "matrix_coefficients": 9, "full_range_flag": 1}
    data = build_heif(rng, "RGB;16", exif=exif_bytes(6), icc_profile=ICC, xmp=b"<x:xmpmeta/>", **nclx)
    first, second, out = roundtrip(tmp_path, data)
    assert (first.meta.width, first.meta.height) == (H, W), "libheif turns the pixels as the file says"
    written = pillow_heif.open_heif(out).info
    exif = Image.Exif()
    exif.load(written["exif"])
    assert (exif[274], exif[271]) == (1, "TestCam"), "so the output says they are upright"
    assert (second.meta.width, second.meta.height) == (H, W)
    assert written["icc_profile"] == ICC and written["xmp"] == b"<x:xmpmeta/>"
    without_icc = roundtrip(tmp_path, build_heif(rng, "RGB", **nclx), name="nclx.img")[2]
    profile = pillow_heif.open_heif(without_icc).info["nclx_profile"]
    assert {key: profile[key] for key in nclx} == nclx


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_avif_round_trip(tmp_path, rng, mode):
    data, colours, alpha = build_8bit(rng, mode, "AVIF", quality=90, exif=exif_bytes(6), xmp=b"<x:xmpmeta/>")
    first, second, out = roundtrip(tmp_path, data)
    assert (first.meta.format, first.meta.mode, first.meta.bits) == ("AVIF", mode, 8)
    assert (second.meta.format, second.meta.mode) == ("AVIF", mode)
    assert first.pixels.shape[:2] == (H, W), "pixels are not turned: the Orientation is carried"
    assert np.abs(second.pixels - first.pixels).mean() < 0.03
    with Image.open(out) as im:
        assert (im.getexif().get(274), im.getexif().get(271), im.info["xmp"]) == (6, "TestCam", b"<x:xmpmeta/>")
    if alpha is not None:
        assert np.abs(second.alpha.astype(int) - first.alpha).mean() < 8


def test_avif_above_8_bits_is_refused(tmp_path, rng):
    data = bytearray(build_8bit(rng, "RGB", "AVIF")[0])
    data[data.index(b"av1C") + 6] |= 0x40  # the AV1 configuration's high_bitdepth flag: a 10-bit stream
    assert "10-bit AVIF is not supported" in bad(tmp_path, "ten.avif", bytes(data))


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_heif_and_avif_told_apart_by_brand(tmp_path, rng, fmt):
    """Either may give the generic HEIF brand mif1 as its major brand; AVIF's list of brands holds avif."""
    data = bytearray(build_8bit(rng, "RGB", "AVIF")[0] if fmt == "AVIF" else build_heif(rng, "RGB"))
    data[8:12] = b"mif1"
    (tmp_path / "photo.jpg").write_bytes(bytes(data))
    assert read_image(tmp_path / "photo.jpg").meta.format == fmt


@pytest.mark.parametrize(
    ("fmt", "mode", "channels"),
    [
        ("PNG", "L", 1),
        ("TIFF", "RGBA", 3),
        ("JPEG", "CMYK", 4),
        ("AVIF", "RGB", 3),
        ("HEIF", "RGBA", 3),
        ("HEIF", "L", 1),
    ],
)
def test_probe_reads_the_size_and_colour_channels_from_the_header(tmp_path, rng, fmt, mode, channels):
    (tmp_path / "x.img").write_bytes(build_heif(rng, mode) if fmt == "HEIF" else build_8bit(rng, mode, fmt)[0])
    assert probe(tmp_path / "x.img") == (W, H, channels)
    if fmt == "HEIF":  # libheif reads the whole file: one over the byte limit is not read
        with pytest.raises(ImageError, match="file is too large"):
            probe(tmp_path / "x.img", max_bytes=(tmp_path / "x.img").stat().st_size - 1)
    (tmp_path / "x.img").write_bytes(b"not an image\n" * 10)
    with pytest.raises(ImageError, match="cannot read the image header"):
        probe(tmp_path / "x.img")


def test_format_from_content_not_extension(tmp_path, rng):
    data, _, _ = build_8bit(rng, "RGB", "PNG")
    first, second, out = roundtrip(tmp_path, data, name="really-a-png.jpg")
    assert first.meta.format == "PNG"
    assert out.read_bytes().startswith(b"\x89PNG")
    assert_same(first, second)


def test_multiframe_uses_first_frame(tmp_path, rng):
    frames = [Image.frombytes("RGB", (W, H), u8(rng, 3).tobytes()) for _ in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    first, second, _ = roundtrip(tmp_path, buffer.getvalue())
    np.testing.assert_array_equal(np.rint(first.pixels * 255).astype(np.uint8), np.asarray(frames[0]))
    assert_same(first, second)
    assert (first.meta.frames, second.meta.frames) == (2, 1), "the file's frames are counted; one is written"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "TIFF16", "HEIF", "MPO"])
def test_the_frames_of_a_file_are_counted(tmp_path, rng, fmt):
    """MPO: a JPEG with more images after it, as phones store gain and depth maps."""
    path = tmp_path / "frames.img"
    if fmt == "HEIF":
        images = pillow_heif.from_bytes(mode="RGB", size=(W, H), data=u8(rng, 3).tobytes())
        for _ in range(2):
            images.add_frombytes(mode="RGB", size=(W, H), data=u8(rng, 3).tobytes())
        images.save(path, quality=90)
    elif fmt == "TIFF16":
        with tifffile.TiffWriter(path) as tif:
            for _ in range(3):
                tif.write(rng.integers(0, 65536, (H, W), np.uint16), photometric="minisblack")
    else:
        frames = [Image.frombytes("RGB", (W, H), u8(rng, 3).tobytes()) for _ in range(3)]
        frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100)
    assert read_image(path).meta.frames == 3
    write_image(tmp_path / "one.img", read_image(path).pixels, read_image(path))
    assert read_image(tmp_path / "one.img").meta.frames == 1


def test_write_clips_and_rounds(tmp_path, rng):
    data, _, _ = build_8bit(rng, "L", "PNG")
    source = tmp_path / "in.png"
    source.write_bytes(data)
    picture = read_image(source)
    pixels = np.full_like(picture.pixels, 2.0)
    pixels[0, 0] = -1.0
    pixels[0, 1] = 0.5
    write_image(tmp_path / "out.png", pixels, picture)
    result = np.asarray(Image.open(tmp_path / "out.png"))
    assert result[0, 0] == 0 and result[0, 1] == 128 and result[5, 5] == 255


@pytest.mark.parametrize("mode", ["RGBA;16", "LA;16"])
def test_samples_converted_band_by_band_equal_one_pass(tmp_path, rng, mode):
    data, _, _ = build_16bit(rng, mode, "PNG")
    (tmp_path / "in.png").write_bytes(data)
    picture = read_image(tmp_path / "in.png")
    pixels = picture.pixels + rng.normal(0, 0.2, picture.pixels.shape).astype(np.float32)
    pixels[0, 0] = np.nan
    whole = _samples(pixels, picture, band=H)
    np.testing.assert_array_equal(_samples(pixels, picture, band=3), whole)
    assert whole[0, 0, 0] == 0 and whole.max() == 65535
    np.testing.assert_array_equal(whole[..., -1], picture.alpha)


# ---------------------------------------------------------------- metadata


def check_exif_icc(path, exif_expected=True, icc_expected=True):
    with Image.open(path) as im:
        exif = dict(im.getexif())  # before load: Pillow drops a TIFF's Orientation when it loads
        im.load()
        if icc_expected:
            assert im.info.get("icc_profile") == ICC
        if exif_expected:
            assert exif.get(274) == 6
            assert exif.get(271) == "TestCam"


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("JPEG", "RGB"),
        ("PNG", "RGB"),
        ("PNG", "RGBA"),
        ("WEBP", "RGB"),
        ("TIFF", "RGB"),
        ("TIFF", "CMYK"),
        ("PNG", "LA"),
        ("AVIF", "RGB"),
    ],
)
def test_exif_and_icc_carried_8bit(tmp_path, rng, fmt, mode):
    data, _, _ = build_8bit(rng, mode, fmt, exif=exif_bytes(), icc_profile=ICC)
    first, second, out = roundtrip(tmp_path, data)
    assert first.meta.icc_profile == ICC
    check_exif_icc(out)
    assert second.meta.icc_profile == ICC


@pytest.mark.parametrize("mode", ["L;16", "RGB;16", "RGBA;16", "LA;16"])
def test_exif_icc_dpi_carried_16bit_png(tmp_path, rng, mode):
    data, colours, alpha = build_16bit(rng, mode, "PNG")
    iccp = b"sRGB\0\0" + zlib.compress(ICC)
    phys = struct.pack(">IIB", 11811, 11811, 1)  # 300 dpi
    data = add_png_chunks(
        data, [(b"iCCP", iccp), (b"eXIf", exif_bytes()[6:]), (b"pHYs", phys), (b"tEXt", b"Comment\0hello")]
    )
    first, second, out = roundtrip(tmp_path, data)
    assert_same(first, second)
    check_exif_icc(out)
    with Image.open(out) as im:
        im.load()
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert im.info["Comment"] == "hello"
    encoded = out.read_bytes()
    assert encoded.index(b"iCCP") < encoded.index(b"IDAT") and encoded.index(b"eXIf") < encoded.index(b"IDAT")
    assert encoded[24] == 16


def test_exif_and_icc_carried_16bit_tiff(tmp_path, rng):
    colours = u16(rng, 3)
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        colours,
        photometric="rgb",
        iccprofile=ICC,
        resolution=(300, 300),
        resolutionunit="INCH",
        extratags=[(274, "H", 1, 6, True), (271, "s", 0, "TestCam", True)],
    )
    first, second, out = roundtrip(tmp_path, buffer.getvalue())
    assert_same(first, second)
    with tifffile.TiffFile(out) as tif:
        tags = tif.pages.first.tags
        assert bytes(tags[34675].value) == ICC
        assert int(tags[274].value) == 6
        assert tags[271].value == "TestCam"
        assert tags[282].value[0] / tags[282].value[1] == pytest.approx(300)
    check_exif_icc(out)


@pytest.mark.parametrize(("fmt", "mode"), [("TIFF", "RGB"), ("TIFF", "L"), ("JPEG", "L"), ("PNG", "RGB")])
def test_orientation_does_not_rotate_pixels(tmp_path, rng, fmt, mode):
    data, colours, _ = (
        build_8bit(rng, mode, fmt, exif=exif_bytes(6), compression="tiff_lzw")
        if fmt == "TIFF"
        else build_8bit(rng, mode, fmt, exif=exif_bytes(6))
    )
    first, second, out = roundtrip(tmp_path, data)
    assert first.pixels.shape[:2] == (H, W) and (first.meta.width, first.meta.height) == (W, H)
    if fmt != "JPEG":
        assert_samples(first, colours, None)
        assert_same(first, second)
    with Image.open(out) as im:
        assert im.getexif().get(274) == 6


def test_tiff_exif_sub_ifd_carried(tmp_path, rng):
    exif = Image.Exif()
    exif[274] = 8
    exif[0x8769] = {0x9003: "2024:01:02 03:04:05"}  # DateTimeOriginal
    data, _, _ = build_8bit(rng, "RGB", "TIFF", exif=exif.tobytes())
    _, _, out = roundtrip(tmp_path, data)
    with Image.open(out) as im:
        result = im.getexif()
        assert result[274] == 8
        assert im.size == (H, W)  # Pillow reports the displayed (rotated) size
        assert result.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_16bit_tiff_exif_and_gps_ifds_carried(tmp_path, rng, byteorder):
    """The date taken, exposure and GPS position of a 16-bit TIFF (a raw converter's export), through two writes."""
    tifffile.imwrite(tmp_path / "plain.tif", u16(rng, 3), photometric="rgb", byteorder=byteorder)
    plain = read_image(tmp_path / "plain.tif")
    exif = Image.Exif()
    exif[271] = "TestCam"
    exif[0x8769] = {0x9003: "2024:01:02 03:04:05", 0x829A: 0.01, 0xA005: 1234}  # with a stale Interop pointer
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0)}
    source = plain._replace(meta=replace(plain.meta, exif=exif.tobytes()))
    write_image(tmp_path / "first.tif", source.pixels, source)
    again = read_image(tmp_path / "first.tif")
    write_image(tmp_path / "second.tif", again.pixels, again)
    for name in ("first.tif", "second.tif"):
        with Image.open(tmp_path / name) as written:
            result = written.getexif()
            assert result[271] == "TestCam"
            assert result.get_ifd(0x8769) == {0x9003: "2024:01:02 03:04:05", 0x829A: 0.01}, name
            assert result.get_ifd(0x8825) == {1: "N", 2: (48.0, 51.0, 30.0)}, name
        with tifffile.TiffFile(tmp_path / name) as written:
            assert written.pages.first.bitspersample == 16
            np.testing.assert_array_equal(written.pages.first.asarray(), tifffile.imread(tmp_path / "plain.tif"))


def test_16bit_tiff_leaves_out_an_exif_ifd_that_cannot_be_written(tmp_path, rng, monkeypatch):
    """An EXIF IFD that Pillow cannot write again is left out, and so is the tag that would have held its place."""
    import denoiser.imageio as imageio

    tifffile.imwrite(tmp_path / "plain.tif", u16(rng, 3), photometric="rgb")
    plain = read_image(tmp_path / "plain.tif")
    exif = Image.Exif()
    exif[271] = "TestCam"
    exif[0x8769] = {0x9003: "2024:01:02 03:04:05"}
    exif[0x8825] = {1: "N"}
    writable = imageio._ifd_bytes
    monkeypatch.setattr(imageio, "_ifd_bytes", lambda exif, tag, at: b"" if tag == 0x8769 else writable(exif, tag, at))
    write_image(tmp_path / "out.tif", plain.pixels, plain._replace(meta=replace(plain.meta, exif=exif.tobytes())))
    with tifffile.TiffFile(tmp_path / "out.tif") as written:
        codes = {tag.code for tag in written.pages.first.tags}
        np.testing.assert_array_equal(written.pages.first.asarray(), tifffile.imread(tmp_path / "plain.tif"))
    assert 0x8825 in codes and not codes & {0x8769, 0x8768, 0x8824}
    with Image.open(tmp_path / "out.tif") as written:
        assert written.getexif()[271] == "TestCam" and written.getexif().get_ifd(0x8825) == {1: "N"}


@pytest.mark.parametrize(
    ("fmt", "mode"), [("PNG", "RGB"), ("JPEG", "RGB"), ("TIFF", "RGB"), ("BMP", "RGB"), ("PNG", "L")]
)
def test_dpi_carried(tmp_path, rng, fmt, mode):
    data, _, _ = build_8bit(rng, mode, fmt, dpi=(150, 150))
    first, _, out = roundtrip(tmp_path, data)
    assert first.meta.dpi == pytest.approx((150, 150), abs=0.02)  # PNG/BMP store dots per metre
    with Image.open(out) as im:
        assert im.info["dpi"] == pytest.approx((150, 150), abs=0.02)


def test_png_text_and_gamma_chunks_carried(tmp_path, rng):
    data, _, _ = build_8bit(rng, "RGB", "PNG")
    data = add_png_chunks(data, [(b"gAMA", struct.pack(">I", 45455)), (b"tEXt", b"Title\0noisy")])
    _, _, out = roundtrip(tmp_path, data)
    with Image.open(out) as im:
        assert im.info["gamma"] == pytest.approx(0.45455)
        assert im.info["Title"] == "noisy"


def test_meta_fields(tmp_path, rng):
    data, _, _ = build_8bit(rng, "RGBA", "PNG")
    (tmp_path / "a.png").write_bytes(data)
    meta = read_image(tmp_path / "a.png").meta
    assert isinstance(meta, ImageMeta)
    assert (meta.format, meta.mode, meta.bits, meta.width, meta.height, meta.channels) == ("PNG", "RGBA", 8, W, H, 3)


# ---------------------------------------------------------------- bad input


def bad(tmp_path, name: str, data: bytes, **kwargs) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        read_image(path, **kwargs)
    return str(info.value)


def test_empty_file(tmp_path):
    assert "empty file" in bad(tmp_path, "empty.png", b"")


@pytest.mark.parametrize(
    "build",
    [
        lambda rng: build_8bit(rng, "RGB", "PNG")[0],
        lambda rng: build_8bit(rng, "RGB", "JPEG")[0],
        lambda rng: build_16bit(rng, "RGB;16", "PNG")[0],
        lambda rng: build_8bit(rng, "RGB", "TIFF")[0],
        lambda rng: build_16bit(rng, "RGB;16", "TIFF")[0],
        lambda rng: build_16bit(rng, "RGB;16", "TIFF", compression="zlib")[0],
        lambda rng: build_8bit(rng, "RGB", "WEBP")[0],
        lambda rng: build_heif(rng, "RGB"),
        lambda rng: build_8bit(rng, "RGB", "AVIF")[0],
    ],
    ids=["png", "jpeg", "png16", "tiff", "tiff16", "tiff16-deflate", "webp", "heif", "avif"],
)
def test_truncated(tmp_path, rng, build):
    data = build(rng)
    message = bad(tmp_path, "cut.img", data[: len(data) * 2 // 3])
    assert "truncated" in message and "cut.img" in message


def test_text_file_named_png(tmp_path):
    assert "not an image" in bad(tmp_path, "notes.png", b"hello, this is not an image\n" * 10)


def test_unsupported_format(tmp_path, rng):
    data = pillow_bytes(Image.frombytes("RGB", (W, H), u8(rng, 3).tobytes()), "GIF")
    assert "unsupported image format GIF" in bad(tmp_path, "a.gif", data)


# the first 16 bytes of camera raw files (exiftool's test images, whose image data is stripped)
RAW_HEADERS = {
    "Canon CR2": "49492a00100000004352020058210000",
    "Canon CR3": "00000018667479706372782000000001",
    "Canon CRW": "49491a00000048454150434344520200",
    "Fujifilm RAF": "46554a4946494c4d4343442d52415720",
    "Minolta MRW": "004d524d00000a0c0050524400000018",
    "Panasonic RW2": "494955001800000088e774d8f8251d4d",
    "Phase One IIQ": "49492a00080a00004949494943776152",
    "Sigma X3F": "464f5662020002003032303031323334",
    "Olympus ORF": "49495253080000000000000000000000",
}


@pytest.mark.parametrize("kind", sorted(RAW_HEADERS))
def test_camera_raw_told_by_its_signature(tmp_path, kind):
    data = bytes.fromhex(RAW_HEADERS[kind]) + bytes(4096)
    assert f"camera raw ({kind}) is not supported" in bad(tmp_path, "photo.raw", data)


@pytest.mark.parametrize(("layout", "kind"), [("DNG", "DNG"), ("NEF", "TIFF-based, NIKON"), ("PEF", "TIFF-based")])
def test_camera_raw_told_by_its_tiff_layout_not_read_as_its_preview(tmp_path, rng, layout, kind):
    assert f"camera raw ({kind}" in bad(tmp_path, "photo.tif", tiff_raw(rng, layout))


@pytest.mark.parametrize(("subfiletype", "frames"), [(0, 2), (1, 1)])
def test_a_tiff_counts_the_full_size_images_of_its_subifds(tmp_path, rng, subfiletype, frames):
    """A second full-size image in a SubIFD counts as a frame; a reduced-resolution one (a thumbnail) does not."""
    path = tmp_path / "sub.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(u8(rng, 3), photometric="rgb", subifds=1)
        tif.write(u8(rng, 3), photometric="rgb", subfiletype=subfiletype)
    assert read_image(path).meta.frames == frames


def test_a_layered_tiffs_layers_count_as_a_frame(tmp_path, rng):
    """Photoshop keeps a layered TIFF's layers in ImageSourceData beside their composite, the page that is read."""
    layers = b"Adobe Photoshop Document Data Block\x00" + bytes(64)
    tifffile.imwrite(
        tmp_path / "layered.tif", u8(rng, 3), photometric="rgb", extratags=[(37724, 7, len(layers), layers, True)]
    )
    assert read_image(tmp_path / "layered.tif").meta.frames == 2


@pytest.mark.parametrize(
    "build",
    [
        lambda rng: build_8bit(rng, "RGB", "PNG")[0],
        lambda rng: build_8bit(rng, "RGB", "JPEG")[0],
        lambda rng: build_16bit(rng, "RGB;16", "PNG")[0],
        lambda rng: build_16bit(rng, "RGB;16", "TIFF")[0],
        lambda rng: build_8bit(rng, "RGB", "WEBP")[0],
        lambda rng: build_heif(rng, "RGB"),
        lambda rng: build_8bit(rng, "RGB", "AVIF")[0],
    ],
    ids=["png", "jpeg", "png16", "tiff16", "webp", "heif", "avif"],
)
def test_over_pixel_limit(tmp_path, rng, build):
    message = bad(tmp_path, "big.img", build(rng), max_pixels=H * W - 1)
    assert "too large" in message and f"{W} x {H}" in message


def test_huge_header_checked_before_decoding_and_pillow_limit_untouched(tmp_path):
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 10))
    limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "too large" in bad(tmp_path, "bomb.png", data + png_chunk(b"IEND", b""))
        assert "truncated" in bad(tmp_path, "bomb2.png", data + png_chunk(b"IEND", b""), max_pixels=10**9)
    assert Image.MAX_IMAGE_PIXELS == limit


def test_pillow_global_limit_neither_applies_nor_leaks(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # far below H * W; restored after the test
    for fmt in ("PNG", "JPEG", "BMP"):
        (tmp_path / "ok.img").write_bytes(build_8bit(rng, "RGB", fmt)[0])
        assert read_image(tmp_path / "ok.img").meta.format == fmt
    for fmt in ("TIFF", "WEBP"):  # these plugins check Pillow's limit themselves
        assert "too large" in bad(tmp_path, "bomb.img", build_8bit(rng, "RGB", fmt)[0])


@pytest.mark.parametrize("mode", ["F", "I", "LAB"])
def test_unsupported_mode(tmp_path, rng, mode):
    array = {
        "F": rng.random((H, W), dtype=np.float32),
        "I": rng.integers(0, 2**31, (H, W), dtype=np.int32),
        "LAB": u8(rng, 3),
    }[mode]
    im = Image.fromarray(array) if mode != "LAB" else Image.frombytes("LAB", (W, H), array.tobytes())
    assert f"unsupported image mode {mode}" in bad(tmp_path, "odd.tif", pillow_bytes(im, "TIFF"))


def test_unsupported_16bit_tiff_sample_format(tmp_path, rng):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rng.integers(-1000, 1000, (H, W), dtype=np.int16))
    assert "unsupported image mode" in bad(tmp_path, "signed.tif", buffer.getvalue())


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path)


def test_write_errors(tmp_path, rng):
    data, _, _ = build_8bit(rng, "RGB", "PNG")
    (tmp_path / "a.png").write_bytes(data)
    picture = read_image(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError):  # an error of the disk or the path is raised as it is
        write_image(tmp_path / "missing-dir" / "out.png", picture.pixels, picture)
    assert not (tmp_path / "missing-dir").exists()
    with pytest.raises(ImageError, match="expected"):
        write_image(tmp_path / "out.png", picture.pixels[..., :1], picture)


def test_formats_other_than_heif_need_no_pillow_heif(tmp_path, rng):
    """The GPU check's kit carries no pillow-heif: imageio imports it only for a HEIF file."""
    (tmp_path / "a.png").write_bytes(build_8bit(rng, "RGB", "PNG")[0])
    code = (
        "import sys; sys.modules['pillow_heif'] = None; from denoiser.imageio import read_image, write_image; "
        "picture = read_image(sys.argv[1]); write_image(sys.argv[2], picture.pixels, picture)"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, tmp_path / "a.png", tmp_path / "b.png"], check=True, cwd=root)
    assert read_image(tmp_path / "b.png").meta.format == "PNG"


def test_module_has_no_heavy_imports():
    import denoiser.imageio as module

    source = open(module.__file__).read()
    for name in ("click", "keras", "tensorflow"):
        assert f"import {name}" not in source
