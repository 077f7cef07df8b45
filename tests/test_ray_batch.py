"""`denoise batch --ray` and URLs: the same outputs as local batch, exactly once through killed workers and drivers,
and object storage against a real S3-compatible server (moto's) on localhost. One Ray cluster for the module."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image, ImageCms

from denoiser.cli import main
from denoiser.distributed import Worker
from denoiser.locations import left_alone
from denoiser.records import Record
from tests.helpers import write_image

ray = pytest.importorskip("ray")
pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")

FIXED = ("--precision", "float32", "-t", "64")  # "auto" precision is timed per process: fix it to compare bytes
OWN = {"scores.jsonl", ".denoise.lock"}


@pytest.fixture(scope="module")
def cluster():
    """A moto S3 server and a GCS emulator (gcp-storage-emulator, which gcsfs reaches through
    STORAGE_EMULATOR_HOST) on localhost, and a 2-CPU local Ray cluster whose workers see their endpoints."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    emulator = create_server("127.0.0.1", 0, in_memory=True)
    emulator.start()
    gcs_host, gcs_port = emulator._api._httpd.server_address  # the port the OS gave it
    endpoints = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STORAGE_EMULATOR_HOST": f"http://{gcs_host}:{gcs_port}",
    }
    saved = {name: os.environ.get(name) for name in endpoints}
    os.environ.update(endpoints)  # before ray.init: workers inherit the environment of the cluster's start
    context = ray.init(num_cpus=2, object_store_memory=96 << 20, include_dashboard=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
    server.stop()
    emulator.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def exif_jpeg(path: Path, rng) -> None:
    exif = Image.Exif()
    exif[274], exif[271] = 6, "TestCam"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    write_image(path, rng.integers(0, 256, (40, 56, 3), np.uint8), quality=88, exif=exif.tobytes(), icc_profile=icc)


def mixed_folder(folder: Path, rng) -> Path:
    """Gray, colour with EXIF and ICC, 16-bit PNG and TIFF, alpha, a subfolder, and corrupt files."""
    write_image(folder / "gray.png", rng.integers(0, 256, (40, 50), np.uint8))
    exif_jpeg(folder / "photo.jpg", rng)
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65536, (36, 44, 3), np.uint16))
    tifffile.imwrite(folder / "deep-gray.tif", rng.integers(0, 65536, (30, 34), np.uint16))
    write_image(folder / "alpha.png", rng.integers(0, 256, (32, 40, 4), np.uint8))
    (folder / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 28, 2), np.uint8), "LA").save(folder / "sub" / "gray-alpha.png")
    whole = write_image(folder / "whole.png", rng.integers(0, 256, (48, 48), np.uint8)).read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"not an image\n")
    (folder / "photo.jpg.json").write_text("{}")  # companions: left alone, neither run nor recorded
    (folder / "sub" / "IMG_0001.MOV").write_bytes(b"\0\0\0\x14ftypqt  ")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    return folder


