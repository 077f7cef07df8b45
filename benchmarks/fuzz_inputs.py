"""Hostile image files: small valid seeds in every supported format, mutated by a seeded RNG, read back.

    python benchmarks/fuzz_inputs.py --cases 5000 [--seed 0] [--max-pixels N] [--memory-gb 4] [--keep DIR]

Each case is read with `denoiser.imageio.read_image`, the only code that sees a file's bytes (the rest of the
pipeline sees decoded pixels); it must end as pixels or as an ImageError. Prints ok/failed counts by format, every
crash (any other exception, MemoryError included: the address space is capped at --memory-gb), the slowest cases
and the peak memory. A case still running after --hang-seconds stops the run with a traceback; its name is in
DIR/current-case. tests/test_fuzz.py runs the same cases through `denoise batch`.
"""

from __future__ import annotations

import faulthandler
import io
import resource
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "HEIF", "AVIF")
EXTENSIONS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "HEIF": ".heic",
    "AVIF": ".avif",
}
# ISO BMFF boxes of a HEIF or AVIF file whose 32-bit size field a mutation may change
BMFF_BOXES = (b"ftyp", b"meta", b"hdlr", b"pitm", b"iloc", b"iinf", b"iprp", b"ipco", b"ispe", b"ipma", b"mdat")
# values a lying width or height field takes: zero, one, huge, past 16 and 32 bits signed, and random
LIES = (0, 1, 30_000, 65_535, 0x7FFF_FFFF, 0xFFFF_FFFF)
BOMB_BYTES = 64 << 20  # what a planted zlib stream inflates to


class Seed(NamedTuple):
    """A small valid file that mutations start from."""

    name: str
    fmt: str
    data: bytes


class Case(NamedTuple):
    """One fuzz input: its file name (index, seed, mutations, extension), its seed's format and its bytes."""

    name: str
    fmt: str
    data: bytes


# ---------------------------------------------------------------- seeds


def _pixels(rng: np.random.Generator, shape: tuple[int, ...], peak: int = 255) -> np.ndarray:
    """A gradient with noise, so that the files compress like photos rather than like noise."""
    ramp = np.linspace(0, 1, shape[1])[None, :] * np.linspace(0.3, 1, shape[0])[:, None]
    ramp = ramp.reshape(ramp.shape + (1,) * (len(shape) - 2))
    values = ramp * peak * 0.8 + rng.normal(0, peak * 0.05, shape)
    return np.clip(values, 0, peak).astype(np.uint16 if peak > 255 else np.uint8)


def _exif() -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[274], exif[270], exif[305] = 1, "fuzz seed", "denoise"
    return exif.tobytes()


def _icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pillow(array: np.ndarray, fmt: str, mode: str | None = None, **params) -> bytes:
    from PIL import Image

    image = Image.fromarray(array)
    image = image.convert(mode) if mode else image
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _mpo(first: np.ndarray, second: np.ndarray) -> bytes:
    """A JPEG with a second image after it (MPO), as phones store gain and depth maps."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, "MPO", save_all=True, append_images=[Image.fromarray(second)], quality=90)
    return buffer.getvalue()


def _png_text_info():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a fuzz seed " * 20, zip=True)
    info.add_text("Title", "seed")
    return info


def _heif(array: np.ndarray, mode: str, **params) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    size = (array.shape[1], array.shape[0])
    pillow_heif.from_bytes(mode=mode, size=size, data=array.tobytes()).save(buffer, quality=80, **params)
    return buffer.getvalue()


def _png16_rgb(array: np.ndarray, icc: bytes) -> bytes:
    """A 16-bit RGB PNG from OpenCV with an iCCP chunk spliced in after IHDR."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array[..., ::-1]))
    data = encoded.tobytes()
    return data[:33] + png_chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(icc)) + data[33:]


def _tiff16(array: np.ndarray, **params) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **params)
    return buffer.getvalue()


