"""In-cluster sign-in: a form to paste a ServiceAccount or OIDC bearer token, as the Kubernetes Dashboard has.

GET /login serves the form without auth. POST /login checks the token with a TokenReview at once and, if
it authenticates, keeps it in an HttpOnly, SameSite=Strict cookie (Secure over https or behind
`X-Forwarded-Proto: https`), named per server (auth.cookie_name), that ClusterAuth reads as it reads an
Authorization header. A double-submit nonce (a SameSite=Strict cookie and a hidden field) and the
Origin check every write gets (app.Guard) keep other sites from posting the form (login CSRF).
GET /logout clears the cookie. The token is never logged, echoed or kept beyond the browser's cookie.
"""

from __future__ import annotations

import html
import logging
import secrets
from urllib.parse import parse_qs

from kubernetes.client.exceptions import ApiException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from urllib3.exceptions import HTTPError

from strategy_rollouts.dashboard.auth import Busy, ClusterAuth, Unauthorized, cookie_name

log = logging.getLogger(__name__)
PATHS = frozenset({"/login", "/logout"})  # served without auth
NONCE_COOKIE = "strategy_dashboard_login"  # a prefix: per server, as the sign-in cookie
MAX_BODY = 64 * 1024
MAX_TOKEN = 3800  # a browser keeps ~4 KB per cookie, name and attributes included
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: strategy-rollouts</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body {{ font: 14px system-ui, sans-serif; max-width: 46em; margin: 4em auto; padding: 0 1em; color: #202124; }}
textarea {{ width: 100%; font: 12px monospace; }} button {{ font-size: 14px; padding: .4em 1.4em; }}
.error {{ color: #d93025; font-weight: 600; }} code {{ background: #f1f3f4; padding: 0 .2em; }}
</style></head><body>
<h1>strategy-rollouts</h1>
<p>Sign in with a Kubernetes bearer token: a ServiceAccount's (<code>kubectl create token NAME -n NS</code>)
or your OIDC ID token. You see what that identity may <code>get</code> and <code>list</code>; this dashboard
is read-only.</p>
{message}
<form method="post" action="/login">
<input type="hidden" name="nonce" value="{nonce}">
<p><label for="token">Token</label><br>
<textarea id="token" name="token" rows="8" required autocomplete="off" spellcheck="false" autofocus></textarea></p>
<p><button type="submit" id="sign-in">Sign in</button></p>
</form></body></html>
"""


def secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or proto == "https"


def form(request: Request, message: str = "", status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(18)
    shown = f'<p class="error" id="message" role="alert">{html.escape(message)}</p>' if message else ""
    response = HTMLResponse(PAGE.format(message=shown, nonce=nonce), status, headers=HEADERS)
    name = cookie_name(request, NONCE_COOKIE)
    response.set_cookie(name, nonce, httponly=True, samesite="strict", secure=secure(request), path="/login")
    return response


async def _body(request: Request) -> bytes | None:
    out = bytearray()
    async for chunk in request.stream():
        out += chunk
        if len(out) > MAX_BODY:
            return None
    return bytes(out)


async def login_form(request: Request) -> Response:
    return form(request)


async def login(request: Request, auth: ClusterAuth) -> Response:
    body = await _body(request)
    if body is None:
        return form(request, "That was too long for a token.", 413)
    fields = parse_qs(body.decode(errors="replace"), max_num_fields=8)
    nonce = (fields.get("nonce") or [""])[0]
    expected = request.cookies.get(cookie_name(request, NONCE_COOKIE), "")
    if not nonce or not secrets.compare_digest(nonce.encode(), expected.encode()):
        return form(request, "This form expired or was posted from another page: sign in again.", 403)
    token = (fields.get("token") or [""])[0].strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        return form(request, "Paste a token to sign in.", 401)
    if len(token) > MAX_TOKEN:
        return form(
            request,
            f"This token is too long for a browser cookie (over {MAX_TOKEN} characters): "
            "put the dashboard behind a proxy that sends Authorization: Bearer instead.",
            401,
        )
    try:
        user = await auth.authenticate(token, fresh=True)
    except Busy as exc:
        return form(request, f"Sign-in not checked: {exc}.", 429)
    except Unauthorized:
        return form(
            request,
            "Sign-in failed: the API server did not accept this token (TokenReview): it may "
            "be expired, revoked, mistyped or from another cluster.",
            401,
        )
    except (ApiException, HTTPError) as exc:  # the reason only: never anything that could carry the token
        why = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else type(exc).__name__
        log.warning("sign-in: TokenReview failed: %s", why)
        return form(request, f"Sign-in failed: the TokenReview could not be made ({why}).", 503)
    log.info("signed in: %s", user.name)  # the name, never the token
    response = RedirectResponse("/", 303)
    response.set_cookie(cookie_name(request), token, httponly=True, samesite="strict", secure=secure(request), path="/")
    response.delete_cookie(
        cookie_name(request, NONCE_COOKIE), path="/login", httponly=True, samesite="strict", secure=secure(request)
    )
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", 303)
    response.delete_cookie(cookie_name(request), path="/", httponly=True, samesite="strict", secure=secure(request))
    return response
