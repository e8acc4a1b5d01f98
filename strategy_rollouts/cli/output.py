"""Where output goes: a rich Console sized for terminals and wide enough for pipes and tests."""

from __future__ import annotations

import os
import sys

from rich.console import Console


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 250
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)
