"""Model artifacts: a `.keras` file whose model card (calibration included) travels inside it."""

from __future__ import annotations

import io
import json
import math
import weakref
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

CARD_ENTRY = "denoise-card.json"
WEIGHTS_ENTRY = "model.weights.h5"
DEFAULT_MODELS = {1: "gray", 3: "color"}
DEFAULT_SCORER = "scorer"
MODEL_SUFFIX = ".keras"
CONFIG_ENTRY = "config.json"
# What a model archive may hold in all, unpacked (its entries, and the arrays of an .npz entry): the shipped ones hold
# 10 to 40 MB, and Keras writes every entry stored, so reading one inflates nothing.
MAX_MODEL_BYTES = 1 << 30
# Keras layers that run code or files named in the model rather than in Keras: refused whatever Keras's safe mode says.
UNSAFE_LAYERS = {"Lambda": "a Lambda layer", "TFSMLayer": "a TFSMLayer (an external SavedModel)"}
# The card beside a model (`NAME.json`) summarises the one inside: what it leaves out or rewrites.
SUMMARISED = {"data", "files", "validation_files", "folder_images", "init_card", "first_card", "history"}
# Parts of the card beside a model written by hand (the shipped models' commands as the Makefile gives them, their
# intended use, limits and development-set figures), kept when the same model is saved again (quantize, seams).
HAND_WRITTEN = (("command",), ("training", "history"), ("intended_use",), ("limits",), ("metrics", "development"))


_JAX_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def jax_forward(model) -> Any:
    """The model's inference as one jitted JAX function of a batch, made once a model; the weights are read at each
    call, as Keras's predict donates their buffers and replaces them. It holds the model weakly, so a model's cache
    entry goes with the model."""
    if model not in _JAX_FORWARDS:
        import jax

        held = weakref.ref(model)
        call = jax.jit(lambda trained, other, batch: held().stateless_call(trained, other, batch, training=False)[0])
        _JAX_FORWARDS[model] = lambda batch: call(*jax_weights(held()), batch)
    return _JAX_FORWARDS[model]


def jax_weights(model) -> tuple[list, list]:
    """The model's trainable and other weights, for its `stateless_call`, read afresh (Keras's predict donates and
    replaces their buffers)."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


class ModelRefused(FileNotFoundError, ValueError):
    """A model file that is not loaded (not a `.keras` archive, too large, or needing code from outside Keras and this
    project); a FileNotFoundError and a ValueError, so every command that reports a bad model reports it cleanly."""


class Artifact(NamedTuple):
    """A loaded model and its card, and the model's int8 graph (denoiser.int8.Int8Graph) where it runs in int8."""

    model: Any
    card: dict
    int8: Any = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for an N x H x W x C float32 batch, from the int8 graph where there is one; in the
        model's output dtype (bfloat16 or float16 under a mixed policy), which its consumers cast as they copy."""
        return self.int8(batch) if self.int8 else np.asarray(self.model.predict_on_batch(batch))

    def start(self, batch: np.ndarray) -> Any:
        """What `predict` returns, as an array that may still be computing (under JAX, which dispatches
        asynchronously: np.asarray waits for it), so that the caller can prepare the next batch meanwhile."""
        import keras

        if self.int8 or keras.backend.backend() != "jax":
            return self.predict(batch)
        return jax_forward(self.model)(batch)

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


def save_artifact(model, card: dict, path: str | Path, int8: bytes | None = None, same_model: bool = False) -> Path:
    """Save the model with the card (and an int8 graph, where given) inside the archive, and its summary beside it
    as `<name>.json` (see `write_summary`); weights that float16 holds exactly are stored as float16 (see
    `round_to_half`). `same_model`: the weights are those already saved there (quantize, seams)."""
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
    write_summary(path, card, keep_hand_written=same_model)
    return path


