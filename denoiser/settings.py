"""What values each setting takes, in one place: the command line, the daemon's TOML file and its `DENOISED_*`
variables check a value by the same rule and say the same words about a bad one."""

from __future__ import annotations

from typing import Callable, NamedTuple

DEVICES = ("auto", "cpu", "gpu")
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
ENSEMBLES = (1, 2, 4, 8)
MIN_TILE = 16


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
        return ((self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum))

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
    "batch_size": Rule(minimum=1),
    "device": Rule(choices=DEVICES),
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
