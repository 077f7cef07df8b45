"""What values each setting takes, in one place: the command line, the daemon's TOML file and its `DENOISED_*`
variables check a value by the same rule and say the same words about a bad one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

DEVICES = ("auto", "cpu", "gpu")  # and gpu:N, the Nth GPU (from 0): one engine per device (docs/gpu.md)
AUTO = "auto"
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
ENSEMBLES = (1, 2, 4, 8)
MIN_TILE = 16


def is_device(value) -> bool:
    """auto, cpu, gpu (the first GPU) or gpu:N."""
    return value in DEVICES or (isinstance(value, str) and re.fullmatch(r"gpu:\d+", value) is not None)


def is_batch_size(value) -> bool:
    """auto (sized from free device memory on a GPU, 1 on a CPU) or a whole number of at least 1."""
    return value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def device_index(device: str) -> int:
    """N of gpu:N; 0 for any other device."""
    return int(device.partition(":")[2] or 0)


class Rule(NamedTuple):
    """The values a setting takes: from `minimum` to `maximum`, one of `choices`, or what `test` passes (`says`
    says what they are, after `must`); None always passes (it means: automatic, or off)."""

    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    test: Callable[[object], bool] | None = None
    says: str = ""

    def allows(self, value) -> bool:
        """Whether `value` is allowed."""
        if value is None:
            return True
        if self.choices:
            return value in self.choices
        if self.test is not None:
            return self.test(value)
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def describe(self) -> str:
        """What the setting must do, to end a sentence that starts `NAME must`: `be at least 1`."""
        if self.says:
            return self.says
        if self.choices:
            return "be one of " + ", ".join(map(str, self.choices))
        if self.maximum is not None:
            return f"be from {self.minimum:g} to {self.maximum:g}"
        return "not be negative" if self.minimum == 0 else f"be at least {self.minimum:g}"


RULES: dict[str, Rule] = {
    "tile": Rule(minimum=MIN_TILE),
    "overlap": Rule(minimum=0),
    "batch_size": Rule(test=is_batch_size, says="be at least 1, or auto"),
    "device": Rule(test=is_device, says="be auto, cpu, gpu or gpu:N (N counts GPUs from 0)"),
    "precision": Rule(choices=PRECISIONS),
    "ensemble": Rule(choices=ENSEMBLES),
    "max_pixels": Rule(minimum=1),
    "max_bytes": Rule(minimum=1),
}


def problem(name: str, value, rules: dict[str, Rule] = RULES) -> str | None:
    """What is wrong with a setting's value, in words (`batch_size must be at least 1`), or None."""
    rule = rules.get(name)
    if rule is None or rule.allows(value):
        return None
    return f"{name} must {rule.describe()}"


def check(name: str, value, rules: dict[str, Rule] = RULES):
    """The value, or ValueError with `problem`'s words."""
    words = problem(name, value, rules)
    if words:
        raise ValueError(words)
    return value