def card_history(card: dict) -> list[dict]:
    """The training passes that made a model, oldest first, each {command, seconds, epochs, loss}: the card's
    `training.history`, or in cards from before it, the chain of nested `training.init_card`s."""
    training = card.get("training") or {}
    if "history" in training:
        return list(training["history"])
    earlier = card_history(training["init_card"]) if training.get("init_card") else []
    recipe = training.get("recipe") or {}
    epochs = training.get("epochs_run") or (None if recipe.get("minutes") else recipe.get("epochs"))  # untimed: all
    return earlier + [
        {
            "command": card.get("command"),
            "seconds": training.get("seconds"),
            "epochs": epochs,
            "loss": training.get("final_loss"),
        }
    ]


def summary_card(card: dict) -> dict:
    """A denoiser's card as the `.json` beside it shows it: the training data by folder, image count and
    fingerprint instead of file by file, and the history as a flat list of passes (the archive keeps it all)."""
    training = card.get("training")
    if not isinstance(training, dict) or "files" not in training:
        return card
    folders = training["data"] if isinstance(training["data"], list) else [training["data"]]
    counts = training.get("folder_images") or {}
    brief = {
        "data": [{"folder": folder} | ({"images": counts[folder]} if folder in counts else {}) for folder in folders],
        "images": len(training["files"]),
        "validation_images": len(training["validation_files"]),
    }
    brief |= {key: value for key, value in training.items() if key not in SUMMARISED}
    if training.get("first_card"):
        brief["first_history"] = card_history(training["first_card"])
    return card | {"training": brief | {"history": card_history(card)}}


def write_summary(path: Path, card: dict, keep_hand_written: bool = False) -> Path:
    """Write summary_card(card) beside the model as `<name>.json`; with `keep_hand_written`, the HAND_WRITTEN
    parts of the one there stay."""
    sidecar = path.with_suffix(".json")
    summary = summary_card(card)
    if keep_hand_written and sidecar.is_file():
        before = json.loads(sidecar.read_text())
        for keys in HAND_WRITTEN:
            summary = with_value_of(before, summary, keys)
    sidecar.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return sidecar


def with_value_of(source: dict, target: dict, keys: tuple[str, ...]) -> dict:
    """`target` with the value at `keys` (a path of dict keys) taken from `source`, where source has one; copies
    the dicts it changes."""
    value = source
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return target
        value = value[key]
    if len(keys) == 1:
        return target | {keys[0]: value}
    inner = target.get(keys[0]) if isinstance(target.get(keys[0]), dict) else {}
    return target | {keys[0]: with_value_of(source[keys[0]], inner, keys[1:])}


def round_to_half(model) -> None:
    """Round the model's float32 weights to float16 values, so that its file stores them in half the bytes.

    Denoisers lose nothing measurable (below the bf16 that inference rounds weights to); export rounds before it
    measures, so the card describes the stored weights."""
    model.set_weights(
        [w.astype(np.float16).astype(np.float32) if w.dtype == np.float32 else w for w in model.get_weights()]
    )


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
    `scorer`); FileNotFoundError when it is neither, ModelRefused when the file is not safe to load (see
    `check_model`)."""
    path = Path(spec)
    if path.suffix == "" and path.name == str(spec) and shipped_path(str(spec)).is_file():
        return check_model(shipped_path(str(spec)))
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {spec}")
    return check_model(path)


def check_model(path: str | Path) -> Path:
    """Refuse, with ModelRefused, a model file that is not a `.keras` archive as Keras writes it (entries stored,
    MAX_MODEL_BYTES in all) or whose config names a layer of UNSAFE_LAYERS, Python bytecode, or a class that is
    neither Keras's nor registered in this process; returns the path.

    Only the archive's listing, its config and its .npz headers are read, and nothing is imported from it."""
    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        raise ModelRefused(f"model {path}: only {MODEL_SUFFIX} files are loaded, not {path.suffix or 'no suffix'}")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_entries(path, archive)
            config = json.loads(archive.read(CONFIG_ENTRY))
    except ModelRefused:
        raise
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, RecursionError) as error:
        raise ModelRefused(f"model {path} is not a readable {MODEL_SUFFIX} archive ({error})") from None
    problem = _unsafe_object(config)
    if problem:
        raise ModelRefused(f"model {path} {problem}")
    return path


