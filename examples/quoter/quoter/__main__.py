"""`python -m quoter --strategy fib_rsi --version v2.0.0 ...`"""

import logging
import os
import sys

from .app import main

code = main()
# Everything is closed by now. Skip the interpreter's teardown of the (large) kubernetes client
# module graph, which alone can take a second on a busy node: exit promptly on SIGTERM.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