def many_images(folder: Path, rng, count: int, side: int = 96) -> Path:
    """`count` gray and colour PNGs, enough work for a run to be stopped part of the way through."""
    for index in range(count):
        shape = (side, side) if index % 2 else (side, side, 3)
        write_image(folder / f"img{index:03d}.png", rng.integers(0, 256, shape, np.uint8))
    return folder


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def outputs(folder: Path) -> dict[str, bytes]:
    """Every output under a folder by relative path, without the tool's own files."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in OWN
    }


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]


def assert_exactly_once(source: Path, out: Path) -> None:
    """One record and one whole output per input, and no temporary file left."""
    entries = records(out)
    inputs = sorted(os.path.abspath(e["input"]) for e in entries)
    assert inputs == sorted(str(p.resolve()) for p in source.iterdir()), "one record per input"
    assert all(e["status"] == "ok" for e in entries)
    assert sorted(outputs(out)) == sorted(p.name for p in source.iterdir())
    for path in source.iterdir():
        with Image.open(path) as before, Image.open(out / path.name) as after:
            after.load()
            assert after.size == before.size
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_outputs_are_byte_identical_to_local_batch(cluster, tiny_models, tmp_path, rng):
    """The default pool (a single-threaded worker per core) writes every output as local batch does, byte for byte,
    and a record per input with the same keys and values."""
    source = mixed_folder(tmp_path / "in", rng)
    args = ("-r", "-m", tiny_models["color"], *FIXED, "-q")
    local_code, _ = run("batch", source, tmp_path / "local", *args)
    code, text = run("batch", source, tmp_path / "ray", *args, "--ray")
    assert (local_code, code) == (1, 1), text
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    assert len(outputs(tmp_path / "local")) == 7
    mine, theirs = records(tmp_path / "ray"), records(tmp_path / "local")
    assert [set(e) for e in mine] == [set(theirs[0])] * len(theirs)
    by_input = {os.path.abspath(e["input"]): e for e in theirs}
    for entry in mine:
        expected = by_input.pop(entry["input"])
        for key in ("status", "error", "width", "height", "score", "model", "precision"):
            assert entry[key] == expected[key], key
    assert not by_input
    assert "7 images" in text and "3 failed" in text and "2 workers" in text


def ray_workers() -> list[int]:
    """PIDs of this test process's Ray Data actors (descendants whose title is ray::MapWorker...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::MapWorker") and descends_from(int(entry.name), os.getpid()):
                found.append(int(entry.name))
    return found


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            return False
    return False


def test_worker_killed_mid_run_still_gives_one_output_and_one_record_per_input(cluster, tiny_models, tmp_path, rng):
    source = many_images(tmp_path / "in", rng, 48)
    args = ("-m", tiny_models["color"], *FIXED, "-q", "-e", "8")
    out, killed = tmp_path / "ray", []

    def kill_a_worker_after_its_first_outputs():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids, written = ray_workers(), len(list(out.glob("*.png")))
            if pids and written >= 4:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(written)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker_after_its_first_outputs)
    killer.start()
    code, text = run("batch", source, out, *args, "--ray")
    killer.join()
    assert killed and killed[0] < 48, "a worker is killed before the job is done"
    assert code == 0, text
    assert_exactly_once(source, out)


def test_driver_killed_mid_run_and_run_again_leaves_nothing_missing_or_duplicated(cluster, tiny_models, tmp_path, rng):
    source = many_images(tmp_path / "in", rng, 48)
    args = ("-m", tiny_models["color"], *FIXED, "-q", "-e", "8")
    out = tmp_path / "ray"
    command = [str(Path(sys.executable).parent / "denoise"), "batch", str(source), str(out), *map(str, args), "--ray"]
    driver = subprocess.Popen(
        command, env={**os.environ, "RAY_ADDRESS": cluster}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    scores, deadline = out / "scores.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if scores.exists() and len(scores.read_bytes().splitlines()) >= 8:
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    driver.wait(timeout=30)
    assert driver.returncode == -signal.SIGKILL, driver.stdout.read().decode()[-2000:]
    before = len([line for line in scores.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")])
    assert 8 <= before < 48
    code, text = run("batch", source, out, *args, "--ray")
    assert code == 0 and f"{before} skipped" in text, text
    assert_exactly_once(source, out)


def s3_client():
    import boto3

    return boto3.client("s3")


def bucket_objects(bucket: str, prefix: str) -> dict[str, bytes]:
    client = s3_client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix) :]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_inputs_from_a_bucket_outputs_and_scores_to_a_bucket(cluster, tiny_models, tmp_path, rng):
    source = mixed_folder(tmp_path / "in", rng)
    client = s3_client()
    client.create_bucket(Bucket="inbox")
    client.create_bucket(Bucket="clean")
    for path in source.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "inbox", f"photos/{path.relative_to(source).as_posix()}")
    args = ("-r", "-m", tiny_models["color"], *FIXED, "-q")
    assert run("batch", source, tmp_path / "local", *args)[0] == 1
    code, text = run("batch", "s3://inbox/photos", "s3://clean/run", *args, "--ray", "--workers", "1")
    assert code == 1 and "7 images" in text and "3 failed" in text, text
    written = bucket_objects("clean", "run/")
    entries = [json.loads(line) for line in written.pop("scores.jsonl").splitlines()]
    assert written == outputs(tmp_path / "local"), "outputs put as local batch writes them, and no parts left"
    assert sorted(e["input"] for e in entries) == sorted(
        f"s3://inbox/photos/{p.relative_to(source).as_posix()}"
        for p in source.rglob("*")
        if p.is_file() and not left_alone(p.relative_to(source).parts)
    )
    ok = [e for e in entries if e["status"] == "ok"]
    assert all(e["output"] == e["input"].replace("s3://inbox/photos/", "s3://clean/run/") for e in ok)
    code, text = run("batch", "s3://inbox/photos", "s3://clean/run", *args, "--ray", "--workers", "1")
    assert code == 0 and "10 skipped" in text, text
    assert len(bucket_objects("clean", "run/scores.jsonl")[""].splitlines()) == 10
    code, text = run("batch", "s3://inbox/photos", tmp_path / "here", *args)  # no --ray: in this process
    assert code == 1 and "7 images" in text and "workers" not in text, text
    assert outputs(tmp_path / "here") == outputs(tmp_path / "local")
    assert {e["input"] for e in records(tmp_path / "here")} == {e["input"] for e in entries}


