"""The ``web`` extra: the JSON HTTP API over ``jobs.client`` and the dashboard, as
one ASGI app.

``create_app(jobs, token=...)`` returns a Starlette app: serve it with uvicorn, or
mount it in another ASGI app (its pages and cookie follow the mount's prefix).
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
