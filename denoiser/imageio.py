"""Image file I/O: read an image as float pixels and write results back like the source.

Supported formats are PNG, JPEG, TIFF, BMP, WebP, HEIF (HEIC) and AVIF. The output keeps the input's
format, mode, bit depth, alpha plane and metadata: ICC profile, EXIF and DPI everywhere the format
has them, plus JPEG quantization tables, subsampling, progressive mode, comment, XMP (extended XMP
included), IPTC/Photoshop (APP13) blocks and what follows the image (a motion photo's video); WebP
lossless/lossy and XMP; PNG text, gamma/chromaticity/sRGB/cICP, sBIT and tIME chunks; TIFF
compression, descriptive tags (see _TIFF_TAGS), the EXIF and GPS IFDs and IPTC; HEIF chroma
subsampling, colour profile (nclx), XMP, thumbnails and a motion photo's video box; AVIF XMP. Not
carried: PNG bKGD/sPLT/hIST, other TIFF private tags, and HEIF depth maps and auxiliary images.
Pixels are never rotated: the EXIF Orientation tag is carried, so the output displays like the
input; HEIF is the exception, as libheif applies its rotation and mirroring while decoding and the
Orientation is reset to 1.
Camera raw files (sensor data, whose first TIFF page is often a preview) are refused.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np
import tifffile
from PIL import (
    AvifImagePlugin,
    BmpImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

if TYPE_CHECKING:
    import pillow_heif  # imported where a HEIF file is met, so that the rest needs no libheif (the GPU check's kit)

FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "HEIF", "AVIF")
_SUPPORTED = "PNG, JPEG, TIFF, BMP, WebP, HEIF (HEIC), AVIF"  # for error messages
# x265's quality for HEIF outputs: phone photos re-encoded at 70 take 1.1 to 2 times their files' bytes and lose
# 51-55 dB in PSNR; at 90, 2.4 to 4.7 times (docs/development.md)
HEIF_QUALITY = 70

DEFAULT_MAX_PIXELS = 100_000_000
# A 100-MP 16-bit RGBA TIFF stored uncompressed, the largest image the pixel limit lets in, is 800 MB: 1 GiB leaves
# room for its metadata, and a bigger file cannot be an image within the default pixel limit (or is mostly padding).
DEFAULT_MAX_BYTES = 1 << 30
# The most a PNG iCCP profile may inflate to: ICC profiles are at most a few MB.
MAX_ICC_BYTES = 16 << 20

# source mode -> (colour channels, bits per sample); the alpha plane, when any, comes on top
MODES = {
    "1": (1, 1),
    "L": (1, 8),
    "LA": (1, 8),
    "RGB": (3, 8),
    "RGBA": (3, 8),
    "P": (3, 8),  # palette, processed as RGB; alpha when the palette has transparency
    "CMYK": (4, 8),
    "L;16": (1, 16),
    "LA;16": (1, 16),
    "RGB;16": (3, 16),
    "RGBA;16": (3, 16),
    "CMYK;16": (4, 16),
}

_PLUGINS = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.jpeg_factory,  # an MPO (a JPEG with gain or depth maps after it) counts its images
    "TIFF": TiffImagePlugin.TiffImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "AVIF": AvifImagePlugin.AvifImageFile,
}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)
# Camera raw formats by their signature (offset, bytes); TIFF-based raws without one of their own (DNG, NEF, ARW,
# PEF, ...) are told by their layout (_tiff_subimages). Sensor data is not an image, and the preview that Pillow
# would read from a raw file is not the photo.
_RAW_SIGNATURES = (
    (0, b"IIRO", "Olympus ORF"),
    (0, b"IIRS", "Olympus ORF"),
    (0, b"MMOR", "Olympus ORF"),
    (0, b"IIU\x00", "Panasonic RW2"),
    (0, b"FUJIFILMCCD-RAW", "Fujifilm RAF"),
    (0, b"FOVb", "Sigma X3F"),
    (0, b"\x00MRM", "Minolta MRW"),
    (6, b"HEAPCCDR", "Canon CRW"),
    (4, b"ftypcrx ", "Canon CR3"),
    (8, b"CR\x02", "Canon CR2"),
    (8, b"IIII", "Phase One IIQ"),
)
# a JPEG marker: 0xFF and a code that is neither a stuffed zero, a restart nor another fill byte
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_IPTC_TAG = 33723  # TIFF's IPTC-NAA tag: captions, keywords and credits
# the EXIF and GPS IFDs of a TIFF, and the tags tifffile writes in their place (it will not write these; renamed after)
_SUB_IFDS = {0x8769: 0x8768, 0x8825: 0x8824}
_INTEROP_IFD = 0xA005  # a pointer inside the EXIF IFD, which would point nowhere once the IFD is moved
_RAW_PHOTOMETRIC = (32803, 34892)  # TIFF photometric interpretations of sensor data: CFA and LinearRaw (DNG)
_DNG_VERSION = 50706
_PHOTOSHOP_LAYERS = 37724  # ImageSourceData: a layered TIFF's layers, which the output does not keep
# ISO BMFF brands in the ftyp box; AVIF's are looked for first, as AVIF files list HEIF's generic mif1 too
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
# HEIF modes as pillow-heif gives them (10- and 12-bit samples scaled to 16 bits) -> ours
_HEIF_MODES = {"L": "L", "RGB": "RGB", "RGBA": "RGBA", "I;16": "L;16", "RGB;16": "RGB;16", "RGBA;16": "RGBA;16"}
_HEIF_NCLX = ("color_primaries", "transfer_characteristics", "matrix_coefficients", "full_range_flag")
# what the decoders raise on malformed data (Pillow, tifffile, OpenCV, zlib; libavif and libheif: RuntimeError)
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    ArithmeticError,
    TypeError,
    struct.error,
    zlib.error,
    cv2.error,
    RuntimeError,
)
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_ENCODE_ERRORS = (OSError, ValueError, KeyError, TypeError, struct.error, zlib.error, cv2.error, RuntimeError)

# PNG ancillary chunks copied verbatim (colour space, text, time); iCCP, eXIf and pHYs
# are rebuilt from ImageMeta; bKGD, sPLT, hIST and APNG chunks are dropped.
_PNG_COPY = (b"cHRM", b"cICP", b"gAMA", b"sBIT", b"sRGB", b"tIME", b"tEXt", b"zTXt", b"iTXt")

# TIFF tags carried as "EXIF" (descriptive tags, the EXIF and GPS sub-IFDs); structural
# tags are rewritten by the encoder, others (Photoshop layers, IPTC, private tags) are dropped.
_TIFF_ASCII = (269, 270, 271, 272, 285, 305, 306, 315, 316, 33432)
_TIFF_TAGS = (*_TIFF_ASCII, 274, 282, 283, 296, 700, 0x8769, 0x8825)
_TIFF_COMPRESSIONS = (
    "raw",
    "tiff_lzw",
    "tiff_adobe_deflate",
    "tiff_deflate",
    "packbits",
    "jpeg",
    "tiff_jpeg",
    "group3",
    "group4",
    "tiff_ccitt",
)
# 16-bit TIFF goes through tifffile, which carries the ICC profile, resolution, Orientation,
# XMP, IPTC and the ASCII tags above; the EXIF and GPS IFDs are appended after it (_with_sub_ifds).
_TIFF16_MODES = {(1, 1, 0): "L;16", (1, 2, 1): "LA;16", (2, 3, 0): "RGB;16", (2, 4, 1): "RGBA;16", (5, 4, 0): "CMYK;16"}
_TIFF16_PHOTOMETRIC = {1: "minisblack", 2: "rgb", 5: "separated"}
# The 16-bit TIFF compressions tifffile decodes here: none and deflate, each strip's inflated size checked first (see
# _check_inflation). The rest (LZW, PackBits, ...) go through OpenCV's libtiff, which decodes into strip-sized buffers.
_TIFFFILE_CODECS = (1, 8, 32946)
_INFLATE_STEP = 1 << 20  # bytes inflated at a time while counting


class ImageError(ValueError):
    """A file that cannot be read or written as an image; the message is a clear, user-facing reason."""


@dataclass(frozen=True)
class ImageMeta:
    """Everything write_image needs to write pixels back like the source file."""

    format: str  # one of FORMATS
    mode: str  # a key of MODES, e.g. "L", "RGBA", "P", "CMYK", "L;16", "RGB;16"
    bits: int  # bits per sample: 1 (mode "1"), 8 or 16
    width: int
    height: int
    icc_profile: bytes | None = None
    exif: bytes | None = None  # as stored by the format (for TIFF: the carried tags)
    dpi: tuple[float, float] | None = None
    palette: bytes | None = None  # mode "P": the RGB palette, 3 bytes per entry
    transparency: Any = None  # PNG tRNS as Pillow gives it: index, per-entry alpha bytes or colour key
    frames: int = 1  # images in the file (APNG frames, TIFF pages, HEIF and MPO gain or depth maps): the first is read
    options: dict = field(default_factory=dict, compare=False, repr=False)  # format-specific encoder settings

    @property
    def channels(self) -> int:
        """Colour channels of the float pixels (1, 3 or 4)."""
        return MODES[self.mode][0]


class Picture(NamedTuple):
    """Float colour pixels, the untouched alpha plane and what is needed to write them back."""

    pixels: np.ndarray  # float32, H x W x C in [0, 1]; C = 1 (gray), 3 (RGB) or 4 (CMYK)
    alpha: np.ndarray | None  # H x W in the source dtype (uint8 or uint16), or None
    meta: ImageMeta


# ---------------------------------------------------------------- reading


def read_image(path, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES) -> Picture:
    """Read an image file; multi-frame files (APNG, animated WebP, multi-page TIFF, MPO) give their first frame.

    A file over max_bytes is refused before it is read; an image over max_pixels before it is decoded.
    """
    path = Path(path)
    data = _read_file(path, max_bytes)
    fmt = _sniff(data, path.name)
    reader = {"PNG": _read_png, "TIFF": _read_tiff, "HEIF": _read_heif, "AVIF": _read_avif}.get(fmt, _read_pillow)
    samples, meta = reader(data, fmt, path.name, max_pixels)
    return _picture(samples, meta)


def probe(path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[int, int, int]:
    """(width, height, colour channels) from an image file's header, decoding no pixels; ImageError if unreadable.

    libheif parses a HEIF file from all of its bytes, so one over max_bytes is refused as read_image refuses it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            heif = _bmff_format(handle.read(1024)) == "HEIF"
        if heif:
            image, _ = _open_heif(_read_file(path, max_bytes), "HEIF", path.name)
            return (*image.size, MODES[_HEIF_MODES.get(image.mode, "RGB")][0])
        with Image.open(path) as im:
            return (*im.size, MODES.get(im.mode, (len(im.getbands()),))[0])
    except ImageError:
        raise
    except (*_DECODE_ERRORS, *_BOMB) as e:
        raise ImageError(f"{path.name}: cannot read the image header ({e})") from None


