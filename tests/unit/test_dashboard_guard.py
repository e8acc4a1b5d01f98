"""The dashboard's pure safety rules: which writes are another site's, the per-server cookie name, the
rate of token reviews, a token's expiry (the integration tests run them against the real API server)."""

from __future__ import annotations

import base64
import json

import pytest
from starlette.requests import HTTPConnection

from strategy_rollouts.dashboard.app import cross_origin
from strategy_rollouts.dashboard.auth import Bucket, cookie_name, jwt_expiry


def conn(**headers: str) -> HTTPConnection:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return HTTPConnection({"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""})


def test_same_origin_writes_and_scripts_pass() -> None:
    assert cross_origin(conn(host="127.0.0.1:8765", origin="http://127.0.0.1:8765")) is None
    assert cross_origin(conn(host="127.0.0.1:8765", sec_fetch_site="same-origin")) is None
    assert cross_origin(conn(host="127.0.0.1:8765")) is None, "a script: no Origin, its own credentials"
    # behind a proxy that rewrites Host and says which one the browser asked for
    assert cross_origin(conn(host="dash.svc", x_forwarded_host="dash.example", origin="https://dash.example")) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "127.0.0.1:8765", "origin": "http://127.0.0.1:9999"},  # another local port: another origin
        {"host": "127.0.0.1:8765", "origin": "http://evil.example"},
        {"host": "127.0.0.1:8765", "origin": "null"},  # a sandboxed frame, a data: page
        {"host": "127.0.0.1:8765", "sec_fetch_site": "cross-site"},
        {"host": "127.0.0.1:8765", "sec_fetch_site": "same-site"},  # 127.0.0.1:9999 is same-site
    ],
)
def test_writes_from_another_origin_are_refused_with_the_reason(headers: dict[str, str]) -> None:
    why = cross_origin(conn(**headers))
    assert why is not None and "refused" in why


def test_the_cookie_name_is_per_server() -> None:
    assert cookie_name(conn(host="127.0.0.1:8080")) == "strategy_dashboard_bearer_127-0-0-1-8080"
    assert cookie_name(conn(host="127.0.0.1:8081")) != cookie_name(conn(host="127.0.0.1:8080"))
    assert cookie_name(conn(host="dash.example"), "strategy_dashboard_login") == "strategy_dashboard_login_dash-example"
    assert cookie_name(conn(host='a;b="c"')) == "strategy_dashboard_bearer_a-b--c-", "cookie-name characters only"


def test_the_bucket_bounds_reviews_per_second_after_a_burst() -> None:
    bucket = Bucket(rate=2.0, burst=4.0)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 4 + [False] * 2
    assert bucket.take(100.4) is False, "0.8 of a slot refilled"
    assert bucket.take(100.5) is True, "one slot after half a second at 2/s"
    assert sum(bucket.take(101.0 + i / 100) for i in range(100)) <= 4, "a second's flood: the rate, not more"
    assert [bucket.take(200.0) for _ in range(5)].count(True) == 4, "idle: the burst again, never more"


def jwt(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


def test_a_jwt_expiry_is_read_unverified_and_anything_else_has_none() -> None:
    assert jwt_expiry(jwt({"exp": 1_800_000_000, "sub": "x"})) == 1_800_000_000.0
    assert jwt_expiry(jwt({"sub": "x"})) is None
    assert jwt_expiry(jwt(["exp"])) is None
    assert jwt_expiry(jwt({"exp": "soon"})) is None
    assert jwt_expiry("an-opaque-token") is None
    assert jwt_expiry("a.%%%.c") is None
