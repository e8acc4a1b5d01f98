"""Size by design (engine/size.py): at the maxima validation accepts, every status and routing.json the
engine writes stays within its budget, in every phase: progress, pause, abort and stop with every key of
every namespace draining at once. One key more is refused, naming the field and the reason.

The sizes are measured on what the engine itself writes through the simulated world (size_sim.py).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.rollout import MAX_BUCKETS, StrategyRolloutSpec
from strategy_rollouts.engine.rollout import spec_errors
from strategy_rollouts.engine.size import (
    ETCD_REQUEST_LIMIT,
    KIB,
    ROUTING_JSON_BUDGET,
    ROUTING_STATE_BUDGET,
    SPEC_BUDGET,
    STATUS_BUDGET,
    routing_json_bytes,
    routing_state_bytes,
    segmented,
    size_errors,
)
from tests.unit.rollout_sim import World
from tests.unit.size_sim import (
    MAX_KEYS,
    SCENARIOS,
    key_names,
    measure,
    most_keys,
    rest_at_limits,
    sized_spec,
    wire_bytes,
)

# What no phase's status needs besides its routing state: every simulated phase stays far below it
# (2 to 11 KiB, growing with the stage namespaces); rest_at_limits() shows the bound of every list full.
REST_IN_PRACTICE = 16 * KIB


def test_the_finding_5000_keys_across_4_namespaces_is_segmented_and_its_abort_stays_small() -> None:
    """Refused before (46 bytes a key-namespace, over the budget), now recorded as segments of the hash
    order: the same few hundred bytes whatever the number of keys, in every phase."""
    spec = sized_spec(5000, 4, 10, 6)
    assert spec_errors(spec, "ns") == [] and segmented(spec)
    assert routing_state_bytes(spec) <= ROUTING_STATE_BUDGET and routing_json_bytes(spec) <= ROUTING_JSON_BUDGET
    sizes = measure(spec, "abort-then-stop")
    assert {"RolledBack/Aborted", "RolledBack/TradingStopped", "Progressing/Handoff"} <= sizes.phases
    assert sizes.draining == 5000 * 4, "every key of every namespace drained at once"
    assert sizes.state < 4 * 1024 and sizes.routing < 2 * 1024, (sizes.state, sizes.routing)
    assert sizes.state <= routing_state_bytes(spec)


def test_a_segmented_universe_refuses_only_what_its_segments_cannot_fit_naming_the_field() -> None:
    spec = sized_spec(5000, 16, 10, 128)  # 16 stage namespaces, versions of 128 characters
    (message,) = size_errors(spec)
    assert message.startswith("spec.stages: 16 stage namespaces with versions of up to 128 characters exceed")
    assert "segments of the keys' hash order" in message
    world = World(spec)
    decision = world.reconcile()
    assert world.status.phase == "Invalid" and decision.routing == [] and decision.scales == []


@pytest.mark.parametrize(
    ("namespaces", "key_length", "version_length"),
    [
        (1, 10, 6),  # the CRD's 5000 keys (its maximum binds), symbols of 10 characters, versions like v2.0.0
        (4, 10, 6),  # the finding's shape, at the most keys allowed
        (16, 8, 8),  # every stage in its own namespace (the CRD's 16 stages)
        (1, 128, 128),  # the longest keys and versions
    ],
)
def test_abort_and_stop_with_every_key_draining_stay_under_the_budget_at_the_maxima(
    namespaces: int, key_length: int, version_length: int
) -> None:
    keys = most_keys(namespaces, key_length, version_length)
    spec = sized_spec(keys, namespaces, key_length, version_length)
    assert spec_errors(spec, "ns") == []
    if keys < MAX_KEYS:
        more = sized_spec(keys + 1, namespaces, key_length, version_length)
        assert segmented(more), "one more key is segmented"
        # ... accepted, unless its segments cannot fit in that many namespaces: then refused naming the field
        assert all(e.startswith("spec.stages: ") for e in size_errors(more))
        assert not size_errors(more) or routing_state_bytes(more) > ROUTING_STATE_BUDGET
    sizes = measure(spec, "abort-then-stop")  # the whole progress, then an abort, then a stop while draining
    assert {"RolledBack/Aborted", "RolledBack/TradingStopped", "Progressing/Handoff"} <= sizes.phases
    assert sizes.draining == keys * namespaces, "every key of every namespace drained at once"
    assert sizes.state <= routing_state_bytes(spec) <= ROUTING_STATE_BUDGET
    assert sizes.rest <= REST_IN_PRACTICE
    assert sizes.status <= STATUS_BUDGET
    assert sizes.routing <= routing_json_bytes(spec) <= ROUTING_JSON_BUDGET
    # The formula is tight where it matters: within the braces' slack of what the abort wrote.
    assert routing_state_bytes(spec) - sizes.state <= 8 * namespaces


# Small worlds, fast: the routing state is a sum over keys and namespaces, so a formula that bounds every
# phase of small worlds, with keys and versions of any length, bounds the large ones (checked above).
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 128), min_size=1, max_size=12),
    namespaces=st.integers(1, 4),
    versions=st.tuples(st.integers(1, 128), st.integers(1, 128)),
    scenario=st.sampled_from(SCENARIOS),
)
def test_property_the_validation_formula_bounds_every_phase(
    lengths: list[int], namespaces: int, versions: tuple[int, int], scenario: str
) -> None:
    keys = [name[-n:].rjust(n, "k") for name, n in zip(key_names(len(lengths), 3), lengths, strict=True)]
    keys = list(dict.fromkeys(keys))  # short ones may collide: distinct keys only
    spec = sized_spec(keys, namespaces, version_length=versions[0], canary="2".ljust(versions[1], "9"))
    sizes = measure(spec, scenario)
    assert sizes.state <= routing_state_bytes(spec)
    assert sizes.routing <= routing_json_bytes(spec)
    assert sizes.rest <= REST_IN_PRACTICE


# Full size: random dimensions, up to the most keys validation accepts for them, any phase.
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), namespaces=st.integers(1, 16), version_length=st.integers(1, 128))
def test_property_any_accepted_size_stays_under_the_budget_in_every_phase(
    data: st.DataObject, namespaces: int, version_length: int
) -> None:
    key_length = data.draw(st.integers(3, 128), label="key_length")
    most = most_keys(namespaces, key_length, version_length)
    keys = data.draw(st.integers(max(1, most // 2), most), label="keys")
    scenario = data.draw(st.sampled_from(SCENARIOS), label="scenario")
    spec = sized_spec(keys, namespaces, key_length, version_length)
    assert size_errors(spec) == []
    sizes = measure(spec, scenario)
    assert sizes.status <= STATUS_BUDGET
    assert sizes.state <= ROUTING_STATE_BUDGET
    assert sizes.routing <= ROUTING_JSON_BUDGET


def test_every_other_status_field_at_its_limit_still_leaves_the_object_under_etcds_limit() -> None:
    """What the budgets leave for: the rest of the status at every list's limit at once (history, handled
    requests, 64 pending notifications, 33 gates, ...), the spec at its budget stored twice (kubectl's
    last-applied copy) and its managedFields (at most the spec plus a few bytes a key)."""
    rest = wire_bytes(rest_at_limits().wire())
    status = ROUTING_STATE_BUDGET + rest
    managed_fields = SPEC_BUDGET + 8 * MAX_KEYS
    metadata = 16 * KIB
    whole = status + 2 * SPEC_BUDGET + managed_fields + metadata
    assert whole < ETCD_REQUEST_LIMIT, f"{whole / KIB:.0f} KiB"
    # 380 KiB before status.keys.quarantined (101 entries at their longest: 30 KiB), then 4 per-key gates'
    # scoreboards of 50 keys at their longest (49 KiB)
    assert rest < 464 * KIB


def test_spec_and_routing_budgets_name_the_field() -> None:
    gates = [
        {"name": f"g{i}", "query": "q" * 8192, "condition": "< 1", "interval": "5s"}
        for i in range(32)  # the CRD's maxima: 32 gates of 8 KiB queries
    ]
    spec = StrategyRolloutSpec.model_validate({**sized_spec(10, 1).model_dump(by_alias=True), "gates": gates})
    (message,) = size_errors(spec)
    assert message.startswith("spec: ") and "exceed the spec size budget of 256 KiB" in message
    # Keys beyond what the key-by-key form holds are segmented, never refused.
    long = sized_spec(1500, 1, 128, 128)
    assert segmented(long) and size_errors(long) == []


def test_replicas_mode_routes_no_keys_and_has_no_key_budget() -> None:
    data = sized_spec(5000, 16, 10, 6).model_dump(by_alias=True, exclude_none=True)
    routing = {**data["routing"], "mode": "replicas"}
    spec = StrategyRolloutSpec.model_validate({**data, "routing": routing, "replicas": 4})
    assert routing_state_bytes(spec) == 0 and routing_json_bytes(spec) == 0
    assert not [e for e in size_errors(spec) if e.startswith("spec.routing")]


def test_keys_are_counted_as_the_api_server_writes_them() -> None:
    """Non-ASCII and <, >, & take more bytes escaped: the count never falls short."""
    plain, escaped = sized_spec(["AB"], 1), sized_spec(["A&"], 1)
    assert routing_state_bytes(escaped) - routing_state_bytes(plain) == 2 * 5
    accented = sized_spec(["É"], 1)
    assert routing_state_bytes(accented) - routing_state_bytes(sized_spec(["E"], 1)) == 2 * 5


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_an_open_universe_at_its_maxima_writes_a_constant_size_in_every_phase(scenario: str) -> None:
    """1,000,000 buckets in 16 stage namespaces with the longest versions: status and routing.json stay
    the size of a handful of integers per namespace, whatever the phase (abort and stop included)."""
    data = sized_spec(1, 16, version_length=128).model_dump(by_alias=True, exclude_none=True)
    data["routing"] = {**data["routing"], "keys": [], "buckets": MAX_BUCKETS}
    spec = StrategyRolloutSpec.model_validate(data)
    assert spec_errors(spec, "ns") == []
    sizes = measure(spec, scenario)
    assert sizes.state <= 16 * 8  # no key anywhere: the routing state is the empty maps
    assert sizes.rest <= REST_IN_PRACTICE
    assert sizes.routing <= 2 * KIB