def _read_file(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; a missing, unreadable, empty or over-max_bytes file is an ImageError.

    The size is checked before reading, and at most max_bytes + 1 bytes are read, so a file still growing cannot
    slip past the limit (nor is a buffer of max_bytes reserved for a small file).
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            _check_bytes(size, max_bytes, path.name)
            data = handle.read(size + 1)
            if len(data) > size:  # it grew since its size was taken
                data += handle.read(max_bytes + 1 - len(data))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read file ({e.strerror or e})") from None
    _check_bytes(len(data), max_bytes, path.name)
    if not data:
        raise ImageError(f"{path.name}: empty file")
    return data


def _check_bytes(size: int, max_bytes: int, name: str) -> None:
    """Refuse a file of more than max_bytes bytes."""
    if size > max_bytes:
        raise ImageError(f"{name}: file is too large: {size:,} bytes exceeds the limit of {max_bytes:,}")


def _sniff(data: bytes, name: str) -> str:
    """The format from the file's signature bytes, whatever its extension."""
    for offset, magic, kind in _RAW_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            raise _camera_raw(name, kind)
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if bmff := _bmff_format(data):
        return bmff
    other = _pillow_format_name(data)
    if other:
        raise ImageError(f"{name}: unsupported image format {other} (supported: {_SUPPORTED})")
    raise ImageError(f"{name}: not an image file (or not a supported format: {_SUPPORTED})")


def _bmff_format(data: bytes) -> str | None:
    """AVIF or HEIF from the major and compatible brands of an ISO BMFF file's ftyp box, or None."""
    if data[4:8] != b"ftyp":
        return None
    end = min(struct.unpack(">I", data[:4])[0], len(data), 1024)
    brands = {data[8:12]} | {data[pos : pos + 4] for pos in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    return "HEIF" if brands & _HEIF_BRANDS else None


def _pillow_format_name(data: bytes) -> str | None:
    """The name Pillow gives an image of a format we do not support, or None."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format
    except (*_DECODE_ERRORS, *_BOMB):
        return None


def _check_size(width: int, height: int, max_pixels: int, name: str) -> None:
    """Refuse an image whose header says it has more than max_pixels pixels."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: invalid image size {width} x {height}")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image is too large: {width} x {height} = {width * height:,} pixels "
            f"exceeds the limit of {max_pixels:,}"
        )


