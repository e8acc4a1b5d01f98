"""Duration strings of the API: `500ms`, `30s`, `10m`, `48h`, `7d`, and combinations like `1h30m`."""

from __future__ import annotations

import functools
import re
from datetime import timedelta

# Used verbatim as the CRD `pattern`, so admission and the operator agree on what is well-formed.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
_WHOLE = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """`1h30m` -> timedelta(hours=1, minutes=30). Raises ValueError with the offending text."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 10m, 48h, 7d or 1h30m")
    return _parse(text)


# A reconcile parses the same few spec strings (intervals, pauses, handoff, deadlines) many times.
# Safe to share: timedelta is immutable, and a ValueError is raised again (lru_cache keeps no errors).
@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> timedelta:
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 10m, 48h, 7d or 1h30m")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Inverse of parse_duration for display: 90061s -> `1d1h1m1s`."""
    total_ms = round(delta.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, total_ms = divmod(total_ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
