"""Building blocks shared by the three kinds: base model, durations, conditions, gates, refs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from strategy_rollouts.api.conditions import CONDITION_PATTERN
from strategy_rollouts.api.durations import DURATION_PATTERN, parse_duration

GROUP = "strategyrollouts.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes object names (DNS-1123 subdomain / label).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


def rfc3339(value: datetime) -> str:
    """Kubernetes-style timestamp, always UTC with a `Z`."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
# Every outbound call's TOTAL time is capped: one object's slow endpoint delays only that object, and
# never for longer than this (API.md "Acting safely": bounded I/O per object).
MAX_CALL_TIMEOUT = timedelta(seconds=30)


def _capped(text: str) -> str:
    if parse_duration(text) > MAX_CALL_TIMEOUT:
        raise ValueError(f"at most {int(MAX_CALL_TIMEOUT.total_seconds())}s (a call's total time is capped)")
    return text


CallTimeout = Annotated[Duration, AfterValidator(_capped)]
ConditionText = Annotated[str, Field(pattern=CONDITION_PATTERN, max_length=64)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=253)]
Query = Annotated[str, Field(min_length=1, max_length=8192)]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error naming the field."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=False,
    )

    def wire(self) -> dict[str, Any]:
        """JSON-ready dict with camelCase keys and no unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def with_rules(*rules: JsonDict) -> ConfigDict:
    """ApiModel's config plus CEL `x-kubernetes-validations` that admission enforces."""
    return ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"x-kubernetes-validations": list(rules)},
    )


class StatusModel(ApiModel):
    # Status is written by us and read back; tolerate fields from a newer operator version.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SecretKeyRef(ApiModel):
    name: Name
    key: Annotated[str, Field(min_length=1, max_length=253)]


class PrometheusConnection(ApiModel):
    """Per-object override of the operator-wide Prometheus connection."""

    address: Annotated[str, Field(pattern=r"^https?://.+", max_length=2048)] | None = None
    timeout: CallTimeout = "10s"
    bearer_token_secret_ref: SecretKeyRef | None = None
    ca_secret_ref: SecretKeyRef | None = None
    insecure_skip_verify: bool = False


class DeploymentRef(ApiModel):
    deployment: Name
    version: Annotated[str, Field(min_length=1, max_length=128)]


class CanaryRef(DeploymentRef):
    replicas: Annotated[int, Field(ge=0, le=10_000)] | None = None


class Condition(StatusModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: Timestamp | None = None
    observed_generation: int | None = None


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Upsert a condition; lastTransitionTime moves only when status flips (Kubernetes convention)."""
    wanted = "True" if status else "False"
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            result.append(cond)
            continue
        found = True
        moved = cond.status != wanted
        if (
            not moved
            and cond.last_transition_time is not None
            and cond.reason == reason
            and cond.message == message
            and cond.observed_generation == generation
        ):
            # Unchanged (the usual case): keep it rather than validate an equal copy. Conditions are
            # shared like the other entries of the list, never changed in place.
            result.append(cond)
            continue
        result.append(
            Condition(
                type=type_,
                status=wanted,
                reason=reason,
                message=message,
                last_transition_time=now if moved or cond.last_transition_time is None else cond.last_transition_time,
                observed_generation=generation,
            )
        )
    if not found:
        result.append(
            Condition(
                type=type_,
                status=wanted,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return result
