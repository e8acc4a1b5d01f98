"""Types every kind's engine shares (StrategyRollout, ShadowRun, ParityCheck).

Kept small on purpose: only what more than one kind's engine and its adapter both speak. Each kind
keeps its own Decision and Observations, whose fields differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The two types of a Kubernetes Event.
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """An Event a decision asks the operator to post on its object."""

    type: EventType
    reason: str
    message: str
