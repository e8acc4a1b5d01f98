"""What the GateTemplate / ClusterGateTemplate watches last delivered (Context.gate_templates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.gate_templates import GateTemplateSpec
from strategy_rollouts.engine.gate_templates import Template, TemplateKey
from strategy_rollouts.operator.runtime.watched import Newest, _revision

# Waker kind of a template change (the key is (namespace or "", name)); rollouts and shadow runs watch it.
WAKER = {"GateTemplate": "gatetemplate", "ClusterGateTemplate": "clustergatetemplate"}


def template_of(kind: str, body: Mapping[str, Any]) -> Template | None:
    """None for a body whose spec does not parse (reported where it is used, as not found)."""
    meta = body.get("metadata") or {}
    try:
        spec = GateTemplateSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    return Template(kind, str(meta.get("name")), meta.get("resourceVersion"), spec)


def key_of_body(kind: str, body: Mapping[str, Any]) -> TemplateKey:
    meta = body.get("metadata") or {}
    return kind, str(meta.get("namespace") or "") if kind == "GateTemplate" else "", str(meta.get("name"))


@dataclass
class TemplateCache:
    held: Newest[TemplateKey, Template | None] = field(default_factory=Newest)

    def offer(self, kind: str, body: Mapping[str, Any]) -> TemplateKey:
        key = key_of_body(kind, body)
        self.held.put(key, _revision(body.get("metadata") or {}), template_of(kind, body))
        return key

    def drop(self, key: TemplateKey) -> None:
        self.held.pop(key)

    def get(self, key: TemplateKey) -> Template | None:
        return self.held.get(key)
