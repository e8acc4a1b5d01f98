"""`python -m quoter --strategy fib_rsi --version v2.0.0 ...`"""

import sys

from .app import main

sys.exit(main())
