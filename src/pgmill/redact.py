"""Secrets out of everything pgmill prints, stores or shows: passwords in URLs and connection strings, values
of key-like query parameters and settings.

The bottom layer (it imports nothing from pgmill), so connections, sources, error messages and the MCP server
all decide what a secret is by the same rule.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "***"

# A name (query parameter, settings key) holding any of these, once lowercased and stripped of separators
# (api_key, API-Key and apiKey alike), names a secret ...
SECRET_NAME_PARTS = ("pass", "pwd", "secret", "token", "auth", "key", "cookie", "credential", "session",
                     "signature")
# ... and so does one that is exactly one of these (as parts they would hide too much: "zipcode", "design").
SECRET_NAMES = frozenset({"sig", "code", "jwt"})

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)([^@]*)(@)")
# libpq's key=value strings allow spaces around '=' and single-quoted values with backslash escapes
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]+)", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def secret_name(name: str) -> bool:
    """The value of a parameter or setting called `name` is a secret."""
    n = re.sub(r"[^a-z0-9]", "", name.lower())
    return n in SECRET_NAMES or any(p in n for p in SECRET_NAME_PARTS)


def redact(text: str) -> str:
    """Hide passwords in URLs and key=value strings before anything is printed or stored."""
    text = _PASSWORD_IN_URL.sub(rf"\1{HIDDEN}\3", text)
    return _PASSWORD_PARAM.sub(rf"\1{HIDDEN}", text)


def redact_url(url: str) -> str:
    """The URL with its password and the values of key-like query parameters replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = (userinfo.split(":", 1)[0] + f":{HIDDEN}@" if ":" in userinfo else userinfo + "@") + host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, HIDDEN if secret_name(k) else v) for k, v in pairs], safe="*/:,")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (see redact_url)."""

    def one(m: re.Match[str]) -> str:
        url = m.group(0)
        trail = len(url) - len(url.rstrip(".,;:!?)]}"))  # sentence punctuation, not part of the URL
        return redact_url(url[:len(url) - trail]) + url[len(url) - trail:]

    return _URL_IN_TEXT.sub(one, text)
