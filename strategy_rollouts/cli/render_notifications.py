"""Pure renderer for notifications (any kind): what waits to be sent, what was sent or given up last."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from strategy_rollouts.api.notify import NotificationStatus
from strategy_rollouts.cli.fmt import relative


def notifications_text(state: NotificationStatus | None, now: datetime) -> Text | None:
    """`Notify:   1 pending (RolledBack-3-0); last delivered AwaitingApproval-2-0 2m ago`; None if never used."""
    if state is None:
        return None
    text = Text("Notify:   ")
    pending = sorted(state.pending, key=lambda i: (state.pending[i].occurrence, i))
    text.append(
        f"{len(pending)} pending" + (f" ({', '.join(pending[:3])})" if pending else ""),
        style="yellow" if pending else "",
    )
    if state.last_delivered is not None:
        text.append(f"; last delivered {state.last_delivered.id} {relative(state.last_delivered.at, now)}")
    if state.last_failed is not None:
        failed = state.last_failed
        text.append(f"; last failed {failed.id} {relative(failed.at, now)} (NotificationFailed)", style="red")
    return text
