"""Errors the plugin reports as one line and an exit code, never a traceback."""

from __future__ import annotations

# Exit codes (besides 0): 1 error / failed, 2 usage or still running (`status`), 3 not handled in time.
EXIT_ERROR = 1
EXIT_RUNNING = 2
EXIT_NOT_HANDLED = 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
