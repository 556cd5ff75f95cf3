"""Security headers for every response, on the app port and the ops port.

Stdlib only: the ops port runs in the gunicorn master, which imports neither Flask nor torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# The page loads its one script and one stylesheet from /static and talks only to its own origin; nothing
# inline (the templates have no inline script or style), so an injected <script> or style="" does not run.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers without CSP frame-ancestors
    "Referrer-Policy": "no-referrer",
}


def relative_location(location: str) -> str:
    """`location` without scheme and host: the service only redirects to itself, and an absolute URL would be
    built from the client's Host header (Werkzeug's slash-merging redirect does that), so a forged Host
    would be reflected into the redirect. Leading slashes and backslashes collapse to one slash: browsers read
    `//host` and `/\\host` as another host."""
    parts = urlsplit(location)
    return urlunsplit(("", "", "/" + parts.path.lstrip("/\\"), parts.query, parts.fragment))


_HEADER_ITEMS = list(SECURITY_HEADERS.items())
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SecureHeaders:
    """WSGI middleware: every response of the wrapped app (errors included) gets the security headers, and a
    Location header is made relative. At the WSGI layer the headers are plain tuples appended once, about 10x
    cheaper per request than setting them on each Flask response."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start_secure(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [
                (name, relative_location(value)) if name.lower() == "location" else (name, value)
                for name, value in headers
            ]
            return start_response(status, headers + _HEADER_ITEMS, exc_info)

        return self.app(environ, start_secure)
