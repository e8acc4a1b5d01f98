"""What the dashboard and the CLI share, so neither needs the operator nor the other:

cluster.py     the API connection (kubeconfig or in-cluster), custom objects, ConfigMaps, who am I
prometheus.py  Prometheus queries, every failure a cause (the operator measures gates with it too)
requests.py    the request protocol on the status subresource: build a request, read pending and handled
views.py       what both show of a status as text (step, actions, mismatches) and how they read it

Placeholder expansion is api/placeholders.py (`placeholder_values`, `substitute`). The import contract in
pyproject.toml (`lint-imports`) forbids this package, the CLI and the dashboard to import the operator.
"""
