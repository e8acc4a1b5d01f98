"""Gate conditions: `<op> <number>` with op one of `< <= > >= == !=`. Parsed, never eval'd."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

CONDITION_PATTERN = r"^\s*(<=|>=|==|!=|<|>)\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Condition:
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


def parse_condition(text: str) -> Condition:
    match = re.fullmatch(CONDITION_PATTERN, text or "")
    if not match:
        raise ValueError(f"{text!r} is not a condition like '< 200' (ops: < <= > >= == !=)")
    op = match.group(1)
    threshold = float(text.strip()[len(op) :].strip())
    if not math.isfinite(threshold):
        raise ValueError(f"{text!r}: threshold must be a finite number")
    return Condition(op, threshold)
