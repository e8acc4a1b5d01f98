"""The web dashboard: every rollout, shadow run and parity check, live (docs/dashboard.md).

store.py (one watch per kind) -> views.py (pure JSON views) -> app.py (Starlette, SSE), auth.py
(local token, or TokenReview + SubjectAccessReview), signin.py (the in-cluster sign-in form),
series.py (Prometheus range queries), static/.
"""