@pytest.fixture
def gcs(cluster):
    """The GCS emulator of the module's cluster, through gcsfs."""
    import fsspec

    return fsspec.filesystem("gs", skip_instance_cache=True)


def test_gs_urls_in_and_out_as_s3_ones(gcs, tiny_models, tmp_path, rng):
    source = mixed_folder(tmp_path / "in", rng)
    for bucket in ("inbox", "clean"):
        gcs.mkdir(bucket)
    gcs.put(str(source), "inbox/photos", recursive=True)
    args = ("-r", "-m", tiny_models["color"], *FIXED, "-q")
    assert run("batch", source, tmp_path / "local", *args)[0] == 1
    code, text = run("batch", "gs://inbox/photos", tmp_path / "from-gs", *args)
    assert code == 1 and "7 images" in text and "3 failed" in text, text
    assert outputs(tmp_path / "from-gs") == outputs(tmp_path / "local")
    assert all(e["input"].startswith("gs://inbox/photos/") for e in records(tmp_path / "from-gs"))
    code, text = run("batch", source, "gs://clean/run", *args)
    assert code == 1 and "7 images" in text, text
    written = {path[len("clean/run/") :]: gcs.cat(path) for path in gcs.find("clean/run")}
    assert len(written.pop("scores.jsonl").splitlines()) == 10
    assert written == outputs(tmp_path / "local"), "outputs put as local batch writes them, and no parts left"
    assert run("batch", source, "gs://clean/run", *args)[1].count("10 skipped") == 1, "a rerun resumes"
    code, text = run("batch", "gs://inbox/photos", "gs://clean/ray", *args, "--ray", "--workers", "1")
    assert code == 1 and "7 images" in text and "3 failed" in text and "1 worker" in text, text
    written = {path[len("clean/ray/") :]: gcs.cat(path) for path in gcs.find("clean/ray")}
    assert len(written.pop("scores.jsonl").splitlines()) == 10
    assert written == outputs(tmp_path / "local"), "on Ray too: bucket to bucket, as local batch writes"


def test_object_store_records_resume_from_parts_and_merge_once(cluster):
    from denoiser.locations import PARTS, ObjectScores

    s3_client().create_bucket(Bucket="parts")
    with pytest.raises(KeyboardInterrupt), ObjectScores("s3://parts/out") as log:  # a driver stopped mid-run
        log.append(Record("s3://in/a.png"))
        raise KeyboardInterrupt
    [part] = bucket_objects("parts", f"out/{PARTS}/").values()
    assert part == Record("s3://in/a.png").line().encode() and not bucket_objects("parts", "out/scores")
    with ObjectScores("s3://parts/out") as log:
        assert log.recorded().inputs == {"s3://in/a.png"}
        log.append(Record("s3://in/b.png"))
    assert set(bucket_objects("parts", "out/")) == {"scores.jsonl"}
    lines = bucket_objects("parts", "out/scores.jsonl")[""].splitlines()
    assert [json.loads(line)["input"] for line in lines] == ["s3://in/a.png", "s3://in/b.png"]
    s3_client().put_object(Bucket="parts", Key=f"out/{PARTS}/0-left.jsonl", Body=part)  # a merge cut short
    ObjectScores("s3://parts/out").merge()
    assert bucket_objects("parts", "out/") == {"scores.jsonl": b"\n".join(lines) + b"\n"}


