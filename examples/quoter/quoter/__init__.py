"""quoter: the reference strategy app for strategy-rollouts.

It reads its routing ConfigMap from the Kubernetes API, trades only the keys assigned to its
own version, exports Prometheus metrics, and publishes its decisions to a Redis stream.
"""

__version__ = "0.1.0"