def _too_large_for_pillow(name: str, err: BaseException) -> ImageError:
    """The error for an image within max_pixels but over Pillow's own decompression-bomb limit.

    Pillow's TIFF and WebP plugins check Image.MAX_IMAGE_PIXELS themselves; that global
    is left alone, and its error (or its warning, where warnings are errors) is mapped here.
    """
    return ImageError(f"{name}: image is too large to decode ({err})")


def _corrupt(name: str, fmt: str, err: BaseException) -> ImageError:
    """The error for a file whose data cannot be decoded."""
    return ImageError(f"{name}: corrupt or truncated {fmt} file ({err})")


def _camera_raw(name: str, kind: str) -> ImageError:
    """The error for a camera raw file, which holds sensor data rather than an image."""
    return ImageError(f"{name}: camera raw ({kind}) is not supported; develop it into a TIFF, PNG or JPEG first")


def _unsupported(name: str, mode: str) -> ImageError:
    """The error for an image mode this module cannot process."""
    return ImageError(f"{name}: unsupported image mode {mode}")


def _open_pillow(data: bytes, fmt: str, name: str, max_pixels: int) -> Image.Image:
    """Open (not decode) with Pillow's plugin (or JPEG's factory) for fmt and check the size from the header.

    The plugin is used directly rather than Image.open, so Pillow's global
    decompression-bomb limit never fires; max_pixels is the only limit.
    """
    try:
        im = _PLUGINS[fmt](io.BytesIO(data))
    except _BOMB as e:
        raise _too_large_for_pillow(name, e) from None
    except _DECODE_ERRORS as e:
        raise _corrupt(name, fmt, e) from None
    _check_size(*im.size, max_pixels, name)
    return im


def _load_pillow(im: Image.Image, fmt: str, name: str) -> Image.Image:
    """Decode the pixels in their stored orientation.

    Truncated data raises because ImageFile.LOAD_TRUNCATED_IMAGES is left at False.
    Pillow rotates TIFFs by their Orientation tag while loading; that is undone here.
    """
    orientation = None
    if fmt == "TIFF":
        with contextlib.suppress(*_DECODE_ERRORS):
            orientation = im.getexif().get(274)
    try:
        im.load()
    except _BOMB as e:
        raise _too_large_for_pillow(name, e) from None
    except _DECODE_ERRORS as e:
        raise _corrupt(name, fmt, e) from None
    if orientation in _UNDO_ORIENTATION and 274 not in getattr(im, "tag_v2", {274: None}):
        im = im.transpose(_UNDO_ORIENTATION[orientation])
    return im


_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _read_pillow(data: bytes, fmt: str, name: str, max_pixels: int, **extra) -> tuple[np.ndarray, ImageMeta]:
    """Read a JPEG, BMP, WebP, 8-bit TIFF or Pillow-readable PNG."""
    im = _open_pillow(data, fmt, name, max_pixels)
    try:
        format_fields = _FORMAT_FIELDS[fmt](im, data)  # before decoding: Pillow drops a TIFF's Orientation then
    except _DECODE_ERRORS as e:
        raise _corrupt(name, fmt, e) from None
    im = _load_pillow(im, fmt, name)
    samples, mode, palette = _pillow_samples(im, fmt, name, extra.pop("bit_depth", 8))
    info = im.info
    fields = dict(
        icc_profile=info.get("icc_profile") or None,
        exif=info.get("exif") or None,
        dpi=_dpi(info.get("dpi")),
        palette=palette,
        transparency=info.get("transparency"),
        frames=_frame_count(im, fmt, name),
    )
    fields.update(format_fields, **extra)
    return samples, _meta(fmt, mode, im.size, **fields)


def _frame_count(im: Image.Image, fmt: str, name: str) -> int:
    """The frames or pages of a Pillow image; a file whose later pages cannot be read is corrupt."""
    try:
        return getattr(im, "n_frames", 1)
    except _DECODE_ERRORS as e:
        raise _corrupt(name, fmt, e) from None


def _pillow_samples(im: Image.Image, fmt: str, name: str, bit_depth: int) -> tuple[np.ndarray, str, bytes | None]:
    """The decoded samples (H x W x S, alpha last), our mode name and the palette for "P"."""
    if im.mode == "P":
        return (*_palette_samples(im), bytes(im.getpalette("RGB") or ()))
    if im.mode in ("I;16", "I") and fmt == "PNG" and bit_depth == 16:
        return np.asarray(im).astype(np.uint16), "L;16", None
    if im.mode not in ("1", "L", "LA", "RGB", "RGBA", "CMYK"):
        raise _unsupported(name, im.mode)
    return np.asarray(im).astype(np.uint8, copy=False), im.mode, None


def _palette_samples(im: Image.Image) -> tuple[np.ndarray, str]:
    """RGB (plus alpha when the palette has transparency) of a palette image."""
    index = np.asarray(im)
    palette = np.zeros((256, 3), np.uint8)
    entries = np.frombuffer(bytes(im.getpalette("RGB") or ()), np.uint8).reshape(-1, 3)[:256]
    palette[: len(entries)] = entries
    samples = palette[index]
    entry_alpha = _palette_alpha(im.info.get("transparency"), 256)
    if entry_alpha is not None:
        samples = np.concatenate([samples, entry_alpha[index][..., None]], axis=2)
    return samples, "P"


def _palette_alpha(transparency, entries: int) -> np.ndarray | None:
    """Alpha of each palette entry from a tRNS value (one index or per-entry bytes)."""
    if transparency is None:
        return None
    alpha = np.full(entries, 255, np.uint8)
    if isinstance(transparency, int):
        if transparency < entries:
            alpha[transparency] = 0
    else:
        values = np.frombuffer(bytes(transparency), np.uint8)[:entries]
        alpha[: len(values)] = values
    return alpha


def _dpi(dpi) -> tuple[float, float] | None:
    """A (x, y) DPI pair as floats, or None when absent, zero or not two positive finite numbers."""
    try:
        x, y = (float(value) for value in dpi)
    except _DECODE_ERRORS:
        return None
    return (x, y) if x > 0 and y > 0 and math.isfinite(x + y) else None


def _meta(fmt: str, mode: str, size: tuple[int, int], **fields) -> ImageMeta:
    """An ImageMeta with the bit depth implied by mode."""
    return ImageMeta(format=fmt, mode=mode, bits=MODES[mode][1], width=size[0], height=size[1], **fields)


