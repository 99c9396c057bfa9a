"""Tracking URIs (`--track`, `tracking { uri }`) -> the http(s) URL of an MLflow server.

Standard library only: the compiler checks a spec's URI with it (a located error), and the
runtime's tracker (expc/runtime/tracking.py) uses the same rules.
"""

from __future__ import annotations

import re
import urllib.parse

ACCEPTED_FORMS = (
    "mlflow://HOST:PORT, mlflow+https://HOST[:PORT][/PATH] or http(s)://HOST[:PORT][/PATH]"
)
_SCHEMES = {"mlflow": "http", "mlflow+https": "https", "http": "http", "https": "https"}
_NETLOC = re.compile(r"(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>.*))?")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")  # a name, an IPv4 or [IPv6] address


def server_url(uri: str) -> str:
    """The http(s) URL a tracking URI names: `mlflow://HOST:PORT` is plain HTTP,
    `mlflow+https://HOST[:PORT][/PATH]` HTTPS, an http(s) URL itself (without a trailing
    slash). Anything else is a ValueError naming the accepted forms."""

    def bad(why: str) -> ValueError:
        return ValueError(f"tracking URI {uri!r} {why}; use {ACCEPTED_FORMS}")

    if not uri or not uri.isprintable() or any(c.isspace() for c in uri):
        raise bad("is empty or holds spaces or control characters")
    parts = urllib.parse.urlsplit(uri)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise bad(f"has scheme {parts.scheme!r}" if parts.scheme else "has no scheme")
    if "@" in parts.netloc:  # kept out of the cursor file and of messages
        raise bad("holds credentials (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise bad("has a query or a fragment")
    split = _NETLOC.fullmatch(parts.netloc)
    host, port = (split["host"], split["port"]) if split else ("", None)
    if not uri.lower().startswith(f"{parts.scheme}://") or not host:
        raise bad("names no host")
    if not _HOST.fullmatch(host):
        raise bad(f"has a malformed host {host!r}")
    if port is not None and not (port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise bad(f"has a bad port {port!r}")
    if port is None and parts.scheme == "mlflow":
        raise bad("names no port (`mlflow server` listens on 5000 unless told otherwise)")
    netloc = host.lower() if port is None else f"{host.lower()}:{int(port)}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"
