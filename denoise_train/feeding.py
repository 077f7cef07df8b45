"""Training batches for Keras from a batch maker, made in threads or in spawned worker processes.

Keras's own worker processes are forked, and a fork of a process running JAX hangs (keras-team/keras#20619), so
the processes here are spawned: each holds a copy of the maker and makes the batches it is asked for."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol

import keras


class Maker(Protocol):
    """Makes batch `index` of `epoch`, the same every time it is asked (a picklable object)."""

    def batch(self, epoch: int, index: int): ...


_maker: Maker | None = None  # a worker process's copy of the maker


def adopt(maker: Maker) -> None:
    """Keep this worker process's copy of the maker."""
    global _maker
    _maker = maker


def made(epoch: int, index: int):
    """Batch `index` of `epoch`, from this worker process's maker."""
    return _maker.batch(epoch, index)


class Batches(keras.utils.PyDataset):
    """`steps` batches an epoch of a maker, made by `workers` threads, or by as many spawned processes with
    `processes`; the epoch is set by the training loop, and leaving the `with` block ends the processes."""

    def __init__(self, maker: Maker, steps: int, workers: int = 1, processes: bool = False):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.maker, self.steps, self.epoch = maker, steps, 0
        spawn = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(workers, spawn, adopt, (maker,)) if processes else None

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        if self.pool is None:
            return self.maker.batch(self.epoch, index)
        return self.pool.submit(made, self.epoch, index).result()

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
