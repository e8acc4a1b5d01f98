"""Who is asking, and what they may see. No unauthenticated mode.

Local mode: the random token printed with the URL (query once, then a cookie); the viewer is the
kubeconfig's user, who sees what their credentials list. In-cluster mode: every request carries
`Authorization: Bearer <token>` (from a proxy) or the sign-in cookie holding such a token (signin.py),
checked with a TokenReview; each namespace is authorised with a SubjectAccessReview for that user
(`list` for lists and live updates, `get` for one object's page).
Answers are cached briefly per token so a page's requests cost the API server a few reviews at most.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from starlette.requests import HTTPConnection

from strategy_rollouts.api.common import GROUP

COOKIE = "strategy_dashboard_token"
# In-cluster sign-in: another name, since cookies ignore ports (a local dashboard on the same host).
BEARER_COOKIE = "strategy_dashboard_bearer"
CACHE_TTL_S = 30.0
CACHE_MAX = 10_000  # entries; the cache is dropped whole past this (a flood of bad tokens)


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Unauthorized(Exception):
    pass


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class LocalAuth:
    """The Jupyter way: whoever holds the printed token is the kubeconfig's user."""

    user_name: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    read_only: bool = False

    def check(self, conn: HTTPConnection) -> bool:
        given = conn.query_params.get("token") or conn.cookies.get(COOKIE) or bearer(conn) or ""
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

    def __init__(self, api: client.ApiClient) -> None:
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)
        self._users: dict[str, tuple[float, User | None]] = {}
        self._access: dict[tuple[User, str, str, str], tuple[float, bool]] = {}
        self.reviews = 0  # TokenReviews + SubjectAccessReviews sent (the benchmark counts them)

    @staticmethod
    def _fresh(entry: tuple[float, Any] | None) -> bool:
        return entry is not None and time.monotonic() - entry[0] < CACHE_TTL_S

    async def user(self, conn: HTTPConnection) -> User:
        token = bearer(conn) or conn.cookies.get(BEARER_COOKIE)  # the header first: a proxy's word
        if not token:
            raise Unauthorized("sign in at /login, or send Authorization: Bearer <token>")
        return await self.authenticate(token)

    async def authenticate(self, token: str, fresh: bool = False) -> User:
        """The TokenReview's user (cached briefly, unless `fresh`), else Unauthorized."""
        digest = hashlib.sha256(token.encode()).hexdigest()  # never keep the token itself
        entry = self._users.get(digest)
        if fresh or not self._fresh(entry):
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