def _jpeg_fields(im: Image.Image, data: bytes) -> dict:
    """JPEG: quantization tables, chroma subsampling, progressive, comment, XMP, IPTC, and what follows the image (a
    motion photo's video) unless it is an MPO's images, whose index would not hold for the new image."""
    options: dict[str, Any] = {"qtables": im.quantization}
    sampling = JpegImagePlugin.get_sampling(im)
    if sampling != -1:
        options["subsampling"] = sampling
    if im.info.get("progressive") or im.info.get("progression"):
        options["progressive"] = True
    for key in ("comment", "xmp"):
        if im.info.get(key):
            options[key] = im.info[key]
    if kept := [_app_segment(marker, body) for marker, body in im.applist if _kept(marker, body)]:
        options["extra"] = b"".join(kept)
    trailer = data[_jpeg_end(data) :]
    if trailer.strip(b"\x00\xff") and getattr(im, "n_frames", 1) == 1:
        options["trailer"] = trailer
    return {"options": options}


def _kept(marker: str, body: bytes) -> bool:
    """Whether a JPEG APP segment is written back verbatim: IPTC captions, keywords and credits with Photoshop's
    resources (APP13), and extended XMP (the rest of an XMP packet over 64 KB, such as a depth map)."""
    return marker == "APP13" or (marker == "APP1" and body.startswith(b"http://ns.adobe.com/xmp/extension/\x00"))


def _app_segment(marker: str, body: bytes) -> bytes:
    """A JPEG APPn segment ("APP13", say) as stored: 0xFF, its code, its length and the body."""
    return bytes((0xFF, 0xE0 + int(marker[3:]))) + struct.pack(">H", len(body) + 2) + body


def _jpeg_end(data: bytes) -> int:
    """Where the first JPEG image in data ends, after its EOI marker (len(data) where it has none).

    Google's and Samsung's motion photos append their video there, and find it from the end of the file.
    """
    pos = 2
    while found := _JPEG_MARKER.search(data, pos):
        start, code = found.start(), data[found.start() + 1]
        if code == 0xD9:
            return start + 2
        standalone = code in (0x01, 0xD8)  # TEM and SOI have no length; after SOS the search runs on in the scan
        pos = start + 2 + (0 if standalone else int.from_bytes(data[start + 2 : start + 4], "big"))
    return len(data)


def _webp_fields(im: Image.Image, data: bytes) -> dict:
    """WebP: lossless input stays lossless, lossy is written at quality 90; XMP is carried."""
    lossless = _webp_is_lossless(data)
    options: dict[str, Any] = {"lossless": lossless, "exact": True}
    if not lossless:
        options["quality"] = 90
    if im.info.get("xmp"):
        options["xmp"] = im.info["xmp"]
    return {"options": options, "dpi": None}


def _webp_is_lossless(data: bytes) -> bool:
    """Whether the first image chunk of a WebP RIFF stream is VP8L (lossless)."""
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        pos = pos + 8 + 16 if kind == b"ANMF" else pos + 8 + size + (size & 1)
    return False


def _tiff_fields(im: Image.Image, data: bytes) -> dict:
    """8-bit TIFF: the compression (deflate where Pillow cannot write the source's) and the carried tags."""
    compression = im.info.get("compression") or "raw"
    compression = compression if compression in _TIFF_COMPRESSIONS else "tiff_adobe_deflate"
    options: dict[str, Any] = {"compression": compression}
    if compression in ("jpeg", "tiff_jpeg"):
        options["quality"] = 90
    return {"exif": _tiff_exif(im), "options": options}


def _tiff_exif(im: Image.Image) -> bytes | None:
    """The carried tags (see _TIFF_TAGS) of a TIFF as EXIF bytes; unreadable tags are skipped."""
    exif = Image.Exif()
    with contextlib.suppress(*_DECODE_ERRORS):
        source = im.getexif()
        for tag in (t for t in _TIFF_TAGS if t in source):
            with contextlib.suppress(*_DECODE_ERRORS):
                exif[tag] = _sub_ifd(source, tag) if tag in _SUB_IFDS else source[tag]
    with contextlib.suppress(*_DECODE_ERRORS):
        return exif.tobytes() if len(exif) else None
    return None


def _sub_ifd(source: Image.Exif, tag: int) -> dict:
    """The EXIF or GPS IFD of loaded EXIF as a dict, less the pointer to an interoperability IFD."""
    return {key: value for key, value in source.get_ifd(tag).items() if key != _INTEROP_IFD}


def _avif_fields(im: Image.Image, data: bytes) -> dict:
    """AVIF: written at quality 90; XMP is carried."""
    options: dict[str, Any] = {"quality": 90}
    if im.info.get("xmp"):
        options["xmp"] = im.info["xmp"]
    return {"options": options}


def _no_fields(im: Image.Image, data: bytes) -> dict:
    """Formats whose metadata is all in the common fields."""
    return {}


_FORMAT_FIELDS = {
    "JPEG": _jpeg_fields,
    "WEBP": _webp_fields,
    "AVIF": _avif_fields,
    "TIFF": _tiff_fields,
    "BMP": _no_fields,
    "PNG": _no_fields,
}


# ---------------------------------------------------------------- PNG


