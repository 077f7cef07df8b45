"""Quiet start-up for the commands: TensorFlow's start-up notices (oneDNN, CUDA drivers, absl's "All log messages
before absl::InitializeLog()") are hidden unless the user sets TF_CPP_MIN_LOG_LEVEL; Python's warnings and errors,
and everything printed after TensorFlow has loaded, still show."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LEVEL = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"  # TensorFlow's own C++ log: nothing (cuInit's failure on a machine without a GPU is an ERROR)
OURS = "DENOISE_QUIET_TF"  # set beside LEVEL, so that a child process knows the level is ours, not the user's


@contextmanager
def silenced_stderr() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the duration (C++ code writes there directly)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class QuietLoader(importlib.abc.Loader):
    """Runs another loader with stderr silenced: absl writes TensorFlow's start-up notices before any log level
    applies."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with silenced_stderr():
            self.loader.exec_module(module)


class QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the path finder does, to be loaded by a QuietLoader."""

    def find_spec(self, name: str, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = QuietLoader(spec.loader)
        return spec


class BoundedRetracing(logging.Filter):
    """Drops TensorFlow's warning that a predict function was traced again for a new input shape: the models see
    a bounded set of shapes (tiles, the damage network's canvases), each traced once per process."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_tensorflow() -> None:
    """Hide TensorFlow's start-up notices from here on, unless the user set TF_CPP_MIN_LOG_LEVEL (then theirs
    applies) or TensorFlow has already loaded; and its warning about retracing for a new shape."""
    tensorflow_log = logging.getLogger("tensorflow")
    if not any(isinstance(f, BoundedRetracing) for f in tensorflow_log.filters):
        tensorflow_log.addFilter(BoundedRetracing())
    if (LEVEL in os.environ and OURS not in os.environ) or "tensorflow" in sys.modules:
        return
    os.environ[LEVEL], os.environ[OURS] = QUIET_LEVEL, "1"
    if not any(isinstance(finder, QuietTensorFlow) for finder in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlow())
