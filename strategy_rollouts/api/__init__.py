# common first, whichever api module is imported: it re-exports the gate models of api/gates.py, which
# build on it, so importing gates.py before common would meet a half-initialised common.
from strategy_rollouts.api import common as common
