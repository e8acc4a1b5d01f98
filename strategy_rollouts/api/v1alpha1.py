"""strategyrollouts.io/v1alpha1: every kind's spec and status, re-exported from their modules."""

from strategy_rollouts.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    CanaryRef,
    Condition,
    DeploymentRef,
    PrometheusConnection,
    SecretKeyRef,
    set_condition,
)
from strategy_rollouts.api.gates import GateSpec, GateStatus
from strategy_rollouts.api.paritycheck import ParityCheckSpec, ParityCheckStatus
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.api.shadowrun import ShadowRunSpec, ShadowRunStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "CanaryRef",
    "Condition",
    "DeploymentRef",
    "GateSpec",
    "GateStatus",
    "ParityCheckSpec",
    "ParityCheckStatus",
    "PrometheusConnection",
    "SecretKeyRef",
    "ShadowRunSpec",
    "ShadowRunStatus",
    "StrategyRolloutSpec",
    "StrategyRolloutStatus",
    "set_condition",
]
