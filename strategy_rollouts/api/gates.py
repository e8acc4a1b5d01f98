"""Gates: threshold, compare, judge (Mann-Whitney U or sequential), webhook, or a reference to a (Cluster)GateTemplate.

Shared by StrategyRollout.spec.gates and ShadowRun.spec.kpis. Exactly one kind per gate; a gate with
`templateRef` takes the template's body, and the fields given beside it override the template's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from strategy_rollouts.api.common import (
    ApiModel,
    CallTimeout,
    ConditionText,
    Duration,
    Name,
    Query,
    SecretKeyRef,
    StatusModel,
    Timestamp,
    with_rules,
)
from strategy_rollouts.api.conditions import parse_condition

GATE_NAME_PATTERN = r"^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
ARG_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TemplateKind = Literal["GateTemplate", "ClusterGateTemplate"]


class JudgeSpec(ApiModel):
    """The canary population against the stable one, over a range query per side (docs/judge.md).

    `mannWhitneyU`: one fixed-sample test over the last `window` at every evaluation. `sequential`: an
    anytime-valid confidence sequence for canary - stable over the samples since the current step started.
    """

    model_config = with_rules(
        {
            "rule": "!(has(self.margin) && has(self.marginPercent))",
            "message": "set margin or marginPercent, not both",
        },
    )

    test: Literal["mannWhitneyU", "sequential"] = "mannWhitneyU"
    # `{{version}}` is the canary version for one run and the stable version for the other.
    query: Query
    window: Duration = "30m"  # mannWhitneyU only: sequential reads from the start of the current step
    step: Duration = "1m"
    worse_when: Literal["lower", "higher"]
    # mannWhitneyU: Fail when one-sided p < 1 - confidence. sequential: P(ever Fail | canary not worse) and
    # P(ever Pass | canary worse by more than the margin) are each at most 1 - confidence.
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    min_samples: Annotated[int, Field(ge=3, le=1_000_000)] = 30
    # sequential only. The non-inferiority margin in the query's unit, or in percent of stable's mean level;
    # neither: 0 (Pass only on evidence that the canary is not worse at all).
    margin: Annotated[float, Field(ge=0, le=1e15)] | None = None
    margin_percent: Annotated[float, Field(ge=0, le=1000)] | None = None
    # time: the samples of both sides at one timestamp make one paired difference; none: two samples.
    pairing: Literal["time", "none"] = "time"
    decide_within: Duration | None = None
    on_undecided: Literal["hold", "rollback"] = "hold"  # never promote


class WebhookSpec(ApiModel):
    """An HTTP check by another system: POST of the rollout's state, 2xx = Pass."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]
    timeout: CallTimeout = "10s"
    at: Literal["continuous", "stepIncrease", "promotion"] = "continuous"
    on_reject: Literal["hold", "fail"] = "hold"
    bearer_token_secret_ref: SecretKeyRef | None = None
    ca_secret_ref: SecretKeyRef | None = None


class PerKey(ApiModel):
    """Judge the gate per key: the query is measured `by (label)` and each key's value is judged alone."""

    label: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=128)]


class TemplateRef(ApiModel):
    kind: TemplateKind = "ClusterGateTemplate"
    name: Name


