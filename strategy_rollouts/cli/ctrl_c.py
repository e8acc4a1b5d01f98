"""Ctrl-C for the watch commands: it ends them promptly, with exit 0, whatever they are doing.

Python's default Ctrl-C (a KeyboardInterrupt wherever the main thread happens to be) is not enough
for a loop whose only way out is Ctrl-C:
- Python installs that handler only when SIGINT is not ignored at start-up. A command started in the
  background by a shell without job control (a script's `cmd &`, `make test > log &`) inherits SIGINT
  ignored, and then Ctrl-C or `kill -INT` does nothing at all: the watch never ends. So the watch
  installs its own handler, ignored or not (as Go's signal.Notify does).
- A KeyboardInterrupt raised while a finalizer runs is printed ("Exception ignored in ...") and
  discarded, and every poll runs one: the client's previous http.client.HTTPResponse is dropped in
  the next request, and its IOBase finalizer calls the Python-level close(). So the handler also
  records the press, and the loop checks it after every step: a discarded interrupt ends the watch
  as soon as the step in progress returns (one API call, bounded by the client's timeout).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType


class _CtrlC:
    def __init__(self) -> None:
        self.pressed = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        raise KeyboardInterrupt  # cuts short a sleep, an API call or a blocked write, where it is


def until_ctrl_c(step: Callable[[], None], interval: float) -> int:
    """Run `step` every `interval` seconds (the first at once) until Ctrl-C (SIGINT); return 0.

    Main thread only (signal handlers are). A Ctrl-C before the first step, or during it, ends it too.
    """
    ctrl_c = _CtrlC()
    previous = signal.getsignal(signal.SIGINT)
    try:
        # inside the try: a KeyboardInterrupt from Python's own handler, just before, ends here as well
        signal.signal(signal.SIGINT, ctrl_c.handler)
        while not ctrl_c.pressed:
            step()
            if ctrl_c.pressed:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return 0
