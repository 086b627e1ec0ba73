"""Credentials in index URLs (``https://user:token@mirror/simple``): taken out once, never printed or written.

A URL a user gives (flag, ENVBUILDER_* variable, manifest, pip's configuration) may carry userinfo. Settings keep
the URL without it and the userinfo apart (``Credential``); everything envbuilder prints, caches, locks or renders
reads the clean URL. uv receives the credentials through its own mechanism for named indexes
(``UV_INDEX_<NAME>_USERNAME`` / ``_PASSWORD`` in its environment), the reachability probe as an Authorization
header. ``redact`` is the last line of defence for text that came from elsewhere (an error echoing input).
Pure: no I/O.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass, field

__all__ = [
    "Credential",
    "credential_for",
    "redact",
    "split_userinfo",
]

# scheme://userinfo@ — userinfo runs up to the first '@' before the host; no '/', whitespace or quote inside it.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")


@dataclass(frozen=True, slots=True)
class Credential:
    """The userinfo of URLs under ``prefix`` (a credential-free URL, no trailing slash)."""

    prefix: str
    username: str = field(repr=False)
    password: str = field(repr=False)

    def covers(self, url: str) -> bool:
        url = url.rstrip("/")
        return url == self.prefix or url.startswith(self.prefix + "/")

    def basic(self) -> str:
        """The value of an HTTP Authorization header (urllib refuses userinfo inside the URL)."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def split_userinfo(url: str) -> tuple[str, Credential | None]:
    """``https://u:p@host/x`` -> (``https://host/x``, Credential); a URL without userinfo comes back as is."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url), None
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    credential = Credential(clean.rstrip("/"), urllib.parse.unquote(user), urllib.parse.unquote(password))
    return clean, credential


def redact(text: str) -> str:
    """Every ``scheme://userinfo@`` in ``text`` written as ``scheme://***@``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


def credential_for(url: str, credentials: tuple[Credential, ...]) -> Credential | None:
    """The most specific credential whose prefix covers ``url``."""
    matches = [c for c in credentials if c.covers(url)]
    return max(matches, key=lambda c: len(c.prefix)) if matches else None
