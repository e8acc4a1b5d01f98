"""GateTemplate (namespaced, `gtt`) and ClusterGateTemplate (cluster-scoped, `cgtt`): one gate body, shared.

The body is kept as written (its fields may hold `{{args.NAME}}` where a number or a condition goes), and
is validated as a GateSpec only once the arguments are substituted (engine/gate_templates.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from strategy_rollouts.api.common import ApiModel
from strategy_rollouts.api.gates import ARG_NAME_PATTERN


class TemplateArg(ApiModel):
    name: Annotated[str, Field(pattern=ARG_NAME_PATTERN, max_length=63)]
    # No default: every gate using the template must pass this arg.
    default: Annotated[str, Field(max_length=4096)] | None = None


class GateTemplateSpec(ApiModel):
    args: Annotated[
        list[TemplateArg],
        Field(
            max_length=64,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
    ] = []
    # A gate without `name` (the using gate names it): threshold, compare, judge or webhook.
    gate: Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]
