"""Turn pydantic validation errors into one message that names every bad field."""

from __future__ import annotations

from pydantic import ValidationError


def field_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validation_message(exc: ValidationError, prefix: str = "spec") -> str:
    parts = []
    for error in exc.errors(include_url=False):
        parts.append(f"{field_path(prefix, tuple(error['loc']))}: {error['msg']}")
    return "; ".join(parts)
