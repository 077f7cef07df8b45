"""Model artifacts: a `.keras` file whose model card (calibration included) travels inside it."""

from __future__ import annotations

import io
import json
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

CARD_ENTRY = "denoise-card.json"
WEIGHTS_ENTRY = "model.weights.h5"
DEFAULT_MODELS = {1: "gray", 3: "color"}
DEFAULT_SCORER = "scorer"


class Artifact(NamedTuple):
    """A loaded model and its card, and the model's int8 graph (denoiser.int8.Int8Graph) where it runs in int8."""

    model: Any
    card: dict
    int8: Any = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for an N x H x W x C float32 batch, from the int8 graph where there is one."""
        return self.int8(batch) if self.int8 else np.asarray(self.model.predict_on_batch(batch), np.float32)

    @property
    def channels(self) -> int:
        return int(self.model.input_shape[-1])

    @property
    def align(self) -> int:
        return int(self.card.get("size_multiple", 1))

    @property
    def receptive_radius(self) -> int:
        return int(self.card.get("receptive_radius", 16))

    @property
    def seam_radius(self) -> int:
        """The tile margin the card measured as enough for seamless tiles; the receptive radius where it has none."""
        return int(self.card.get("seam_radius", self.receptive_radius))


def save_artifact(model, card: dict, path: str | Path, int8: bytes | None = None) -> Path:
    """Save the model with the card (and an int8 graph, where given) inside the archive, the card also beside it
    as `<name>.json`; weights that float16 holds exactly are stored as float16 (see `round_to_half`)."""
    from denoiser.int8 import INT8_ENTRY

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rebuild(model).save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    text = json.dumps(card, indent=2, sort_keys=False)
    entries |= {WEIGHTS_ENTRY: halve_exact_weights(entries[WEIGHTS_ENTRY]), CARD_ENTRY: text.encode()}
    if int8 is not None:
        entries[INT8_ENTRY] = int8
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    path.with_suffix(".json").write_text(text + "\n")
    return path


def round_to_half(model) -> None:
    """Round the model's float32 weights to float16 values, so that its file stores them in half the bytes.

    Denoisers lose nothing measurable (below the bf16 that inference rounds weights to); export rounds before it
    measures, so the card describes the stored weights."""
    model.set_weights([w.astype(np.float16).astype(np.float32) if w.dtype == np.float32 else w
                       for w in model.get_weights()])


def halve_exact_weights(weights: bytes) -> bytes:
    """A Keras `.weights.h5` file with each float32 array that float16 holds exactly stored as float16 (Keras casts
    it back to the variable's float32 on loading)."""
    import h5py

    out = io.BytesIO()
    with h5py.File(io.BytesIO(weights), "r") as source, h5py.File(out, "w") as target:
        target.attrs.update(source.attrs)

        def copy(name: str, item) -> None:
            if isinstance(item, h5py.Group):
                target.require_group(name).attrs.update(item.attrs)
                return
            data = item[()]
            if data.dtype == np.float32 and np.array_equal(data.astype(np.float16).astype(np.float32), data):
                data = data.astype(np.float16)
            target.create_dataset(name, data=data).attrs.update(item.attrs)

        source.visititems(copy)
    return out.getvalue()


def read_card(path: str | Path) -> dict:
    """Read the card stored inside a `.keras` archive ({} when it has none)."""
    with zipfile.ZipFile(path) as archive:
        if CARD_ENTRY not in archive.namelist():
            return {}
        return json.loads(archive.read(CARD_ENTRY))


def shipped_path(name: str) -> Path:
    """A shipped model's file by name (`gray`, `color`, `scorer`)."""
    return Path(str(resources.files("denoiser.models").joinpath(f"{name}.keras")))


def default_model_path(channels: int) -> Path:
    """The shipped default model for gray (1) or colour (3) images."""
    return shipped_path(DEFAULT_MODELS[channels])


def resolve_model(spec: str | Path) -> Path:
    """A model path from a file path or a shipped model's name (`gray`, `gray-fast`, `color`, `watermark-gray`,
    `scorer`)."""
    path = Path(spec)
    if path.suffix == "" and path.name == str(spec) and shipped_path(str(spec)).is_file():
        return shipped_path(str(spec))
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {spec}")
    return path


def load_artifact(path: str | Path, precision: str = "float32") -> Artifact:
    """Load a `.keras` model in safe mode, cast to `precision`: a Keras dtype policy name, or `int8` for its int8
    graph (the Keras model stays float32)."""
    import keras

    from denoiser.int8 import Int8Graph, read_int8

    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    if precision != "int8":
        return Artifact(with_precision(model, precision), read_card(path))
    graph = read_int8(path)
    if graph is None:
        raise ValueError(f"{path} has no int8 graph (make one with `python -m train quantize {path}`)")
    return Artifact(model, read_card(path), Int8Graph(graph))


def _set_dtype_policies(config: Any, policy: str) -> Any:
    """Return a copy of a Keras config with every layer's dtype policy replaced."""
    if isinstance(config, list):
        return [_set_dtype_policies(item, policy) for item in config]
    if not isinstance(config, dict):
        return config
    out = {k: _set_dtype_policies(v, policy) for k, v in config.items()}
    if out.get("class_name") == "DTypePolicy" or out.get("class_name") == "DTypePolicyMap":
        out = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": policy}, "registered_name": None}
    return out


def with_precision(model, policy: str):
    """The same network and weights under another dtype policy (`float32`, `mixed_bfloat16`, ...)."""
    if all(layer.dtype_policy.name == policy for layer in model.layers):
        return model
    return rebuild(model, policy)


def rebuild(model, policy: str | None = None):
    """A fresh uncompiled copy of the network and its weights (no optimizer state), optionally under `policy`."""
    import keras

    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    clone = keras.saving.deserialize_keras_object(_set_dtype_policies(config, policy) if policy else config)
    clone.set_weights(model.get_weights())
    return clone


def measure_receptive_radius(model, align: int = 1, trials: int = 3) -> int:
    """Largest distance at which one input pixel changes an output pixel, probed with random inputs on a square
    that doubles (up to 2048 px) while the change reaches its edge."""
    size = max(96, 32 * align)
    while (radius := _probe_radius(model, size, align, trials)) >= size // 2 - align and size < 2048:
        size *= 2
    return radius


def _probe_radius(model, size: int, align: int, trials: int) -> int:
    """The receptive radius seen from pixels near the centre of `size`-square random inputs."""
    rng = np.random.default_rng(0)
    channels = int(model.input_shape[-1])
    radius = 0
    for trial in range(trials * align):
        base = rng.random((1, size, size, channels), dtype=np.float32)
        poked = base.copy()
        spot = size // 2 + trial % align
        poked[0, spot, spot, :] = 1.0 - poked[0, spot, spot, :]
        diff = np.abs(np.asarray(model(poked)) - np.asarray(model(base))).max(axis=(0, 3))
        ys, xs = np.nonzero(diff > 1e-7)
        if len(ys):
            radius = max(radius, int(np.abs(ys - spot).max()), int(np.abs(xs - spot).max()))
    return radius