def _png_chunks(data: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The (type, payload) chunks of a PNG stream and whether it reaches IEND."""
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if pos + 12 + size > len(data):
            break
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        if kind == b"IEND":
            return chunks, True
        pos += 12 + size
    return chunks, False


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One encoded PNG chunk with its CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _read_png(data: bytes, fmt: str, name: str, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """Read a PNG: 16-bit colour through OpenCV (Pillow drops it to 8 bits), the rest through Pillow."""
    chunks, complete = _png_chunks(data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise _corrupt(name, fmt, "no valid IHDR chunk")
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    _check_size(width, height, max_pixels, name)
    if not complete:
        raise _corrupt(name, fmt, "the file is truncated: no IEND chunk")
    fields = _png_fields(chunks, name)
    if depth == 16 and colour in (2, 4, 6):
        return _read_png16(data, name, colour, (width, height), fields)
    return _read_pillow(data, fmt, name, max_pixels, bit_depth=depth, **fields)


def _png_fields(chunks: list[tuple[bytes, bytes]], name: str) -> dict:
    """ICC profile, EXIF, DPI and the verbatim-copied chunks of a PNG."""
    found = dict(chunks)
    fields: dict[str, Any] = {"icc_profile": None, "exif": None, "dpi": None}
    if b"iCCP" in found:
        fields["icc_profile"] = _iccp_profile(found[b"iCCP"], name)
    if found.get(b"eXIf"):
        fields["exif"] = b"Exif\x00\x00" + found[b"eXIf"]
    if len(found.get(b"pHYs", b"")) == 9:
        x, y, unit = struct.unpack(">IIB", found[b"pHYs"])
        fields["dpi"] = _dpi((x * 0.0254, y * 0.0254)) if unit == 1 else None
    if len(found.get(b"acTL", b"")) == 8:  # an animated PNG: its frame count
        fields["frames"] = max(1, struct.unpack(">I", found[b"acTL"][:4])[0])
    fields["options"] = {"chunks": tuple((k, v) for k, v in chunks if k in _PNG_COPY + (b"tRNS",))}
    return fields


def _iccp_profile(payload: bytes, name: str) -> bytes | None:
    """The profile of an iCCP chunk (name, NUL, method, zlib stream), inflated to at most MAX_ICC_BYTES.

    A corrupt chunk gives None, as the decoders ignore it too; one that inflates past MAX_ICC_BYTES is an
    ImageError rather than dropped, as writing the output without it would change its colours.
    """
    _, nul, rest = payload.partition(b"\0")
    inflate = zlib.decompressobj()
    try:
        profile = inflate.decompress(rest[1:], MAX_ICC_BYTES) if nul else b""
    except zlib.error:
        return None
    if inflate.unconsumed_tail or (len(profile) == MAX_ICC_BYTES and not inflate.eof):
        raise ImageError(f"{name}: the ICC profile inflates to more than {MAX_ICC_BYTES >> 20} MiB")
    return profile if inflate.eof and profile else None


def _read_png16(data: bytes, name: str, colour: int, size, fields: dict) -> tuple[np.ndarray, ImageMeta]:
    """Decode a 16-bit RGB, RGBA or gray+alpha PNG with OpenCV (BGR order, gray+alpha as BGRA)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint16 or image.ndim != 3:
        raise _corrupt(name, "PNG", "OpenCV cannot decode this 16-bit PNG")
    if colour == 4:
        samples, mode = image[..., [0, 3]], "LA;16"
    elif colour == 6:
        samples, mode = image[..., [2, 1, 0, 3]], "RGBA;16"
    else:
        samples, mode = image[..., [2, 1, 0]], "RGB;16"
    return np.ascontiguousarray(samples), _meta("PNG", mode, size, **fields)


# ---------------------------------------------------------------- HEIF and AVIF


def _read_heif(data: bytes, fmt: str, name: str, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """Read the primary image of a HEIF (HEIC) file with pillow-heif; 10 and 12 bits come as 16-bit samples."""
    heif, images = _open_heif(data, fmt, name)
    _check_size(*heif.size, max_pixels, name)
    if heif.mode not in _HEIF_MODES:
        raise _unsupported(name, heif.mode)
    try:
        samples = np.asarray(heif)
    except _DECODE_ERRORS as e:
        raise _corrupt(name, fmt, str(e).strip()) from None
    info = heif.info
    with contextlib.suppress(*_DECODE_ERRORS):
        _pillow_heif().set_orientation(info)  # libheif has rotated the pixels already
    options: dict[str, Any] = {"quality": HEIF_QUALITY}
    options.update((key, info[key]) for key in ("chroma", "xmp", "thumbnails") if info.get(key))  # thumbnails: sizes
    options.update((key, info["nclx_profile"][key]) for key in _HEIF_NCLX if info.get("nclx_profile"))
    boxes = list(_bmff_boxes(data))
    if video := b"".join(data[start:end] for kind, start, end in boxes if kind == b"mpvd"):
        options["trailer"] = video  # a Samsung motion photo's video, in a box of its own after the image data
    size = (samples.shape[1], samples.shape[0])
    maps = len(info.get("depth_images") or ()) + sum(map(len, (info.get("aux") or {}).values()))
    maps += any(kind == b"moov" for kind, _, _ in boxes)  # an image sequence's track, which libheif does not read
    fields = dict(icc_profile=info.get("icc_profile") or None, exif=info.get("exif") or None, frames=images + maps)
    return samples, _meta(fmt, _HEIF_MODES[heif.mode], size, options=options, **fields)


def _bmff_boxes(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """The top-level boxes of an ISO BMFF file as (type, start, end), up to the first malformed one."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1 and pos + 16 <= len(data):
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        if size < 8 or pos + size > len(data):
            return
        yield kind, pos, pos + size
        pos += size


def _open_heif(data: bytes, fmt: str, name: str) -> tuple[pillow_heif.HeifImage, int]:
    """The primary image of a HEIF or AVIF file (not decoded yet) and the number of top-level images."""
    try:
        heif = _pillow_heif().open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
        return heif[heif.primary_index], len(heif)
    except _DECODE_ERRORS as e:
        raise _corrupt(name, fmt, str(e).strip()) from None


def _pillow_heif():
    """The pillow-heif module, imported on first use."""
    import pillow_heif

    return pillow_heif


def _read_avif(data: bytes, fmt: str, name: str, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """Read an 8-bit AVIF with Pillow; Pillow decodes 10 and 12 bits at 8, so those are refused rather than cut."""
    bits = _open_heif(data, fmt, name)[0].info["bit_depth"]
    if bits > 8:
        raise ImageError(f"{name}: {bits}-bit AVIF is not supported (8-bit only); convert it to a 16-bit PNG or TIFF")
    return _read_pillow(data, fmt, name, max_pixels)


# ---------------------------------------------------------------- TIFF


def _read_tiff(data: bytes, fmt: str, name: str, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """Read a TIFF: 16-bit through tifffile (Pillow drops 16-bit colour to 8 bits), the rest through Pillow."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            subimages = _tiff_subimages(page, name)
            _check_size(page.imagewidth, page.imagelength, max_pixels, name)
            iptc = page.tags.valueof(_IPTC_TAG)  # as bytes, whichever type it is stored as (Photoshop: LONG)
            deep = page.bitspersample == 16
            if deep:
                samples, meta = _read_tiff16(page, data, name)
                meta = replace(meta, frames=len(tif.pages))
    except ImageError:
        raise
    except _DECODE_ERRORS as e:
        raise _corrupt(name, fmt, e) from None
    if not deep:
        samples, meta = _read_pillow(data, fmt, name, max_pixels)
    carried = {"iptc": iptc} if isinstance(iptc, bytes) and iptc else {}
    return samples, replace(meta, frames=meta.frames + subimages, options=meta.options | carried)


def _tiff_subimages(page, name: str) -> int:
    """The full-size images in the first page's SubIFDs, and one more for Photoshop's layers (the page is their
    composite); a camera raw (DNG, NEF, ARW, PEF, ...) is an ImageError.

    A raw file's first page is a small preview, or the sensor data itself, with the sensor data in a SubIFD.
    """
    subs = list(page.pages or ()) if page.subifds else []
    if _DNG_VERSION in page.tags:
        raise _camera_raw(name, "DNG")
    if page.is_reduced or any(int(sub.photometric or 0) in _RAW_PHOTOMETRIC for sub in (page, *subs)):
        raise _camera_raw(name, f"TIFF-based{_tiff_make(page)}")
    return sum(not sub.is_reduced for sub in subs) + (_PHOTOSHOP_LAYERS in page.tags)


def _tiff_make(page) -> str:
    """The camera's maker from the TIFF Make tag, as ", MAKER", or "" without one."""
    make = str(page.tags.valueof(271, "")).strip()
    return f", {make}" if make else ""


def _read_tiff16(page, data: bytes, name: str) -> tuple[np.ndarray, ImageMeta]:
    """Decode the first page of a 16-bit TIFF (OpenCV when tifffile lacks the codec, e.g. LZW)."""
    extras = len(page.extrasamples)
    mode = _TIFF16_MODES.get((int(page.photometric), page.samplesperpixel, extras))
    if mode is None or page.dtype != np.uint16:
        raise _unsupported(
            name,
            f"{_enum_name(page.photometric)} with {page.samplesperpixel} samples "
            f"of 16-bit {_enum_name(page.sampleformat)} data",
        )
    separate = page.planarconfig == 2 and page.samplesperpixel > 1
    if page.compression in _TIFFFILE_CODECS:
        _check_inflation(page, data, name)
        samples = page.asarray()
        samples = np.moveaxis(samples, 0, -1) if separate else samples
    else:
        samples = _decode_tiff_opencv(data, mode, name)
    options = {
        "photometric": _TIFF16_PHOTOMETRIC[int(page.photometric)],
        "planarconfig": "separate" if separate else "contig",
        "extrasamples": tuple(int(e) for e in page.extrasamples),
        "compress": int(page.compression) != 1,
        "predictor": int(page.predictor) == 2,
    }
    fields = _tiff16_tags({tag.code: tag.value for tag in page.tags}, data)
    return samples, _meta("TIFF", mode, (page.imagewidth, page.imagelength), options=options, **fields)


def _check_inflation(page, data: bytes, name: str) -> None:
    """Refuse a deflate-compressed page any of whose strips or tiles inflates past the size it holds.

    tifffile inflates each one whole with zlib.decompress, which a tiny strip can make allocate gigabytes; counting
    first, a megabyte at a time, bounds that.
    """
    if page.compression == 1:
        return
    limit, view = _segment_bytes(page), memoryview(data)
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        if _inflated_size(view[offset : offset + count], limit) > limit:
            raise ImageError(f"{name}: a strip of this TIFF inflates past its {limit:,} bytes")


def _segment_bytes(page) -> int:
    """The bytes one strip or tile of a 16-bit page holds once decoded."""
    samples = page.samplesperpixel if page.planarconfig == 1 else 1
    if page.is_tiled:
        return page.tilelength * page.tilewidth * max(page.tiledepth, 1) * samples * 2
    return min(page.rowsperstrip, page.imagelength) * page.imagewidth * samples * 2


def _inflated_size(stream, limit: int) -> int:
    """The size a zlib stream inflates to, counted _INFLATE_STEP bytes at a time; stops once past limit."""
    inflate, size = zlib.decompressobj(), 0
    for start in range(0, len(stream), _INFLATE_STEP):
        pending = stream[start : start + _INFLATE_STEP]
        while pending and size <= limit and not inflate.eof:
            size += len(inflate.decompress(pending, _INFLATE_STEP))
            pending = inflate.unconsumed_tail
        if size > limit or inflate.eof:
            return size
    while size <= limit and not inflate.eof and (chunk := inflate.decompress(b"", _INFLATE_STEP)):
        size += len(chunk)
    return size


def _enum_name(value) -> str:
    """The name of a tifffile enum member, or the raw number."""
    return getattr(value, "name", str(value))


def _decode_tiff_opencv(data: bytes, mode: str, name: str) -> np.ndarray:
    """Decode a 16-bit gray/RGB/RGBA TIFF with OpenCV (its libtiff has every codec)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    channels = {"L;16": 1, "RGB;16": 3, "RGBA;16": 4}.get(mode)
    if image is None or image.dtype != np.uint16 or (image.shape + (1,))[2] != channels:
        raise _corrupt(name, "TIFF", f"OpenCV cannot decode this {mode} TIFF")
    return image if channels == 1 else image[..., [2, 1, 0, 3][:channels]]


def _tiff16_tags(tags: dict[int, Any], data: bytes) -> dict:
    """ICC profile, DPI and the tags tifffile can write back (as EXIF bytes, see _with_sub_ifds for the EXIF and GPS
    IFDs) from a 16-bit TIFF."""
    exif = Image.Exif()
    for code in (*_TIFF_ASCII, 274, 700):
        if code in tags:
            exif[code] = int(tags[code]) if code == 274 else tags[code]
    with contextlib.suppress(*_DECODE_ERRORS):
        source = Image.Exif()
        source.load(data)  # a classic TIFF file is laid out as EXIF is (a BigTIFF's sub-IFDs are left)
        for tag in (tag for tag in _SUB_IFDS if tag in source):
            exif[tag] = _sub_ifd(source, tag)
    icc = tags.get(34675)
    return {
        "icc_profile": bytes(icc) if icc else None,
        "exif": exif.tobytes() if len(exif) else None,
        "dpi": _tiff16_dpi(tags),
    }


def _tiff16_dpi(tags: dict[int, Any]) -> tuple[float, float] | None:
    """DPI from the resolution tags (per inch or per centimetre), or None when absent or unusable."""
    unit = tags.get(296, 2)
    if 282 not in tags or 283 not in tags or unit not in (2, 3):
        return None
    scale = 2.54 if unit == 3 else 1.0
    with contextlib.suppress(*_DECODE_ERRORS):
        return _dpi([scale * n / d for n, d in (tags[282], tags[283])])
    return None


# ---------------------------------------------------------------- pixels


def _picture(samples: np.ndarray, meta: ImageMeta) -> Picture:
    """Split decoded samples into float colour pixels and the untouched alpha plane."""
    samples = samples if samples.ndim == 3 else samples[..., None]
    colours = meta.channels
    pixels = samples[..., :colours].astype(np.float32)
    pixels /= np.float32((1 << meta.bits) - 1)
    alpha = samples[..., colours].copy() if samples.shape[2] > colours else None
    return Picture(pixels, alpha, meta)


def _samples(pixels: np.ndarray, like: Picture, band: int = 256) -> np.ndarray:
    """Float pixels back to the source dtype (clipped, rounded), with the source alpha appended.

    Rows are converted `band` at a time, so no float temporary the size of the image is made.
    """
    meta = like.meta
    pixels = np.asarray(pixels)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.shape != (meta.height, meta.width, meta.channels):
        raise ImageError(
            f"pixels have shape {pixels.shape}, expected "
            f"{(meta.height, meta.width, meta.channels)} to write a {meta.mode} image"
        )
    dtype = np.uint16 if meta.bits == 16 else np.uint8
    samples = np.empty(pixels.shape[:2] + (meta.channels + (like.alpha is not None),), dtype)
    for top in range(0, meta.height, band):
        rows = np.nan_to_num(np.clip(pixels[top : top + band], 0.0, 1.0), nan=0.0)
        samples[top : top + band, :, : meta.channels] = np.rint(rows * ((1 << meta.bits) - 1))
    if like.alpha is not None:
        samples[..., meta.channels] = like.alpha
    return samples


def _palette_indices(samples: np.ndarray, meta: ImageMeta) -> np.ndarray:
    """Nearest palette entry for each pixel (no dithering), among entries with that pixel's alpha."""
    palette = np.frombuffer(meta.palette, np.uint8).reshape(-1, 3)
    entry_alpha = _palette_alpha(meta.transparency, len(palette))
    rgb = samples[..., :3].reshape(-1, 3)
    if samples.shape[2] == 3 or entry_alpha is None:
        return _nearest(rgb, palette, np.arange(len(palette))).reshape(samples.shape[:2])
    alpha = samples[..., 3].reshape(-1)
    index = np.zeros(len(rgb), np.uint8)
    for value in np.unique(alpha):
        where = alpha == value
        gap = np.abs(entry_alpha.astype(int) - int(value))
        candidates = np.flatnonzero(gap == gap.min())
        index[where] = _nearest(rgb[where], palette[candidates], candidates)
    return index.reshape(samples.shape[:2])


def _nearest(colours: np.ndarray, palette: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """labels[i] of the palette colour nearest (squared RGB distance) to each colour.

    |p|^2 - 2 c.p orders palette entries like |c - p|^2; every term is an integer
    below 2**24, so the float32 matrix product is exact.
    """
    keys = colours.astype(np.int32) @ np.array([65536, 256, 1], np.int32)
    unique, inverse = np.unique(keys, return_inverse=True)
    rgb = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], axis=1).astype(np.float32)
    entries = palette.astype(np.float32)
    offset = (entries**2).sum(axis=1)
    best = np.empty(len(unique), np.intp)
    for start in range(0, len(unique), 16384):
        best[start : start + 16384] = (offset - 2 * rgb[start : start + 16384] @ entries.T).argmin(axis=1)
    return labels[best][inverse.reshape(-1)].astype(np.uint8)


# ---------------------------------------------------------------- writing


def write_image(path, pixels: np.ndarray, like: Picture) -> None:
    """Write float H x W x C pixels to path in the format, mode, bit depth, alpha and metadata of `like`, and after
    the encoded image what followed the source's (a motion photo's video)."""
    samples = _samples(pixels, like)
    trailer = like.meta.options.get("trailer", b"")
    meta = replace(like.meta, options={k: v for k, v in like.meta.options.items() if k != "trailer"})
    if meta.format == "PNG" and meta.bits == 16 and meta.mode != "L;16":
        encoder = _encode_png16
    elif meta.format == "TIFF" and meta.bits == 16:
        encoder = _encode_tiff16
    elif meta.format == "HEIF":
        encoder = _encode_heif
    else:
        encoder = _encode_pillow
    try:
        data = encoder(samples, meta) + trailer
    except _ENCODE_ERRORS as e:
        raise ImageError(f"{Path(path).name}: cannot encode {meta.mode} {meta.format} ({e})") from None
    _write_file(Path(path), data)


def _write_file(path: Path, data: bytes) -> None:
    """Write encoded bytes; an OSError (a full disk, a bad name) is raised as it is, for the caller to judge."""
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _pillow_image(samples: np.ndarray, meta: ImageMeta) -> Image.Image:
    """A Pillow image of the source mode from the samples."""
    size = (meta.width, meta.height)
    if meta.mode == "1":
        return Image.frombytes("1", size, np.packbits(samples[..., 0].astype(bool), axis=1).tobytes())
    if meta.mode == "L;16":
        return Image.frombytes("I;16", size, samples.astype("<u2").tobytes())
    if meta.mode == "P":
        im = Image.frombytes("P", size, _palette_indices(samples, meta).tobytes())
        im.putpalette(meta.palette, "RGB")
        return im
    return Image.frombuffer(meta.mode, size, np.ascontiguousarray(samples), "raw", meta.mode, 0, 1)


def _encode_pillow(samples: np.ndarray, meta: ImageMeta) -> bytes:
    """Encode with Pillow, carrying ICC, EXIF, DPI, transparency and the format's own options."""
    options = {k: v for k, v in meta.options.items() if k not in ("chunks", "iptc")}
    if meta.options.get("iptc"):
        options["tiffinfo"] = {_IPTC_TAG: meta.options["iptc"]}
    if meta.icc_profile and meta.format != "BMP":
        options["icc_profile"] = meta.icc_profile
    if meta.exif and meta.format != "BMP":
        options["exif"] = meta.exif
    if meta.dpi and meta.format != "WEBP":
        options["dpi"] = meta.dpi
    if meta.transparency is not None and meta.format == "PNG":
        options["transparency"] = meta.transparency
    if meta.format == "PNG":
        options["pnginfo"] = _pnginfo(meta.options.get("chunks", ()))
    buffer = io.BytesIO()
    _pillow_image(samples, meta).save(buffer, format=meta.format, **options)
    return buffer.getvalue()


def _encode_heif(samples: np.ndarray, meta: ImageMeta) -> bytes:
    """Encode HEIF (HEVC) with pillow-heif: 16-bit samples as 10 bits, the source's chroma and colour profile."""
    heif = _pillow_heif().from_bytes(mode=meta.mode, size=(meta.width, meta.height), data=samples.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, exif=meta.exif, icc_profile=meta.icc_profile, **meta.options)
    return buffer.getvalue()


def _pnginfo(chunks) -> PngImagePlugin.PngInfo:
    """Pillow's container for the verbatim-copied PNG chunks (tRNS is written by Pillow itself)."""
    info = PngImagePlugin.PngInfo()
    for kind, payload in chunks:
        if kind != b"tRNS":
            info.add(kind, payload)
    return info


def _encode_png16(samples: np.ndarray, meta: ImageMeta) -> bytes:
    """Encode 16-bit RGB/RGBA with OpenCV (gray+alpha directly), then splice the metadata chunks in."""
    if meta.mode == "LA;16":
        png = _encode_png16_gray_alpha(samples)
    else:
        order = [2, 1, 0, 3][: samples.shape[2]]
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(samples[..., order]))
        if not ok:
            raise ValueError("OpenCV could not encode the PNG")
        png = encoded.tobytes()
    return _png_splice(png, _png16_metadata(meta))


def _encode_png16_gray_alpha(samples: np.ndarray) -> bytes:
    """A minimal 16-bit gray+alpha PNG (OpenCV cannot write two channels)."""
    height, width = samples.shape[:2]
    rows = samples.astype(">u2").view(np.uint8).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        _png_chunk(kind, payload)
        for kind, payload in ((b"IHDR", header), (b"IDAT", zlib.compress(raw, 6)), (b"IEND", b""))
    )


