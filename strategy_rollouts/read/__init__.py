"""What the dashboard and the CLI share (cluster reads, Prometheus queries, placeholder expansion).

Never imports `strategy_rollouts.operator` (the import contract in pyproject.toml, run by `make lint`).
"""