class GateSpec(ApiModel):
    """Exactly one of: threshold (`query` + `condition`), compare (`query` + `baseline` +
    `maxIncreasePercent`), `judge`, `webhook`, or `templateRef` (+ `args`, fields beside it override)."""

    model_config = with_rules(
        {
            "rule": "has(self.templateRef) || [has(self.condition), has(self.baseline), has(self.judge),"
            " has(self.webhook)].filter(x, x).size() == 1",
            "message": "set exactly one of condition, baseline, judge, webhook or templateRef",
        },
        {
            "rule": "has(self.templateRef) || has(self.baseline) == has(self.maxIncreasePercent)",
            "message": "baseline and maxIncreasePercent go together",
        },
        {
            "rule": "has(self.templateRef) || has(self.query) == (has(self.condition) || has(self.baseline))",
            "message": "query goes with condition or baseline (a judge has its own query)",
        },
        {"rule": "has(self.templateRef) || !has(self.args)", "message": "args need a templateRef"},
    )

    name: Annotated[str, Field(pattern=GATE_NAME_PATTERN, max_length=63)]
    query: Query | None = None
    condition: ConditionText | None = None
    baseline: Query | None = None
    max_increase_percent: Annotated[float, Field(ge=0, le=10_000)] | None = None
    judge: JudgeSpec | None = None
    webhook: WebhookSpec | None = None
    template_ref: TemplateRef | None = None
    args: Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64)] | None = None
    interval: Duration = "30s"
    # Failures since the current step started (Argo Rollouts' meaning): onFailure when exceeded.
    failure_limit: Annotated[int, Field(ge=0, le=1000)] = 0
    # Failures in a row (a Pass resets it): onFailure when exceeded. None: not checked.
    consecutive_failure_limit: Annotated[int, Field(ge=0, le=1000)] | None = None
    inconclusive_limit: Annotated[int, Field(ge=0, le=1000)] = 2
    dry_run: bool = False
    # A failing key is quarantined (back to stable alone), up to spec.routing.maxQuarantined.
    per_key: PerKey | None = None

    @field_validator("condition")
    @classmethod
    def _condition_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)
        return value


# Rejected: a webhook said no with `onReject: hold` (wait and ask again; never counted as a failure).
# Undecided: a sequential judge with data but no decision yet (holds the step; not an inconclusive).
GateResult = Literal["Pass", "Fail", "Inconclusive", "Error", "Rejected", "Undecided"]


class JudgeSamples(StatusModel):
    canary: int = 0
    stable: int = 0
    pairs: int | None = None  # sequential: the differences the confidence sequence used


class ConfidenceInterval(StatusModel):
    """A sequential judge's current confidence sequence for canary - stable, in the query's unit."""

    lower: float | None = None
    upper: float | None = None


class TemplateUse(StatusModel):
    """The template (and its resourceVersion) a gate's last evaluation used."""

    kind: str
    name: str
    resource_version: str | None = None


SCOREBOARD = 50  # per-key gates: the keys nearest to failing shown in status (it stays small)
MAX_PER_KEY_GATES = 4  # a rollout's per-key gates, each with its scoreboard (engine/size.py's budget holds)


class KeyScore(StatusModel):
    """One key of a per-key gate's scoreboard: its value on each version (as smoothed as the query is)."""

    key: str
    canary: float | None = None
    stable: float | None = None  # the same query for the stable version (None: not measurable)
    result: GateResult


class GateStatus(StatusModel):
    name: str
    # judge: the one-sided p-value (sequential: anytime-valid); webhook: the HTTP status
    value: float | None = None
    baseline: float | None = None
    # judge: Hodges-Lehmann shift, canary - stable, in the query's unit
    effect: float | None = None
    samples: JudgeSamples | None = None
    confidence_interval: ConfidenceInterval | None = None  # sequential judge
    margin: float | None = None  # sequential judge: the margin in the query's unit (marginPercent resolved)
    template: TemplateUse | None = None
    result: GateResult | None = None
    failures: int = Field(default=0, ge=0)  # since the current step started
    consecutive_failures: int = Field(default=0, ge=0)  # in a row; a Pass resets it
    inconclusives: int = Field(default=0, ge=0)  # in a row; a Pass resets it
    evaluated_at: Timestamp | None = None
    message: str | None = None
    dry_run: bool | None = None
    # sequential judge: no decision by decideWithin, onUndecided: hold (the rollout holds, reason JudgeUndecided)
    undecided_overdue: bool | None = None
    # per-key gate: the keys the canary trades, worst first (failing, then least headroom), at most SCOREBOARD
    keys: Annotated[list[KeyScore], Field(max_length=SCOREBOARD)] | None = None
