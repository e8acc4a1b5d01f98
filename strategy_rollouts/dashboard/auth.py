"""Who is asking, and what they may see. No unauthenticated mode.

Local mode: the random token printed with the URL. No cookie (a browser sends a cookie of 127.0.0.1 to
every port of it, so any other local server would receive it): the page keeps the token in its tab
(sessionStorage, which is per origin, port included) and sends it as `Authorization: Bearer`; the page
shell (`/`, `/static/`) carries no data and is served without it. The viewer is the kubeconfig's user,
who sees what their credentials list.

In-cluster mode: every request carries `Authorization: Bearer <token>` (from a proxy) or the sign-in
cookie holding such a token (signin.py), checked with a TokenReview; each namespace is authorised with a
SubjectAccessReview for that user (`list` for lists and live updates, `get` for one object's page). The
cookie's name is per server (`cookie_name`: the Host the browser asked for, port included), so two
dashboards on one host (two clusters port-forwarded) never read or overwrite each other's token.
Positive and negative answers are cached briefly per token (a hash of it); a cache miss takes a slot of
a token bucket, so a flood of made-up tokens costs the API server a bounded number of reviews per second
(then 429). A long-lived event stream is re-reviewed every `recheck_s` and at its token's expiry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from starlette.requests import HTTPConnection

from strategy_rollouts.api.common import GROUP

BEARER_COOKIE = "strategy_dashboard_bearer"  # the prefix of the in-cluster sign-in cookie's name
CACHE_TTL_S = 30.0
CACHE_MAX = 10_000  # entries; the cache is dropped whole past this (a flood of bad tokens)
RECHECK_S = 30.0  # an open event stream's token is reviewed again this often
REVIEWS_PER_S = 20.0  # TokenReviews on cache misses, sustained (a burst of twice as many)


def cookie_name(conn: HTTPConnection, prefix: str = BEARER_COOKIE) -> str:
    """`prefix` and the Host the browser asked for (port included), in cookie-name characters."""
    host = conn.headers.get("host", "")[:100]
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '-', host)}" if host else prefix


def jwt_expiry(token: str) -> float | None:
    """A JWT's `exp` (Unix seconds), unverified: only ever used to re-review a token *sooner*."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


@dataclass
class Bucket:
    """A token bucket: at most `rate` per second sustained, `burst` at once. `now` is monotonic seconds."""

    rate: float
    burst: float
    level: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.level < 0:
            self.level, self.stamp = self.burst, now
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Unauthorized(Exception):
    pass


class Busy(Exception):
    """Too many token reviews this second: answered 429, never taken as a verdict on the token."""


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class LocalAuth:
    """The Jupyter way: whoever holds the printed token is the kubeconfig's user. The header, or the
    query (an EventSource cannot send a header; the token is in no log nor history)."""

    user_name: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    read_only: bool = False

    def check(self, conn: HTTPConnection) -> bool:
        given = bearer(conn) or conn.query_params.get("token") or ""
        return secrets.compare_digest(given.encode(), self.token.encode())

    async def user(self, conn: HTTPConnection) -> User:
        if not self.check(conn):
            raise Unauthorized("a valid token is required: open the URL `kubectl strategy dashboard` printed")
        return User(self.user_name)

    async def allowed(self, user: User, namespace: str, plural: str, verb: str) -> bool:
        return True  # the watch itself runs with the user's credentials: it only sees what they may list


