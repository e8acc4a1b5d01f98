"""Prometheus metrics. Every series carries `strategy` and `version` labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# 5 ms steps to 50 ms, 10 ms to 200 ms, 20 ms to 500 ms (where tick budgets live), so that
# histogram_quantile interpolates to within a few percent.
BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.035, 0.04,
    0.045, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18,
    0.19, 0.2, 0.22, 0.24, 0.26, 0.28, 0.3, 0.32, 0.34, 0.36, 0.38, 0.4, 0.42, 0.44, 0.46, 0.48,
    0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 3.0, 5.0,
)  # fmt: skip

STAGES = ("fetch", "signal", "risk", "order", "tick_total")
COST_COMPONENTS = ("fees", "slippage", "timing", "sizing")
SOURCES = ("live", "backtest")


class QuoterMetrics:
    """All series of one quoter process, in its own registry, pre-labelled."""

    def __init__(self, strategy: str, version: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        base = ["strategy", "version"]
        labels = {"strategy": strategy, "version": version}
        r = self.registry

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, base, registry=r)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, base, registry=r)

        self.tick_duration = Histogram(
            "tick_duration_seconds", "Duration of one tick, all stages.", base, buckets=BUCKETS, registry=r
        ).labels(**labels)
        stage_hist = Histogram(
            "strategy_stage_duration_seconds",
            "Duration of one stage of a tick.",
            [*base, "stage"],
            buckets=BUCKETS,
            registry=r,
        )
        self.stage_duration = {stage: stage_hist.labels(stage=stage, **labels) for stage in STAGES}
        self.ticks = counter("ticks", "Ticks processed.").labels(**labels)
        self.deadline_misses = counter("deadline_misses", "Ticks that missed their deadline.").labels(**labels)
        self.orders = counter("orders", "Orders sent (never in shadow mode).").labels(**labels)
        self.partial_fills = counter("partial_fills", "Orders only partially filled.").labels(**labels)
        self.decisions = counter("decisions", "Decisions made (entries and exits).").labels(**labels)
        self.publish_errors = counter("decision_publish_errors", "Failed decision publishes.").labels(**labels)
        self.routing_revision = gauge("routing_revision", "Latest routing revision seen.").labels(**labels)
        self.assigned_keys = gauge("assigned_keys", "Keys this version currently trades.").labels(**labels)
        self.size_multiplier = gauge("size_multiplier", "Routing sizeMultiplier in force.").labels(**labels)
        self.entries_enabled = gauge("entries_enabled", "1 when new entries are allowed.").labels(**labels)
        self.capital_at_risk = gauge("capital_at_risk_percent", "Percent of capital at risk.").labels(**labels)
        # Per symbol traded now (a per-key gate's input); a symbol no longer traded loses its series.
        self.symbol_net_bps = Gauge(
            "strategy_symbol_net_bps", "Net bps of a traded symbol.", [*base, "symbol"], registry=r
        )
        self.labels = labels
        returns = Gauge("strategy_return", "Per-period return (fraction).", [*base, "source"], registry=r)
        self.returns = {source: returns.labels(source=source, **labels) for source in SOURCES}
        costs = Gauge(
            "strategy_cost_bps", "Per-period cost by component, in bps.", [*base, "source", "component"],
            registry=r,
        )  # fmt: skip
        self.costs = {
            (source, component): costs.labels(source=source, component=component, **labels)
            for source in SOURCES
            for component in COST_COMPONENTS
        }
