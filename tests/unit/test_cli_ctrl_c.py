"""Ctrl-C ends a watch (`get -w`) promptly with exit 0 in every state: between polls, during one,
when SIGINT was ignored at start-up, and when Python discards the KeyboardInterrupt in a finalizer.

In-process, with real signals sent to the main thread (the integration tests cover the plugin)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from strategy_rollouts.cli.ctrl_c import until_ctrl_c

LONG = 30.0  # a sleep or a blocked read that Ctrl-C must cut short


@pytest.fixture
def ctrl_c_in() -> Iterator[Callable[[float], None]]:
    """SIGINT to the main thread after so many seconds (to the thread: a process-directed signal may
    land on the timer's own thread, and then nothing interrupts the main thread's sleep)."""
    main = threading.main_thread().ident
    assert main is not None
    timers: list[threading.Timer] = []

    def later(seconds: float) -> None:
        timers.append(threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT)))
        timers[-1].start()

    yield later
    for timer in timers:
        timer.cancel()
        timer.join()


@pytest.fixture(autouse=True)
def sigint_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGINT)
    yield
    assert signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, before)


def timed(step: Callable[[], None], interval: float) -> tuple[int, float]:
    started = time.monotonic()
    code = until_ctrl_c(step, interval)
    return code, time.monotonic() - started


def test_ctrl_c_between_polls(ctrl_c_in: Callable[[float], None]) -> None:
    steps: list[float] = []
    ctrl_c_in(0.3)
    code, took = timed(lambda: steps.append(time.monotonic()), LONG)
    assert (code, len(steps)) == (0, 1) and took < 5


def test_ctrl_c_during_the_first_poll(ctrl_c_in: Callable[[float], None]) -> None:
    """Like a first list blocked on a silent API server: the poll is cut short, nothing else runs."""
    steps: list[int] = []

    def blocked() -> None:
        steps.append(1)
        time.sleep(LONG)
        steps.append(2)

    ctrl_c_in(0.3)
    code, took = timed(blocked, 0)
    assert (code, steps) == (0, [1]) and took < 5


def test_ctrl_c_when_sigint_was_ignored_at_start(ctrl_c_in: Callable[[float], None]) -> None:
    """A shell without job control starts `cmd &` with SIGINT ignored; Python then installs no
    KeyboardInterrupt handler, and a plain `except KeyboardInterrupt` loop could never end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctrl_c_in(0.3)
        code, took = timed(lambda: None, LONG)
        assert code == 0 and took < 5
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # as it was
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Finalized:
    """Stands for the client's previous http.client.HTTPResponse, dropped during every request:
    IOBase's finalizer calls its Python-level close(). Ctrl-C arrives while that runs."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)  # the handler runs here, inside the finalizer


def test_ctrl_c_discarded_in_a_finalizer_still_ends_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    discarded: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: discarded.append(u.exc_type))
    steps: list[int] = []

    def poll() -> None:
        steps.append(1)
        assert len(steps) < 3, "Ctrl-C was lost: the watch polls on"
        Finalized()  # created and finalized at once

    code, took = timed(poll, 0.05)
    assert discarded == [KeyboardInterrupt]  # Python threw the KeyboardInterrupt away...
    assert (code, len(steps)) == (0, 1) and took < 5  # ...and the watch ended after that poll anyway
