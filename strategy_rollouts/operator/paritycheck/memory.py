"""Per-process memory of the ParityCheck adapter (the `Context.parity` field)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ParityMemory:
    user: str | None = None  # the operator's own user name (SelfSubjectReview), looked up once
