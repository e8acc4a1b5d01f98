"""Per-object loops started from watch events, without a finalizer.

kopf's `@kopf.daemon` always puts a finalizer on its objects, and with the operator down that
finalizer blocks deleting a StrategyRollout or ParityCheck and their namespace. Their deletion needs
no work (children carry owner references), so their loops are plain tasks: started by the first
event of an object (the initial listing included, which covers operator restarts), stopped by its
DELETED event or at shutdown. A ShadowRun's deletion does need work (its shadow goes back to 0):
a kopf delete handler does it, and that handler's finalizer is the only one we put on an object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

LoopKey = tuple[str, str, str]  # (kind, namespace, name)


class Stop:
    """What a loop polls and awaits to know it must end (same shape as kopf's DaemonStopped)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class Loops:
    def __init__(self) -> None:
        self._running: dict[LoopKey, tuple[asyncio.Task[None], Stop]] = {}

    def ensure(self, key: LoopKey, start: Callable[[Stop], Coroutine[Any, Any, None]]) -> None:
        """Start the loop of `key` unless it runs (a loop that ended on its own is started again)."""
        current = self._running.get(key)
        if current is not None and not current[0].done():
            return
        stop = Stop()
        task = asyncio.create_task(start(stop), name=f"{key[0]}:{key[1]}/{key[2]}")
        self._running[key] = (task, stop)

    async def stop(self, key: LoopKey, timeout: float = 5.0) -> None:
        current = self._running.pop(key, None)
        if current is not None:
            await _finish(*current, timeout)

    async def stop_all(self, timeout: float = 5.0) -> None:
        running, self._running = self._running, {}
        await asyncio.gather(*(_finish(task, stop, timeout) for task, stop in running.values()))

    def __len__(self) -> int:
        return len(self._running)


async def _finish(task: asyncio.Task[None], stop: Stop, timeout: float) -> None:
    stop.set()
    try:
        await asyncio.wait_for(task, timeout)
    except TimeoutError:
        log.warning("loop %s did not stop in %.0fs; cancelled", task.get_name(), timeout)
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("loop %s failed while stopping", task.get_name())
