"""URL helpers: passwords never leave this module in clear."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
# Shorter known secrets are masked only where they stand alone: masking every "1" in a text
# would garble it, and a secret that short is guessed anyway.
SHORT_SECRET_CHARS = 3

# scheme://user:password@ inside any URL-looking token; the password may be empty and may hold
# '@' or '/' (unencoded): everything up to the token's last '@' is masked (too much beats too
# little).
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^\s]*)@(?=[^@\s]*(?:\s|$))"
)
# ?password=…, &sslpassword=…, ?token=…: any query or option key that names a secret.
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:[A-Za-z0-9_.\-]*?)(?:password|passwd|pwd|secret|token|key))=(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)


def password_of(url: str) -> str:
    """The decoded password in ``url``, or an empty string."""
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""


def obfuscate_url(url: str) -> str:
    """``url`` with every credential replaced by ``***`` and control characters escaped; safe
    to log or print."""
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
    masked = _SECRET_PARAM.sub(lambda m: f"{m['key']}={MASK}", masked)
    return escape_controls(masked)


def escape_controls(text: str) -> str:
    """Text safe to print on one line: control and other non-printing characters (terminal
    escapes, NUL, newlines, bidi overrides) as ``\\x1b``-style escapes, so a name or URL planted
    by hand cannot move a terminal's cursor or forge a log line."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove URL credentials and every known secret value from free text."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m['key']}={MASK}", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= SHORT_SECRET_CHARS:
            text = text.replace(secret, MASK)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return text