class ClusterAuth:
    """In the cluster: TokenReview + SubjectAccessReview with the dashboard's ServiceAccount."""

    read_only = True

    def __init__(
        self, api: client.ApiClient, recheck_s: float = RECHECK_S, reviews_per_s: float = REVIEWS_PER_S
    ) -> None:
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)
        self.recheck_s = recheck_s
        self.bucket = Bucket(reviews_per_s, 2 * reviews_per_s)
        self._users: dict[str, tuple[float, User | None]] = {}
        self._access: dict[tuple[User, str, str, str], tuple[float, bool]] = {}
        self.reviews = 0  # TokenReviews + SubjectAccessReviews sent (the benchmark counts them)

    @staticmethod
    def _fresh(entry: tuple[float, Any] | None) -> bool:
        return entry is not None and time.monotonic() - entry[0] < CACHE_TTL_S

    @staticmethod
    def token(conn: HTTPConnection) -> str | None:
        """The header first (a proxy's word), else this server's sign-in cookie."""
        return bearer(conn) or conn.cookies.get(cookie_name(conn))

    async def user(self, conn: HTTPConnection) -> User:
        token = self.token(conn)
        if not token:
            raise Unauthorized("sign in at /login, or send Authorization: Bearer <token>")
        return await self.authenticate(token)

    async def authenticate(self, token: str, fresh: bool = False) -> User:
        """The TokenReview's user (cached briefly, unless `fresh`), else Unauthorized; Busy when the
        review would exceed the rate (a cached answer never does)."""
        digest = hashlib.sha256(token.encode()).hexdigest()  # never keep the token itself
        entry = self._users.get(digest)
        if fresh or not self._fresh(entry):
            if not self.bucket.take(time.monotonic()):
                raise Busy("too many sign-in checks right now: try again in a second")
            if len(self._users) > CACHE_MAX:
                self._users.clear()
            entry = (time.monotonic(), await asyncio.to_thread(self._review, token))
            self._users[digest] = entry
        assert entry is not None
        if entry[1] is None:
            raise Unauthorized("the token is not valid (TokenReview did not authenticate it)")
        return entry[1]

    def _review(self, token: str) -> User | None:
        self.reviews += 1
        review = self.authn.create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)), _request_timeout=10
        )
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        info = status.user
        extra = tuple(sorted((k, tuple(v)) for k, v in (info.extra or {}).items()))
        return User(info.username or "", info.uid or "", tuple(info.groups or ()), extra)

    async def allowed(self, user: User, namespace: str, plural: str, verb: str) -> bool:
        key = (user, namespace, plural, verb)
        entry = self._access.get(key)
        if not self._fresh(entry):
            if len(self._access) > CACHE_MAX:
                self._access.clear()
            entry = (time.monotonic(), await asyncio.to_thread(self._access_review, *key))
            self._access[key] = entry
        assert entry is not None
        return bool(entry[1])

    def _access_review(self, user: User, namespace: str, plural: str, verb: str) -> bool:
        self.reviews += 1
        spec = client.V1SubjectAccessReviewSpec(
            user=user.name,
            uid=user.uid or None,
            groups=list(user.groups) or None,
            extra={k: list(v) for k, v in user.extra} or None,
            resource_attributes=client.V1ResourceAttributes(
                group=GROUP, resource=plural, verb=verb, namespace=namespace
            ),
        )
        review = self.authz.create_subject_access_review(client.V1SubjectAccessReview(spec=spec), _request_timeout=10)
        return bool(review.status and review.status.allowed)


Auth = LocalAuth | ClusterAuth


class Revalidation:
    """An open event stream's token, reviewed again every `recheck_s` and just after its expiry: `run()`
    says why the stream must end (revoked, expired, or not reviewable for two periods), else None."""

    def __init__(self, auth: ClusterAuth, token: str) -> None:
        self.auth, self.token = auth, token
        self.confirmed = time.monotonic()  # the stream was opened with a reviewed token
        self.due = self._next(self.confirmed)

    def _next(self, now: float) -> float:
        due = now + self.auth.recheck_s
        expiry = jwt_expiry(self.token)
        left = expiry - time.time() if expiry is not None else None
        if left is not None and left > 0:  # past it but still accepted (clock skew): the period decides
            due = min(due, now + left + 1.0)
        return due

    def wait(self) -> float:
        """Seconds until the next review is due (0: now)."""
        return max(0.0, self.due - time.monotonic())

    async def run(self) -> str | None:
        now = time.monotonic()
        try:
            await self.auth.authenticate(self.token, fresh=True)
        except Unauthorized:
            return "the token is no longer valid (revoked or expired): sign in again"
        except Exception as exc:  # Busy, or the API server unreachable: not a verdict, try again soon
            if now - self.confirmed > 2 * self.auth.recheck_s:
                return f"the token could not be reviewed again ({type(exc).__name__}): sign in again"
            self.due = now + min(5.0, self.auth.recheck_s)
            return None
        self.confirmed, self.due = now, self._next(now)
        return None
