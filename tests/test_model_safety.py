"""Only `.keras` archives are loaded, and none whose config would run code from outside Keras and this project."""

from __future__ import annotations

import io
import json
import re
import zipfile

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from denoiser.anomaly import Scorer
from denoiser.artifact import ModelRefused, check_model, load_artifact, resolve_model
from denoiser.cli import main
from tests.helpers import write_image


class Unregistered(keras.layers.Layer):
    """A custom layer nobody registered: Keras could only rebuild it by importing code named in the file."""

    def call(self, inputs):
        return inputs * 2


def conv_input():
    inputs = keras.Input((None, None, 1))
    return inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs)


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> dict:
    """Model files that must not load: a Lambda layer, an unregistered class, the legacy HDF5 format."""
    folder = tmp_path_factory.mktemp("evil")
    inputs, conv = conv_input()
    paths = {"lambda": folder / "lambda.keras", "custom": folder / "custom.keras", "h5": folder / "lambda.h5"}
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(conv))
    lambda_model.save(paths["lambda"])
    lambda_model.save(paths["h5"])
    keras.Model(inputs, Unregistered()(conv)).save(paths["custom"])
    return paths


REASONS = {  # patterns of the one-line reasons
    "lambda": r"uses a Lambda layer, which is not loaded for safety",
    "custom": r"uses class Unregistered from [\w.]*test_model_safety, which is neither Keras's nor registered",
    "h5": r"only \.keras files are loaded, not \.h5",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
@pytest.mark.parametrize("loader", [resolve_model, load_artifact, Scorer.load], ids=["resolve", "artifact", "scorer"])
def test_loaders_refuse_unsafe_models(evil, kind, loader):
    with pytest.raises(ModelRefused, match=REASONS[kind]):
        loader(evil[kind])


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_cli_refuses_unsafe_models_in_one_line(evil, kind, tmp_path, rng):
    folder = tmp_path / "in"
    write_image(folder / "a.png", rng.integers(0, 256, (16, 16), np.uint8))
    for args in (
        ["batch", str(folder), str(tmp_path / "out"), "-m", str(evil[kind])],
        ["score", str(folder), str(tmp_path / "scores"), "--scorer", str(evil[kind])],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output  # a usage error, not a crash
        assert re.search(REASONS[kind], result.output) and "Traceback" not in result.output
        assert not (tmp_path / "out" / "a.png").exists()


def test_registered_custom_classes_and_shipped_models_pass(tmp_path):
    from denoiser.layers import TiedDense

    inputs = keras.Input((8,))
    path = tmp_path / "tied.keras"
    keras.Model(inputs, TiedDense(4)(inputs)).save(path)
    assert check_model(path) == path
    for name in ("gray", "gray-fast", "color", "watermark-gray", "scorer"):
        assert resolve_model(name).suffix == ".keras"


def rewrite(source, target, compression=zipfile.ZIP_STORED, **extra: bytes):
    """A copy of a model archive with its entries written with `compression`, plus `extra` entries."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()} | extra
    with zipfile.ZipFile(target, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def npz_claiming(shape: tuple[int, ...]) -> bytes:
    """An .npz whose one array's header claims `shape` while holding 8 float32 values."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, bank=np.zeros(8, np.float32))
    with zipfile.ZipFile(buffer) as source:
        data = source.read("bank.npy")
    end = data.index(b"\n") + 1  # the header: 10 bytes of magic, version and length, then text padded to `end`
    text = data[10:end].decode("latin1").replace("(8,)", str(shape)).rstrip().ljust(end - 11) + "\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        target.writestr("bank.npy", data[:10] + text.encode("latin1") + data[end:])
    return out.getvalue()


def test_archives_that_would_inflate_are_refused(tiny_models, tmp_path):
    deflated = rewrite(tiny_models["gray"], tmp_path / "deflated.keras", zipfile.ZIP_DEFLATED)
    with pytest.raises(ModelRefused, match="has compressed entries"):
        load_artifact(deflated)
    bomb = rewrite(tiny_models["gray"], tmp_path / "bomb.keras", **{"denoise-banks.npz": npz_claiming((1 << 40,))})
    with pytest.raises(ModelRefused, match="array bank.npy claims 4,398,046,511,104 bytes"):
        load_artifact(bomb)
    honest = rewrite(tiny_models["gray"], tmp_path / "honest.keras", **{"denoise-banks.npz": npz_claiming((8,))})
    assert load_artifact(honest).channels == 1


def test_configs_that_name_code_anywhere_are_refused(tiny_models, tmp_path):
    with zipfile.ZipFile(tiny_models["gray"]) as archive:
        config = json.loads(archive.read("config.json"))
    layer = config["config"]["layers"][-1]
    layer["config"]["kernel_initializer"] = {
        "module": "os",
        "class_name": "system",
        "config": {},
        "registered_name": "system",
    }
    tampered = rewrite(tiny_models["gray"], tmp_path / "tampered.keras", **{"config.json": json.dumps(config).encode()})
    with pytest.raises(ModelRefused, match="uses class system from os"):
        resolve_model(tampered)
