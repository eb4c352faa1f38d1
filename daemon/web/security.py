"""Who may read and who may write through the web page.

- Reads: anyone who reaches the listener. On a loopback listener (the default) a request must also name a loopback
  host in its Host header, so a web site that rebinds its own name to 127.0.0.1 cannot read the page (and with it
  the CSRF token) from a browser on this machine.
- Writes (pair verdicts): POST only, with the page's CSRF token in the X-CSRF-Token header (a page of another
  origin cannot read it), and an Origin header, when the browser sends one, that names this host and port. When the
  listener is not on loopback, a write also needs `metrics.write_token` in the X-Humanstyle-Token header; without a
  configured token, writes are off there.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from humanstyle.daemon.config import is_loopback as is_loopback_address


def is_loopback(host: str) -> bool:
    """A loopback address, or a name a browser resolves to loopback: besides daemon.keys' addresses (which decide
    whether a socket may go without keys), any *.localhost name (browsers resolve those to loopback themselves)."""
    host = host.strip("[]").lower()
    return host.endswith(".localhost") or is_loopback_address(host)


def host_of(header: str) -> str:
    """The host name of a Host header value ("127.0.0.1:9108", "[::1]:9108", "localhost")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass
class Guard:
    listen_host: str
    write_token: str = ""
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def loopback(self) -> bool:
        return is_loopback(self.listen_host)

    @property
    def writes_need_token(self) -> bool:
        return not self.loopback

    @property
    def writes_enabled(self) -> bool:
        return self.loopback or bool(self.write_token)

    def host_allowed(self, host_header: str | None) -> bool:
        if not self.loopback:
            return True
        return bool(host_header) and is_loopback(host_of(host_header))

    def write_refusal(self, headers, host_header: str | None) -> str | None:
        """Why a write request must be refused, or None when it may go ahead."""
        if not self.writes_enabled:
            return "curation is off on a listener beyond loopback without metrics.write_token"
        origin = headers.get("Origin")
        if origin and urlsplit(origin).netloc.lower() != (host_header or "").strip().lower():
            return "cross-origin request"
        if not hmac.compare_digest(headers.get("X-CSRF-Token", ""), self.csrf_token):
            return "missing or stale CSRF token: reload the page"
        if self.writes_need_token and not hmac.compare_digest(headers.get("X-Humanstyle-Token", ""),
                                                              self.write_token):
            return "this listener needs metrics.write_token for writes"
        return None
