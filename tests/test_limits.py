"""Input limits: the byte limit checked before a file is read, and every inflation the reader does bounded."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.fuzz_inputs import BOMB_BYTES, Seed, bomb, make_seeds, plant_chunk, zlib_bomb
from denoiser.cli import main
from denoiser.imageio import ImageError, read_image
from tests.helpers import write_image


@pytest.fixture(scope="module")
def seeds() -> dict[str, Seed]:
    return {seed.name: seed for seed in make_seeds(np.random.default_rng(0))}


def peak_bytes(function) -> int:
    """The most memory Python and NumPy held at once while `function` ran."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(path: Path, **limits) -> str:
    """The ImageError read_image raises for a file."""
    with pytest.raises(ImageError) as error:
        read_image(path, **limits)
    return str(error.value)


def test_file_over_max_bytes_is_refused_before_it_is_read(tmp_path):
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:
        handle.truncate(4 << 30)  # sparse: 4 GiB that take no disk
    errors = []
    assert peak_bytes(lambda: errors.append(refused(huge, max_bytes=1 << 20))) < 1 << 20
    assert errors == ["huge.png: file is too large: 4,294,967,296 bytes exceeds the limit of 1,048,576"]


def test_byte_limit_holds_for_a_file_that_grows_after_its_size_is_taken(tmp_path, rng, monkeypatch):
    path = write_image(tmp_path / "a.png", rng.integers(0, 256, (32, 32), np.uint8))
    size = path.stat().st_size
    assert read_image(path, max_bytes=size).meta.width == 32
    monkeypatch.setattr("denoiser.imageio.os.fstat", lambda fd: os.stat_result((0,) * 6 + (10,) + (0,) * 3))
    error = refused(path, max_bytes=size - 2)
    assert f"file is too large: {size - 1:,} bytes exceeds the limit of {size - 2:,}" in error


@pytest.mark.parametrize(
    "seed, kind, reason",
    [
        ("png-gray-text", b"iCCP", "the ICC profile inflates to more than 16 MiB"),
        ("png-rgb16-icc", b"iCCP", "the ICC profile inflates to more than 16 MiB"),  # read by OpenCV, checked first
        ("png-gray-text", b"zTXt", "Decompressed data too large"),  # Pillow's own bound, 1 MiB
        ("tiff-rgb16-deflate-icc", None, "a strip of this TIFF inflates past its 6,144 bytes"),
    ],
)
def test_planted_zlib_bombs_are_refused_without_inflating_them(seeds, seed, kind, reason, tmp_path):
    data = seeds[seed].data
    path = tmp_path / "bomb"
    path.write_bytes(
        plant_chunk(data, kind, b"bomb\0\0" + zlib_bomb())
        if kind
        else bomb(data, seeds[seed].fmt, np.random.default_rng(0))
    )
    errors = []
    # at most the 16 MiB profile cap twice over (zlib's output blocks, then their join); inflating takes 64 MiB twice
    assert peak_bytes(lambda: errors.append(refused(path))) < 3 * BOMB_BYTES // 4
    assert reason in errors[0]


def test_batch_score_and_watch_take_max_bytes(tmp_path, tiny_models, rng, monkeypatch):
    folder = tmp_path / "in"
    small = write_image(folder / "small.png", rng.integers(0, 256, (16, 16), np.uint8))
    big = write_image(folder / "big.png", rng.integers(0, 256, (64, 64), np.uint8))
    limit = str(small.stat().st_size)
    for command in (["batch", "-m", str(tiny_models["gray"])], ["score"]):
        out = tmp_path / command[0]
        result = CliRunner().invoke(main, [command[0], str(folder), str(out), *command[1:], "--max-bytes", limit, "-q"])
        assert result.exit_code == 1, result.output
        records = {Path(r["input"]).name: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
        assert records["small.png"]["status"] == "ok"
        assert f"{big.stat().st_size:,} bytes exceeds the limit of {int(limit):,}" in records["big.png"]["error"]
    started = []
    monkeypatch.setattr("denoised.daemon.run_daemon", lambda load: started.append(load()) or 0)
    result = CliRunner().invoke(main, ["watch", str(folder), str(tmp_path / "watched"), "--max-bytes", limit])
    assert result.exit_code == 0 and started[0].max_bytes == int(limit)


def test_daemon_config_takes_max_bytes(tmp_path):
    from denoised.config import StartupError, load_config

    environ = {"DENOISED_INBOX": str(tmp_path), "DENOISED_OUTPUT": str(tmp_path / "out")}
    assert load_config(None, environ | {"DENOISED_MAX_BYTES": "4096"}).max_bytes == 4096
    with pytest.raises(StartupError, match="max_bytes must be at least 1"):
        load_config(None, environ | {"DENOISED_MAX_BYTES": "0"})


def test_training_idx_files_are_read_to_a_bound(tmp_path, monkeypatch):
    import gzip

    import denoise_train.data

    path = tmp_path / "images-idx3-ubyte.gz"
    header = b"\0\0\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (4, 8, 8))
    path.write_bytes(gzip.compress(header + bytes(4 * 8 * 8)))
    assert denoise_train.data.read_idx(path).shape == (4, 8, 8)
    monkeypatch.setattr(denoise_train.data, "MAX_IDX_BYTES", 200)
    with pytest.raises(ValueError, match="holds more than 200 bytes unpacked"):
        denoise_train.data.read_idx(path)
