"""`denoise batch` end to end with tiny models: outputs, scores, skipping, failures, safety."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from click.testing import CliRunner
from PIL import Image

from denoiser.cli import main
from denoiser.engine import resolve_precision
from tests.helpers import write_image

RECORD_FIELDS = {"input", "output", "status", "score", "anomalous", "error", "width", "height", "seconds"}


def snapshot(folder: Path) -> dict:
    """Every file under a folder with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(*args) -> tuple[int, str, list[dict]]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    output = Path(args[2]) / "scores.jsonl"
    records = [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else []
    return result.exit_code, result.output, records


@pytest.fixture
def inbox(tmp_path, rng):
    """A folder of gray and colour images in several formats, one in a subfolder."""
    folder = tmp_path / "in"
    write_image(folder / "gray.png", rng.integers(0, 256, (40, 50), np.uint8))
    write_image(folder / "colour photo.jpg", rng.integers(0, 256, (64, 48, 3), np.uint8), quality=90)
    write_image(folder / "sub" / "déjà-vu.tif", rng.integers(0, 256, (30, 30, 3), np.uint8))
    return folder


def test_batch_mirrors_folder_and_writes_scores(inbox, tmp_path, tiny_models):
    before = snapshot(inbox)
    out = tmp_path / "out"
    code, text, records = run("batch", inbox, out, "-r", "-m", tiny_models["color"], "-t", "32", "-b", "3", "-q")
    assert code == 0, text
    assert snapshot(inbox) == before, "inputs must never change"
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        "gray.png",
        "colour photo.jpg",
        "sub/déjà-vu.tif",
        "scores.jsonl",
        ".denoise.lock",
    }
    assert len(records) == 3 and all(RECORD_FIELDS <= set(r) for r in records)
    assert all(r["status"] == "ok" and r["error"] is None and 0 <= r["score"] <= 1 for r in records)
    by_name = {Path(r["input"]).name: r for r in records}
    assert (by_name["gray.png"]["width"], by_name["gray.png"]["height"]) == (50, 40)
    with Image.open(out / "colour photo.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (48, 64))
    assert "3 images" in text and "0 failed" in text and "MP/s" in text


def test_batch_cleans_heic_and_avif_into_their_own_formats(tmp_path, rng, tiny_models):
    folder = tmp_path / "in"
    folder.mkdir()
    phone = pillow_heif.from_bytes(
        mode="RGB", size=(48, 64), data=rng.integers(0, 256, (64, 48, 3), np.uint8).tobytes()
    )
    phone.save(folder / "IMG_0001.HEIC", quality=90)
    write_image(folder / "web.avif", rng.integers(0, 256, (40, 50, 3), np.uint8), quality=90)
    code, text, records = run("batch", folder, tmp_path / "out", "-m", tiny_models["color"], "-t", "32", "-q")
    assert code == 0, text
    assert [r["status"] for r in records] == ["ok", "ok"], records
    assert pillow_heif.open_heif(tmp_path / "out" / "IMG_0001.HEIC").size == (48, 64)
    with Image.open(tmp_path / "out" / "web.avif") as im:
        assert (im.format, im.size) == ("AVIF", (50, 40))


def test_not_recursive_skips_subfolders(inbox, tmp_path, tiny_models):
    code, _, records = run("batch", inbox, tmp_path / "out", "-m", tiny_models["gray"], "-t", "32", "-q")
    assert code == 0 and len(records) == 2


def test_ensemble_option_changes_the_output_and_refuses_other_sizes(inbox, tmp_path, tiny_models):
    outputs = {}
    for ensemble in ("1", "4"):
        out = tmp_path / f"out{ensemble}"
        code, _, _ = run("batch", inbox / "gray.png", out, "-m", tiny_models["gray"], "-t", "32", "-q", "-e", ensemble)
        assert code == 0
        outputs[ensemble] = np.asarray(Image.open(out / "gray.png"), np.int16)
    assert np.abs(outputs["1"] - outputs["4"]).max() > 0
    code, text, _ = run("batch", inbox / "gray.png", tmp_path / "out3", "-m", tiny_models["gray"], "-e", "3")
    assert code == 2 and "ensemble must be one of 1, 2, 4, 8" in text


def test_existing_outputs_are_skipped_unless_overwrite(inbox, tmp_path, tiny_models):
    out = tmp_path / "out"
    args = ("batch", inbox / "gray.png", out, "-m", tiny_models["gray"], "-t", "32", "-q")
    assert run(*args)[0] == 0
    first = (out / "gray.png").stat().st_mtime_ns
    code, text, records = run(*args)
    assert code == 0 and "1 skipped" in text and len(records) == 1
    assert (out / "gray.png").stat().st_mtime_ns == first
    code, text, records = run(*args, "--overwrite")
    assert code == 0 and len(records) == 2


def test_default_models_are_picked_per_image(inbox, tmp_path, tiny_models, monkeypatch):
    import denoiser.pipeline as pipeline

    monkeypatch.setattr(pipeline, "default_model_path", lambda c: tiny_models["color" if c == 3 else "gray"])
    code, _, records = run("batch", inbox, tmp_path / "out", "-r", "-t", "32", "-q")
    assert code == 0
    assert {Path(r["input"]).name: r["model"] for r in records} == {
        "gray.png": "tiny-gray",
        "colour photo.jpg": "tiny-color",
        "déjà-vu.tif": "tiny-color",
    }
    assert {r["precision"] for r in records} == {resolve_precision("auto", "cpu")}


BAD_FILES = {
    "empty.png": b"",
    "notes.png": b"this is not an image\n",
    "truncated.png": None,
    "big.png": None,
}


def make_bad_inputs(folder: Path, rng) -> None:
    for name, data in BAD_FILES.items():
        if data is not None:
            (folder / name).write_bytes(data)
    whole = write_image(folder / "whole.png", rng.integers(0, 256, (64, 64), np.uint8)).read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    write_image(folder / "big.png", rng.integers(0, 256, (120, 120), np.uint8))
    write_image(folder / "float.tif", rng.random((20, 20)).astype(np.float32))


def test_bad_inputs_fail_with_reasons_and_others_go_through(tmp_path, tiny_models, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    make_bad_inputs(folder, rng)
    out = tmp_path / "out"
    code, text, records = run(
        "batch", folder, out, "-m", tiny_models["gray"], "-t", "32", "-q", "--max-pixels", "10000"
    )
    assert code == 1
    status = {Path(r["input"]).name: r for r in records}
    assert status["whole.png"]["status"] == "ok"
    failed = {name: r["error"] for name, r in status.items() if r["status"] == "failed"}
    assert set(failed) == {"empty.png", "notes.png", "truncated.png", "big.png", "float.tif"}
    assert "empty" in failed["empty.png"].lower()
    assert "pixel" in failed["big.png"].lower()
    assert "mode" in failed["float.tif"].lower()
    assert all(status[name]["output"] is None for name in failed)
    assert sorted(p.name for p in out.iterdir()) == [".denoise.lock", "scores.jsonl", "whole.png"], "no partial outputs"


def test_an_input_gone_before_it_was_read_fails_saying_so(tmp_path):
    from denoiser.pipeline import Job, Options, _decode

    (tmp_path / "folder.png").mkdir()
    errors = [_decode(Job(tmp_path / name, tmp_path / "o.png"), Options()).error for name in ("gone.png", "folder.png")]
    assert errors == ["gone before it was read", "not a regular file"]


def test_fail_fast_stops_at_first_failure(tmp_path, tiny_models, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-empty.png").write_bytes(b"")
    write_image(folder / "b.png", rng.integers(0, 256, (20, 20), np.uint8))
    code, _, records = run("batch", folder, tmp_path / "out", "-m", tiny_models["gray"], "-t", "32", "-q", "-x")
    assert code == 1 and [r["status"] for r in records] == ["failed"]


def test_output_inside_input_is_not_reprocessed(inbox, tiny_models):
    out = inbox / "cleaned"
    assert run("batch", inbox, out, "-r", "-m", tiny_models["color"], "-t", "32", "-q")[0] == 0
    code, text, records = run("batch", inbox, out, "-r", "-m", tiny_models["color"], "-t", "32", "-q")
    assert code == 0 and len(records) == 3 and "3 skipped" in text


def test_refuses_to_write_over_inputs(inbox, tiny_models):
    result = CliRunner().invoke(main, ["batch", str(inbox), str(inbox), "-m", str(tiny_models["gray"])])
    assert result.exit_code == 2 and "overwrite input" in result.output


def test_preview_sheet_shows_before_and_after(inbox, tmp_path, tiny_models):
    sheet = tmp_path / "out" / "sheet.png"
    code, _, _ = run(
        "batch", inbox, tmp_path / "out", "-m", tiny_models["color"], "-t", "32", "-q", "--preview", sheet, "-n", "2"
    )
    assert code == 0
    with Image.open(sheet) as im:
        assert im.mode == "RGB" and im.height > 2 * 256 and im.width > 2 * 48


def test_missing_model_is_a_usage_error(inbox, tmp_path):
    code, text, _ = run("batch", inbox, tmp_path / "out", "-m", tmp_path / "nope.keras")
    assert code == 2 and "model not found" in text and not (tmp_path / "out").exists()


def test_help_lists_short_and_long_options():
    result = CliRunner().invoke(main, ["batch", "--help"])
    for flag in (
        "-m, --model",
        "-t, --tile",
        "--overlap",
        "-b, --batch-size",
        "--device",
        "-r, --recursive",
        "--overwrite",
        "--fail-fast",
        "--preview",
    ):
        assert flag in result.output


def test_file_names_that_are_not_utf8_are_cleaned_recorded_and_resumed(tmp_path, tiny_models, rng):
    folder, out = tmp_path / "in", tmp_path / "out"
    good, empty = os.fsdecode(b"caf\xe9.png"), os.fsdecode(b"\xff\xfe.png")  # Latin-1 names from an old share
    write_image(folder / good, rng.integers(0, 256, (20, 20), np.uint8))
    (folder / empty).write_bytes(b"")
    args = ("batch", folder, out, "-m", tiny_models["gray"], "-t", "32", "-q")
    first = CliRunner().invoke(main, [str(a) for a in args])
    assert first.exit_code == 1 and isinstance(first.exception, SystemExit), first.output
    lines = (out / "scores.jsonl").read_bytes().decode("utf-8").splitlines()  # strict UTF-8
    records = {Path(r["input"]).name: r for r in map(json.loads, lines)}
    assert records[good]["status"] == "ok" and (out / good).is_file()
    assert records[empty]["status"] == "failed" and "empty" in records[empty]["error"]
    again = CliRunner().invoke(main, [str(a) for a in args])
    assert again.exit_code == 0 and "2 skipped" in again.output, again.output
    report = CliRunner().invoke(main, ["status", str(out), "-j"])
    assert report.exit_code == 0 and json.loads(report.output)["last_error"]["input"] == str(folder / empty)


def test_a_name_of_250_bytes_is_cleaned_with_its_anomaly_map(tmp_path, tiny_models, rng):
    """Its temporary `.NAME.PID.tmp` and its map `NAME.heatmap.png` are longer than a file name may be."""
    folder, out = tmp_path / "in", tmp_path / "out"
    name = "é" * 123 + ".png"
    write_image(folder / name, rng.integers(0, 256, (20, 20), np.uint8))
    code, text, records = run("batch", folder, out, "-m", tiny_models["gray"], "-t", "32", "-q", "-H")
    assert code == 0 and records[0]["status"] == "ok", text
    assert (out / name).is_file() and Path(records[0]["heatmap"]).is_file()
    assert Path(records[0]["heatmap"]).name.endswith(".heatmap.png")


def test_an_output_of_another_input_is_never_replaced(tmp_path, tiny_models, rng):
    """Two cameras' folders into one OUTPUT both hold IMG_0001.png: the second gets IMG_0001.KEY.png."""
    first, second, out = tmp_path / "cam1", tmp_path / "cam2", tmp_path / "out"
    for folder in (first, second):
        write_image(folder / "IMG_0001.png", rng.integers(0, 256, (20, 20), np.uint8))
    args = ("-m", tiny_models["gray"], "-t", "32", "-q")
    run("batch", first, out, *args)
    kept = (out / "IMG_0001.png").read_bytes()
    code, text, records = run("batch", second, out, *args)
    assert code == 0 and (out / "IMG_0001.png").read_bytes() == kept, text
    moved = Path(records[1]["output"])
    assert moved.parent == out and moved.name.startswith("IMG_0001.") and moved.suffix == ".png" and moved.is_file()
    assert run("batch", second, out, *args)[2] == records, "a rerun skips it"
    code, text, again = run("batch", second, out, *args, "-f")
    assert again[2]["output"] == str(moved) and (out / "IMG_0001.png").read_bytes() == kept, "a redo keeps its name"


def test_targets_are_owned_once_also_where_case_is_not_told_apart():
    """exFAT, FAT and macOS disks take A.png and a.png for one file; URLs are handled the same way."""
    from denoiser.locations import Task, own_targets
    from denoiser.pipeline import Job

    upper, lower = own_targets(
        [Job(Path("/in/A.png"), Path("/out/A.png")), Job(Path("/in/a.png"), Path("/out/a.png"))], {}
    )
    assert upper.target == Path("/out/A.png") and lower.target.name.startswith("a.") and lower.target.suffix == ".png"
    assert lower.target != Path("/out/a.png")
    owners = {"s3://out/x.png": "s3://in/a/x.png"}
    (other,) = own_targets([Task("s3://in/b/x.png", "s3://out/x.png")], owners)
    (own,) = own_targets([Task("s3://in/a/x.png", "s3://out/x.png")], owners)
    assert other.target.startswith("s3://out/x.") and other.target.endswith(".png") and other.target != own.target
    assert own.target == "s3://out/x.png", "an input's own output stays where it is"