def _tiff_subifd(first: np.ndarray, second: np.ndarray) -> bytes:
    """A TIFF with a second full-size image in a SubIFD of its first page, as camera raws hold their sensor data."""
    import tifffile

    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        tif.write(first, photometric="rgb", subifds=1)
        tif.write(second, photometric="rgb")
    return buffer.getvalue()


def make_seeds(rng: np.random.Generator) -> list[Seed]:
    """Small valid files: gray, colour, alpha, palette, 16-bit where the format has it, with EXIF, ICC and text."""
    gray, rgb, rgba = _pixels(rng, (19, 23)), _pixels(rng, (17, 21, 3)), _pixels(rng, (16, 20, 4))
    gray16, rgb16 = _pixels(rng, (18, 22), 65535), _pixels(rng, (32, 32, 3), 65535)
    exif, icc = _exif(), _icc()
    return [
        Seed("png-gray-text", "PNG", _pillow(gray, "PNG", pnginfo=_png_text_info(), dpi=(300, 300))),
        Seed("png-rgb-icc-exif", "PNG", _pillow(rgb, "PNG", icc_profile=icc, exif=exif)),
        Seed("png-rgba", "PNG", _pillow(rgba, "PNG")),
        Seed("png-palette", "PNG", _pillow(rgb, "PNG", "P", transparency=0)),
        Seed("png-1bit", "PNG", _pillow(gray, "PNG", "1")),
        Seed("png-gray16", "PNG", _pillow(gray16, "PNG")),
        Seed("png-rgb16-icc", "PNG", _png16_rgb(rgb16, icc)),
        Seed("jpeg-gray", "JPEG", _pillow(gray, "JPEG", quality=90)),
        Seed("jpeg-rgb-icc-exif", "JPEG", _pillow(rgb, "JPEG", icc_profile=icc, exif=exif)),
        Seed("jpeg-progressive", "JPEG", _pillow(rgb, "JPEG", progressive=True, subsampling=2)),
        Seed("jpeg-cmyk", "JPEG", _pillow(rgb, "JPEG", "CMYK")),
        Seed("jpeg-mpo", "JPEG", _mpo(rgb, gray)),
        Seed("jpeg-motion", "JPEG", _pillow(rgb, "JPEG", quality=90) + b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom" * 4),
        Seed("tiff-rgb-lzw-icc", "TIFF", _pillow(rgb, "TIFF", compression="tiff_lzw", icc_profile=icc)),
        Seed("tiff-gray-deflate", "TIFF", _pillow(gray, "TIFF", compression="tiff_adobe_deflate", dpi=(72, 72))),
        Seed("tiff-rgba-packbits", "TIFF", _pillow(rgba, "TIFF", compression="packbits")),
        Seed("tiff-gray16", "TIFF", _tiff16(gray16, resolution=(300, 300), resolutionunit="INCH")),
        Seed("tiff-gray16-iptc", "TIFF", _tiff16(gray16, extratags=[(33723, "I", 3, (0x1C027800, 7, 0), True)])),
        Seed("tiff-rgb16-deflate-icc", "TIFF", _tiff16(rgb16, compression="zlib", predictor=True, iccprofile=icc)),
        Seed("tiff-rgb16-tiled", "TIFF", _tiff16(rgb16, tile=(16, 16), compression="zlib")),
        Seed("tiff-rgb-subifd", "TIFF", _tiff_subifd(rgb, rgb[::-1])),
        Seed("webp-lossless", "WEBP", _pillow(rgb, "WEBP", lossless=True)),
        Seed("webp-lossy-icc-exif", "WEBP", _pillow(rgb, "WEBP", quality=80, icc_profile=icc, exif=exif)),
        Seed("webp-rgba", "WEBP", _pillow(rgba, "WEBP", lossless=True)),
        Seed("bmp-rgb", "BMP", _pillow(rgb, "BMP")),
        Seed("bmp-gray", "BMP", _pillow(gray, "BMP")),
        Seed("bmp-1bit", "BMP", _pillow(gray, "BMP", "1")),
        Seed("bmp-rgba", "BMP", _pillow(rgba, "BMP")),
        Seed("heif-rgb-icc-exif", "HEIF", _heif(rgb, "RGB", icc_profile=icc, exif=exif)),
        Seed("heif-rgba", "HEIF", _heif(rgba, "RGBA")),
        Seed("heif-gray16", "HEIF", _heif(gray16, "L;16")),
        Seed("avif-rgb-icc-exif", "AVIF", _pillow(rgb, "AVIF", quality=80, icc_profile=icc, exif=exif)),
        Seed("avif-rgba", "AVIF", _pillow(rgba, "AVIF")),
        Seed("avif-gray", "AVIF", _pillow(gray, "AVIF")),
    ]


# ---------------------------------------------------------------- format structure


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def plant_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """A PNG stream with one more chunk just before its first IDAT."""
    first_idat = next(p for p in _png_chunk_starts(png) if png[p + 4 : p + 8] == b"IDAT")
    return png[:first_idat] + png_chunk(kind, payload) + png[first_idat:]


def _png_chunk_starts(data: bytes) -> list[int]:
    """Where each chunk of a PNG stream starts (its length field)."""
    starts, pos = [], 8
    while pos + 12 <= len(data):
        starts.append(pos)
        pos += 12 + struct.unpack(">I", data[pos : pos + 4])[0]
    return starts


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(position, marker) of each JPEG marker segment with a length field, up to the scan data."""
    segments, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        segments.append((pos, marker))
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return segments


class TiffEntry(NamedTuple):
    """One entry of a TIFF's first IFD: where it is, its tag, type, count and the offset of its value field."""

    pos: int
    tag: int
    kind: int
    count: int
    value_pos: int


def _tiff_entries(data: bytes) -> tuple[str, list[TiffEntry]]:
    """The byte order ("<" or ">") and the entries of a classic TIFF's first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[ifd : ifd + 2])[0]
    entries = []
    for pos in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack(order + "HHI", data[pos : pos + 8])
        entries.append(TiffEntry(pos, tag, kind, n, pos + 8))
    return order, entries


def _set_tiff_value(data: bytearray, order: str, entry: TiffEntry, value: int) -> None:
    """Write a SHORT or LONG into an entry's value field (in place), as its type allows."""
    if entry.kind == 3:
        data[entry.value_pos : entry.value_pos + 2] = struct.pack(order + "H", value & 0xFFFF)
    else:
        data[entry.value_pos : entry.value_pos + 4] = struct.pack(order + "I", value & 0xFFFF_FFFF)


@lru_cache(maxsize=1)
def zlib_bomb() -> bytes:
    """A zlib stream of BOMB_BYTES zeros (about 64 KB)."""
    pack, block = zlib.compressobj(9), bytes(1 << 20)
    return b"".join(pack.compress(block) for _ in range(BOMB_BYTES >> 20)) + pack.flush()


# ---------------------------------------------------------------- mutations


def truncate(data: bytes, fmt: str, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(1, len(data)))] if len(data) > 1 else b""