def _png16_metadata(meta: ImageMeta) -> bytes:
    """iCCP, eXIf, pHYs and the verbatim-copied chunks, encoded."""
    chunks = []
    if meta.icc_profile:
        chunks.append((b"iCCP", b"ICC Profile\0\0" + zlib.compress(meta.icc_profile)))
    if meta.exif:
        exif = meta.exif[6:] if meta.exif.startswith(b"Exif\x00\x00") else meta.exif
        chunks.append((b"eXIf", exif))
    if meta.dpi:
        ppm = [round(d / 0.0254) for d in meta.dpi]
        chunks.append((b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    copied = [(k, v) for k, v in meta.options.get("chunks", ()) if k != b"tRNS" or meta.mode == "RGB;16"]
    return b"".join(_png_chunk(k, v) for k, v in chunks + copied)


def _png_splice(png: bytes, extra: bytes) -> bytes:
    """Insert encoded chunks into a PNG stream just before its first IDAT."""
    pos = 8
    while pos < len(png) and png[pos + 4 : pos + 8] != b"IDAT":
        pos += 12 + struct.unpack(">I", png[pos : pos + 4])[0]
    return png[:pos] + extra + png[pos:]


def _encode_tiff16(samples: np.ndarray, meta: ImageMeta) -> bytes:
    """Encode a 16-bit TIFF with tifffile: deflate + predictor when the source was compressed.

    Carried: ICC profile, resolution, Orientation, XMP, IPTC, the ASCII tags of _TIFF_ASCII and the EXIF and GPS
    IFDs. Not carried: Photoshop resources and private tags;
    LZW and other codecs tifffile cannot write without imagecodecs become deflate.
    """
    options = meta.options
    data = samples[..., 0] if samples.shape[2] == 1 else samples
    if options["planarconfig"] == "separate":
        data = np.moveaxis(data, -1, 0)
    kwargs: dict[str, Any] = {}
    if meta.dpi:
        kwargs.update(resolution=meta.dpi, resolutionunit="INCH")
    if options["extrasamples"]:
        kwargs["extrasamples"] = options["extrasamples"]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(data),
        photometric=options["photometric"],
        planarconfig=options["planarconfig"],
        compression="zlib" if options["compress"] else None,
        predictor=options["predictor"] and options["compress"],
        iccprofile=meta.icc_profile,
        extratags=_tiff16_extratags(meta.exif, options.get("iptc")),
        byteorder="<",
        software=False,
        metadata=None,
        **kwargs,
    )
    return _with_sub_ifds(buffer.getvalue(), meta.exif)


def _tiff16_extratags(exif_bytes: bytes | None, iptc: bytes | None) -> list[tuple]:
    """tifffile extratags for IPTC, and Orientation, XMP, the ASCII tags and stand-ins for the EXIF and GPS IFDs
    (see _with_sub_ifds) carried in the EXIF bytes; none for an IFD that Pillow cannot write."""
    tags = [(_IPTC_TAG, 7, len(iptc), iptc, True)] if iptc else []
    if not exif_bytes:
        return tags
    exif = Image.Exif()
    exif.load(exif_bytes)
    tags += [(code, "s", 0, _text(exif[code]), True) for code in _TIFF_ASCII if code in exif]
    if 274 in exif:
        tags.append((274, "H", 1, int(exif[274]), True))
    if 700 in exif:
        xmp = bytes(exif[700]) if not isinstance(exif[700], str) else exif[700].encode()
        tags.append((700, "B", len(xmp), xmp, True))
    tags += [
        (stand_in, "I", 1, 0, True) for tag, stand_in in _SUB_IFDS.items() if tag in exif and _ifd_bytes(exif, tag, 0)
    ]
    return tags


def _with_sub_ifds(tiff: bytes, exif_bytes: bytes | None) -> bytes:
    """A little-endian TIFF from tifffile with the EXIF and GPS IFDs of exif_bytes appended, each pointed at from its
    stand-in's entry in the first page, which takes the real tag (the same place in the sorted entries)."""
    exif = Image.Exif()
    exif.load(exif_bytes or b"")
    if not tiff.startswith(b"II*\x00") or not any(tag in exif for tag in _SUB_IFDS):
        return tiff
    tags, view = {stand_in: tag for tag, stand_in in _SUB_IFDS.items()}, memoryview(tiff)
    parts, appended, done, end = [], [], 0, len(tiff)
    first = struct.unpack_from("<I", tiff, 4)[0]
    for entry in range(first + 2, first + 2 + 12 * struct.unpack_from("<H", tiff, first)[0], 12):
        tag = tags.get(struct.unpack_from("<H", tiff, entry)[0])
        start = end + end % 2  # an IFD starts on a word boundary
        if blob := _ifd_bytes(exif, tag, start) if tag else b"":
            parts += [view[done:entry], struct.pack("<HHII", tag, 4, 1, start)]
            appended += [bytes(start - end), blob]
            done, end = entry + 12, start + len(blob)
    return b"".join([*parts, view[done:], *appended])


def _ifd_bytes(exif: Image.Exif, tag: int, offset: int) -> bytes:
    """The EXIF or GPS IFD of loaded EXIF as TIFF bytes to be placed at offset; b"" where Pillow cannot write it."""
    with contextlib.suppress(*_DECODE_ERRORS, *_ENCODE_ERRORS):
        ifd = TiffImagePlugin.ImageFileDirectory_v2(group=tag)
        for key, value in _sub_ifd(exif, tag).items():
            ifd[key] = value
        return ifd.tobytes(offset)
    return b""


def _text(value) -> str:
    """An ASCII TIFF tag's value as text."""
    return value.decode("latin-1").rstrip("\0") if isinstance(value, bytes) else str(value)
