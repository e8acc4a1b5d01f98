"""Gates with `templateRef`: the template's body, its `{{args.NAME}}` substituted, the gate's own fields on top.

Pure: the adapter hands in the templates it found (None: not found). A missing template, a missing arg
without default, an arg the template does not declare or a `{{args.X}}` it does not declare is an error
naming the field, and the object does not act (InvalidSpec).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.gate_templates import GateTemplateSpec
from strategy_rollouts.api.gates import GateSpec, TemplateUse

_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]*)\s*\}\}")
TemplateKey = tuple[str, str, str]  # (kind, namespace or "" for cluster-scoped, name)


@dataclass(frozen=True)
class Template:
    kind: str
    name: str
    resource_version: str | None
    spec: GateTemplateSpec


def template_of(kind: str, body: Mapping[str, Any]) -> Template | None:
    """A GateTemplate / ClusterGateTemplate body as a Template; None for a body whose spec does not parse
    (reported where it is used, as not found)."""
    meta = body.get("metadata") or {}
    try:
        spec = GateTemplateSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    return Template(kind, str(meta.get("name")), meta.get("resourceVersion"), spec)


@dataclass
class Resolved:
    gates: list[GateSpec]
    used: dict[str, TemplateUse] = field(default_factory=dict)  # gate name -> template used
    errors: list[str] = field(default_factory=list)


def key_of(gate: GateSpec, namespace: str) -> TemplateKey | None:
    ref = gate.template_ref
    if ref is None:
        return None
    return ref.kind, namespace if ref.kind == "GateTemplate" else "", ref.name


def _substitute(node: Any, args: Mapping[str, str], unknown: list[str]) -> Any:
    if isinstance(node, str):

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in args:
                unknown.append(name)
                return match.group(0)
            return args[name]

        return _ARG.sub(value, node)
    if isinstance(node, list):
        return [_substitute(item, args, unknown) for item in node]
    if isinstance(node, dict):
        return {k: _substitute(v, args, unknown) for k, v in node.items()}
    return node


def resolve_one(where: str, gate: GateSpec, template: Template | None) -> tuple[GateSpec | None, list[str]]:
    ref = gate.template_ref
    assert ref is not None
    if template is None:
        return None, [f"{where}.templateRef: {ref.kind} {ref.name!r} not found"]
    named = f"{ref.kind} {ref.name}"
    declared = {a.name: a.default for a in template.spec.args}
    given = gate.args or {}
    errors = [f"{where}.args.{name}: {named} declares no such arg" for name in sorted(set(given) - set(declared))]
    args: dict[str, str] = {}
    for name, default in declared.items():
        if name in given:
            args[name] = given[name]
        elif default is not None:
            args[name] = default
        else:
            errors.append(f"{where}.args.{name}: required by {named} (it has no default)")
    body = template.spec.gate
    for nested in ("name", "templateRef", "args"):
        if nested in body:
            errors.append(f"{where}.templateRef: {named} spec.gate must not set {nested}")
    unknown: list[str] = []
    body = _substitute(body, {**args, **{n: f"{{{{args.{n}}}}}" for n in declared if n not in args}}, unknown)
    errors += [f"{where}.templateRef: {named} uses unknown {{{{args.{n}}}}}" for n in dict.fromkeys(unknown)]
    if errors:
        return None, errors
    # Fields written beside templateRef override the template's (only those written: defaults do not).
    own = gate.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"template_ref", "args"})
    try:
        return GateSpec.model_validate({**body, **own}), []
    except ValidationError as exc:
        return None, [validation_message(exc, f"{where} (from {named})")]


def resolve(
    field_name: str, gates: list[GateSpec], namespace: str, templates: Mapping[TemplateKey, Template | None]
) -> Resolved:
    out = Resolved(gates=[])
    for i, gate in enumerate(gates):
        key = key_of(gate, namespace)
        if key is None:
            out.gates.append(gate)
            continue
        template = templates.get(key)
        resolved, errors = resolve_one(f"{field_name}[{i}]", gate, template)
        out.errors += errors
        if resolved is not None and template is not None:
            out.gates.append(resolved)
            out.used[gate.name] = TemplateUse(
                kind=template.kind, name=template.name, resource_version=template.resource_version
            )
    return out
