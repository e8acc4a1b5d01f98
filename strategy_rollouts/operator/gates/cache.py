"""What the GateTemplate / ClusterGateTemplate watches last delivered (Context.gate_templates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from strategy_rollouts.engine.gate_templates import Template, TemplateKey, template_of
from strategy_rollouts.operator.runtime.cache import Newest, revision_of

# Waker kind of a template change (the key is (namespace or "", name)); rollouts and shadow runs watch it.
WAKER = {"GateTemplate": "gatetemplate", "ClusterGateTemplate": "clustergatetemplate"}


def key_of_body(kind: str, body: Mapping[str, Any]) -> TemplateKey:
    meta = body.get("metadata") or {}
    return kind, str(meta.get("namespace") or "") if kind == "GateTemplate" else "", str(meta.get("name"))


@dataclass
class TemplateCache:
    held: Newest[TemplateKey, Template | None] = field(default_factory=Newest)

    def offer(self, kind: str, body: Mapping[str, Any]) -> TemplateKey:
        key = key_of_body(kind, body)
        self.held.put(key, revision_of(body.get("metadata") or {}), template_of(kind, body))
        return key

    def drop(self, key: TemplateKey) -> None:
        self.held.pop(key)

    def get(self, key: TemplateKey) -> Template | None:
        return self.held.get(key)
