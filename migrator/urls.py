"""URL helpers: passwords never leave this module in clear."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"

# user:password@ inside any URL-looking token; the password may be empty.
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@"
)


def password_of(url: str) -> str:
    """The decoded password in ``url``, or an empty string."""
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""


def obfuscate_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; safe to log or print."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove URL passwords and every known secret value from free text."""
    text = obfuscate_url(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text
