import sys

from strategy_rollouts.dashboard.server import main

sys.exit(main())