def _check_entries(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse an archive with a compressed entry or more than MAX_MODEL_BYTES unpacked, .npz arrays included."""
    infos = archive.infolist()
    packed = [info.filename for info in infos if info.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise ModelRefused(f"model {path} has compressed entries ({', '.join(packed)}); Keras stores them as they are")
    total = sum(info.file_size for info in infos)
    if total <= MAX_MODEL_BYTES:
        total += sum(_npz_bytes(archive.read(info)) for info in infos if info.filename.endswith(".npz"))
    if total > MAX_MODEL_BYTES:
        raise ModelRefused(f"model {path} unpacks to over {MAX_MODEL_BYTES:,} bytes")


def _npz_bytes(data: bytes) -> int:
    """The bytes an .npz archive's arrays take once loaded, from their headers (NumPy allocates that much before
    reading); a header that claims more bytes than its member holds is refused."""
    import numpy.lib.format as npy

    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as npz:
        for member in npz.infolist():
            with npz.open(member) as array:
                version = npy.read_magic(array)
                read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, _, dtype = read_header(array)
            size = math.prod(shape) * dtype.itemsize
            if size > member.file_size:
                raise ModelRefused(f"array {member.filename} claims {size:,} bytes in {member.file_size:,}")
            total += size
    return total


def _unsafe_object(config: Any) -> str | None:
    """What in a Keras config would run code from outside Keras and the registered classes (as the rest of a
    sentence beginning with the model's name), or None; walked without recursion, however deep the config."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            name = item.get("class_name")
            problem = isinstance(name, str) and _unsafe_class(name, item.get("module"), item.get("registered_name"))
            if problem:
                return problem
            stack.extend(item.values())
    return None


def _unsafe_class(name: str, module: Any, registered: Any) -> str | None:
    """Why one serialized object (its class name, module and registered name) is refused, or None."""
    if name in UNSAFE_LAYERS:
        return f"uses {UNSAFE_LAYERS[name]}, which is not loaded for safety"
    if name == "__lambda__":
        return "holds Python bytecode (a serialized lambda), which is not loaded for safety"
    if name.startswith("__") or (isinstance(module, str) and (module == "keras" or module.startswith("keras."))):
        return None
    import keras

    from denoiser import layers  # noqa: F401  registers this project's own classes

    if (registered or name) in keras.saving.get_custom_objects():
        return None
    origin = f" from {module}" if isinstance(module, str) else ""
    return (
        f"uses class {name}{origin}, which is neither Keras's nor registered in this process, "
        "so it is not loaded for safety"
    )


def load_keras(path: str | Path):
    """The Keras model of a checked `.keras` file (see `check_model`), loaded in safe mode; ModelRefused when Keras
    cannot load it."""
    import keras

    check_model(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (TypeError, ValueError, KeyError, OSError) as error:
        raise ModelRefused(f"model {path} cannot be loaded: {str(error).splitlines()[0]}") from error


def load_artifact(path: str | Path, precision: str = "float32") -> Artifact:
    """Load a `.keras` model in safe mode (refused as `check_model` says), cast to `precision`: a Keras dtype policy
    name, or `int8` for its int8 graph (the Keras model stays float32)."""
    from denoiser.int8 import Int8Graph, read_int8

    model = load_keras(path)
    if precision != "int8":
        return Artifact(with_precision(model, precision), read_card(path))
    graph = read_int8(path)
    if graph is None:
        raise ValueError(f"{path} has no int8 graph (make one with `denoise train quantize {path}`)")
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
