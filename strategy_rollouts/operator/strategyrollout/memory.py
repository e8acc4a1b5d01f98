"""Per-process memory of the StrategyRollout adapter (one instance, in `Context.rollouts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strategy_rollouts.operator.runtime.wakers import ObjectKey


@dataclass
class RolloutMemory:
    """What the rollout adapter remembers between passes (never the truth: status is)."""

    # (namespace, name) -> (generation, status) of our last status write, to recognise its watch echo.
    own_writes: dict[ObjectKey, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # (namespace, name) -> (resourceVersion, status): the engine's last decision on that version of the
    # object, including gate evaluations not worth a write of their own (rollouts.must_persist).
    working: dict[ObjectKey, tuple[str, Any]] = field(default_factory=dict)

    def forget(self, key: ObjectKey) -> None:
        self.own_writes.pop(key, None)
        self.working.pop(key, None)