def flip(data: bytes, fmt: str, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for pos in rng.integers(0, len(out), int(rng.integers(1, 9))):
        out[pos] ^= int(rng.integers(1, 256))
    return bytes(out)


def splice(data: bytes, fmt: str, rng: np.random.Generator) -> bytes:
    """Garbage inserted, or written over the data, at a random place."""
    pos = int(rng.integers(0, len(data)))
    garbage = rng.integers(0, 256, int(rng.integers(1, 65)), np.uint8).tobytes()
    end = pos if rng.random() < 0.5 else pos + len(garbage)
    return data[:pos] + garbage + data[end:]


def _lie(rng: np.random.Generator) -> int:
    return int(rng.choice(LIES)) if rng.random() < 0.8 else int(rng.integers(2, 20_000))


def lying_size(data: bytes, fmt: str, rng: np.random.Generator) -> bytes:
    """The width or height field (or both) in the header set to zero, one, huge or random."""
    out, which = bytearray(data), int(rng.integers(0, 3))  # 0 width, 1 height, 2 both
    fields = [f for i, f in enumerate(_size_fields(out, fmt)) if which in (i, 2)]
    for write in fields:
        write(_lie(rng))
    if fmt == "PNG" and rng.random() < 0.7:  # a lie with a valid CRC gets past the chunk check
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def _size_fields(out: bytearray, fmt: str) -> list[Callable[[int], None]]:
    """Writers of the (width, height) header fields of a seed's format."""

    def put(pos: int, size: int, order: str) -> Callable[[int], None]:
        def write(value: int) -> None:
            out[pos : pos + size] = (value % (1 << (8 * size))).to_bytes(size, order)

        return write

    if fmt == "PNG":
        return [put(16, 4, "big"), put(20, 4, "big")]
    if fmt == "BMP":
        return [put(18, 4, "little"), put(22, 4, "little")]
    if fmt == "JPEG":
        sof = next((pos for pos, marker in _jpeg_segments(bytes(out)) if marker in (0xC0, 0xC1, 0xC2)), None)
        return [] if sof is None else [put(sof + 7, 2, "big"), put(sof + 5, 2, "big")]
    if fmt == "TIFF":
        order, entries = _tiff_entries(bytes(out))
        by_tag = {entry.tag: entry for entry in entries}
        return [lambda v, e=by_tag[tag]: _set_tiff_value(out, order, e, v) for tag in (256, 257) if tag in by_tag]
    if fmt in ("HEIF", "AVIF"):  # the ispe box: version and flags, then the width and height
        ispe = bytes(out).index(b"ispe")
        return [put(ispe + 8, 4, "big"), put(ispe + 12, 4, "big")]
    return _webp_size_fields(out, put)


def _webp_size_fields(out: bytearray, put) -> list[Callable[[int], None]]:
    """Writers of a WebP's canvas (VP8X) or frame (VP8, VP8L) width and height."""
    kind = bytes(out[12:16])
    if kind == b"VP8X":
        return [put(24, 3, "little"), put(27, 3, "little")]
    if kind == b"VP8 ":
        return [put(26, 2, "little"), put(28, 2, "little")]

    def vp8l(shift: int) -> Callable[[int], None]:
        def write(value: int) -> None:
            bits = struct.unpack("<I", out[21:25])[0]
            bits = (bits & ~(0x3FFF << shift)) | (((value - 1) & 0x3FFF) << shift)
            out[21:25] = struct.pack("<I", bits)

        return write

    return [vp8l(0), vp8l(14)]


def wrong_length(data: bytes, fmt: str, rng: np.random.Generator) -> bytes:
    """A chunk, segment, tag count or offset field set to zero, huge or off by a little."""
    out = bytearray(data)
    value = int(rng.choice([0, 1, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF])) if rng.random() < 0.6 else None
    pos, pattern = _length_field(out, fmt, rng)
    size = struct.calcsize(pattern)
    old = struct.unpack(pattern, out[pos : pos + size])[0]
    new = value if value is not None else old + int(rng.integers(-16, 17))
    out[pos : pos + size] = struct.pack(pattern, new % (1 << (8 * size)))
    return bytes(out)


def _length_field(out: bytearray, fmt: str, rng: np.random.Generator) -> tuple[int, str]:
    """A random length-like field of the format: its position and struct pattern."""
    if fmt == "PNG":
        return int(rng.choice(_png_chunk_starts(bytes(out)))), ">I"
    if fmt == "JPEG":
        segments = _jpeg_segments(bytes(out))
        return int(segments[int(rng.integers(0, len(segments)))][0]) + 2, ">H"
    if fmt == "TIFF":
        order, entries = _tiff_entries(bytes(out))
        entry = entries[int(rng.integers(0, len(entries)))]
        return (entry.pos + 4, order + "I") if rng.random() < 0.5 else (entry.value_pos, order + "I")
    if fmt == "BMP":
        return int(rng.choice([2, 10, 14, 34, 46])), "<I"
    if fmt in ("HEIF", "AVIF"):
        starts = [pos - 4 for pos in map(bytes(out).find, BMFF_BOXES) if pos >= 4]
        return int(rng.choice(starts)), ">I"
    return int(rng.choice([4, 16])), "<I"  # WebP: the RIFF size or the first chunk's size


def bomb(data: bytes, fmt: str, rng: np.random.Generator) -> bytes:
    """A zlib stream that inflates to BOMB_BYTES, planted where the format inflates: a PNG iCCP or zTXt chunk
    before the first IDAT, a deflate TIFF's first strip; other formats get a huge splice-free size lie instead."""
    if fmt == "PNG":
        return plant_chunk(data, b"iCCP" if rng.random() < 0.5 else b"zTXt", b"bomb\0\0" + zlib_bomb())
    if fmt == "TIFF":
        order, entries = _tiff_entries(data)
        by_tag = {entry.tag: entry for entry in entries}
        if 273 in by_tag and 279 in by_tag and by_tag[273].count == 1:
            out = bytearray(data)
            _set_tiff_value(out, order, by_tag[273], len(data))
            _set_tiff_value(out, order, by_tag[279], len(zlib_bomb()))
            return bytes(out) + zlib_bomb()
    return lying_size(data, fmt, rng)


MUTATIONS: dict[str, Callable[[bytes, str, np.random.Generator], bytes]] = {
    "truncate": truncate,
    "flip": flip,
    "splice": splice,
    "size": lying_size,
    "length": wrong_length,
    "bomb": bomb,
}
WEIGHTS = np.array([3, 4, 3, 3, 3, 1], float) / 17


def mutate(seed: Seed, rng: np.random.Generator) -> tuple[str, bytes]:
    """One to three mutations of a seed, and their names joined by '+'; a structural mutation that finds no
    structure left to change (after an earlier one) becomes a byte flip."""
    data, names = seed.data, []
    for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
        name = str(rng.choice(list(MUTATIONS), p=WEIGHTS))
        try:
            data = MUTATIONS[name](data, seed.fmt, rng)
        except (ValueError, IndexError, KeyError, StopIteration, struct.error):
            name, data = "flip", flip(data, seed.fmt, rng) if data else data
        names.append(name)
    return "+".join(names), data or seed.data[:1]


def found_cases(seeds: list[Seed]) -> list[Case]:
    """The mutations that made read_image raise something other than an ImageError before it was fixed, made
    again by hand from the seeds."""
    by_name = {seed.name: seed.data for seed in seeds}
    jpeg = bytearray(by_name["jpeg-progressive"])
    sof = next(pos for pos, marker in _jpeg_segments(bytes(jpeg)) if marker == 0xC2)
    jpeg[sof + 2 : sof + 4] = struct.pack(">H", 14)  # 3 components declared, room for 2: Pillow's layer list is short
    tiff = bytearray(by_name["tiff-gray16"])
    order, entries = _tiff_entries(bytes(tiff))
    pointer = next(entry.value_pos for entry in entries if entry.tag == 282)
    resolution = struct.unpack(order + "I", tiff[pointer : pointer + 4])[0]
    tiff[resolution + 4 : resolution + 8] = bytes(4)  # XResolution n/0
    png = plant_chunk(by_name["png-gray-text"], b"iCCP", b"no separator")
    pages = bytearray(by_name["tiff-gray-deflate"])
    order, entries = _tiff_entries(bytes(pages))
    pages += bytes(len(pages) & 1)
    pages[entries[-1].pos + 12 : entries[-1].pos + 16] = struct.pack(order + "I", len(pages))
    pages += struct.pack(order + "HHHIHHI", 1, 259, 3, 1, 1, 0, 0)  # a second page with no width or height
    heif = bytearray(by_name["heif-gray16"])
    heif[heif.index(b"ipma") + 13] ^= 0xB4  # the image's properties given to an item that does not exist
    avif = bytearray(by_name["avif-rgba"])
    mdat = avif.index(b"mdat")
    avif[mdat + 14 : mdat + 44] = bytes(b ^ 0x5A for b in avif[mdat + 14 : mdat + 44])  # AV1 data libavif rejects
    return [
        Case("found-png-iccp-without-nul.png", "PNG", png),
        Case("found-jpeg-short-sof.jpg", "JPEG", bytes(jpeg)),
        Case("found-tiff16-zero-resolution.tif", "TIFF", bytes(tiff)),
        Case("found-tiff-page-without-size.tif", "TIFF", bytes(pages)),
        Case("found-heif-no-image-left.heic", "HEIF", bytes(heif)),
        Case("found-avif-undecodable.avif", "AVIF", bytes(avif)),
    ]


def fuzz_cases(count: int, seed: int = 0) -> Iterator[Case]:
    """The unmutated seeds and the found cases, then mutated seeds up to `count` cases in all, cycling through the
    seeds; one in ten gets the extension of another format (the format is sniffed from the bytes)."""
    rng = np.random.default_rng(seed)
    seeds = make_seeds(rng)
    found = found_cases(seeds)
    yield from found
    for index in range(count - len(found)):
        base = seeds[index % len(seeds)]
        label, data = ("seed", base.data) if index < len(seeds) else mutate(base, rng)
        fmt = str(rng.choice(FORMATS)) if rng.random() < 0.1 else base.fmt
        yield Case(f"{index:05d}-{base.name}-{label}{EXTENSIONS[fmt]}", base.fmt, data)


# ---------------------------------------------------------------- the benchmark


class Outcome(NamedTuple):
    case: Case
    result: str  # "ok", "failed" or "crash"
    detail: str
    seconds: float


def read_case(case: Case, folder: Path, max_pixels: int) -> Outcome:
    """Read one case from a file as the pipeline does."""
    from denoiser.imageio import ImageError, read_image

    path = folder / case.name
    path.write_bytes(case.data)
    (folder / "current-case").write_text(case.name + "\n")
    started = time.perf_counter()
    try:
        read_image(path, max_pixels)
        result, detail = "ok", ""
    except ImageError as error:
        result, detail = "failed", str(error)
    except Exception as error:  # noqa: BLE001 - any other exception is a crash, which this benchmark reports
        result, detail = "crash", f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - started
    if result != "crash":
        path.unlink()
    return Outcome(case, result, detail, seconds)


def report(outcomes: list[Outcome]) -> str:
    """Counts by format, every crash, the slowest cases and the peak memory."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for outcome in outcomes:
        counts[outcome.case.fmt][outcome.result] += 1
    lines = [f"{'format':<6} {'cases':>6} {'ok':>6} {'failed':>7} {'crash':>6}"]
    for fmt in FORMATS:
        c = counts[fmt]
        lines.append(f"{fmt:<6} {sum(c.values()):>6} {c['ok']:>6} {c['failed']:>7} {c['crash']:>6}")
    crashes = [o for o in outcomes if o.result == "crash"]
    lines += [f"crash: {o.case.name}: {o.detail}" for o in crashes] or ["no crashes"]
    lines.append(
        "slowest: "
        + ", ".join(f"{o.case.name} {o.seconds:.2f} s" for o in sorted(outcomes, key=lambda o: -o.seconds)[:3])
    )
    lines.append(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from denoiser.imageio import DEFAULT_MAX_PIXELS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--memory-gb", type=float, default=4.0, help="address-space cap; 0 = none")
    parser.add_argument("--hang-seconds", type=float, default=60.0)
    parser.add_argument("--keep", type=Path, default=None, help="folder for crashing cases (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.memory_gb:
        limit = int(args.memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    folder = args.keep or Path(tempfile.mkdtemp(prefix="fuzz-inputs-"))
    folder.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for case in fuzz_cases(args.cases, args.seed):
        faulthandler.dump_traceback_later(args.hang_seconds, exit=True)
        outcomes.append(read_case(case, folder, args.max_pixels))
    faulthandler.cancel_dump_traceback_later()
    print(report(outcomes))
    print(f"crashing cases kept in {folder}" if any(o.result == "crash" for o in outcomes) else "")
    return 1 if any(o.result == "crash" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
