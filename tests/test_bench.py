"""`denoise bench`: FLOP counting and the report."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from denoiser.bench import conv_flops_per_pixel
from denoiser.cli import main


def test_flops_of_a_plain_conv_stack():
    from denoise_train.presets import residual

    # 3x3 convs 1->8, 8->8, 8->1: (9*8 + 9*64 + 9*8) multiply-adds per pixel
    assert conv_flops_per_pixel(residual(1, depth=3, width=8)) == pytest.approx(2 * 720)


def test_flops_of_a_two_level_unet_count_strides():
    from denoise_train.presets import unet

    full = 9 * 1 * 4 + 2 * 9 * 4 * 4 + 2 * 9 * 4 * 4 + 9 * 4 * 1  # head, enc0, dec0, noise
    quarter = (2 * 2 * 4 * 8 + 4 * 9 * 8 * 8 + 2 * 2 * 8 * 4) / 4  # down0, bottom blocks, up0
    assert conv_flops_per_pixel(unet(1, width=4, levels=2)) == pytest.approx(2 * (full + quarter))


def test_bench_reports_each_size(tmp_path, tiny_models):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "-m",
            str(tiny_models["gray"]),
            "-s",
            "64x48",
            "-s",
            "100x100",
            "--min-seconds",
            "0",
            "-t",
            "32",
            "--precision",
            "float32",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"ceiling [\d.]+ GFLOP/s: matmul (1024|2048|3072|4096)\^3 float32", result.output), result.output
    assert "64x48" in result.output
    report = json.loads(out.read_text())
    assert [(r["width"], r["height"]) for r in report["sizes"]] == [(64, 48), (100, 100)]
    assert all(r["mp_per_s"] > 0 and r["peak_rss_mb"] > 0 and r["gflop_per_s"] > 0 for r in report["sizes"])
    assert all(r["stream_mp_per_s"] > 0 for r in report["sizes"])
    assert report["ceiling_gflops"] > 0 and report["ceiling"].startswith("matmul")


def test_bench_refuses_a_bad_size():
    for size in ("big", "0x5", "5x0"):
        result = CliRunner().invoke(main, ["bench", "-s", size])
        assert result.exit_code == 2 and "WIDTHxHEIGHT" in result.output, size


def test_bench_refuses_a_missing_model(tmp_path):
    result = CliRunner().invoke(main, ["bench", "-m", str(tmp_path / "nope.keras")])
    assert result.exit_code == 2 and "model not found" in result.output


def counted_stream(engine, image: np.ndarray) -> list[int]:
    """The ids of the arrays `stream_rate` denoises, in order, with no time to spend."""
    from denoiser.bench import stream_rate

    seen, denoise_many = [], engine.denoise_many
    engine.denoise_many = lambda images, **kw: (seen.append(id(out)) or out for out in denoise_many(images, **kw))
    assert stream_rate(engine, image, engine.plan(*image.shape[:2]).count, 0.0) > 0
    return seen


def test_the_stream_runs_two_images_at_least_and_ends_with_a_full_batch(tiny_models):
    from denoiser.artifact import load_artifact
    from denoiser.engine import Engine, Settings

    image = np.zeros((40, 40, 1), np.float32)
    seen = counted_stream(Engine(load_artifact(tiny_models["gray"]), Settings(tile=32)), image)
    assert len(seen) == 2 and len(set(seen)) == 2, "two arrays, each denoised in place"
    engine = Engine(load_artifact(tiny_models["gray"]), Settings(tile=128, batch_size=1), "gpu")  # packs small tiles
    assert engine.capacity(engine.plan(40, 40).tile) == 7
    assert len(counted_stream(engine, image)) == 7, "no padded tiles in the stream's rate"
