"""The web shell of `pgmill serve`: /metrics and /healthz (the dashboard will join them), over the library.

`create_app` builds the app, `serve_http` runs it in a background thread; the routes live one module per
concern and hold no logic.
"""

from pgmill.web.app import create_app
from pgmill.web.server import serve_http, stop_http

__all__ = ["create_app", "serve_http", "stop_http"]