def test_an_input_that_keeps_failing_its_worker_is_recorded_failed_and_the_job_goes_on(
    cluster, tiny_models, tmp_path, rng
):
    import ray.cloudpickle

    from denoiser.distributed import RunConfig, WorkerPlan, run_on_ray
    from denoiser.engine import Settings
    from denoiser.locations import mirror_tasks
    from denoiser.pipeline import Options

    source = many_images(tmp_path / "in", rng, 6, side=32)
    for name in ("poison.png", "raises.png"):
        write_image(source / name, rng.integers(0, 256, (32, 32), np.uint8))
    tasks = mirror_tasks(str(source), str(tmp_path / "out"))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this module
    config = RunConfig(Settings(), str(tiny_models["gray"]), None, Options())
    entries = list(run_on_ray(tasks, config, WorkerPlan(1, 2, 0), worker=Poisoned))
    by_name = {Path(e.input).name: e for e in entries}
    assert len(entries) == len(by_name) == 8
    assert not by_name["poison.png"].ok
    assert by_name["poison.png"].error == "worker died 2 times on this input"
    assert by_name["raises.png"].error == "worker error: RuntimeError: broken on raises.png"
    assert all(e.ok for name, e in by_name.items() if name not in ("poison.png", "raises.png"))


class Poisoned(Worker):
    """A worker whose pipeline kills its own process on poison.png and raises on raises.png."""

    def __init__(self, *args, **kwargs):
        from denoiser import distributed

        super().__init__(*args, **kwargs)
        real = distributed.run_tasks

        def run_tasks(tasks, *rest):
            for task in tasks:
                if task.source.endswith("poison.png"):
                    os.kill(os.getpid(), signal.SIGKILL)
                if task.source.endswith("raises.png"):
                    raise RuntimeError("broken on raises.png")
            return real(tasks, *rest)

        distributed.run_tasks = run_tasks


def test_without_the_extras_a_one_line_error_names_them(monkeypatch, tmp_path, tiny_models):
    import builtins

    real_import = builtins.__import__

    def no_extras(name, *args, **kwargs):
        if name.split(".")[0] in ("ray", "fsspec", "s3fs"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extras)
    (tmp_path / "in").mkdir()
    code, text = run("batch", tmp_path / "in", tmp_path / "out", "--ray")
    assert code == 2 and "--ray needs the ray extra: pip install 'denoise[ray]'" in text
    code, text = run("batch", "s3://bucket/in", tmp_path / "out")
    assert code == 2 and "an s3:// path needs the s3 extra: pip install 'denoise[s3]'" in text


def test_worker_plan_one_per_gpu_else_one_per_core_and_all_placeable():
    from denoiser.distributed import WorkerPlan, worker_plan

    assert worker_plan([{"CPU": 16, "GPU": 4}, {"CPU": 16, "GPU": 4}]) == WorkerPlan(8, 1, 1.0)
    assert worker_plan([{"CPU": 16, "GPU": 2}], workers=4) == WorkerPlan(4, 1, 0.5)
    assert worker_plan([{"CPU": 2}]) == WorkerPlan(2, 1, 0, 1)
    assert worker_plan([{"CPU": 2}], workers=1) == WorkerPlan(1, 2, 0, 2)
    assert worker_plan([{"CPU": 16}, {"CPU": 16}], workers=3) == WorkerPlan(3, 8, 0, 8)  # 10 each: 2 would fit
    assert worker_plan([{"CPU": 2}], workers=4) == WorkerPlan(4, 0.5, 0, 1)
