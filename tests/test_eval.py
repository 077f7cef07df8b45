"""`denoise eval`: baselines, SSIM, and the side-by-side report on the same 8-bit noisy files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from denoiser import baselines
from denoiser.cli import main
from denoiser.engine import Engine
from denoiser.imageio import read_image
from denoiser.noise import NoiseSpec, degrade, psnr, ssim
from tests.helpers import write_image


def smooth_image(rng, size=96, channels=1):
    """A smooth random image: upsampled coarse noise."""
    coarse = rng.random((size // 16, size // 16, channels))
    return np.kron(coarse, np.ones((16, 16, 1))).astype(np.float32) * 0.6 + 0.2


@pytest.mark.parametrize("sigma", [10, 25, 50])
@pytest.mark.parametrize("channels", [1, 3])
def test_noise_sigma_is_estimated_from_the_image(rng, sigma, channels):
    noisy = degrade(smooth_image(rng, 256, channels), NoiseSpec("gauss", sigma), rng)
    assert abs(baselines.estimate_sigma(noisy) - sigma) < 0.1 * sigma + 1


@pytest.mark.parametrize("channels", [1, 3])
def test_baselines_improve_on_their_noise(rng, channels):
    clean = smooth_image(rng, 96, channels)
    static = degrade(clean, NoiseSpec("sp", 10), rng)
    gauss = degrade(clean, NoiseSpec("gauss", 25), rng)
    assert psnr(clean, baselines.median3(static)) > psnr(clean, static) + 10
    assert psnr(clean, baselines.nlm(gauss)) > psnr(clean, gauss) + 3
    assert baselines.nlm(gauss).shape == clean.shape


def test_ssim_is_one_for_identical_images_and_falls_with_noise(rng):
    clean = smooth_image(rng, 64, 3)
    light, heavy = (degrade(clean, NoiseSpec("gauss", s), rng) for s in (5, 40))
    assert ssim(clean, clean) == pytest.approx(1.0)
    assert 1.0 > ssim(clean, light) > ssim(clean, heavy) > 0.0


def test_eval_compares_methods_on_the_saved_noisy_files(tmp_path, rng, tiny_models):
    clean_dir = tmp_path / "clean"
    for i in range(2):
        write_image(clean_dir / f"im{i}.png", np.round(smooth_image(rng, 64)[..., 0] * 255).astype(np.uint8))
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            str(clean_dir),
            "-o",
            str(out),
            "--noise",
            "gauss:25,sp:10",
            "-m",
            str(tiny_models["gray"]),
            "--baseline",
            "median3",
            "-t",
            "32",
            "--precision",
            "float32",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    rows = {(r["method"], r["noise"]): r for r in report["rows"]}
    assert set(rows) == {(m, n) for m in ("noisy input", "tiny-gray@float32", "median3") for n in ("gauss:25", "sp:10")}
    for noise in ("gauss:25", "sp:10"):
        saved = sorted((out / "noisy" / noise.replace(":", "-")).glob("*.png"))
        assert len(saved) == 2
        pixels = [read_image(p).pixels for p in saved]
        assert all(np.array_equal(p, np.round(p * 255) / 255) for p in pixels), "noisy inputs are 8-bit files"
        cleans = [read_image(clean_dir / p.name).pixels for p in saved]
        expected = np.mean([psnr(c, n) for c, n in zip(cleans, pixels)])
        assert rows[("noisy input", noise)]["psnr"] == pytest.approx(expected)
        assert rows[("median3", noise)]["mp_per_s"] > 0
    assert rows[("median3", "sp:10")]["psnr"] > rows[("noisy input", "sp:10")]["psnr"] + 5
    table = (out / "eval.md").read_text()
    assert "| median3 |" in table and "gauss:25 PSNR / SSIM / MP/s" in table


def test_eval_refuses_an_unknown_baseline_or_noise(tmp_path, rng):
    write_image(tmp_path / "a.png", np.zeros((32, 32), np.uint8))
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--noise", "blur:3"])
    assert result.exit_code == 2 and "bad noise spec" in result.output
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--baseline", "wiener"])
    assert result.exit_code == 2 and "wiener" in result.output


def test_eval_keeps_apart_two_models_with_one_card_name(tmp_path, rng, tiny_models):
    clean_dir = tmp_path / "clean"
    write_image(clean_dir / "im.png", np.round(smooth_image(rng, 64)[..., 0] * 255).astype(np.uint8))
    copy = tmp_path / "retrained.keras"
    shutil.copy(tiny_models["gray"], copy)
    args = [
        "eval",
        str(clean_dir),
        "-o",
        str(tmp_path / "report"),
        "--noise",
        "gauss:25",
        "--baseline",
        "none",
        "-t",
        "32",
        "--precision",
        "float32",
        "-m",
        str(tiny_models["gray"]),
        "-m",
        str(copy),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    methods = [r["method"] for r in json.loads((tmp_path / "report" / "eval.json").read_text())["rows"]]
    assert methods == ["noisy input", "gray@float32", "retrained@float32"]
    result = CliRunner().invoke(main, args + ["-m", str(copy)])
    assert result.exit_code != 0 and "given twice" in result.output
    assert "tiny-gray@float32" in CliRunner().invoke(main, args[:-2]).output


def test_eval_runs_a_model_alone_and_as_a_self_ensemble_side_by_side(tmp_path, rng, tiny_models):
    clean_dir = tmp_path / "clean"
    write_image(clean_dir / "im.png", np.round(smooth_image(rng, 64)[..., 0] * 255).astype(np.uint8))
    model = str(tiny_models["gray"])
    args = [
        "eval",
        str(clean_dir),
        "-o",
        str(tmp_path / "report"),
        "--noise",
        "gauss:25",
        "--baseline",
        "none",
        "-t",
        "32",
        "-m",
        f"{model}@float32",
        "-m",
        f"{model}@float32x4",
        "-m",
        f"{model}@x2",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "report" / "eval.json").read_text())["rows"]
    precision = Engine.load(model).precision
    assert [r["method"] for r in rows] == [
        "noisy input",
        "tiny-gray@float32",
        "tiny-gray@float32x4",
        f"tiny-gray@{precision}x2",
    ]
    assert len({r["psnr"] for r in rows}) == 4, "each variant computes its own output"
    for bad in ("x3", "float8"):
        result = CliRunner().invoke(main, args[:-2] + ["-m", f"{model}@{bad}"])
        assert result.exit_code == 2 and "must be one of" in result.output
